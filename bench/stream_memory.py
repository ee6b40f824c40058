"""Parley's memory per open stream: N slow streams at once (an upstream giving 2 tokens per second, 10 tokens),
Parley's RSS before and at its peak, and with ``--breakdown`` what the Python heap holds while they are all
open, by the line that allocated it (tracemalloc in the server from just before the streams, which slows it:
the RSS figure of a breakdown run is not the one to quote).

    .venv/bin/python bench/stream_memory.py [--streams 9800] [--tokens 10] [--no-store] [--breakdown 25] \\
        [--json out.json]

``kib_per_stream`` is the peak's; ``kib_per_stream_once_open`` the RSS once every stream has had its first token.
With ``store`` on, the peak mixes phases (streams that finished wait for their final row beside those that
stream); ``--no-store`` measures streams that are all in their streaming phase.

Each stream holds a client connection and an upstream connection in Parley, so the file descriptors one
process may hold bound N (``ulimit -n``; 20,000 here allows about 9,800).  A run of 9,800 leaves as many
loopback ports in TIME_WAIT for a minute: a second run started sooner runs out of ports (its streams fail).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from run import Paths, model, open_files_limit, rss_kib, synthetic_upstream  # noqa: E402

from parley.testing.server import ParleyProcess  # noqa: E402

# Loaded by the server through PYTHONPATH with --breakdown: the first SIGUSR1 (before the streams) starts tracemalloc,
# the second writes what was allocated since and is still held, by the line that allocated it, where
# PARLEY_BENCH_HEAP says.
SITECUSTOMIZE = '''
import os, signal, tracemalloc

def _dump(signum, frame):
    if not tracemalloc.is_tracing():  # the first signal: trace from now on
        tracemalloc.start(30)
        return
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    with open(os.environ["PARLEY_BENCH_HEAP"] + ".part", "w") as out:
        for stat in snapshot.statistics("traceback"):
            frames = list(reversed(stat.traceback))  # the most recent call first
            ours = next((f for f in frames if "/parley/" in f.filename), None)
            out.write(f"{stat.size}\\t{stat.count}\\t{frames[0].filename}:{frames[0].lineno}\\t"
                      f"{ours.filename + ':' + str(ours.lineno) if ours else '-'}\\n")
    os.replace(os.environ["PARLEY_BENCH_HEAP"] + ".part", os.environ["PARLEY_BENCH_HEAP"])

signal.signal(signal.SIGUSR1, _dump)
'''


async def hold(paths: Paths, pid: int, count: int, heap: Path | None, length: int = 10, store: bool = True) -> dict:
    """``count`` slow streams at once, after one stream more; the heap's growth written (``heap``) once every
    stream has begun."""
    m = model(tps=2, tokens=length)  # each stream stays open about length / 2 s
    await paths.stream("parley", model(tokens=10))  # (what the first stream loads is not any stream's memory)
    if heap is not None:
        os.kill(pid, signal.SIGUSR1)
    baseline, peak, begun, stop = rss_kib(pid), 0, 0, False
    when_open = 0  # the RSS once every stream has had its first token (the peak may come before, as they start)

    async def one() -> int:
        nonlocal begun
        tokens = 0
        async with paths.http.post(f"{paths.parley}/responses", json={"model": m, "input": "hi", "stream": True,
                                                                      "store": store}) \
                as response:
            response.raise_for_status()
            async for line in response.content:
                if b'"type":"response.output_text.delta"' in line:
                    tokens += 1
                    if tokens == 1:
                        begun += 1
        return tokens

    async def sample() -> None:
        nonlocal peak, when_open
        dumped = heap is None
        while not stop:
            now = rss_kib(pid)
            peak = max(peak, now)
            if begun >= count:
                when_open = when_open or now
                if not dumped:
                    os.kill(pid, signal.SIGUSR1)
                    dumped = True
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    stop = True
    await sampler
    errors = sum(1 for r in results if isinstance(r, BaseException) or r != length)
    return {"streams": count, "errors": errors, "baseline_mib": round(baseline / 1024, 1),
            "peak_mib": round(peak / 1024, 1), "kib_per_stream": round((peak - baseline) / count, 1),
            "kib_per_stream_once_open": round((when_open - baseline) / count, 1) if when_open else None}


def _rows(heap: Path) -> list[tuple[int, int, str, str]]:
    """The heap file's rows: bytes, blocks, the allocating line, and the innermost Parley line that led to it."""
    deadline = time.monotonic() + 60
    while not heap.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the server wrote no heap snapshot")
        time.sleep(0.1)
    rows = []
    for line in heap.read_text().splitlines():
        size, blocks, where, ours = line.split("\t")
        rows.append((int(size), int(blocks), where, ours))
    return rows


def _short(where: str) -> str:
    return where.split("site-packages/")[-1].split("/src/")[-1]


def breakdown(heap: Path, count: int, top: int, column: int = 2) -> list[dict]:
    """The lines that hold the most of the heap, per stream: by the line that allocated it (``column`` 2), or by
    the innermost line of Parley's own code on the way to it (3: what Parley asked a library to hold)."""
    totals: dict[str, list[int]] = {}
    for row in _rows(heap):
        total = totals.setdefault(_short(row[column]), [0, 0])
        total[0] += row[0]
        total[1] += row[1]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"where": where, "bytes_per_stream": round(size / count), "blocks_per_stream": round(blocks / count, 1)}
            for where, (size, blocks) in ranked]


def by_package(heap: Path, count: int) -> dict[str, int]:
    """Bytes per stream the heap grew by, by the package (or the standard library) that allocated them."""
    totals: dict[str, int] = {}
    for size, _, where, _ in _rows(heap):
        path = where.rsplit(":", 1)[0]
        package = (path.split("site-packages/")[1].split("/")[0] if "site-packages/" in path else
                   "parley" if "/src/parley/" in path else "standard library" if "/lib/python3" in path else "other")
        totals[package] = totals.get(package, 0) + size
    return {name: round(size / count) for name, size in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=9800)
    parser.add_argument("--breakdown", type=int, default=0, metavar="LINES",
                        help="also the LINES lines that hold the most of the heap while every stream is open")
    parser.add_argument("--tokens", type=int, default=10, help="tokens per stream, 2 a second (10: about 5 s; "
                        "40: every stream is open before the first ends)")
    parser.add_argument("--no-store", action="store_true", help="streams with store: false (no row written)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    env, heap = {}, None
    if args.breakdown:
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
        heap = folder / "heap.tsv"
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])),
               "PARLEY_BENCH_HEAP": str(heap)}
    with synthetic_upstream() as upstream:
        with ParleyProcess("--upstream", upstream, "--db", f"sqlite:///{folder}/bench.db", "--log-level", "warning",
                           env=env) as parley:
            assert parley.process is not None
            count = min(args.streams, (open_files_limit(parley.process.pid) - 400) // 2)

            async def measure() -> dict:
                paths = Paths(upstream, parley.base_url)
                try:
                    return await hold(paths, parley.process.pid, count, heap,  # type: ignore[union-attr]
                                      args.tokens, not args.no_store)
                finally:
                    await paths.http.close()

            result = asyncio.run(measure())
            if heap is not None:
                result["heap_by_package"] = by_package(heap, count)
                result["heap"] = breakdown(heap, count, args.breakdown)
                result["heap_by_parley_line"] = breakdown(heap, count, args.breakdown, column=3)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
