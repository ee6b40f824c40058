"""Server-sent events: a response's events as ``event:``/``data:`` frames.

The response runs in a task of its own (:meth:`parley.runtime.Runtime.spawn`), started when the request
is accepted, so a client that goes away (even before the first frame is sent) does not stop it: the
response still completes and is stored (when ``store`` is true).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from openai.types.responses import ResponseStreamEvent

from parley.runtime import Runtime
from parley.wire import to_json

log = logging.getLogger("parley.http")


def encode_sse(event: ResponseStreamEvent) -> bytes:
    """One SSE frame: ``event:`` line, one ``data:`` line, blank line."""
    return f"event: {event.type}\ndata: {to_json(event, hasattr(event, 'response'))}\n\n".encode()


def sse_frames(events: AsyncIterator[ResponseStreamEvent], runtime: Runtime) -> AsyncIterator[bytes]:
    """The frames of ``events``, produced by a task that runs to the end whatever the client does."""
    queue: asyncio.Queue[ResponseStreamEvent | None] = asyncio.Queue()
    streams = runtime.metrics.streams

    async def pump() -> None:
        streams.inc()
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception:  # the engine ends every response with a terminal event; this is a bug
            log.exception("a response stream broke off")
        finally:
            streams.dec()
            queue.put_nowait(None)

    runtime.spawn(pump())
    return _frames(queue)


async def _frames(queue: asyncio.Queue[ResponseStreamEvent | None]) -> AsyncIterator[bytes]:
    finished = False
    while not finished:
        # Send every event that is ready in one write: under load this saves a syscall per event.
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        if batch[-1] is None:
            batch.pop()
            finished = True
        if batch:
            yield b"".join(encode_sse(event) for event in batch)  # type: ignore[arg-type]
