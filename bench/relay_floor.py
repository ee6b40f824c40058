"""What relaying a streamed answer costs with no Responses logic at all: the floor under Parley's CPU per token
for as long as each token passes through aiohttp (the upstream), a task and uvicorn (the client).

A bare ASGI app, served by uvicorn as Parley is (uvloop, httptools), answers ``POST /v1/responses`` by streaming
``POST /chat/completions`` from ``bench/upstream.py`` through aiohttp and writing, per upstream read, one
``response.output_text.delta`` frame per chunk.  Four ways:

- ``raw``: the frames are one constant, repeated per ``data:`` line the read held: no parsing at all, only the
  I/O path (aiohttp's read, the task's wake-up, uvicorn's send);
- ``lean``: what ``raw`` does, with the upstream read by a bare httptools protocol that wakes the task, in
  place of aiohttp (the design of :mod:`parley.backends.http1`);
- ``parsed``: lines split, each chunk parsed with orjson, a frame built from its text with a running sequence
  number, as the least a Python relay does per token;
- ``callbacks``: what ``parsed`` does, with no aiohttp, uvicorn or task in the way: a bare HTTP/1.1 server and
  client on uvloop, whose upstream protocol's ``data_received`` parses and writes the frames straight to the
  client's transport (the design a relay outside the task would have, here in Python).

Parley's own figure, from the same loads, is in the same table (``bench/stream_cpu.py``'s load).

    .venv/bin/python bench/relay_floor.py [--streams 400] [--seconds 8] [--ways raw,lean] [--no-parley]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from run import Paths, free_port, synthetic_upstream  # noqa: E402
from stream_cpu import load  # noqa: E402

from parley.testing.server import ParleyProcess  # noqa: E402

FRAME = (b'event: response.output_text.delta\ndata: {"content_index":0,"delta":"w ","item_id":"msg_0",'
         b'"logprobs":[],"output_index":0,"sequence_number":0,"type":"response.output_text.delta"}\n\n')
TEXT_FRAME = (b'event: response.output_text.delta\ndata: {"content_index":0,"delta":%s,"item_id":"msg_0",'
              b'"logprobs":[],"output_index":0,"sequence_number":%d,"type":"response.output_text.delta"}\n\n')
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


def framed(lines: list[bytes], sequence: int) -> tuple[bytes, int]:
    """The text delta frames of the chunks among ``lines``, numbered from ``sequence``; the next number."""
    frames = []
    for line in lines:
        if line.startswith(b"data: {"):
            chunk = orjson.loads(line[6:])
            choices = chunk.get("choices")
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                frames.append(TEXT_FRAME % (orjson.dumps(text), sequence))
                sequence += 1
    return b"".join(frames), sequence


def relay_app(upstream: str, way: str):
    session: aiohttp.ClientSession | None = None

    async def app(scope, receive, send) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":  # (the readiness probe)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        chat = {"model": request["model"], "stream": True, "messages": [{"role": "user", "content": "hi"}],
                "stream_options": {"include_usage": True}}
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        sequence, rest = 0, b""
        if way == "lean":
            await _lean_relay(upstream, chat, send)
            return
        async with session.post(f"{upstream}/chat/completions", json=chat) as response:
            async for data in response.content.iter_any():
                if way == "raw":
                    out = FRAME * data.count(b"data: {")
                else:
                    lines = (rest + data).split(b"\n")
                    rest = lines.pop()
                    out, sequence = framed(lines, sequence)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


class _LeanConnection(asyncio.Protocol):
    """An upstream connection read by httptools, its body handed to one waiting task (the I/O path of ``raw``
    without aiohttp)."""

    def __init__(self) -> None:
        import httptools
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.waiter: asyncio.Future | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self._wake()

    async def read(self) -> bytes | None:
        while not self.body:
            if self.done:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        data = b"".join(self.body)
        self.body.clear()
        return data


_idle: list[_LeanConnection] = []


async def _lean_relay(upstream: str, chat: dict, send) -> None:
    host, port = upstream.removeprefix("http://").split("/", 1)[0].split(":")
    if _idle:
        connection = _idle.pop()
        connection.parser = __import__("httptools").HttpResponseParser(connection)
        connection.done = False
    else:
        _, connection = await asyncio.get_running_loop().create_connection(_LeanConnection, host, int(port))
    body = orjson.dumps(chat)
    connection.transport.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json"
                               b"\r\ncontent-length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    while (data := await connection.read()) is not None:
        out = FRAME * data.count(b"data: {")
        if out:
            await send({"type": "http.response.body", "body": out, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    if not connection.transport.is_closing():
        _idle.append(connection)


class _Upstream(asyncio.Protocol):
    """One streamed upstream answer read by callbacks: HTTP/1.1 chunked body, SSE lines, a frame per chunk
    written at once to the client's transport (no task wakes per token)."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client, self.buffer, self.head, self.sequence, self.rest = client, b"", True, 0, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.buffer, self.head = self.buffer[end + 4:], False
        body = []
        while True:  # whole chunks of the chunked body
            line = self.buffer.find(b"\r\n")
            if line < 0:
                break
            size = int(self.buffer[:line].split(b";")[0], 16)
            if len(self.buffer) < line + 2 + size + 2:
                break
            body.append(self.buffer[line + 2:line + 2 + size])
            self.buffer = self.buffer[line + 2 + size + 2:]
            if size == 0:
                self.client.write(b"0\r\n\r\n")
                return
        lines = (self.rest + b"".join(body)).split(b"\n")
        self.rest = lines.pop()
        out, self.sequence = framed(lines, self.sequence)
        if out:
            self.client.write(b"%x\r\n%s\r\n" % (len(out), out))


