"""Server-sent events: a response's events as ``event:``/``data:`` frames, written straight to ASGI ``send``.

A streamed response runs in a task of its own (:meth:`parley.runtime.Runtime.spawn`), started when the
request is accepted, which writes each event as it comes: a client that goes away (even before the first
frame) does not stop it, and the response still completes and is stored (when ``store`` is true).  The
request's own task waits for it, so the response ends when the stream does.  (The stream used to go through
a queue to a second task and Starlette's streaming response; each event then woke two tasks and passed three
``send`` wrappers.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import ResponseStreamEvent

from parley.runtime import Runtime
from parley.wire import to_json

log = logging.getLogger("parley.http")

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def encode_sse(event: ResponseStreamEvent) -> bytes:
    """One SSE frame: ``event:`` line, one ``data:`` line, blank line."""
    return f"event: {event.type}\ndata: {to_json(event, hasattr(event, 'response'))}\n\n".encode()


SLOW_CLIENT_S = 30.0  # a client that takes longer than this to accept one frame is left behind


class _Client:
    """The stream's side of the connection: frames go out until the client is gone (or stopped reading for
    ``SLOW_CLIENT_S``: the server's send waits while the client's socket is full), then nowhere, so the response
    runs on at the model's pace whatever the client does."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.gone = False

    async def write(self, data: bytes, more: bool = True) -> None:
        if self.gone:
            return
        try:
            async with asyncio.timeout(SLOW_CLIENT_S):
                await self.send({"type": "http.response.body", "body": data, "more_body": more})
        except Exception:  # gone, or too slow (TimeoutError): the response goes on without it
            self.gone = True


async def write_events(events: AsyncIterator[ResponseStreamEvent], runtime: Runtime, send: Any) -> None:
    """Write ``events`` as frames from a task that runs to the end whatever the client does; returns when the
    stream has ended."""
    client = _Client(send)
    streams = runtime.metrics.streams

    async def pump() -> None:
        streams.inc()
        try:
            async for event in events:
                await client.write(encode_sse(event))
        except Exception:  # the engine ends every response with a terminal event; this is a bug
            log.exception("a response stream broke off")
        finally:
            streams.dec()
            await client.write(b"", more=False)

    await asyncio.shield(runtime.spawn(pump()))


async def write_frames(frames: AsyncIterator[bytes], send: Any) -> None:
    """Write ready frames (a background response's stream, which runs on its own) until they end or the client
    leaves."""
    client = _Client(send)
    try:
        async for data in frames:
            await client.write(data)
            if client.gone:
                return
    finally:
        await client.write(b"", more=False)
