"""The core request features of the Responses API, against a real ``parley serve``."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from parley.testing import Reply, ToolCall
from parley.testing.grammar import check_stream
from tests.contract.helpers import create_raw, stream_raw


def test_store_false_is_not_retrievable_nor_chainable(client, backend) -> None:
    response = client.responses.create(model="m", input="hi", store=False)
    assert response.store is False and response.output_text == "You said: hi"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="again", previous_response_id=response.id)
    assert info.value.code == "previous_response_not_found"


def test_unknown_previous_response_is_a_400_naming_the_param(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="hi", previous_response_id="resp_doesnotexist")
    body = info.value.body
    assert body["code"] == "previous_response_not_found" and body["param"] == "previous_response_id"


def test_unknown_id_on_get_delete_and_input_items_is_a_404(client) -> None:
    for call in (client.responses.retrieve, client.responses.delete, client.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            call("resp_missing")


def test_delete_then_gone(client, backend) -> None:
    response = client.responses.create(model="m", input="hi")
    raw = httpx.delete(f"{client.base_url}responses/{response.id}")
    assert raw.json() == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_metadata_and_echoes(client, backend) -> None:
    response = client.responses.create(
        model="m", input="hi", metadata={"team": "search"}, temperature=0.3, top_p=0.9, max_output_tokens=50,
        user="u-1", safety_identifier="hash-1", prompt_cache_key="k1", parallel_tool_calls=False,
        reasoning={"effort": "low"}, service_tier="auto",
    )
    assert response.metadata == {"team": "search"}
    assert (response.temperature, response.top_p, response.max_output_tokens) == (0.3, 0.9, 50)
    assert (response.user, response.safety_identifier, response.prompt_cache_key) == ("u-1", "hash-1", "k1")
    assert response.reasoning.effort == "low" and response.parallel_tool_calls is False
    sent = backend.requests[-1]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.9, 50)
    assert sent["reasoning_effort"] == "low" and sent["user"] == "hash-1"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert client.responses.retrieve(response.id).metadata == {"team": "search"}


def test_instructions_apply_to_their_turn_only(client, backend) -> None:
    first = client.responses.create(model="m", input="hi", instructions="Answer in French.")
    assert backend.requests[-1]["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert first.instructions == "Answer in French."
    client.responses.create(model="m", input="again", previous_response_id=first.id, instructions="Be brief.")
    messages = backend.requests[-1]["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert all(m["content"] != "Answer in French." for m in messages)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_developer_messages_reach_the_backend(client, backend) -> None:
    client.responses.create(model="m", input=[{"role": "developer", "content": "Use metric units."},
                                              {"role": "user", "content": "How far?"}])
    assert backend.requests[-1]["messages"][0] == {"role": "system", "content": "Use metric units."}


def test_max_output_tokens_gives_incomplete(client, backend, parley_server) -> None:
    backend.push(Reply(text="one two three four five six", chunk_size=4))
    response = client.responses.create(model="m", input="count", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "one two "
    backend.push(Reply(text="one two three four five six", chunk_size=4))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "count", "max_output_tokens": 2})
    final = check_stream(events)
    assert events[-1].type == "response.incomplete" and final.output[0].status == "incomplete"


def test_text_format_json_schema_is_forwarded(client, backend) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    backend.push(Reply(text='{"name": "Ada"}'))
    response = client.responses.create(model="m", input="name?", text={
        "format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    assert json.loads(response.output_text) == {"name": "Ada"}
    assert backend.requests[-1]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    assert response.text.format.type == "json_schema"
    client.responses.create(model="m", input="json please", text={"format": {"type": "json_object"}})
    assert backend.requests[-1]["response_format"] == {"type": "json_object"}


WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}},
           "strict": True}


@pytest.mark.parametrize("choice, expected", [
    ("auto", "auto"), ("required", "required"),
    ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice_is_forwarded(client, backend, choice, expected) -> None:
    response = client.responses.create(model="m", input="weather", tools=[WEATHER], tool_choice=choice,
                                       parallel_tool_calls=False)
    sent = backend.requests[-1]
    assert sent["tool_choice"] == expected and sent["parallel_tool_calls"] is False
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "strict": True,
                                                                "parameters": {"type": "object", "properties": {}}}}]
    assert response.tools[0].name == "get_weather"


def test_tool_choice_none_sends_no_tools(client, backend) -> None:
    response = client.responses.create(model="m", input="weather", tools=[WEATHER], tool_choice="none")
    assert "tools" not in backend.requests[-1] and response.tool_choice == "none"


def test_parallel_function_calls_stream_as_separate_items(backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Rome"})]))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "weather in Paris and Rome",
                                                 "tools": [WEATHER]})
    final = check_stream(events)
    assert [json.loads(i.arguments)["city"] for i in final.output] == ["Paris", "Rome"]
    assert [i.id[:3] for i in final.output] == ["fc_", "fc_"]
    kinds = [e.type for e in events]
    assert kinds.count("response.function_call_arguments.done") == 2


def test_langchain_style_calls_then_outputs_in_one_input(client, backend) -> None:
    backend.push(Reply(text="Paris is sunny, Rome is rainy."))
    client.responses.create(model="m", tools=[WEATHER], input=[
        {"role": "user", "content": "weather in Paris and Rome"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c2", "output": "rainy"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ])
    messages = backend.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]


def test_output_with_no_call_is_a_400_naming_the_call_id(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=[{"role": "user", "content": "x"},
                                                  {"type": "function_call_output", "call_id": "call_ghost",
                                                   "output": "?"}])
    assert "call_ghost" in info.value.message


def test_usage_comes_from_the_backend(client, backend) -> None:
    backend.push(Reply(text="abcdefgh", chunk_size=2, prompt_tokens=13))
    response = client.responses.create(model="m", input="x")
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (13, 4, 17)


def test_input_items_list_with_pagination(client, backend) -> None:
    response = client.responses.create(model="m", input=[
        {"role": "user", "content": f"message {i}"} for i in range(5)])
    page = client.responses.input_items.list(response.id, order="asc", limit=2)
    assert [item.content[0].text for item in page.data] == ["message 0", "message 1"]
    assert page.has_more
    every = [item.content[0].text for item in client.responses.input_items.list(response.id, order="asc", limit=2)]
    assert every == [f"message {i}" for i in range(5)]  # the SDK pages with 'after'
    newest_first = client.responses.input_items.list(response.id)
    assert newest_first.data[0].content[0].text == "message 4"
    assert all(item.id.startswith("msg_") for item in newest_first.data)


def test_replayed_output_items_are_accepted(client, backend) -> None:
    first = client.responses.create(model="m", input="hi")
    replay = [{"role": "user", "content": "hi"}, *[item.model_dump() for item in first.output],
              {"role": "user", "content": "and?"}]
    second = client.responses.create(model="m", input=replay)
    assert second.status == "completed"
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "assistant", "user"]


def test_backend_400_is_a_client_400(client, backend) -> None:
    backend.push(Reply(status=400, error_message="context too long"))
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x")
    assert "context too long" in info.value.message


def test_backend_500_fails_the_response_with_a_typed_code(client, backend, parley_server) -> None:
    backend.push(*[Reply(status=500)] * 3)
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model="m", input="x")
    assert info.value.status_code == 502 and info.value.body["code"] == "backend_error"
    backend.push(*[Reply(status=503)] * 3)
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "x"})
    check_stream(events)
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    assert (events[-2].type, events[-2].code) == ("error", "backend_error")
    stored = client.responses.retrieve(events[-1].response.id)
    assert stored.status == "failed"


def test_backend_retries_before_the_first_token(client, backend) -> None:
    backend.push(Reply(status=503), Reply(text="second try"))
    assert client.responses.create(model="m", input="x").output_text == "second try"
    assert len(backend.requests) == 2


def test_backend_cut_mid_stream_fails_the_response(backend, parley_server) -> None:
    backend.push(Reply(text="partial answer that never ends", chunk_size=3, cut_after=4))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "x"})
    check_stream(events)
    assert events[-1].type == "response.failed"
    assert events[-2].code == "backend_disconnected"


def test_malformed_sse_from_backend_fails_the_response(backend, parley_server) -> None:
    backend.push(Reply(raw=["data: {not json", ""]))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "x"})
    assert events[-1].type == "response.failed" and events[-2].code == "backend_protocol_error"


def test_retrieved_equals_streamed_and_can_be_polled(backend, parley_server) -> None:
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "poll me", "metadata": {"a": "b"}})
    streamed = events[-1].response
    retrieved = httpx.get(f"{parley_server.base_url}/responses/{streamed.id}").json()
    assert retrieved == json.loads(streamed.model_dump_json())


def test_in_progress_response_is_retrievable_while_streaming(client, backend) -> None:
    backend.hold()
    stream = client.responses.create(model="m", input="slow", stream=True)
    created = next(iter(stream))
    assert client.responses.retrieve(created.response.id).status == "in_progress"
    backend.release()
    rest = list(stream)
    assert rest[-1].type == "response.completed"
    assert client.responses.retrieve(created.response.id).status == "completed"


def test_raw_bodies_parse_with_sdk_types_including_function_calls(backend, parley_server) -> None:
    backend.push(Reply(text="Checking.", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
    response = create_raw(parley_server.base_url, {"model": "m", "input": "weather", "tools": [WEATHER]})
    assert [item.type for item in response.output] == ["message", "function_call"]


def test_a_client_that_leaves_mid_stream_does_not_stop_the_response(client, backend, parley_server) -> None:
    import time

    backend.hold()
    with httpx.stream("POST", f"{parley_server.base_url}/responses",
                      json={"model": "m", "input": "finish without me", "stream": True}, timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: response.created"
        data = json.loads(next(lines)[6:])
    # The connection is closed now; let the backend answer and wait for the stored result.
    backend.release()
    deadline = time.monotonic() + 20
    while (stored := client.responses.retrieve(data["response"]["id"])).status == "in_progress":
        assert time.monotonic() < deadline, "the response never finished after its client left"
        time.sleep(0.05)
    assert stored.status == "completed" and stored.output_text == "You said: finish without me"


def test_many_concurrent_responses_all_complete_and_are_stored(backend, parley_server) -> None:
    import asyncio

    async def one(http: httpx.AsyncClient, i: int) -> tuple[str, str]:
        async with http.stream("POST", f"{parley_server.base_url}/responses",
                               json={"model": "m", "input": f"n{i}", "stream": True}) as response:
            last = [line async for line in response.aiter_lines() if line.startswith("data: ")][-1]
        final = json.loads(last[6:])
        return final["type"], final["response"]["id"]

    async def run() -> list[tuple[str, str]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:
            return await asyncio.gather(*(one(http, i) for i in range(64)))

    results = asyncio.run(run())
    assert {kind for kind, _ in results} == {"response.completed"}
    statuses = {httpx.get(f"{parley_server.base_url}/responses/{rid}").json()["status"] for _, rid in results}
    assert statuses == {"completed"}


def test_prometheus_metrics(client, backend, parley_server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple], float]:
        text = httpx.get(f"{parley_server.url}/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    before = scrape()
    backend.push(Reply(text="abcdefgh", chunk_size=2, prompt_tokens=7), Reply(status=500), Reply(status=500),
                 Reply(status=500))
    client.responses.create(model="m", input="x")
    list(client.responses.create(model="m", input="y", stream=True))
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("parley_tokens_total", kind="input") == 7 and delta("parley_tokens_total", kind="output") == 4
    assert delta("parley_responses_total", status="completed") == 1
    assert delta("parley_responses_total", status="failed") == 1
    assert delta("parley_backend_errors_total", code="backend_error") == 1
    assert delta("parley_requests_total", route="POST /v1/responses", status="200") == 2
    assert delta("parley_time_to_first_token_seconds_count") == 1
    assert after[("parley_inflight_streams", ())] == 0
