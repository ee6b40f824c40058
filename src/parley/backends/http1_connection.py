"""One connection to an upstream, and the answer to the request out on it (:mod:`parley.backends.http1` makes
and pools them): an asyncio protocol whose reads feed httptools' parser, whose body callback appends the bytes
and wakes the task waiting for them, or hands them to a ``tap`` that reads them in the callback itself."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httptools

HIGH_WATER = 256 * 1024  # body bytes held unread before the socket stops being read
MAX_HEAD = 64 * 1024  # the most an answer's status line and headers may take


class UpstreamError(Exception):
    """The request failed for a reason of the connection (not an HTTP status)."""


class ConnectFailed(UpstreamError):
    """No connection could be made (refused, unresolvable, TLS refused); nothing was sent."""


class ConnectTimeout(UpstreamError):
    """No connection within the connect timeout."""


class Dropped(UpstreamError):
    """The connection closed before the answer was complete."""


class ReadTimeout(UpstreamError):
    """The upstream sent nothing for the read timeout while an answer was awaited."""


class Malformed(UpstreamError):
    """What came back is not HTTP/1.1 this client reads."""


class Pool(Protocol):
    """What a connection needs of the pool it belongs to (:class:`parley.backends.http1.Pool`)."""

    read_timeout_s: float

    def keep(self, connection: Connection) -> None: ...

    def forget(self, connection: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """One connection to the upstream and, while a request is out on it, that request's answer: its status,
    its headers (lower-cased names) and its body, read as it comes with :meth:`chunks` or whole with
    :meth:`read`.  :meth:`release` gives it back to its pool or closes it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None  # done when the answer's headers are read
        self._head_size = 0
        self._header_name = b""
        self._body: list[bytes] = []
        self._held = 0  # bytes in _body
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False  # the whole answer was read
        self._keep_alive = False  # and both sides keep the connection for another
        self._informational = False  # the answer read now is a 1xx one
        self._error: UpstreamError | None = None
        self._paused = False
        self._decoder: zlib._Decompress | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        # What reads the body in the read callback itself while the task waits for it: given a read's bytes,
        # it returns those it leaves to the task (empty: it took them all).  Set per request; see on_body.
        self.tap: Callable[[bytes], bytes] | None = None

    # The protocol's side (the event loop's callbacks)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        parser = self._parser
        if parser is None:  # bytes on an idle connection: it cannot be reused
            self.abort()
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:  # (what a callback below raised is the error's context)
            cause = exc.__context__
            self._fail(cause if isinstance(cause, UpstreamError)
                       else Malformed(f"the upstream's answer is not valid HTTP/1.1: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # (the transport closes; connection_lost says what that means)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timers()
        self.pool.forget(self)
        if self._parser is None or self._complete or self._error is not None:
            return
        if self._head is not None and self._head.done() and self._ends_at_close():
            self.on_message_complete()  # a body without a length: the close is its end
            return
        self._fail(Dropped("the connection closed before the answer was complete"
                           + (f" ({exc!r})" if exc is not None else "")))

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise Malformed("the upstream's answer has more than 64 KiB of headers")
        if name:
            self._header_name = name
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        else:  # (a value continued on a later read)
            key = self._header_name.decode("latin-1").lower()
            self.headers[key] += value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self.status = self._parser.get_status_code()
        if self.status < 200:  # (an informational answer, 103 Early Hints: the answer follows it)
            self._informational = True
            self.headers, self._head_size = {}, 0
            return
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            raise Malformed(f"the upstream's answer is encoded as {encoding!r}, which Parley does not read")
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                raise Malformed(f"the upstream's compressed body is corrupt: {exc}") from None
        waiter = self._waiter
        if self.tap is not None and waiter is not None and not waiter.done() and not self._body:
            body = self.tap(body)  # (only while the task waits with nothing unread: the bytes stay in order)
            if not body:
                return
        self._body.append(body)
        self._held += len(body)
        if self._held > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._complete = True
        self._keep_alive = self._parser is not None and self._parser.should_keep_alive()  # (the parser forgets it)
        self._stop_timers()
        if self._decoder is not None:
            self._body.append(self._decoder.flush())
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The request's side (the task's)

    async def send(self, head: bytes, body: bytes) -> None:
        """Send a request and wait for its answer's headers."""
        loop = asyncio.get_running_loop()
        self.status, self.headers, self._head_size = 0, {}, 0
        self._body, self._held, self._complete, self._error, self._decoder = [], 0, False, None, None
        self._keep_alive = self._informational = False
        self._parser = httptools.HttpResponseParser(self)
        self._head = loop.create_future()
        self._last_read = time.monotonic()
        self._arm(self.pool.read_timeout_s)
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        await self._head

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, in the pieces the reads brought (several reads' pieces joined when they came while the
        task was away)."""
        while True:
            if self._body:
                body = self._body
                self._body, self._held = [], 0
                if self._paused:
                    self._paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                data = body[0] if len(body) == 1 else b"".join(body)
                if data:
                    yield data
                continue
            if self._complete:
                return
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read(self, limit: int) -> bytes:
        """The whole body, its first ``limit`` bytes at most (the rest is not read: the connection is then
        not reused)."""
        out = bytearray()
        async for data in self.chunks():
            out += data
            if len(out) >= limit:
                return bytes(out[:limit])
        return bytes(out)

    def release(self) -> None:
        """Done with the answer: the connection goes back to the pool when the whole answer was read and both
        sides keep it alive, else it is closed."""
        parser = self._parser
        self._stop_timers()
        reusable = self._complete and self._keep_alive and not self._body and parser is not None and self._open()
        self._parser, self._head, self._body, self._held, self.tap = None, None, [], 0, None
        if reusable:
            self.pool.keep(self)
        else:
            self.abort()

    # The pool's side

    def park(self, after_s: float) -> None:
        """Idle in the pool: closed if not taken within ``after_s``."""
        self._idle_timer = asyncio.get_running_loop().call_later(after_s, self.abort)

    def unpark(self) -> bool:
        """Taken from the pool for a request: whether it is still open (a closed one is dropped)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        return self._open()

    # Inside

    def _open(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def _ends_at_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        self._stop_timers()
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def _arm(self, after_s: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(after_s, self._timed)

    def _timed(self) -> None:
        """The read timeout's timer: the upstream was silent for the whole timeout (the reads since it was set
        move it on), unless the socket is not read because the reader is behind."""
        self._timer = None
        silent = time.monotonic() - self._last_read
        timeout = self.pool.read_timeout_s
        if self._paused or silent < timeout:
            self._arm(timeout - silent if not self._paused else timeout)
            return
        self._fail(ReadTimeout(f"the upstream sent nothing for {timeout:g} s"))
        self.abort()

    def _stop_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
