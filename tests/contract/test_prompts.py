"""Stored prompts: made and versioned through Parley's /v1/prompts, used by ``prompt`` on a create with the
``openai`` SDK (HTTP, streamed, WebSocket), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from parley.testing import Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.strict import stream_raw

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
TEMPLATE = {"model": "m-from-prompt", "instructions": "You help with {{topic}}. Be brief.",
            "input": [{"role": "user", "content": "My question about {{topic}}: {{question}}"}],
            "temperature": 0.2,
            "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]}


@pytest.fixture
def api(parley_server):
    with httpx.Client(base_url=parley_server.base_url, timeout=30) as client:
        yield client


def test_a_prompt_is_made_versioned_listed_and_deleted(api) -> None:
    made = api.post("/prompts", json={"name": "helper", **TEMPLATE}).json()
    assert made["id"].startswith("pmpt_") and made["version"] == "1" and made["variables"] == ["question", "topic"]
    second = api.post(f"/prompts/{made['id']}/versions", json={**TEMPLATE, "temperature": 0.9}).json()
    assert second["version"] == "2" and second["name"] == "helper"
    assert api.get(f"/prompts/{made['id']}").json()["temperature"] == 0.9
    assert api.get(f"/prompts/{made['id']}", params={"version": "1"}).json()["temperature"] == 0.2
    assert [v["version"] for v in api.get(f"/prompts/{made['id']}/versions").json()["data"]] == ["2", "1"]
    assert made["id"] in [p["id"] for p in api.get("/prompts", params={"limit": 100}).json()["data"]]
    assert api.delete(f"/prompts/{made['id']}").json()["deleted"] is True
    assert api.get(f"/prompts/{made['id']}").status_code == 404
    for bad, param in [({"name": "x", "promt": 1}, "promt"), ({"name": "x", "temperature": 7}, "temperature"),
                       ({"instructions": "hi"}, "name"), ({"name": "x", "input": "text"}, "input")]:
        answer = api.post("/prompts", json=bad)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, (bad, answer.text)


def test_a_create_with_a_prompt_fills_it_and_takes_its_settings(client, api, backend, parley_server) -> None:
    made = api.post("/prompts", json={"name": "helper", **TEMPLATE}).json()
    api.post(f"/prompts/{made['id']}/versions", json={**TEMPLATE, "instructions": "Version two on {{topic}}."})
    backend.push(Reply(text="Tides follow the moon."))
    response = client.responses.create(prompt={"id": made["id"], "version": "1", "variables": {
        "topic": "tides", "question": {"type": "input_text", "text": "why twice a day?"}}}, input="Thanks!")
    assert response.output_text == "Tides follow the moon."
    assert response.prompt.id == made["id"] and response.prompt.version == "1"
    assert response.model == "m-from-prompt" and response.temperature == 0.2 and response.tools[0].name == "lookup"
    sent = backend.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "You help with tides. Be brief."},
                                {"role": "user", "content": "My question about tides: why twice a day?"},
                                {"role": "user", "content": "Thanks!"}]
    backend.push(Reply(text="ok"))  # the latest version; the request's own settings win
    latest = client.responses.create(model="m-own", temperature=1.0, prompt={"id": made["id"], "variables": {
        "topic": "owls", "question": {"type": "input_image", "image_url": PNG}}})
    assert latest.prompt.version == "2" and latest.model == "m-own" and latest.temperature == 1.0
    assert backend.requests[-1]["messages"][0]["content"] == "Version two on owls."
    assert backend.requests[-1]["messages"][1]["content"] == [
        {"type": "text", "text": "My question about owls: "}, {"type": "image_url", "image_url": {"url": PNG}}]
    backend.push(Reply(text="streamed"))
    events = stream_raw(parley_server.base_url, {"prompt": {"id": made["id"], "variables": {
        "topic": "a", "question": "b"}}, "input": "c"})
    assert check_stream(events).prompt.version == "2"
    assert client.responses.retrieve(latest.id).prompt.variables["topic"] == "owls"


def test_bad_prompt_references_are_4xx(client, api, backend) -> None:
    made = api.post("/prompts", json={"name": "helper", **TEMPLATE}).json()
    cases = [({"id": "pmpt_nope"}, openai.NotFoundError, "prompt.id"),
             ({"id": made["id"], "version": "9", "variables": {"topic": "a", "question": "b"}}, openai.NotFoundError,
              "prompt.version"),
             ({"id": made["id"], "variables": {"topic": "a"}}, openai.BadRequestError, "prompt.variables.question"),
             ({"id": made["id"], "variables": {"topic": "a", "question": "b", "extra": "c"}}, openai.BadRequestError,
              "prompt.variables.extra"),
             ({"id": made["id"], "variables": {"topic": {"type": "input_image", "image_url": PNG}, "question": "b"}},
              openai.BadRequestError, "prompt.variables.topic"),
             ({"id": made["id"], "version": "v1"}, openai.BadRequestError, "prompt.version")]
    for prompt, error, param in cases:
        with pytest.raises(error) as info:
            client.responses.create(prompt=prompt)
        assert info.value.body["param"] == param, (prompt, info.value.body)


def test_a_prompt_over_the_websocket(parley_server, api, backend) -> None:
    made = api.post("/prompts", json={"name": "ws", "instructions": "Answer about {{topic}}.",
                                      "model": "m-prompt"}).json()
    backend.push(Reply(tool_calls=[ToolCall("lookup", {})]), Reply(text="done"))
    with openai.OpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0) as client:
        with client.responses.connect() as conn:
            conn.response.create(prompt={"id": made["id"], "variables": {"topic": "bees"}}, input="Go.")
            event = conn.recv()
            while event.type not in ("response.completed", "response.failed", "error"):
                event = conn.recv()
    assert event.type == "response.completed" and event.response.prompt.id == made["id"]
    assert backend.requests[-1]["messages"][0] == {"role": "system", "content": "Answer about bees."}


def test_a_variable_used_many_times_cannot_blow_a_prompt_up(client, api) -> None:
    made = api.post("/prompts", json={"name": "echo", "instructions": "{{x}}" * 2000}).json()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", prompt={"id": made["id"], "variables": {"x": "y" * 20_000}})
    assert info.value.body["param"] == "prompt.variables" and info.value.body["code"] == "prompt_too_large"
