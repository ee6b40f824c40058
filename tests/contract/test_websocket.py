"""WebSocket mode (``client.responses.connect()``, sync and async) against a real ``parley serve``: the same events
as SSE, several responses and lanes on one socket, chaining, errors, keys, and steering."""

from __future__ import annotations

import json
import re
import time

import openai
import pytest
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import TypeAdapter
from websockets.exceptions import InvalidStatus

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.search_server import SearchTestServer
from parley.testing.strict import check_open_responses

SERVER_EVENT = TypeAdapter(ResponsesServerEvent)
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}, "required": ["city"]}}


def recv(conn) -> object:
    """The next event, validated strictly (the SDK's own parse is lenient)."""
    payload = json.loads(conn.recv_bytes())
    if payload["type"] == "response.steer.failed" and payload["error"]["code"] == "invalid_input":
        return conn.parse_event(json.dumps(payload))  # it returns the invalid input as it came
    if isinstance(payload.get("response"), dict):
        check_open_responses(payload["response"])
    return SERVER_EVENT.validate_python(payload)


def until_terminal(conn) -> list:
    events = [recv(conn)]
    while events[-1].type not in TERMINAL:
        events.append(recv(conn))
    return events


@pytest.fixture(scope="module")
def search():
    with SearchTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def ws_server(scripted_server, db_url, search):
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url, "--api-keys", "socketkey1=t1,otherkey1=t2",
                       "--web-search", f"searxng:{search.url}") as server:
        yield server


@pytest.fixture
def ws(ws_server, backend):
    with openai.OpenAI(base_url=ws_server.base_url, api_key="socketkey1", max_retries=0) as client:
        yield client


