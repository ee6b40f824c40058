"""Fitting a chat into a context window (truncation: auto) and slicing kept events: pure functions."""

from __future__ import annotations

import asyncio

import pytest

from parley.engine.context import answer_room, fit
from parley.errors import InvalidRequest
from parley.store.background import Chunk


def _count(body: dict) -> int:
    return sum(3 + len((m.get("content") or "").split()) for m in body["messages"])


async def _counted(body: dict) -> int:
    return _count(body)


def _fit(messages: list[dict], window: int, room: int = 0) -> list[dict]:
    return asyncio.run(fit({"model": "m", "messages": messages}, window, room, _counted, "m"))["messages"]


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_a_chat_that_fits_is_sent_as_it_is() -> None:
    messages = [{"role": "system", "content": "s"}, _user("a b c")]
    assert _fit(messages, 100) == messages


def test_the_oldest_messages_go_first_and_the_system_message_and_current_turn_stay() -> None:
    messages = [{"role": "system", "content": "rules"}] + [_user(f"old {i} " + "w " * 10) for i in range(10)] + \
        [_user("now")]
    kept = _fit(messages, 60, room=10)
    assert kept[0]["content"] == "rules" and kept[-1]["content"] == "now"
    assert _count({"messages": kept}) <= 50
    assert kept[1:-1] == messages[len(messages) - len(kept) + 1:-1]  # a contiguous run of the newest
    assert len(kept) > 2  # not more than needed went


def test_a_tool_call_and_its_results_go_together() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]}
    messages = [_user("first " + "w " * 20), call, {"role": "tool", "tool_call_id": "c1", "content": "r " * 20},
                {"role": "assistant", "content": "done"}, _user("now")]
    kept = _fit(messages, 20)
    assert all(m["role"] != "tool" for m in kept) and call not in kept
    assert kept[-1]["content"] == "now"


def test_the_current_turn_alone_too_large_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as refused:
        _fit([_user("old"), _user("w " * 50)], 20)
    assert (refused.value.param, refused.value.code) == ("input", "context_length_exceeded")


def test_the_room_for_the_answer() -> None:
    assert answer_room(8192, None) == 1024 and answer_room(1_000_000, None) == 4096 and answer_room(8192, 50) == 50


def test_a_chunk_of_kept_events_gives_the_frames_after_a_number() -> None:
    frames = "".join(f"event: e\ndata: {{\"sequence_number\":{n}}}\n\n" for n in range(3, 7))
    chunk = Chunk(3, 6, False, frames)
    assert chunk.after(2) == frames and chunk.after(-1) == frames
    assert chunk.after(4) == "".join(f"event: e\ndata: {{\"sequence_number\":{n}}}\n\n" for n in (5, 6))
    assert chunk.after(6) == ""
