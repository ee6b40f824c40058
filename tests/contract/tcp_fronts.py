"""TCP fronts that fail on command, between Parley and a server it talks to (an upstream, PostgreSQL).

Each listens on 127.0.0.1:``front.port`` on an event loop of its own (a thread), relays to the target
byte for byte, and fails the way its name says:

- ``DroppingFront(port, drops=N)``: each of the first N connections is closed as soon as a request head
  has arrived on it, with no answer (what a client sees when a server resets a keep-alive connection it
  had idled out).  ``front.url`` replaces the target's base URL.
- ``FaultProxy(port)``: ``cut()`` resets every open connection and every new one (a database that refuses
  connections), ``blackhole()`` keeps connections open but relays nothing either way (a dead network path:
  packets vanish, nothing is refused), ``hold()`` keeps what either side sends until ``heal()`` (a database that
  is slow, not gone), and ``heal()`` relays again (connections open during a blackhole are reset then, as their
  bytes were lost; what a hold kept goes on, in order).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class TcpFront:
    """The listener, its loop and the relay; subclasses decide what happens to each connection."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Any:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            self._reset_all()
            relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)  # each closes its transports as it ends
            await asyncio.sleep(0)  # and the closes they scheduled run before the loop stops

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _reset_all(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._connect(reader, writer)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Relay this connection to the target until either side closes."""
        self._open.add(writer)
        try:
            target_reader, target_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.add(target_writer)
        await asyncio.gather(self._relay(reader, target_writer), self._relay(target_reader, writer))

    def _relaying(self) -> bool:
        return True

    async def _flowing(self) -> None:
        """Returns when what was read may be relayed."""

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing()
                if self._relaying():
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()  # after what was written is sent


class DroppingFront(TcpFront):
    def __init__(self, target_port: int, drops: int = 1, path: str = "/v1") -> None:
        super().__init__(target_port)
        self.drops_left = drops
        self.dropped = 0
        self.path = path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.drops_left > 0:
            self.drops_left -= 1
            await reader.readuntil(b"\r\n\r\n")  # a whole request head has arrived
            self.dropped += 1
            writer.transport.abort()  # closed with no answer at all
            return
        await self._connect(reader, writer)


class FaultProxy(TcpFront):
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        super().__init__(target_port, target_host)
        self.mode = "pass"
        self._released: asyncio.Event | None = None  # set when a hold ends

    def _set(self, mode: str, reset: bool) -> None:
        async def switch() -> None:
            self.mode = mode
            if mode == "hold":
                self._released = asyncio.Event()
            elif self._released is not None:
                self._released.set()
                self._released = None
            if reset:
                self._reset_all()

        self._call(switch())

    def hold(self) -> None:
        self._set("hold", reset=False)

    async def _flowing(self) -> None:
        if self._released is not None:
            await self._released.wait()

    def cut(self) -> None:
        self._set("cut", reset=True)

    def blackhole(self) -> None:
        self._set("blackhole", reset=False)

    def heal(self) -> None:
        self._set("pass", reset=self.mode == "blackhole")

    def _relaying(self) -> bool:
        return self.mode == "pass"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
        elif self.mode == "blackhole":  # accepted, and then nothing
            self._open.add(writer)
            try:
                while await reader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
        else:
            await self._connect(reader, writer)