def test_responses_in_turn_on_one_socket_stream_as_over_sse_and_chain(ws, backend) -> None:
    backend.push(Reply(text="Hello there, friend.", chunk_size=4), Reply(text="You greeted me."))
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Say hello.")
        first = until_terminal(conn)
        final = check_stream(first)
        assert final.output_text == "Hello there, friend." and [e.sequence_number for e in first] == \
            list(range(len(first)))
        assert sum(e.type == "response.output_text.delta" for e in first) == 5
        conn.response.create(model="m", input="What did I do?", previous_response_id=final.id)
        second = check_stream(until_terminal(conn))
    assert second.output_text == "You greeted me." and second.previous_response_id == final.id
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "assistant", "user"]
    assert ws.responses.retrieve(second.id).output_text == "You greeted me."  # stored, as over HTTP
    with openai.OpenAI(base_url=ws.base_url, api_key="otherkey1", max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(second.id)  # the socket's key is its tenant


@pytest.mark.anyio
async def test_the_async_client_connects_and_tool_calls_come_back(ws_server, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_w")]), Reply(text="Cold."))
    async with openai.AsyncOpenAI(base_url=ws_server.base_url, api_key="socketkey1", max_retries=0) as client:
        async with client.responses.connect() as conn:
            await conn.response.create(model="m", input="Weather in Oslo?", tools=[WEATHER])
            events = []
            async for event in conn:
                events.append(event)
                if event.type in TERMINAL:
                    break
            call = events[-1].response.output[0]
            assert (call.type, call.name, call.call_id) == ("function_call", "get_weather", "call_w")
            await conn.response.create(model="m", previous_response_id=events[-1].response.id, tools=[WEATHER],
                                       input=[{"type": "function_call_output", "call_id": "call_w", "output": "-5"}])
            async for event in conn:
                if event.type in TERMINAL:
                    break
    assert event.type == "response.completed" and event.response.output_text == "Cold."


def test_errors_are_error_events_and_the_socket_goes_on(ws, backend) -> None:
    backend.push(Reply(text="Still here."))
    with ws.responses.connect() as conn:
        for bad, param in [({"temperature": 5}, "temperature"), ({"background": True}, "background"),
                           ({"generate": "no"}, "generate"), ({"previous_response_id": "resp_nope"},
                                                              "previous_response_id")]:
            conn.send({"type": "response.create", "model": "m", "input": "x", **bad})
            error = recv(conn)
            assert error.type == "error" and error.error.param == param, (bad, error)
            assert error.status in (400, 404)
        conn.send({"type": "response.dance"})
        error = recv(conn)
        assert error.type == "error" and error.error.code == "unknown_event_type"
        conn.send_raw("not json")
        assert recv(conn).error.code == "invalid_json"
        conn.send_raw('{"type": "response.create", "model": "m", "input": "\\ud800"}')  # a lone surrogate, as over HTTP
        assert recv(conn).error.code == "invalid_json"
        conn.response.create(model="m", input="x")
        assert check_stream(until_terminal(conn)).output_text == "Still here."


def test_a_bad_key_refuses_the_handshake_with_401(ws_server) -> None:
    with openai.OpenAI(base_url=ws_server.base_url, api_key="wrongkey1", max_retries=0) as client:
        with pytest.raises(InvalidStatus) as info:
            with client.responses.connect() as conn:
                conn.response.create(model="m", input="x")
                conn.recv()
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"


def test_lanes_carry_their_stream_id_and_run_in_order(ws, backend) -> None:
    backend.push(Reply(text="one"), Reply(text="two"), Reply(text="three"))
    with ws.responses.connect() as conn:
        for text in ("a", "b"):
            conn.response.create(model="m", input=text, stream_id="lane-x")
        conn.response.create(model="m", input="c")
        seen: dict = {}
        while sum(1 for events in seen.values() for e in events if e.type == "response.completed") < 3:
            event = recv(conn)
            seen.setdefault(getattr(event, "stream_id", None), []).append(event)
    lane = [e for e in seen["lane-x"] if e.type == "response.completed"]
    assert len(lane) == 2 and all(e.stream_id == "lane-x" for e in seen["lane-x"])
    first_done = seen["lane-x"].index(lane[0])
    assert seen["lane-x"][first_done + 1].type == "response.created"  # the lane's second starts after its first
    assert [e for e in seen[None] if e.type == "response.completed"]


def test_steering_stops_at_the_next_safe_boundary_and_a_successor_takes_the_input(ws, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("web_search", {"query": "Llama 4 Maverick experts"})]),
                 Reply(text="Now about Scout: 16 experts."))
    backend.hold()
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="How many experts has Maverick?", tools=[{"type": "web_search"}])
        created = recv(conn)
        assert created.type == "response.created"
        backend.wait_for_requests(1)
        conn.response.steer(previous_response_id=created.response.id, input="Actually, tell me about Scout.")
        accepted = recv(conn)
        while accepted.type != "response.steer.accepted":
            accepted = recv(conn)
        assert accepted.steer.previous_response_id == created.response.id and accepted.steer.id
        backend.release()
        first = until_terminal(conn)
        assert first[-1].type == "response.incomplete"
        assert first[-1].response.incomplete_details.reason == "steered"
        assert [i.type for i in first[-1].response.output] == ["web_search_call"]
        successor = until_terminal(conn)
    assert successor[0].type == "response.created"
    final = check_stream(successor)
    assert final.previous_response_id == created.response.id and final.output_text == "Now about Scout: 16 experts."
    assert final.tools[0].type == "web_search"  # the settings of the response it continues
    messages = backend.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[-1]["content"] == "Actually, tell me about Scout."
    assert len(backend.requests) == 2  # the steered response made no second model call


def test_steering_a_response_that_waits_for_tool_output_is_pending_then_goes_first(ws, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Rome"}, id="call_r")]), Reply(text="Warm."))
    backend.hold()
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Weather in Rome?", tools=[WEATHER])
        created = recv(conn)
        backend.wait_for_requests(1)
        conn.response.steer(previous_response_id=created.response.id,
                            input=[{"role": "user", "content": "And say it in Italian."}])
        backend.release()
        events = until_terminal(conn)
        accepted = [e for e in events if e.type == "response.steer.accepted"]
        assert len(accepted) == 1 and events[-1].type == "response.completed"
        pending = recv(conn)
        assert pending.type == "response.steer.pending" and pending.reason == "waiting_for_required_input"
        assert [r.model_dump(exclude_none=True) for r in pending.required_input] == [
            {"type": "function_call_output", "call_id": "call_r", "name": "get_weather"}]
        assert pending.steer.id == accepted[0].steer.id
        conn.response.create(model="m", previous_response_id=created.response.id, tools=[WEATHER], input=[
            {"type": "function_call_output", "call_id": "call_r", "output": "25C"}])
        final = check_stream(until_terminal(conn))
    assert final.output_text == "Warm."
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "assistant", "tool", "user"]
    assert backend.requests[-1]["messages"][-1]["content"] == "And say it in Italian."


