"""The engine and its tool loop in process: a real SQLite store, the scripted model as a Python object
(``ScriptedChat``), no sockets.  What HTTP adds is tested in ``tests/contract``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from parley.backends.router import Router
from parley.engine import opening
from parley.engine.engine import Engine
from parley.engine.recorder import NotOpened
from parley.errors import InvalidRequest, StoreUnavailable
from parley.request import parse_create
from parley.settings import UpstreamConfig
from parley.store.database import open_engine
from parley.store.sql import SqlStore, open_store
from parley.testing import Reply, ScriptedChat, ToolCall
from parley.testing.grammar import check_stream
from tests.tool_kinds import dice

pytestmark = pytest.mark.anyio


@pytest.fixture
def chat() -> ScriptedChat:
    return ScriptedChat()


@pytest.fixture
async def engine(tmp_path, chat) -> AsyncIterator[Engine]:
    store = await open_store(f"sqlite:///{tmp_path / 'engine.db'}")
    dice.register()
    yield Engine(store, Router([UpstreamConfig(name="scripted", models=["*"])], {"scripted": chat}))
    dice.unregister()
    await store.close()


async def create(engine: Engine, **body):
    turn = await engine.prepare(parse_create({"model": "m", **body}))
    if not body.get("stream"):
        return await engine.respond(turn)
    return [event async for event in engine.run(turn)]


async def test_a_plain_answer_is_stored_and_chained(engine, chat) -> None:
    first = await create(engine, input="Hello")
    assert first.status == "completed" and first.output_text == "You said: Hello"
    assert (await engine.store.get(first.id)).status == "completed"
    second = await create(engine, input="Again", previous_response_id=first.id)
    assert [m["role"] for m in chat.requests[-1]["messages"]] == ["user", "assistant", "user"]
    assert second.previous_response_id == first.id


async def test_streamed_events_follow_the_protocol_grammar(engine, chat) -> None:
    chat.push(Reply(text="Streaming along", chunk_size=2))
    events = await create(engine, input="hi", stream=True)
    check_stream(events)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Streaming along"
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_a_client_function_call_ends_the_turn(engine, chat) -> None:
    chat.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
    response = await create(engine, input="weather?", tools=[
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}])
    assert [item.type for item in response.output] == ["function_call"]
    assert json.loads(response.output[0].arguments) == {"city": "Paris"}
    assert len(chat.requests) == 1


async def test_a_server_tool_loop_runs_the_registered_kind(engine, chat) -> None:
    chat.push(Reply(tool_calls=[ToolCall("roll_dice", {"times": 2})]), Reply(text="You rolled 2 and 3."))
    response = await create(engine, input="roll twice", tools=[dice.TOOL], tool_choice="required")
    assert [item.type for item in response.output] == ["code_interpreter_call", "message"]
    assert response.output[0].outputs[0].logs == "[2, 3]"
    assert chat.requests[0]["tool_choice"] == "required"
    assert chat.requests[1]["tool_choice"] == "auto"
    *_, assistant, answer = chat.requests[1]["messages"]
    assert answer == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": "Rolled: [2, 3]"}
    assert response.tools[0].type == "programmatic_tool_calling"


async def test_max_tool_calls_ends_the_response_incomplete(engine, chat) -> None:
    chat.push(Reply(tool_calls=[ToolCall("roll_dice", {}), ToolCall("roll_dice", {})]))
    response = await create(engine, input="roll", tools=[dice.TOOL], max_tool_calls=1)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_messages"
    assert [item.type for item in response.output] == ["code_interpreter_call"]
    stored = await engine.store.get(response.id)
    assert [m["content"] for m in stored.messages if m["role"] == "tool"] == [
        "Rolled: [2]", "This tool call was not run: the response reached its max_tool_calls limit."]


async def test_a_backend_that_fails_mid_stream_fails_the_response_with_its_partial_item(engine, chat) -> None:
    chat.push(Reply(text="This answer is cut", chunk_size=2, cut_after=4))
    events = await create(engine, input="hi", stream=True)
    check_stream(events)
    final = events[-1].response
    assert final.status == "failed" and final.output[0].status == "incomplete"
    assert (await engine.store.get(final.id)).status == "failed"


async def test_a_registered_kind_checks_its_tools_when_the_request_is_parsed(engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_create({"model": "m", "input": "x", "tools": [dice.TOOL, dice.TOOL]})
    assert info.value.param == "tools"
    with pytest.raises(InvalidRequest) as info:
        parse_create({"model": "m", "input": "x", "tools": [{"type": "code_interpreter", "container": 5}]})
    assert info.value.param == "tools[0].container"


async def test_a_streamed_response_whose_row_cannot_be_written_does_not_start(tmp_path, chat) -> None:
    """The in_progress row is written beside the first model call; when it fails, the run raises before any
    event (the HTTP edge answers 503) and the model call is stopped."""
    class RefusingStore(SqlStore):
        async def create(self, record):
            raise StoreUnavailable("the database went away")

    store = RefusingStore(open_engine(f"sqlite:///{tmp_path / 'engine.db'}", 5.0), 5.0)
    await store.migrate()
    engine = Engine(store, Router([UpstreamConfig(name="scripted", models=["*"])], {"scripted": chat}))
    try:
        turn = await engine.prepare(parse_create({"model": "m", "input": "hi", "stream": True}))
        events = []
        with pytest.raises(NotOpened):
            async for event in engine.run(turn):
                events.append(event)
        assert events == []
        assert await store.get(turn.id) is None
        assert turn.id not in engine.recorder.running
    finally:
        await store.close()


@pytest.mark.parametrize("busy", [False, True])
async def test_the_first_model_call_goes_beside_the_row_unless_many_rows_are_being_written(
        tmp_path, busy, monkeypatch) -> None:
    """A streamed response's model call starts while its row is written; once ``OVERLAP_WRITES`` rows are being
    written at once, it starts after its row (the row is held here until the model is called, or released as soon
    as it is being written)."""
    order: list[str] = []
    called, release = asyncio.Event(), asyncio.Event()

    class Chat(ScriptedChat):
        async def stream(self, request, api_key=None):
            order.append("model")
            called.set()
            async for chunk in super().stream(request, api_key):
                yield chunk

    class HeldStore(SqlStore):
        async def create(self, record):
            if busy:
                release.set()
            await release.wait()
            result = await super().create(record)
            order.append("row")
            return result

    async def release_once_called() -> None:
        await called.wait()
        release.set()

    monkeypatch.setattr(opening, "OVERLAP_WRITES", 0 if busy else opening.OVERLAP_WRITES)
    store = HeldStore(open_engine(f"sqlite:///{tmp_path / 'engine.db'}", 5.0), 5.0)
    await store.migrate()
    engine = Engine(store, Router([UpstreamConfig(name="scripted", models=["*"])], {"scripted": Chat()}))
    try:
        turn = await engine.prepare(parse_create({"model": "m", "input": "hi", "stream": True}))
        waiter = asyncio.create_task(release_once_called())
        events = [event async for event in engine.run(turn)]
        await waiter
        check_stream(events)
        assert order == (["row", "model"] if busy else ["model", "row"])
        assert engine.recorder.opening == 0
        assert (await store.get(turn.id)).status == "completed"
    finally:
        await store.close()
