"""The upstream's HTTP/1.1 client: pooled keep-alive connections read by callbacks, their bodies handed to the
task that waits for them.

Every streamed token Parley relays is one read of an upstream socket.  Through aiohttp each read passed its
protocol, its parser's payload object, a ``StreamReader`` and its iterator before the response's task woke; and
every request built a ``ClientRequest``, a ``ClientResponse``, a multidict of headers and a timer.  Measured by
``bench/relay_floor.py`` (the ``raw`` and ``lean`` relays: the same bare server, aiohttp against this), that is
about a third of what relaying a token costs when nothing else is done with it.  Here a read is
:class:`Connection`'s ``data_received``, httptools' C parser (the one uvicorn serves with), and a body callback
that appends the bytes and wakes the waiting task.

What it does, and no more, since one thing uses it (:class:`parley.backends.openai_compat.OpenAICompatBackend`):

- ``http`` and ``https`` (the system's certificate store, as ``ssl.create_default_context()`` reads it, so
  ``SSL_CERT_FILE`` names another), no proxy (as the aiohttp session before it, which did not trust the
  environment);
- requests with a body of known length; answers with a ``Content-Length``, chunked, or ended by the close of
  the connection, after any informational (1xx) answers; ``gzip`` and ``deflate`` bodies decoded (as aiohttp,
  the client asks for them);
- the host name resolved once per ``DNS_TTL_S``, not once per connection;
- connections kept alive in a pool per origin and closed after ``keepalive_s`` idle, shorter than the servers'
  own (uvicorn, which vLLM serves with, closes after 5 s: a connection reused as its server closes it fails the
  request's write);
- a connect timeout, and a read timeout: the longest the upstream may stay silent while an answer is awaited (one
  timer per request, moved on only when it fires, not at every read);
- back-pressure: a body read faster than its reader takes it stops the socket's reading past ``HIGH_WATER`` bytes;
- a ``tap``: what may read the body in the read callback itself while the task waits with nothing unread (the
  text relay's way to write a token with no task woken: :func:`parley.backends.openai_compat._tap`).

Its errors are :class:`UpstreamError` subclasses, which the backend turns into its typed errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

from parley.backends.http1_connection import (HIGH_WATER, ConnectFailed, Connection, ConnectTimeout, Dropped,
                                              Malformed, ReadTimeout, UpstreamError)

__all__ = ["HIGH_WATER", "ConnectFailed", "ConnectTimeout", "Connection", "Dropped", "Malformed", "Pool",
           "ReadTimeout", "UpstreamError"]

_FIELD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header's name (RFC 9110's token)
_BREAKS = re.compile(r"[\r\n\0]")  # what a header's value must not hold
DNS_TTL_S = 300.0  # how long a resolved host name is used (aiohttp's connector cached it as long)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Pool:
    """The connections to one origin (``scheme://host:port``): idle ones reused last-in first-out, new ones
    made as needed, with no bound on how many are open (as the aiohttp connector before it, ``limit=0``)."""

    def __init__(self, url: str, connect_timeout_s: float, read_timeout_s: float, keepalive_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        default = 443 if self.tls else 80
        self.port = parts.port or default
        host = f"[{self.host}]".encode() if ":" in self.host else self.host.encode("idna")
        self.authority = host if self.port == default else b"%s:%d" % (host, self.port)
        self.prefix = parts.path.rstrip("/")  # the URL's path, which the caller's paths usually begin with
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self._ssl: ssl.SSLContext | None = None
        self._numeric = _is_address(self.host)
        self._resolved: tuple[float, str] | None = None  # when the host name was resolved, and to what
        self._resolving = asyncio.Lock()
        self._idle: list[Connection] = []
        self._closed = False

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Connection:
        """Send a request for ``path`` (from the server's root: :attr:`prefix` is the URL's own path) and return its
        connection once the answer's headers are read; the caller reads the body and releases the connection."""
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: parley\r\nAccept-Encoding: gzip, deflate\r\n" % (
            method.encode(), path.encode(), self.authority)]
        for name, value in headers.items():
            if not _FIELD.fullmatch(name) or _BREAKS.search(value):
                raise ValueError(f"not a header Parley can send: {name!r}")
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        connection = self._take() or await self._connect()
        try:
            await connection.send(b"".join(lines), body)
        except BaseException:
            connection.release()
            raise
        return connection

    def keep(self, connection: Connection) -> None:
        if self._closed:
            connection.abort()
            return
        self._idle.append(connection)
        connection.park(self.keepalive_s)

    def forget(self, connection: Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.abort()

    def _take(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.unpark():
                return connection
        return None

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        if self.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        connection = Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                address = await self._address(loop)
                await loop.create_connection(lambda: connection, address, self.port, ssl=self._ssl,
                                             server_hostname=self.host if self.tls else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host}:{self.port} within {self.connect_timeout_s:g} s") \
                from None
        except OSError as exc:  # (refused, unreachable, not resolved, TLS refused: ssl.SSLError is an OSError)
            self._resolved = None  # (asked again next time: the name may point elsewhere now)
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return connection

    async def _address(self, loop: asyncio.AbstractEventLoop) -> str:
        """The upstream's address: its host name resolved once per ``DNS_TTL_S`` (a burst of new connections
        would otherwise ask the resolver, in threads, once each), or its address as written."""
        if self._numeric:
            return self.host
        address = self._fresh()
        if address is not None:
            return address
        async with self._resolving:  # (one lookup for a burst of new connections: the first; the others wait)
            address = self._fresh()
            if address is None:
                found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                if not found:
                    raise OSError(f"{self.host} has no address")
                address = str(found[0][4][0])
                self._resolved = (time.monotonic(), address)
        return address

    def _fresh(self) -> str | None:
        """The address the host name was resolved to less than ``DNS_TTL_S`` ago, if any."""
        resolved = self._resolved
        return resolved[1] if resolved is not None and time.monotonic() - resolved[0] <= DNS_TTL_S else None