class _Client(asyncio.Protocol):
    """The client's side: a bare HTTP/1.1 server (Content-Length bodies, keep-alive), one request at a time."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split("/", 1)[0].split(":")
        self.host, self.port, self.buffer = host, int(port), b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode().lower()
        length = int(head.split("content-length:")[1].split("\r\n")[0]) if "content-length:" in head else 0
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
        if head.startswith("get"):
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return
        request = json.loads(body)
        chat = json.dumps({"model": request["model"], "stream": True, "stream_options": {"include_usage": True},
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
        asyncio.ensure_future(self._ask(chat))

    async def _ask(self, chat: bytes) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: _Upstream(self.transport), self.host, self.port)
        transport.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(chat), chat))


def serve_callbacks(upstream: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _Client(upstream), "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


class Relay:
    """The bare relay in a process of its own (the CPU measured is that process's)."""

    def __init__(self, upstream: str, way: str) -> None:
        self.port = free_port()
        self.args = [sys.executable, __file__, "serve", "--upstream", upstream, "--way", way, "--port",
                     str(self.port)]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Relay:
        self.process = subprocess.Popen(self.args)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


async def measure(upstream: str, base_url: str, pid: int, loads: list[int], seconds: float,
                  tokens: int) -> list[dict]:
    paths = Paths(upstream, base_url)
    try:
        out = [await load(paths, pid, streams, seconds, paced=True, tokens=tokens) for streams in loads]
        out.append(await load(paths, pid, 32, seconds, paced=False, tokens=tokens))
        return out
    finally:
        await paths.http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="measure", choices=["measure", "serve"])
    parser.add_argument("--streams", default="400")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per stream")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ways", default="raw,lean,parsed,callbacks", help="the bare relays to measure")
    parser.add_argument("--no-parley", action="store_true", help="measure only the bare relays")
    parser.add_argument("--upstream", help="(serve)")
    parser.add_argument("--way", choices=["raw", "lean", "parsed", "callbacks"], help="(serve)")
    parser.add_argument("--port", type=int, help="(serve)")
    args = parser.parse_args(argv)
    if args.what == "serve":
        if args.way == "callbacks":
            serve_callbacks(args.upstream, args.port)
            return 0
        import uvicorn
        uvicorn.run(relay_app(args.upstream, args.way), host="127.0.0.1", port=args.port, loop="uvloop",
                    http="httptools", log_level="warning", access_log=False)
        return 0
    loads = [int(n) for n in args.streams.split(",") if n]
    results = []
    with synthetic_upstream() as upstream:
        for way in args.ways.split(","):
            with Relay(upstream, way) as relay:
                for row in asyncio.run(measure(upstream, relay.base_url, relay.process.pid, loads, args.seconds,
                                               args.tokens)):
                    results.append({"server": f"relay ({way})", **row})
                    print(json.dumps(results[-1]), flush=True)
        if not args.no_parley:
            with ParleyProcess("--upstream", upstream, "--db", f"sqlite:///{tempfile.mkdtemp()}/bench.db",
                               "--log-level", "warning") as parley:
                assert parley.process is not None
                for row in asyncio.run(measure(upstream, parley.base_url, parley.process.pid, loads, args.seconds,
                                               args.tokens)):
                    results.append({"server": "parley", **row})
                    print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
