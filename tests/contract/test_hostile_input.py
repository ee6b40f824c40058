"""Hostile input against a real ``parley serve``: a 4xx naming what is wrong, before anything is stored or
sent upstream (streamed or not, stored or not), and failures of a backend or a provider reported as theirs."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.search_server import Document, SearchTestServer
from tests.contract.helpers import stream_raw


def nested(levels: int, leaf: object = "string") -> dict:
    """A JSON schema ``levels`` objects deep."""
    schema: dict = {"type": leaf}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def type_nested(levels: int) -> dict:
    tool: dict = {"type": "function"}
    for _ in range(levels):
        tool = {"type": tool}
    return tool


def deep_dumps(body: dict) -> str:
    """JSON text of a body nested deeper than Python's recursion limit allows by default."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        return json.dumps(body)
    finally:
        sys.setrecursionlimit(limit)


HOSTILE = {
    "item type not a string": ([{"type": {"a": 1}, "role": "user", "content": "x"}], {}, "input[0].type"),
    "part type not a string": ([{"role": "user", "content": [{"type": ["input_text"], "text": "x"}]}], {},
                               "input[0].content[0].type"),
    "tool type not a string": ("x", {"tools": [{"type": {"name": "f"}}]}, "tools[0].type"),
    "tool type nested 1000 deep": ("x", {"tools": [type_nested(1000)]}, None),
    "parameters 300 deep": ("x", {"tools": [{"type": "function", "name": "f", "parameters": nested(300)}]}, None),
    "text.format schema 300 deep": ("x", {"text": {"format": {"type": "json_schema", "name": "s",
                                                              "schema": nested(300)}}}, None),
    "an item id too long to store": ([{"role": "user", "content": "x", "id": "msg_" + "a" * 500}], {},
                                     "input[0].id"),
    "a NUL in an item id": ([{"role": "user", "content": "x", "id": "msg_\u0000"}], {}, "input[0].id"),
    "a file: image URL": ([{"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}],
                          {}, "input[0].content[0].image_url"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("store", [True, False], ids=["stored", "unstored"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_a_400_before_anything_runs(parley_server, backend, case, store, stream) -> None:
    given, extra, param = HOSTILE[case]
    body = {"model": "m", "input": given, "store": store, "stream": stream, **extra}
    response = httpx.post(f"{parley_server.base_url}/responses", content=deep_dumps(body),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error
    else:
        assert error["code"] == "nesting_too_deep", error
    assert backend.requests == []  # nothing reached the model
    assert httpx.get(f"{parley_server.url}/health").status_code == 200


@pytest.mark.parametrize("raw, what", [
    (['data: {"choices": "abc"}', "", "data: [DONE]", ""], "choices"),
    (['data: {"choices": [{"index": 0, "delta": {"content": 7}}]}', "", "data: [DONE]", ""], "content"),
    (['data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": '
      '{"arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}', "", "data: [DONE]", ""], "no function name"),
    (['data: {"choices": [], "usage": {"prompt_tokens": "many"}}', "", "data: [DONE]", ""], "usage"),
    (['data: [1, 2]', "", "data: [DONE]", ""], "not an object"),
], ids=["choices-a-string", "content-a-number", "tool-call-without-a-name", "usage-not-counts", "chunk-a-list"])
def test_a_malformed_chunk_is_a_backend_protocol_error(parley_server, backend, raw, what) -> None:
    backend.push(Reply(raw=raw))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "x"})
    assert events[-1].type == "response.failed"
    assert events[-2].type == "error" and events[-2].code == "backend_protocol_error", events[-2]
    assert what in events[-2].message
    backend.push(Reply(raw=raw))
    response = httpx.post(f"{parley_server.base_url}/responses", json={"model": "m", "input": "x"}, timeout=30)
    assert response.status_code == 502 and response.json()["error"]["code"] == "backend_protocol_error"


def test_a_provider_failure_fails_its_web_search_item_not_the_response(tmp_path) -> None:
    long_query = "llama " * 12_000  # 72,000 characters: too long for a URL

    def model(request: dict) -> Reply:
        if not any(m["role"] == "tool" for m in request["messages"]):
            return Reply(tool_calls=[ToolCall("web_search", {"query": long_query})])
        return Reply(text="I could not search.")

    with SearchTestServer() as search, ScriptedBackend(model) as backend, ParleyProcess(
            "--upstream", backend.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
            "--web-search", f"searxng:{search.url}") as server:
        done = httpx.post(f"{server.base_url}/responses", timeout=60, json={
            "model": "m", "input": "search", "tools": [{"type": "web_search"}]}).json()
    assert done["status"] == "completed"
    call = done["output"][0]
    assert call["type"] == "web_search_call" and call["status"] == "failed"
    assert done["output"][-1]["content"][0]["text"] == "I could not search."


def test_only_http_sources_are_kept(tmp_path) -> None:
    corpus = [Document("Trap", "javascript:alert(document.cookie)", "llama experts 128"),
              Document("Data", "data:text/html,<script>x</script>", "llama experts 128"),
              Document("Real", "https://ai.meta.example/llama", "llama experts 128")]

    def model(request: dict) -> Reply:
        if not any(m["role"] == "tool" for m in request["messages"]):
            return Reply(tool_calls=[ToolCall("web_search", {"query": "llama experts"})])
        return Reply(text="128 [1].")

    with SearchTestServer(corpus) as search, ScriptedBackend(model) as backend, ParleyProcess(
            "--upstream", backend.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
            "--web-search", f"searxng:{search.url}") as server:
        done = httpx.post(f"{server.base_url}/responses", timeout=60, json={
            "model": "m", "input": "search", "tools": [{"type": "web_search"}]}).json()
    sources = done["output"][0]["action"]["sources"]
    assert [s["url"] for s in sources] == ["https://ai.meta.example/llama"]
    assert "javascript:" not in json.dumps(backend.requests[-1]["messages"])


def test_image_urls_to_internal_addresses_are_refused_with_keys(scripted_server, backend, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--api-keys", "sk-a-0000=a") as server:
        for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/x.png",
                    "http://[64:ff9b::a9fe:a9fe]/x.png", "http://127.0.0.1:5432\\@1.1.1.1/x.png",
                    "http://224.0.0.251/x.png"):
            for where in ("message", "function_call_output"):
                item = {"role": "user", "content": [{"type": "input_image", "image_url": url}]} \
                    if where == "message" else {"type": "function_call_output", "call_id": "c1",
                                                "output": [{"type": "input_image", "image_url": url}]}
                response = httpx.post(f"{server.base_url}/responses", headers={"Authorization": "Bearer sk-a-0000"},
                                      json={"model": "m", "input": [item]}, timeout=30)
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert error["code"] == "url_not_allowed" and error["param"].startswith("input[0]."), error
        assert backend.requests == []


@pytest.mark.parametrize("response_id", ["%00", "resp_%00x", "resp_" + "a" * 200, "r%C3%A9sp"])
def test_an_id_that_cannot_exist_is_a_404(parley_server, response_id) -> None:
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/input_items")):
        response = httpx.request(method, f"{parley_server.base_url}/responses/{response_id}{path}", timeout=30)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["param"] == "response_id"
