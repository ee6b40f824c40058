"""Time to the first token through Parley, of stored and unstored streams, against the upstream directly: one or
more checkouts side by side (each its own ``parley serve``, importing the checkout's ``src``), their rounds
interleaved so that a machine that slows down slows each of them alike.

    .venv/bin/python bench/first_token.py [--checkout PATH ...] [--db sqlite|postgres] [--rounds 6] [--requests 200]
    .venv/bin/python bench/first_token.py --folded [--checkout PATH ...] ...

Each round asks each server (and the upstream directly) ``--requests`` times in a row, one stream at a time, for
a 20-token answer from ``bench/upstream.py`` with 1 ms to its first token; a round's figure is the median time to
the first ``output_text.delta`` (directly: the first content chunk), and the p99 is of every request of every
round.  ``--db postgres`` gives each checkout a new database on the PostgreSQL at ``PARLEY_TEST_POSTGRES``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), dropped afterwards.

``--folded``: the same for non-streamed responses (the whole answer's latency, directly the whole completion's),
and the server's CPU milliseconds per response over each round (its user and system time in ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from run import Paths, model, synthetic_upstream  # noqa: E402

from parley.testing.server import ParleyProcess  # noqa: E402

ADMIN_URL = os.environ.get("PARLEY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _databases(names: list[str], create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def first_token(paths: Paths, url: str | None, store: bool, m: str) -> float:
    """Seconds to the first token of one stream: through Parley at ``url``, or directly when ``url`` is None."""
    start = time.perf_counter()
    if url is None:
        target, body = f"{paths.upstream}/chat/completions", {
            "model": m, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        marker = b'"content":"w'
    else:
        target, body = f"{url}/responses", {"model": m, "input": "hi", "stream": True, "store": store}
        marker = b'"type":"response.output_text.delta"'
    first = 0.0
    async with paths.http.post(target, json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if not first and marker in line:
                first = time.perf_counter() - start
    assert first, "the stream had no text"
    return first


async def folded(paths: Paths, url: str | None, store: bool, m: str) -> float:
    """Seconds to one whole non-streamed answer: through Parley at ``url``, or directly when ``url`` is None."""
    start = time.perf_counter()
    if url is None:
        target, body = f"{paths.upstream}/chat/completions", {"model": m, "messages": [{"role": "user", "content": "hi"}]}
    else:
        target, body = f"{url}/responses", {"model": m, "input": "hi", "store": store}
    async with paths.http.post(target, json=body) as response:
        response.raise_for_status()
        await response.read()
    return time.perf_counter() - start


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


def cpu_ms(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def measure(upstream: str, servers: dict[str, tuple[str, int]], rounds: int, requests: int,
                  whole: bool = False) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Each case's medians per round, (``whole``) its server's CPU milliseconds per response per round, and every
    time it measured (ms)."""
    paths = Paths(upstream, "")
    m = model(ttft_ms=1, tokens=20)
    ask = folded if whole else first_token
    cases = [("direct", None, False, None)] + [
        (f"{name}, {'stored' if store else 'store: false'}", url, store, pid)
        for name, (url, pid) in servers.items() for store in (True, False)]
    medians: dict[str, list[float]] = {case[0]: [] for case in cases}
    cpu: dict[str, list[float]] = {case[0]: [] for case in cases if case[3] is not None}
    every: dict[str, list[float]] = {case[0]: [] for case in cases}
    try:
        for _, url, store, _ in cases:  # warm: connections, caches
            for _ in range(20):
                await ask(paths, url, store, m)
        for _ in range(rounds):
            for name, url, store, pid in cases:
                used = cpu_ms(pid)
                times = [await ask(paths, url, store, m) for _ in range(requests)]
                medians[name].append(statistics.median(times) * 1000)
                every[name].extend(t * 1000 for t in times)
                if pid is not None:
                    cpu[name].append((cpu_ms(pid) - used) / requests)
    finally:
        await paths.http.close()
    return medians, cpu, every


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", action="append", type=Path,
                        help="a checkout whose src/ a server imports (repeat it; default: this one)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--folded", action="store_true", help="non-streamed answers: latency and CPU per response")
    args = parser.parse_args(argv)
    checkouts = [path.resolve() for path in args.checkout or [HERE.parent]]
    folder = Path(tempfile.mkdtemp())
    names = [f"parley_first_token_{os.getpid()}_{i}" for i in range(len(checkouts))]
    if args.db == "postgres":
        asyncio.run(_databases(names, create=True))
    try:
        with synthetic_upstream() as upstream, ExitStack() as stack:
            servers = {}
            for i, checkout in enumerate(checkouts):
                db = (f"sqlite:///{folder}/{i}.db" if args.db == "sqlite" else
                      ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{names[i]}")
                server = stack.enter_context(ParleyProcess(
                    "--upstream", upstream, "--db", db, "--log-level", "warning",
                    env={"PYTHONPATH": str(checkout / "src")}))
                servers[f"{checkout.name} ({i})"] = (server.base_url, server.process.pid)
            medians, cpu, every = asyncio.run(measure(upstream, servers, args.rounds, args.requests, args.folded))
    finally:
        if args.db == "postgres":
            asyncio.run(_databases(names, create=False))
    direct = statistics.median(medians["direct"])
    what = "non-streamed latency" if args.folded else "time to the first token"
    direct_p99 = p99(every["direct"])
    print(f"{what}, ms: the median of each round's median ({args.requests} requests), and the 99th percentile of "
          f"every request of every round, {args.db}\n")
    cpu_column = " CPU ms per response, rounds |" if args.folded else ""
    print("| server | rounds | median | added | p99 | added |" + cpu_column
          + "\n| --- | --- | --- | --- | --- | --- |" + (" --- |" if args.folded else ""))
    for name, values in medians.items():
        added = "" if name == "direct" else f"+{statistics.median(values) - direct:.2f}"
        added_p99 = "" if name == "direct" else f"+{p99(every[name]) - direct_p99:.2f}"
        used = f" {' '.join(f'{v:.3f}' for v in cpu.get(name, []))} |" if args.folded else ""
        print(f"| {name} | {' '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} | {added} | "
              f"{p99(every[name]):.2f} | {added_p99} |{used}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
