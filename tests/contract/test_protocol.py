"""Protocol completeness against a real ``parley serve``: Open Responses fields, integer timestamps, honest
retrieval options, and 4xx log lines that name what was refused."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from parley.testing import ParleyProcess, Reply
from parley.testing.grammar import check_stream
from tests.contract.helpers import stream_raw
from tests.files_fixtures import pdf_with_inflating_stream


def test_penalties_are_sent_upstream_and_echoed_with_defaults(client, backend, parley_server) -> None:
    client.responses.create(model="m", input="x", extra_body={"presence_penalty": 0.5, "frequency_penalty": -1})
    assert backend.requests[-1]["presence_penalty"] == 0.5 and backend.requests[-1]["frequency_penalty"] == -1
    raw = httpx.post(f"{parley_server.base_url}/responses", json={"model": "m", "input": "x"}, timeout=60).json()
    assert raw["presence_penalty"] == 0 and raw["frequency_penalty"] == 0
    assert "presence_penalty" not in backend.requests[-1]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", extra_body={"presence_penalty": 3})
    assert info.value.body["param"] == "presence_penalty"


def test_timestamps_are_integers_in_bodies_events_and_stored_responses(parley_server, backend) -> None:
    created = httpx.post(f"{parley_server.base_url}/responses", json={"model": "m", "input": "x"}, timeout=60).json()
    assert type(created["created_at"]) is int and type(created["completed_at"]) is int
    stored = httpx.get(f"{parley_server.base_url}/responses/{created['id']}", timeout=60).json()
    assert type(stored["created_at"]) is int and type(stored["completed_at"]) is int
    with httpx.stream("POST", f"{parley_server.base_url}/responses", timeout=60,
                      json={"model": "m", "input": "x", "stream": True}) as stream:
        frames = stream.read().decode()
    lifecycle = [json.loads(line[6:]) for line in frames.splitlines()
                 if line.startswith("data:") and '"response":' in line]
    assert len(lifecycle) == 3 and all(type(e["response"]["created_at"]) is int for e in lifecycle)
    assert type(lifecycle[-1]["response"]["completed_at"]) is int


def test_retrieve_refuses_what_it_cannot_honour_by_name(client, parley_server) -> None:
    response = client.responses.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        list(client.responses.retrieve(response.id, stream=True))
    assert info.value.body["param"] == "stream"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.retrieve(response.id, include=["reasoning.encrypted_content"])
    assert info.value.body["param"] == "include"
    assert client.responses.retrieve(response.id, include=["web_search_call.action.sources"]).id == response.id
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.input_items.list(response.id, include=["reasoning.encrypted_content"])
    assert info.value.body["param"] == "include"
    assert client.responses.input_items.list(response.id, include=["message.input_image.image_url"]).data


def test_a_refused_request_is_logged_with_its_code_and_parameter(scripted_server, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'l.db'}") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as plain:
        with pytest.raises(openai.BadRequestError):
            plain.responses.create(model="m", input="x", extra_body={"top_p": 7})
        line = "POST /v1/responses 400 invalid_value param=top_p"
        deadline = time.monotonic() + 10  # the access line is written once the response has gone out
        while line not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert line in server.log()


WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def test_allowed_tools_offers_the_named_subset_this_turn(client, backend) -> None:
    response = client.responses.create(model="m", input="x", tools=[WEATHER, TIME], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]})
    sent = backend.requests[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_time"] and sent["tool_choice"] == "required"
    assert response.tool_choice.type == "allowed_tools" and response.tool_choice.mode == "required"
    assert [t.name for t in response.tools] == ["get_weather", "get_time"]  # the rest stay for later turns
    client.responses.create(model="m", input="x", tools=[WEATHER, TIME], tool_choice={
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"},
                                                           {"type": "function", "name": "get_time"}]})
    assert len(backend.requests[-1]["tools"]) == 2 and backend.requests[-1]["tool_choice"] == "auto"


def test_allowed_tools_and_other_tool_choices_are_refused_accurately(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", tools=[WEATHER], tool_choice={
            "type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "nope"}]})
    assert info.value.body["param"] == "tool_choice.tools[0]"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", tools=[WEATHER], tool_choice={"type": "mystery_tool"})
    assert info.value.body["param"] == "tool_choice.type" and "allowed_tools" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", tools=[WEATHER], tool_choice={"type": "file_search"})
    assert info.value.body["param"] == "tool_choice" and "no file_search tool" in info.value.body["message"]


def test_pass_through_parameters_reach_upstreams_that_take_them(client, backend, scripted_server, tmp_path) -> None:
    params = {"service_tier": "flex", "prompt_cache_key": "k1", "prompt_cache_retention": "24h",
              "safety_identifier": "hash-1"}
    client.responses.create(model="m", input="x", **params)
    assert not {"service_tier", "prompt_cache_key", "prompt_cache_retention", "safety_identifier"} & \
        set(backend.requests[-1])  # a default upstream may refuse fields it does not know
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'f.db'}",
                       "--upstream-forward", "service_tier,prompt_cache_key,prompt_cache_retention,safety_identifier"
                       ) as server, openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as forwarding:
        backend.push(Reply(text="ok", service_tier="flex"))
        response = forwarding.responses.create(model="m", input="x", **params)
        unreported = forwarding.responses.create(model="m", input="x", service_tier="priority")
    assert {name: backend.requests[-2][name] for name in params} == params
    assert response.service_tier == "flex"  # what the upstream reported
    assert unreported.service_tier == "default" and backend.requests[-1]["service_tier"] == "priority"


def test_prompt_cache_options_and_image_go_only_to_upstreams_that_take_them(client, backend, scripted_server,
                                                                            tmp_path) -> None:
    options = {"prompt_cache_options": {"mode": "explicit", "ttl": "12h"},
               "image": {"context_compression": "disabled"}}
    for name, value in options.items():
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", input="x", **{name: value})
        assert info.value.body["param"] == name and "--upstream-forward" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", prompt_cache_options={"ttl": "1y"})
    assert info.value.body["param"] == "prompt_cache_options.ttl"
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'o.db'}",
                       "--upstream-forward", "prompt_cache_options,image") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as forwarding:
        backend.push(Reply(text="ok"))
        response = forwarding.responses.create(model="m", input="x", **options)
    assert {name: backend.requests[-1][name] for name in options} == options
    assert response.prompt_cache_options.ttl == "12h" and response.image.context_compression == "disabled"


def test_reasoning_summary_carries_the_reasoning_and_streams_as_summary_events(client, backend, parley_server) -> None:
    backend.push(Reply(reasoning="First add, then check.", text="5"))
    plain = client.responses.create(model="m", input="2+3?")
    assert plain.output[0].content[0].text == "First add, then check." and plain.output[0].summary == []
    backend.push(Reply(reasoning="First add, then check.", text="5", chunk_size=3))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "2+3?", "reasoning": {"summary": "auto"}})
    check_stream(events)
    kinds = [e.type for e in events]
    assert "response.reasoning_summary_text.delta" in kinds and "response.reasoning_text.delta" not in kinds
    reasoning = events[-1].response.output[0]
    assert [s.text for s in reasoning.summary] == ["First add, then check."]
    assert "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta") == \
        "First add, then check."


def test_think_tags_become_reasoning_items_across_chunks(scripted_server, backend, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 't.db'}",
                       "--upstream-reasoning-parser", "think_tags") as server:
        backend.push(Reply(text="<think>Add 2 and 3.</think>It is 5.", chunk_size=3))
        events = stream_raw(server.base_url, {"model": "m", "input": "2+3?"})
    check_stream(events)
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "Add 2 and 3." and final.output_text == "It is 5."
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == "Add 2 and 3."


def _file_message(text: str, part: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_text", "text": text}, part]}]


def test_input_files_reach_the_model_as_their_text(client, backend, tmp_path) -> None:
    import base64
    import functools
    import http.server
    import threading

    from tests.files_fixtures import tiny_pdf

    pdf = "data:application/pdf;base64," + base64.b64encode(tiny_pdf("Revenue grew 12 percent")).decode()
    client.responses.create(model="m", input=_file_message("Summarize.", {
        "type": "input_file", "filename": "report.pdf", "file_data": pdf}))
    assert backend.requests[-1]["messages"][-1]["content"] == \
        "Summarize.\n\n[file: report.pdf]\nRevenue grew 12 percent"
    notes = base64.b64encode("# Plan\n- ship it".encode()).decode()
    client.responses.create(model="m", input=_file_message("Read.", {
        "type": "input_file", "filename": "notes.md", "file_data": notes}))
    assert backend.requests[-1]["messages"][-1]["content"].endswith("[file: notes.md]\n# Plan\n- ship it")
    (tmp_path / "page.html").write_text("<html><body><h1>Llamas</h1><script>x</script><p>live in Peru</p></body>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as site:
        threading.Thread(target=site.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{site.server_address[1]}/page.html"
        stored = client.responses.create(model="m", input=_file_message("Where?", {
            "type": "input_file", "file_url": url}))
        site.shutdown()
    assert backend.requests[-1]["messages"][-1]["content"].endswith("[file: attached file]\nLlamas\nlive in Peru")
    item = client.responses.input_items.list(stored.id).data[0]
    assert item.content[1].type == "input_file" and item.content[1].file_url == url  # stored as sent


@pytest.mark.parametrize("part,param", [
    ({"type": "input_file", "filename": "a.png", "file_data": "aGk="}, "input[0].content[1]"),
    ({"type": "input_file", "filename": "a.txt", "file_data": "%%%"}, "input[0].content[1].file_data"),
    ({"type": "input_file", "file_url": "http://127.0.0.1:9/missing.pdf"}, "input[0].content[1].file_url"),
    ({"type": "input_file", "file_id": "file-abc"}, "input[0].content[1].file_id"),
    ({"type": "input_file", "filename": "a.txt"}, "input[0].content[1]"),
    ({"type": "input_file", "filename": "bomb.pdf", "file_data": base64.b64encode(
        pdf_with_inflating_stream(100)).decode()}, "input[0].content[1]"),  # (pypdf's limits: it was a 500)
])
def test_an_input_file_that_cannot_be_read_is_a_400_naming_it(client, backend, part, param) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=_file_message("x", part))
    assert info.value.body["param"] == param
    assert backend.requests == []


def test_a_file_url_that_redirects_is_a_400_not_an_empty_file(client, backend) -> None:
    import http.server
    import threading

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting) as site:
        threading.Thread(target=site.serve_forever, daemon=True).start()
        try:
            with pytest.raises(openai.BadRequestError) as info:
                client.responses.create(model="m", input=_file_message("x", {
                    "type": "input_file", "filename": "a.txt",
                    "file_url": f"http://127.0.0.1:{site.server_address[1]}/a.txt"}))
        finally:
            site.shutdown()
    assert info.value.body["param"] == "input[0].content[1].file_url" and "redirect" in info.value.body["message"]
    assert backend.requests == []


def test_logprobs_are_asked_for_and_returned_on_parts_and_events(client, backend, parley_server) -> None:
    backend.push(Reply(text="Hello there", chunk_size=4))
    response = client.responses.create(model="m", input="hi", top_logprobs=2,
                                       include=["message.output_text.logprobs"])
    sent = backend.requests[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 2
    part = response.output[0].content[0]
    assert [lp.token for lp in part.logprobs] == ["Hell", "o th", "ere"]
    assert all(len(lp.top_logprobs) == 2 for lp in part.logprobs) and response.top_logprobs == 2
    backend.push(Reply(text="Hello there", chunk_size=4))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "hi",
                                                 "include": ["message.output_text.logprobs"]})
    check_stream(events)
    assert "top_logprobs" not in backend.requests[-1] and backend.requests[-1]["logprobs"] is True
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [lp.token for e in deltas for lp in e.logprobs] == ["Hell", "o th", "ere"]
    done = next(e for e in events if e.type == "response.output_text.done")
    assert [lp.logprob for lp in done.logprobs] == [lp.logprob for e in deltas for lp in e.logprobs]
    client.responses.create(model="m", input="hi")
    assert "logprobs" not in backend.requests[-1]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="hi", top_logprobs=21)
    assert info.value.body["param"] == "top_logprobs"


def test_item_reference_resolves_stored_items_by_id(client, backend) -> None:
    first = client.responses.create(model="m", input="Which planet?")
    client.responses.create(model="m", input=[
        {"type": "message", "role": "user", "content": "Which planet?"},
        {"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "Sure?"}])
    assert backend.requests[-1]["messages"] == [
        {"role": "user", "content": "Which planet?"}, {"role": "assistant", "content": "You said: Which planet?"},
        {"role": "user", "content": "Sure?"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=[{"type": "item_reference", "id": "msg_unknown"}])
    assert info.value.body["param"] == "input[0].id" and info.value.code == "item_not_found"


def test_access_programs_standard_is_granted_and_daybreak_is_a_403(client, backend) -> None:
    backend.push(Reply(text="ok"))
    response = client.responses.create(model="m", input="x", access_programs={"cyber": "standard"})
    assert response.access_programs.cyber == "standard"
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.responses.create(model="m", input="x", access_programs={"cyber": "daybreak_red"})
    assert info.value.body["param"] == "access_programs.cyber" and info.value.body["code"] == "permission_denied"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", access_programs={"cyber": "other"})
    assert info.value.body["param"] == "access_programs.cyber"
