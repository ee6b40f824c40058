"""The text relay: a streamed answer's plain text chunks framed straight from the upstream's bytes.

Most of a streamed answer is chunks that only add text to the message being written.  For those, the relay
turns each ``data:`` payload into its ``response.output_text.delta`` frame, the very bytes the translator's
event would be written as (:mod:`parley.wire`), and gives the text to the translator; the backend adds a
read's frames to those the response's writer holds and writes them (:class:`parley.backends.base.ReadAhead`),
so a token the relay takes never passes the engine's layers, nor becomes an event object.  Every other
chunk (the first of a part, reasoning, refusals, tool calls, logprobs, usage, a finish reason, anything
unusual) goes through :class:`parley.engine.translate.ChunkTranslator` as before, so a chunk the relay
declines costs it one parse and changes nothing: the relay only ever takes chunks whose frame the translator
would have made the same.

It runs where its frames can go out as they are: a response streamed as SSE (the writer says so through
:class:`parley.backends.base.ReadAhead`), from a backend that reads the wire itself, with no output moderation
holding events back and no citations to look for in the text.  The frames are numbered from the run's own
counter (:attr:`parley.engine.turn.RunState.sequence`), which the engine advances past them.

Where the response's writer can also write from a callback (a stream served by ``parley serve``, whose client is
reading), the backend runs the relay in the upstream socket's read callback while the task waits for the upstream,
and the frames go to the client's transport from there (:func:`parley.backends.openai_compat._tap`): a token then
wakes no task at all.

``--text-relay false`` turns it off (every chunk through the translator); the tests compare the two on the same
recorded upstream streams, byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

from parley.backends.base import READ_AHEAD
from parley.wire import TEXT_DELTA_FAST, text_delta_frame_parts


def plain_text(chunk: Any) -> tuple[str, str | None] | None:
    """The text of a chunk that only adds text to the open message, with the service tier it names; ``None``
    for any other chunk.  The translator's reading of a chunk, restricted to the case where it would make
    exactly one text delta and nothing else."""
    if type(chunk) is not dict or chunk.get("usage") or chunk.get("error"):
        return None
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("index", 0) != 0 or choice.get("finish_reason") \
            or choice.get("logprobs"):
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    text = delta.get("content")
    if type(text) is not str or not text or delta.get("reasoning_content") or delta.get("reasoning") \
            or delta.get("refusal") or delta.get("tool_calls"):
        return None
    tier = chunk.get("service_tier")
    return text, tier if type(tier) is str else None


class TextRelay:
    """One backend call's relay (the Python implementation).  ``aim`` points it at the open text part (or at
    nothing: then it takes no chunk); ``take`` frames a chunk's payload, ``into`` hands the frames taken so far
    to the writer's held frames and their text to the translator."""

    def __init__(self, state: Any, translator: Any) -> None:
        self.state = state  # the run's RunState: its sequence counter
        self.translator = translator
        self.aimed = False
        self._head = self._middle = self._tail = b""
        self._frames: list[bytes] = []
        self._text: list[str] = []
        self._tier: str | None = None

    def aim(self, part: tuple[str, int, int] | None) -> None:
        """The open text part as (item id, output index, content index), or ``None``."""
        self.aimed = part is not None
        if part is not None:
            self._head, self._middle, self._tail = text_delta_frame_parts(*part)

    def take(self, payload: bytes) -> bool:
        """Frame the chunk whose ``data:`` payload this is, if it is plain text; ``False`` leaves it to the
        translator."""
        try:
            found = plain_text(orjson.loads(payload))
        except orjson.JSONDecodeError:  # (a lone surrogate, or not JSON: the translator's path says what it is)
            return False
        if found is None:
            return False
        delta = orjson.dumps(found[0])  # (text orjson read is text it writes)
        state = self.state
        self._frames.append(b"%s%s%s%d%s" % (self._head, delta, self._middle, state.sequence, self._tail))
        state.sequence += 1
        self._text.append(found[0])
        if found[1] is not None:
            self._tier = found[1]
        return True

    @property
    def pending(self) -> bool:
        return bool(self._frames)

    def into(self, held: list[bytes]) -> None:
        """The frames taken since the last call to ``held``, their text to the translator."""
        held += self._frames
        self.translator.absorb("".join(self._text), self._tier)
        self._frames, self._text, self._tier = [], [], None


def relay_for(backend: Any, state: Any, translator: Any, moderated: bool) -> TextRelay | None:
    """A relay for one backend call (``translator`` is the call's) of the run whose ``state`` this is, where
    its frames can go out as they are: the response's writer takes frames (its :class:`ReadAhead` says so:
    ``--text-relay``, a streamed SSE response), the backend reads the wire itself, the run makes deltas and no
    moderation holds its events back; else ``None``."""
    ahead = READ_AHEAD.get()
    if ahead is None or not ahead.relay or not getattr(backend, "relays_text", False) or not state.deltas \
            or moderated or not TEXT_DELTA_FAST:  # (the SDK's text delta is the one the frames are made for)
        return None
    return TextRelay(state, translator)
