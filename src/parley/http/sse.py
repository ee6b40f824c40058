"""Server-sent events: a response's events as ``event:``/``data:`` frames, written straight to ASGI ``send``.

Under load the upstream's reads bring several chunks at once: their events' frames are then written together,
in one send (:class:`parley.backends.base.ReadAhead`), so a busy server writes fewer, larger frames per token
while a lone stream still writes each chunk's events as soon as they are made.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from openai.types.responses import ResponseStreamEvent

from parley.backends.base import READ_AHEAD, ReadAhead
from parley.errors import ParleyError
from parley.runtime import Runtime
from parley.wire import event_bytes

log = logging.getLogger("parley.http")

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


class _Client:
    """The stream's side of the connection: frames go out until the client is gone (or stopped reading for
    ``--slow-client-s``: the server's send waits while the client's socket is full), then nowhere, so the response
    runs on at the model's pace whatever the client does.  A stalled send is found by :class:`SlowClients`
    (one look a second for all streams: a timer per frame cost 5 % of a streamed token's CPU)."""

    def __init__(self, send: Any, start: dict[str, Any] | None = None, cycle: Any = None) -> None:
        self.send = send
        self.start = start  # the response's start, sent with its first frame
        self.gone = False
        self.sending_since = 0.0  # when the send in progress began (0: none)
        self.stalled = False
        self.cycle = cycle  # uvicorn's cycle of the request (parley.http.protocol.CYCLE_KEY), or None
        self.written_now = 0  # writes made by write_now

    def writable(self) -> bool:
        """Whether :meth:`write_now` may write: the response started with chunked framing, no send is in
        progress, and the client is there and reading (its transport is not full)."""
        cycle = self.cycle
        return (not self.gone and self.start is None and not self.sending_since and cycle.response_started
                and not cycle.response_complete and not cycle.disconnected and cycle.chunked_encoding is True
                and not cycle.flow.write_paused and not cycle.transport.is_closing())

    def write_now(self, data: bytes) -> None:
        """Write ``data`` to the client's transport at once, as one chunk of the body, as the cycle's own send
        frames it (only where :meth:`writable`: from a callback, between two of the task's sends)."""
        self.cycle.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.written_now += 1

    async def write(self, data: bytes, more: bool = True) -> None:
        if self.gone:
            return
        self.sending_since = time.monotonic()
        try:
            if self.start is not None:
                start, self.start = self.start, None
                await self.send(start)
            await self.send({"type": "http.response.body", "body": data, "more_body": more})
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            self.gone = True  # too slow: left behind
        except Exception:  # the client went away: the response goes on without it
            self.gone = True
        finally:
            self.sending_since = 0.0


class SlowClients:
    """Leaves behind the clients of streams whose send has waited ``after_s`` (see :class:`_Client`): one look
    a second while any stream runs."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.streams: dict[_Client, asyncio.Task[Any]] = {}
        self._watch: asyncio.Task[None] | None = None

    def add(self, client: _Client, task: asyncio.Task[Any]) -> None:
        self.streams[client] = task
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._look())

    def remove(self, client: _Client) -> None:
        del self.streams[client]
        if not self.streams and self._watch is not None:  # nothing to watch: no task left pending at shutdown
            self._watch.cancel()
            self._watch = None

    async def _look(self) -> None:
        while self.streams:
            await asyncio.sleep(min(1.0, self.after_s / 2))
            now = time.monotonic()
            for client, task in list(self.streams.items()):
                if client.sending_since and now - client.sending_since > self.after_s and not client.stalled:
                    log.info("a stream's client stopped reading; the response goes on without it")
                    client.stalled = True
                    task.cancel()


async def write_events(events: AsyncIterator[ResponseStreamEvent], runtime: Runtime, send: Any,
                       slow: SlowClients, refuse: Callable[[ParleyError], Awaitable[None]], cycle: Any = None) -> None:
    """Write ``events`` as frames from a task that runs to the end whatever the client does; returns when the
    stream has ended.  The response's start goes with its first frame: a response that does not start (its
    events raise before the first) is answered by ``refuse`` instead (an HTTP error).  With the request's uvicorn
    ``cycle``, the text relay may also write frames from the upstream's read callback (:meth:`_Client.write_now`)."""
    client = _Client(send, {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}, cycle)
    streams = runtime.metrics.streams

    async def pump() -> None:
        streams.inc()
        slow.add(client, asyncio.current_task())  # type: ignore[arg-type]
        ahead = ReadAhead(client.write, relay=runtime.settings.text_relay,
                          writable=client.writable if cycle is not None else None, write_now=client.write_now)
        READ_AHEAD.set(ahead)  # (this task's context: the upstream's reads say whether more chunks are ready)
        held = ahead.held
        try:
            async for event in events:
                held.append(event_bytes(event))
                del event  # (the frame is what is kept: a slow stream does not hold the event too)
                if not ahead.more:  # the upstream must be read again: what its last read brought goes out
                    await ahead.flush()
        except ParleyError as exc:  # before the first event: the response did not start (its row was not written)
            if client.start is None or held:
                log.exception("a response stream broke off")
            else:
                client.gone = True
                await refuse(exc)
        except Exception:  # the engine ends every response with a terminal event; this is a bug
            log.exception("a response stream broke off")
        finally:
            streams.dec()
            await client.write(b"".join(held), more=False)
            slow.remove(client)
            if client.written_now:
                runtime.metrics.relayed_writes.inc(client.written_now)

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
    except Exception:  # the response started: nothing to answer with but the end of the stream
        log.exception("a followed stream broke off")
    finally:
        await client.write(b"", more=False)
