"""Protocol objects as JSON text, the way clients with typed timestamps read them.

The ``openai`` SDK types ``created_at`` and ``completed_at`` as floats, so its serializer writes
``1795697041.0``; OpenAI's API sends integers, and clients with integer types (Rust, Go) and the Open
Responses specification expect them.  Parley's timestamps are whole seconds, so the text is written with
integers here, the one place every Response and lifecycle event is serialized.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

_WHOLE_TIMESTAMP = re.compile(r'"(created_at|completed_at)":(-?\d+)\.0(?=[,}])')


def integer_timestamps(text: str) -> str:
    return _WHOLE_TIMESTAMP.sub(r'"\1":\2', text)


def json_text(value: Any) -> str:
    """``value`` (what JSON parsing makes) as compact JSON text: orjson's, several times faster than the standard
    library's, which writes what orjson refuses (an integer past 64 bits, a lone surrogate, a key that is not a
    string) the way Parley always wrote it."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # (orjson.JSONEncodeError is one)
        return json.dumps(value)


def to_json(model: BaseModel, has_response: bool = True) -> str:
    """``model`` (a Response, or an event) as JSON; ``has_response=False`` skips the timestamp pass for
    events that carry no Response (the per-token deltas)."""
    text = model.model_dump_json(by_alias=True)
    return integer_timestamps(text) if has_response else text


def sse_frame(event_type: str, data: str) -> str:
    """One server-sent event: an ``event:`` line, one ``data:`` line, a blank line."""
    return f"event: {event_type}\ndata: {data}\n\n"


def event_frame(event: BaseModel) -> str:
    """A stream event as its SSE frame (the per-token deltas skip the timestamp pass)."""
    event_type = event.type  # type: ignore[attr-defined]
    return sse_frame(event_type, to_json(event, hasattr(event, "response")))


# The text delta, a streamed answer's one event per token, is written without pydantic when it carries no
# logprobs: the same bytes (its fields in the SDK's order; tests/unit/test_wire.py compares them), a tenth of
# the time.  An SDK whose event has other fields takes pydantic's path.
_TEXT_DELTA_FIELDS = ("content_index", "delta", "item_id", "logprobs", "output_index", "sequence_number", "type")
TEXT_DELTA_FAST = tuple(ResponseTextDeltaEvent.model_fields) == _TEXT_DELTA_FIELDS
_TEXT_DELTA_FRAME = (b'event: response.output_text.delta\ndata: {"content_index":%d,"delta":%s,"item_id":%s,'
                     b'"logprobs":[],"output_index":%d,"sequence_number":%d,"type":"response.output_text.delta"}\n\n')


_HEAD, _REST = _TEXT_DELTA_FRAME.split(b"%s", 1)
_MIDDLE, _TAIL = _REST.rsplit(b"%d", 1)


def text_delta_frame_parts(item_id: str, output_index: int, content_index: int) -> tuple[bytes, bytes, bytes]:
    """A text delta's frame of one part, in three pieces: the frame is ``head + the delta as JSON + middle +
    the sequence number + tail`` (:mod:`parley.engine.relay`; only where ``TEXT_DELTA_FAST``)."""
    return _HEAD % content_index, _MIDDLE % (orjson.dumps(item_id), output_index), _TAIL


def event_bytes(event: BaseModel) -> bytes:
    """A stream event's SSE frame, encoded."""
    if type(event) is ResponseTextDeltaEvent and TEXT_DELTA_FAST and not event.logprobs:
        fields = event.__dict__
        try:
            return _TEXT_DELTA_FRAME % (fields["content_index"], orjson.dumps(fields["delta"]),
                                        orjson.dumps(fields["item_id"]), fields["output_index"],
                                        fields["sequence_number"])
        except (TypeError, orjson.JSONEncodeError):  # (a lone surrogate: pydantic's path says what it does)
            pass
    return event_frame(event).encode()
