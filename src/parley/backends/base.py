"""The one thing Parley needs from a model: streamed Chat Completions chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol


class ReadAhead:
    """Whether the chunk a backend's stream yields now is followed by another it has already received: a
    streamed response's writer (:func:`parley.http.sse.write_events`) sets one for its task and holds frames
    back (in ``held``) while ``more`` is true, so that the events of every chunk one read brought go out in one
    write.  A backend that cannot tell leaves it false, and each event goes out as it comes.  A text relay
    (:mod:`parley.engine.relay`) adds its frames to ``held`` itself and writes them with :meth:`flush`; or, from
    the upstream socket's read callback while the task waits, with ``write_now`` where ``writable()`` says the
    client's transport takes them at once (nothing held, nothing being sent, the client reading)."""

    __slots__ = ("more", "held", "write", "relay", "writable", "write_now")

    def __init__(self, write: Callable[[bytes], Awaitable[None]] | None = None, relay: bool = False,
                 writable: Callable[[], bool] | None = None, write_now: Callable[[bytes], None] | None = None) -> None:
        self.more = False
        self.held: list[bytes] = []  # frames the writer's next write carries
        self.write = write  # the writer's write to the client
        self.relay = relay and write is not None  # whether a text relay may add frames and write them
        self.writable = writable if self.relay else None  # whether write_now may write now
        self.write_now = write_now

    async def flush(self) -> None:
        """Write the frames held."""
        held = self.held
        if held and self.write is not None:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            await self.write(data)


READ_AHEAD: ContextVar[ReadAhead | None] = ContextVar("parley_read_ahead", default=None)


class ChatBackend(Protocol):
    """A source of streamed Chat Completions.

    ``stream`` takes a Chat Completions request body and yields its chunks as dicts in the
    wire format (usage in a final chunk).  Failures are raised as
    :class:`parley.errors.ParleyError` subclasses with a typed ``code``.
    """

    name: str

    def stream(self, request: dict[str, Any], api_key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """``api_key``, when given, replaces the upstream's configured key (client key forwarding)."""
        ...

    async def models(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
