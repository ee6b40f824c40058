"""A TCP front that drops connections on command, for backends that fail below HTTP.

``with DroppingFront(target_port, drops=1) as front:`` listens on 127.0.0.1; each of the first
``drops`` connections is closed as soon as a request has arrived on it, with no answer (what a
client sees when a server resets a keep-alive connection it had idled out); later connections
are relayed to ``target_port`` byte for byte.  ``front.url`` replaces the target's base URL.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class DroppingFront:
    def __init__(self, target_port: int, drops: int = 1, path: str = "/v1") -> None:
        self.target_port = target_port
        self.drops_left = drops
        self.dropped = 0
        self.path = path
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dropping front", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def __enter__(self) -> DroppingFront:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.drops_left > 0:
            self.drops_left -= 1
            await reader.readuntil(b"\r\n\r\n")  # a whole request head has arrived
            self.dropped += 1
            writer.transport.abort()  # closed with no answer at all
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
