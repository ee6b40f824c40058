"""The text relay takes a chunk only where the translator would make exactly one text delta of it, and writes
that delta's bytes (random chunks of every shape the translator reads)."""

from __future__ import annotations

import copy
import random

import orjson
from openai.types.responses import ResponseTextDeltaEvent

from parley.backends.base import READ_AHEAD, ReadAhead
from parley.engine.relay import TextRelay, plain_text, relay_for
from parley.engine.translate import ChunkTranslator
from parley.engine.turn import RunState
from parley.wire import event_bytes

TEXTS = ["", "a", " word", 'q"uote\\', "line\nbreak", "é", "🦙", "\u2028", "\x00", None, 7, ["list"]]


def random_chunk(rng: random.Random) -> dict:
    delta: dict = {}
    for key, values in (("content", TEXTS), ("role", ["assistant", None]), ("reasoning_content", ["", "think", None]),
                        ("reasoning", ["", "why", None]), ("refusal", ["", "no", None]),
                        ("tool_calls", [[], None, [{"index": 0, "id": "call_1", "function": {"name": "f"}}]])):
        if rng.random() < 0.4:
            delta[key] = rng.choice(values)
    choice: dict = {"delta": delta}
    for key, values in (("index", [0, 0, 1]), ("finish_reason", [None, "stop", "length", ""]),
                        ("logprobs", [None, {"content": []},
                                      {"content": [{"token": "a", "logprob": -1.0, "top_logprobs": []}]}])):
        if rng.random() < 0.3:
            choice[key] = rng.choice(values)
    choices = [choice] + ([{"index": 1, "delta": {"content": "other"}}] if rng.random() < 0.1 else [])
    chunk: dict = {"id": "c", "object": "chat.completion.chunk", "choices": choices}
    for key, values in (("service_tier", ["default", "flex", None, 3]),
                        ("usage", [None, {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}])):
        if rng.random() < 0.3:
            chunk[key] = rng.choice(values)
    return chunk


def open_part() -> tuple[ChunkTranslator, RunState]:
    translator = ChunkTranslator()
    translator.feed({"choices": [{"index": 0, "delta": {"content": "start"}}]})
    return translator, RunState(conversation=[], sequence=41)


def test_a_chunk_the_relay_takes_is_the_translators_one_text_delta() -> None:
    rng = random.Random(11)
    taken = declined = 0
    for _ in range(3000):
        chunk = random_chunk(rng)
        translator, state = open_part()
        fed = copy.deepcopy(translator)
        try:
            events = fed.feed(copy.deepcopy(chunk))
        except Exception:  # a shape the translator refuses: the relay must leave it to the translator
            events = None
        relay = TextRelay(state, translator)
        relay.aim(translator.text_part())
        if not relay.take(orjson.dumps(chunk)):
            declined += 1
            assert plain_text(chunk) is None
            continue
        taken += 1
        assert events is not None and len(events) == 1 and type(events[0]) is ResponseTextDeltaEvent, chunk
        events[0].sequence_number = 41
        held: list[bytes] = []
        relay.into(held)
        assert held == [event_bytes(events[0])]
        assert state.sequence == 42
        assert translator._open.part_text == fed._open.part_text  # type: ignore[union-attr]
        assert translator.service_tier == fed.service_tier
        assert translator.assistant_message() == fed.assistant_message()
    assert taken > 100 and declined > 1000  # both kinds were met


def test_frames_match_the_translators_for_any_text() -> None:
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(1, 0x300)] + ["🦙", "中", "\u2028", "\ufeff", "\x00"]
    translator, state = open_part()
    relay = TextRelay(state, translator)
    relay.aim(translator.text_part())
    expected = []
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
        (event,) = copy.deepcopy(translator).feed(chunk)
        event.sequence_number = state.sequence
        expected.append(event_bytes(event))
        assert relay.take(orjson.dumps(chunk))
        held: list[bytes] = []
        relay.into(held)
        assert held == [expected[-1]]


def test_no_part_open_no_relay_frames() -> None:
    translator = ChunkTranslator()
    assert translator.text_part() is None
    translator.feed({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]})
    assert translator.text_part() is None  # reasoning is open, not text
    translator.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    assert translator.text_part() is not None
    translator.feed({"choices": [{"index": 0, "delta": {"refusal": "no"}}]})
    assert translator.text_part() is None
    cited = ChunkTranslator(cite=lambda text: [])
    cited.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    assert cited.text_part() is None  # the text is looked at for citations after each delta
    with_logprobs = ChunkTranslator()
    with_logprobs.feed({"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [
        {"token": "a", "logprob": -0.1, "top_logprobs": []}]}}]})
    assert with_logprobs.text_part() is None
    folded = ChunkTranslator(deltas=False)
    folded.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    assert folded.text_part() is None


def test_a_relay_only_where_its_frames_go_out_as_they_are() -> None:
    class Wire:
        relays_text = True

    async def write(data: bytes) -> None:
        return None

    state, translator = RunState(conversation=[]), ChunkTranslator()
    assert relay_for(Wire(), state, translator, moderated=False) is None  # no writer in this task
    for ahead, backend, moderated, deltas, expected in [
            (ReadAhead(write, relay=True), Wire(), False, True, True), (ReadAhead(write), Wire(), False, True, False),
            (ReadAhead(None, relay=True), Wire(), False, True, False),
            (ReadAhead(write, relay=True), object(), False, True, False),
            (ReadAhead(write, relay=True), Wire(), True, True, False),
            (ReadAhead(write, relay=True), Wire(), False, False, False)]:
        token = READ_AHEAD.set(ahead)
        try:
            state.deltas = deltas
            assert (relay_for(backend, state, translator, moderated) is not None) is expected
        finally:
            READ_AHEAD.reset(token)


def test_the_tap_takes_text_from_a_read_and_leaves_the_task_every_byte_from_the_first_chunk_it_declines() -> None:
    from parley.backends.openai_compat import _Lines, _tap

    async def write(data: bytes) -> None:
        return None

    def text(piece: bytes) -> bytes:
        return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % piece

    finish = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    translator, state = open_part()
    relay = TextRelay(state, translator)
    relay.aim(translator.text_part())
    written: list[bytes] = []
    writable = [False]
    ahead = ReadAhead(write, relay=True, writable=lambda: writable[0], write_now=written.append)
    lines = _Lines()
    tap = _tap(lines, relay, ahead)
    assert tap(text(b"a")) == text(b"a") and not written  # the client's transport is full: the task reads it
    writable[0] = True
    assert tap(text(b"a") + text(b"b")[:20]) == b""  # one chunk taken, a partial line kept
    assert tap(text(b"b")[20:] + finish + b"data: [DO") == finish + b"data: [DO"  # "b" taken; the rest left
    assert lines.rest == b""  # (the partial line went with what was left, in order)
    frames = [event for data in written for event in data.split(b"\n\n") if event]
    assert [orjson.loads(frame.split(b"data: ", 1)[1])["delta"] for frame in frames] == ["a", "b"]
    assert [orjson.loads(frame.split(b"data: ", 1)[1])["sequence_number"] for frame in frames] == [41, 42]
    assert translator.text_part() is not None and state.sequence == 43
    relay.aim(None)
    assert tap(text(b"c")) == text(b"c")  # no open text part: nothing taken
