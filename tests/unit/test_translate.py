"""Chat chunks in, Responses events out: the pure translator."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import ResponseCompletedEvent, ResponseCreatedEvent, ResponseInProgressEvent

from parley.engine.translate import ChunkTranslator
from parley.errors import BackendError
from parley.testing.grammar import check_stream
from parley.testing.scripted import Reply, ToolCall, reply_chunks


def translate(chunks: list[dict], first_index: int = 0) -> tuple[ChunkTranslator, list]:
    translator = ChunkTranslator(first_index=first_index)
    events = [event for chunk in chunks for event in translator.feed(chunk)]
    return translator, events + translator.finish()


def as_stream(translator: ChunkTranslator, events: list) -> list:
    """Wrap content events in a lifecycle so the grammar checker can read them."""
    from openai.types.responses import Response

    def response(output: list) -> Response:
        return Response(id="resp_1", object="response", created_at=0, model="m", output=output,
                        parallel_tool_calls=True, tool_choice="auto", tools=[])

    stream = [ResponseCreatedEvent(type="response.created", response=response([]), sequence_number=0),
              ResponseInProgressEvent(type="response.in_progress", response=response([]), sequence_number=0),
              *events,
              ResponseCompletedEvent(type="response.completed", response=response(translator.items), sequence_number=0)]
    for i, event in enumerate(stream):
        event.sequence_number = i
    return stream


def test_text_becomes_one_message_with_deltas_that_add_up() -> None:
    translator, events = translate(reply_chunks(Reply(text="Hello there, world", chunk_size=5), {}))
    types = [e.type for e in events]
    assert types[:2] == ["response.output_item.added", "response.content_part.added"]
    assert types[-3:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hello", " ther", "e, wo", "rld"]
    assert translator.items[0].content[0].text == "Hello there, world"
    assert translator.items[0].status == "completed"
    assert translator.assistant_message() == {"role": "assistant", "content": "Hello there, world"}
    check_stream(as_stream(translator, events))


def test_usage_and_finish_reason_are_kept() -> None:
    translator, _ = translate(reply_chunks(Reply(text="abc", prompt_tokens=7), {}))
    assert translator.usage == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
    assert translator.finish_reason == "stop"
    assert translator.incomplete_reason is None


def test_length_finish_marks_items_incomplete() -> None:
    translator, events = translate(reply_chunks(Reply(text="abcdefghijkl", chunk_size=2), {"max_tokens": 3}))
    assert translator.incomplete_reason == "max_output_tokens"
    assert translator.items[0].status == "incomplete"
    assert translator.items[0].content[0].text == "abcdef"


def test_tool_calls_become_function_call_items_one_after_another() -> None:
    reply = Reply(text="Let me check.", tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_a"),
                                                    ToolCall("get_time", {"tz": "CET"}, id="call_b")])
    translator, events = translate(reply_chunks(reply, {}))
    check_stream(as_stream(translator, events))
    message, first, second = translator.items
    assert message.type == "message"
    assert (first.call_id, first.name, json.loads(first.arguments)) == ("call_a", "get_weather", {"city": "Paris"})
    assert (second.call_id, second.name, json.loads(second.arguments)) == ("call_b", "get_time", {"tz": "CET"})
    assert first.id.startswith("fc_") and first.status == "completed"
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [d.name for d in done] == ["get_weather", "get_time"]
    assert translator.assistant_message()["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
    ]


def _tool_chunk(index: int, call_id: str | None, name: str | None, arguments: str) -> dict:
    function = {"arguments": arguments}
    if name:
        function["name"] = name
    call = {"index": index, "function": function}
    if call_id:
        call["id"] = call_id
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}


def test_a_reused_index_with_a_new_id_is_a_new_call_not_merged_arguments() -> None:
    chunks = [_tool_chunk(0, "call_1", "a", '{"x":'), _tool_chunk(0, None, None, " 1}"),
              _tool_chunk(0, "call_2", "b", '{"y": 2}'),
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    translator, _ = translate(chunks)
    calls = translator.client_calls
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [("call_1", "a", '{"x": 1}'), ("call_2", "b", '{"y": 2}')]
    assert all(json.loads(c.arguments) for c in calls)


def test_interleaved_tool_call_deltas_fail_clearly() -> None:
    chunks = [_tool_chunk(0, "call_1", "a", '{"x":'), _tool_chunk(1, "call_2", "b", "{"), _tool_chunk(0, None, None, "1}")]
    with pytest.raises(BackendError) as info:
        translate(chunks)
    assert info.value.code == "backend_protocol_error"


def test_reasoning_content_becomes_a_reasoning_item_before_the_message() -> None:
    translator, events = translate(reply_chunks(Reply(reasoning="Think first.", text="Answer."), {}))
    check_stream(as_stream(translator, events))
    reasoning, message = translator.items
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Think first."
    assert message.content[0].text == "Answer."
    assert "response.reasoning_text.delta" in [e.type for e in events]


def test_refusal_becomes_a_refusal_part() -> None:
    translator, events = translate(reply_chunks(Reply(refusal="I can't help with that."), {}))
    check_stream(as_stream(translator, events))
    assert translator.items[0].content[0].type == "refusal"
    assert translator.items[0].content[0].refusal == "I can't help with that."


def test_items_are_numbered_from_first_index() -> None:
    translator, events = translate(reply_chunks(Reply(text="hi"), {}), first_index=3)
    assert {e.output_index for e in events} == {3}


def test_abort_closes_the_open_item_as_incomplete() -> None:
    translator = ChunkTranslator()
    events = [e for chunk in reply_chunks(Reply(text="abcdefgh", chunk_size=2), {})[:3] for e in translator.feed(chunk)]
    events += translator.abort()
    assert events[-1].type == "response.output_item.done"
    assert translator.items[0].status == "incomplete" and translator.items[0].content[0].text == "abcd"


@pytest.mark.parametrize("reply", [
    Reply(text="Hello there, world", chunk_size=3),
    Reply(reasoning="First think, then answer.", text="The answer.", chunk_size=4),
    Reply(refusal="I cannot help with that.", chunk_size=5),
    Reply(text="Calling.", tool_calls=[ToolCall("lookup", json.dumps({"q": "tides", "n": 3}))]),
], ids=["text", "reasoning", "refusal", "tool call"])
def test_without_deltas_the_same_items_and_no_events(reply) -> None:
    """A folded answer's translator makes the same items and none of their events (the fold would discard them)."""
    chunks = reply_chunks(reply, {})
    streamed, streamed_events = translate(chunks)
    folded = ChunkTranslator(deltas=False)
    assert [event for chunk in chunks for event in folded.feed(chunk)] + folded.finish() == []
    assert streamed_events

    def same(items: list) -> list:
        return [item.model_dump(exclude={"id", "call_id"}) for item in items]

    assert same(folded.items) == same(streamed.items)
    assert folded.assistant_message()["content"] == streamed.assistant_message()["content"]
    assert folded.has_text == bool(reply.text)
