"""Parley in process: ``openai.OpenAI`` / ``openai.AsyncOpenAI`` clients served with no port.

``parley.Client(...)`` and ``parley.AsyncClient(...)`` build the same app as ``parley serve``
(same :class:`~parley.settings.Settings`) and run it on an event loop of its own, on a
background thread.  The clients reach it through an httpx transport that hands each request
to the ASGI app directly and streams the body back chunk by chunk as the app sends it:
in-process ASGI transports usually buffer whole bodies, which would turn a stream into one
late burst.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any

import httpx2
import openai

from parley.settings import Settings

Start = Callable[[int, list[tuple[bytes, bytes]]], None]
Chunk = Callable[[bytes | None], None]  # None ends the body


class AppThread:
    """The app and its event loop on a daemon thread; :meth:`close` shuts it down."""

    def __init__(self, settings: Settings) -> None:
        from parley.http.app import create_app

        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="parley-runtime", daemon=True)
        self._thread.start()
        self._lifespan: Any = None
        self._submit(self._startup()).result()
        self.closed = False

    def _submit(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _startup(self) -> None:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._submit(self._lifespan.__aexit__(None, None, None)).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()  # its selector and self-pipe: a closed client holds no file descriptors

    def call(self, request: httpx2.Request, body: bytes, on_start: Start, on_chunk: Chunk) -> Future[None]:
        """Run one request through the app; the callbacks fire on the runtime's thread."""
        return self._submit(self._asgi(request, body, on_start, on_chunk))

    async def _asgi(self, request: httpx2.Request, body: bytes, on_start: Start, on_chunk: Chunk) -> None:
        url = request.url
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "scheme": url.scheme, "path": url.path, "raw_path": url.raw_path.split(b"?")[0],
            "query_string": url.query, "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 0), "server": (url.host, url.port or 80),
        }
        received = False
        disconnected = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                on_start(message["status"], list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    on_chunk(message["body"])
                if not message.get("more_body", False):
                    on_chunk(None)

        try:
            await self.app(scope, receive, send)
        finally:
            disconnected.set()


class _SyncBody(httpx2.SyncByteStream):
    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self._chunks.get()) is not None:
            yield chunk


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, chunks: asyncio.Queue[bytes | None]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk


class SyncTransport(httpx2.BaseTransport):
    def __init__(self, runtime: AppThread) -> None:
        self.runtime = runtime

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        started: Future[tuple[int, list[tuple[bytes, bytes]]]] = Future()
        chunks: queue.Queue[bytes | None] = queue.Queue()
        done = self.runtime.call(request, request.read(), lambda s, h: started.set_result((s, h)), chunks.put)
        done.add_done_callback(lambda f: f.exception() and not started.done() and started.set_exception(
            f.exception()))  # type: ignore[arg-type]
        status, headers = started.result()
        return httpx2.Response(status, headers=headers, stream=_SyncBody(chunks), request=request)


class AsyncTransport(httpx2.AsyncBaseTransport):
    def __init__(self, runtime: AppThread) -> None:
        self.runtime = runtime

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = loop.create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

        def on_start(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            loop.call_soon_threadsafe(lambda: started.done() or started.set_result((status, headers)))

        def on_chunk(chunk: bytes | None) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        def on_done(future: Future[None]) -> None:
            error = future.exception()
            if error is not None:
                loop.call_soon_threadsafe(lambda: started.done() or started.set_exception(error))

        self.runtime.call(request, await request.aread(), on_start, on_chunk).add_done_callback(on_done)
        status, headers = await started
        return httpx2.Response(status, headers=headers, stream=_AsyncBody(chunks), request=request)


def _settings(settings: Settings | None, overrides: dict[str, Any]) -> Settings:
    return settings.model_copy(update=overrides) if settings else Settings(**overrides)


class Client(openai.OpenAI):
    """An ``openai.OpenAI`` client whose server is Parley, in this process.

    ``parley.Client(upstream="http://localhost:8000/v1")`` takes the options of ``parley serve``
    (or a :class:`Settings`); with none, the embedded model answers.  ``close()`` stops it.
    """

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self.runtime = AppThread(_settings(settings, options))
        super().__init__(base_url="http://parley.local/v1", api_key="parley-in-process", max_retries=0,
                         http_client=httpx2.Client(transport=SyncTransport(self.runtime), timeout=None))

    def close(self) -> None:
        super().close()
        self.runtime.close()


class AsyncClient(openai.AsyncOpenAI):
    """An ``openai.AsyncOpenAI`` client whose server is Parley, in this process (see :class:`Client`)."""

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        self.runtime = AppThread(_settings(settings, options))
        super().__init__(base_url="http://parley.local/v1", api_key="parley-in-process", max_retries=0,
                         http_client=httpx2.AsyncClient(transport=AsyncTransport(self.runtime), timeout=None))

    async def close(self) -> None:
        await super().close()
        await asyncio.get_running_loop().run_in_executor(None, self.runtime.close)
