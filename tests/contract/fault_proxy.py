"""A TCP proxy that cuts or blackholes the path to a server on command (here: to PostgreSQL).

``with FaultProxy(5432) as proxy:`` listens on 127.0.0.1:``proxy.port`` and relays to the target.
``proxy.cut()`` resets every open connection and every new one (a database that refuses connections),
``proxy.blackhole()`` keeps connections open but relays nothing either way (a database behind a dead
network path: packets vanish, nothing is refused), and ``proxy.heal()`` relays again (connections open
during a blackhole are reset then, as their bytes were lost).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            self._reset_all()

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _set(self, mode: str, reset: bool) -> None:
        async def switch() -> None:
            self.mode = mode
            if reset:
                self._reset_all()

        self._call(switch())

    def cut(self) -> None:
        self._set("cut", reset=True)

    def blackhole(self) -> None:
        self._set("blackhole", reset=False)

    def heal(self) -> None:
        self._set("pass", reset=self.mode == "blackhole")

    def _reset_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        self._open.add(writer)
        if self.mode == "blackhole":  # accepted, and then nothing
            await _drain_forever(reader)
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.add(target_writer)
        await asyncio.gather(self._relay(reader, target_writer), self._relay(target_reader, writer))

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "pass":
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.transport.abort()


async def _drain_forever(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass
