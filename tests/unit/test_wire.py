"""Stream events as SSE frames: the text delta's direct encoding writes the same bytes as pydantic's."""

from __future__ import annotations

import random

import pytest
from openai.types.responses import ResponseTextDeltaEvent

from parley.engine.logprobs import for_delta
from parley.engine.translate import _construct
from parley.wire import event_bytes, event_frame

TEXTS = ["", " word", 'quote " and backslash \\ and slash /', "line\nbreak\ttab\rreturn\b\f",
         "".join(chr(c) for c in range(32)) + "\x7f", "héllo wörld", "日本語のテキスト", "emoji 🦙🚀",
         "\u2028\u2029 separators", "<script>&amp;</script>", "null \x00 byte"]


def delta(text: str, **fields) -> ResponseTextDeltaEvent:
    values = {"type": "response.output_text.delta", "item_id": "msg_0123abcd", "output_index": 3,
              "content_index": 1, "delta": text, "logprobs": [], "sequence_number": 4711, **fields}
    return _construct(ResponseTextDeltaEvent, **values)


@pytest.mark.parametrize("text", TEXTS)
def test_a_text_delta_is_written_as_pydantic_writes_it(text) -> None:
    event = delta(text)
    assert event_bytes(event) == event_frame(event).encode()


def test_random_text_deltas_are_written_as_pydantic_writes_them() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0, 0x300)] + ["🦙", "中", "\u2028", "\ufeff"]
    for _ in range(2000):
        event = delta("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
                      output_index=rng.randint(0, 10**6), sequence_number=rng.randint(0, 10**9))
        assert event_bytes(event) == event_frame(event).encode()


def test_a_delta_with_logprobs_or_a_lone_surrogate_takes_pydantic_path() -> None:
    with_logprobs = delta("hi", logprobs=for_delta([{"token": "hi", "logprob": -0.5, "top_logprobs": []}]))
    assert b'"logprobs":[{' in event_bytes(with_logprobs)
    assert event_bytes(with_logprobs) == event_frame(with_logprobs).encode()
    lone = delta("broken \ud800 half")
    try:
        expected = event_frame(lone).encode()
    except Exception as exc:  # pydantic refuses it too: the same error reaches the caller
        with pytest.raises(type(exc)):
            event_bytes(lone)
    else:
        assert event_bytes(lone) == expected


def test_json_text_writes_what_json_reads_back_orjson_or_not() -> None:
    import json

    from parley.wire import json_text

    values = [{"role": "user", "content": "é 🦙 \u2028 \"quoted\""}, [1, 2.5, None, True, {"a": []}],
              {"parameters": {"type": "integer", "maximum": 10**30}},  # past 64 bits: orjson refuses it
              {1: "a key that is not a string"}, "\ud800 a lone surrogate", -(2**63)]
    for value in values:
        assert json.loads(json_text(value)) == json.loads(json.dumps(value)), value
    assert json_text({"a": [1, "b"]}) == '{"a":[1,"b"]}'