def test_steering_after_completion_follows_with_a_successor_and_bad_steers_fail(ws, backend) -> None:
    backend.push(Reply(text="First answer."), Reply(text="Second answer."))
    backend.hold()
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Tell me something.", instructions="Be brief.")
        created = recv(conn)
        backend.wait_for_requests(1)
        conn.response.steer(previous_response_id=created.response.id, input="Make it about cats.")
        conn.response.steer(previous_response_id=created.response.id, input=[{"role": "assistant", "content": "x"}])
        conn.response.steer(previous_response_id="resp_unknown", input="x")
        backend.release()
        events = until_terminal(conn)
        failed = {e.error.code: e for e in events if e.type == "response.steer.failed"}
        successor = until_terminal(conn)
    assert set(failed) == {"invalid_input", "response_not_found"} and failed["response_not_found"].steer.id is None
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "First answer."
    final = check_stream(successor)
    assert final.output_text == "Second answer." and final.instructions == "Be brief."
    assert backend.requests[-1]["messages"][-1] == {"role": "user", "content": "Make it about cats."}
    assert re.fullmatch(r"steer_\w+", [e for e in events if e.type == "response.steer.accepted"][0].steer.id)


def test_generate_false_keeps_the_input_for_a_later_turn_without_calling_the_model(ws, backend) -> None:
    backend.push(Reply(text="You told me about the red door."))
    before = len(backend.requests)
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Remember: the door is red.", generate=False)
        prepared = check_stream(until_terminal(conn))
        assert prepared.status == "completed" and prepared.output == [] and len(backend.requests) == before
        conn.response.create(model="m", input="What did I say?", previous_response_id=prepared.id)
        answer = check_stream(until_terminal(conn))
    assert answer.output_text == "You told me about the red door."
    assert [m["content"] for m in backend.requests[-1]["messages"]] == ["Remember: the door is red.",
                                                                         "What did I say?"]


def test_a_response_runs_on_and_is_stored_when_its_socket_closes(ws, backend) -> None:
    backend.push(Reply(text="Finished without you.", chunk_size=3))
    backend.hold()
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Take your time.")
        created = recv(conn)
        backend.wait_for_requests(1)
    backend.release()  # the socket is closed: the response goes on
    stored = ws.responses.retrieve(created.response.id)
    while stored.status == "in_progress":  # (polling the stored response until it ends)
        time.sleep(0.02)
        stored = ws.responses.retrieve(created.response.id)
    assert stored.status == "completed" and stored.output_text == "Finished without you."


def test_a_response_bound_to_a_conversation_cannot_be_steered(ws, backend) -> None:
    conversation = ws.conversations.create()
    backend.push(Reply(text="Done."))
    backend.hold()
    with ws.responses.connect() as conn:
        conn.response.create(model="m", input="Hello.", conversation=conversation.id)
        created = recv(conn)
        backend.wait_for_requests(1)
        conn.response.steer(previous_response_id=created.response.id, input="Also this.")
        failed = recv(conn)
        while failed.type != "response.steer.failed":
            failed = recv(conn)
        backend.release()
        assert until_terminal(conn)[-1].type == "response.completed"
    assert failed.error.code == "steering_not_supported"


def test_a_connection_has_a_bounded_number_of_lanes(ws, backend) -> None:
    from parley.http.websocket import MAX_LANES

    backend.reset(lambda request: Reply(text="ok"))
    with ws.responses.connect() as conn:
        for n in range(MAX_LANES + 1):
            conn.response.create(model="m", input="x", stream_id=f"lane-{n}")
        completed, errors = 0, []
        while completed + len(errors) < MAX_LANES + 1:
            event = recv(conn)
            completed += event.type == "response.completed"
            if event.type == "error":
                errors.append(event)
    assert completed == MAX_LANES and [(e.error.code, e.stream_id) for e in errors] == [
        ("too_many_lanes", f"lane-{MAX_LANES}")]
