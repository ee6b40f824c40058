"""Parley's CPU per streamed token as the load grows: 1, 50, 400 and 1,000 streams at 50 tokens per second
each (a GPU server's pace), and 32 streams as fast as the upstream goes; with the frames per write at each
load (how many SSE events one write of the server carried, read from the HTTP chunks of a sample stream); and the
CPU per non-streamed response of 100 tokens (8 clients in a closed loop; other sizes with --folded-tokens), which
folds the same events.

    .venv/bin/python bench/stream_cpu.py [--streams 1,50,400,1000] [--seconds 8] [--json out.json]
    .venv/bin/python bench/stream_cpu.py --streams "" --folded-tokens 1,20,100   # what a folded chunk costs

Each load runs for ``--seconds`` (streams of 100 tokens, started again as they end) against bench/upstream.py,
through a real ``parley serve`` (SQLite store, ``store`` on); the CPU is Parley's process time over the run,
divided by the tokens the clients received.  The driver, the upstream and Parley share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from run import Paths, cpu_seconds, model, saturate, synthetic_upstream  # noqa: E402

from parley.testing.server import ParleyProcess  # noqa: E402


async def frames_per_write(paths: Paths, m: str) -> float:
    """Events per HTTP chunk (per server write) of one stream: read from the raw socket's chunked body."""
    host, port = paths.parley.removeprefix("http://").split("/", 1)[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({"model": m, "input": "hi", "stream": True}).encode()
    writer.write(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await reader.readuntil(b"\r\n\r\n")
    writes = events = 0
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        data = await reader.readexactly(size + 2)
        writes += 1
        events += data.count(b"\nevent: ") + data.startswith(b"event: ")
    writer.close()
    return events / max(writes, 1)


async def load(paths: Paths, pid: int, streams: int, seconds: float, paced: bool, tokens: int = 100) -> dict:
    m = model(tps=50 if paced else 0, tokens=tokens)
    streamed = 0

    async def one() -> None:
        nonlocal streamed
        _, tokens = await paths.stream("parley", m)
        streamed += tokens

    await paths.fresh()
    sampled: list[float] = []

    async def sample_frames() -> None:  # one stream more, in the middle of the run
        await asyncio.sleep(seconds / 2)
        sampled.append(await frames_per_write(paths, m))

    before = cpu_seconds(pid)
    await asyncio.gather(saturate(seconds, streams, one), sample_frames())
    used = cpu_seconds(pid) - before
    return {"streams": streams, "paced_tokens_per_s": 50 if paced else None, "tokens_per_stream": tokens,
            "tokens": streamed,
            "cpu_us_per_token": round(used / max(streamed, 1) * 1e6, 1), "events_per_write": round(sampled[0], 2)}


async def folded(paths: Paths, pid: int, seconds: float, tokens: int = 100) -> dict:
    """Non-streamed responses of ``tokens`` tokens (the upstream streams one chunk per token), 8 clients in a closed
    loop: Parley's CPU per response."""
    m = model(tokens=tokens)
    await paths.fresh()
    before = cpu_seconds(pid)
    per_second = await saturate(seconds, 8, lambda: paths.create("parley", m))
    used = cpu_seconds(pid) - before
    return {"non_streamed_clients": 8, "tokens_per_response": tokens, "responses": round(per_second * seconds),
            "cpu_us_per_response": round(used / max(per_second * seconds, 1) * 1e6)}


async def measure(upstream: str, parley: ParleyProcess, loads: list[int], seconds: float,
                  tokens: int = 100, folded_tokens: tuple[int, ...] = (100,)) -> list[dict]:
    paths = Paths(upstream, parley.base_url)
    assert parley.process is not None
    try:
        results = []
        for streams in loads:
            results.append(await load(paths, parley.process.pid, streams, seconds, paced=True, tokens=tokens))
            print(json.dumps(results[-1]), flush=True)
        if loads:
            results.append(await load(paths, parley.process.pid, 32, seconds, paced=False, tokens=tokens))
            print(json.dumps(results[-1]), flush=True)
        for count in folded_tokens:
            results.append(await folded(paths, parley.process.pid, seconds, count))
            print(json.dumps(results[-1]), flush=True)
        return results
    finally:
        await paths.http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,50,400,1000", help="paced loads; empty: the non-streamed row alone")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per stream (a paced stream of 1,000 "
                        "lasts 20 s: a run lasts at least that long)")
    parser.add_argument("--folded-tokens", default="100", help="tokens of the non-streamed responses, one row each "
                        "(their difference is what one folded chunk costs; empty: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with synthetic_upstream() as upstream:
        with ParleyProcess("--upstream", upstream, "--db", f"sqlite:///{tempfile.mkdtemp()}/bench.db",
                           "--log-level", "warning") as parley:
            results = asyncio.run(measure(upstream, parley, [int(n) for n in args.streams.split(",") if n],
                                          args.seconds, args.tokens,
                                          tuple(int(n) for n in args.folded_tokens.split(",") if n)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
