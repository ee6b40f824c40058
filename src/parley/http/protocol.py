"""The HTTP/1.1 protocol Parley serves with: uvicorn's httptools protocol plus a header-read timeout.

uvicorn times a keep-alive connection only while it is idle between requests: its timer stops at the
first byte of a request, so a client that sends part of a request's headers and then nothing holds
the connection (and a file descriptor) for as long as it likes.  This protocol closes a connection
whose request headers are not complete ``header_timeout_s`` seconds after the connection opened or
after the request's first byte.  The value comes from uvicorn's ``Config`` (``config.header_timeout_s``),
which ``parley serve`` sets, so it reaches ``--workers`` processes with the rest of the config.

It also puts a weak reference to each request's response cycle in its scope (``CYCLE_KEY``), so that a
streamed response's text relay can write frames from the upstream socket's read callback straight to the
client's transport, framed as the cycle frames its body (:meth:`parley.http.sse._Client.write_now`).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT_S = 10.0
CYCLE_KEY = "parley.cycle"  # a weak reference to the request's uvicorn cycle, in its scope (the cycle holds the
# scope: a strong one would make every request's scope and cycle a reference cycle, left to the garbage collector)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S))
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:  # a later request on a kept-alive connection is timed as well
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # (not an upgrade: this request's own cycle)
            self.scope[CYCLE_KEY] = weakref.ref(cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)
