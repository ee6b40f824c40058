"""What background mode costs: the queue, the kept events, following and cancelling.

Starts the synthetic upstream (bench/upstream.py) and real ``parley serve`` processes on SQLite and on
PostgreSQL, and measures, each against a streamed foreground response of the same shape (200 tokens, as fast
as the upstream goes):

- per response, at 8 at once: wall time, Parley's CPU, and what is kept of its events (rows and bytes), for
  a foreground stream, a background stream its client follows, and a background response nobody follows
  (the case whose kept events are pure cost);
- time to the first token, one at a time: foreground stream against background stream (the queue's pickup);
- cancel: how long ``POST /cancel`` takes to return the response stopped, on the instance running it and
  (PostgreSQL) through another instance that does not run it.

    python bench/background.py                     # SQLite and the local PostgreSQL, about 2 minutes
    python bench/background.py --db sqlite --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from parley.testing.server import ParleyProcess  # noqa: E402
from run import cpu_seconds, model, pct, synthetic_upstream  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SHAPE = model(tokens=200)
SLOW = model(tps=200, tokens=4000)  # 20 s of text: stopped by a cancel long before


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        return await response.json()


async def _stream(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, str]:
    """Time to the first text delta, and the response id."""
    start, first, response_id = time.perf_counter(), 0.0, ""
    async with http.post(url, json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if not response_id and line.startswith(b"data: ") and b'"response.created"' in line:
                response_id = line.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()
            if not first and b'"response.output_text.delta"' in line:
                first = time.perf_counter() - start
    return first, response_id


async def _settled(http: aiohttp.ClientSession, base: str, ids: list[str]) -> None:
    left = set(ids)
    while left:
        for response_id in list(left):
            async with http.get(f"{base}/responses/{response_id}") as response:
                if (await response.json())["status"] not in ("queued", "in_progress"):
                    left.discard(response_id)
        if left:
            await asyncio.sleep(0.05)


async def _kept(db: str, ids: list[str]) -> tuple[int, int]:
    """Rows and bytes of kept events of these responses."""
    if db.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(db.split("///", 1)[1])
        marks = ",".join("?" * len(ids))
        rows, size = conn.execute(f"SELECT count(*), coalesce(sum(length(frames)), 0) FROM parley_response_events "
                                  f"WHERE response_id IN ({marks})", ids).fetchone()
        conn.close()
        return rows, size
    conn = await asyncpg.connect(db.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        row = await conn.fetchrow("SELECT count(*), coalesce(sum(octet_length(frames)), 0) FROM parley_response_events "
                                  "WHERE response_id = ANY($1)", ids)
    finally:
        await conn.close()
    return row[0], row[1]


async def per_response(base: str, db: str, pid: int, count: int) -> list[tuple[str, float, float, float, float]]:
    """(way, wall ms per response, Parley CPU ms per response, kept rows and bytes per response)."""
    rows = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        for way, body in (("foreground stream", {"stream": True}),
                          ("background stream, followed", {"stream": True, "background": True}),
                          ("background, never followed", {"background": True})):
            ids: list[str] = []
            gate = asyncio.Semaphore(8)

            async def one(body: dict[str, Any] = body) -> None:
                async with gate:
                    full = {"model": SHAPE, "input": "hi", **body}
                    if body.get("stream"):
                        ids.append((await _stream(http, f"{base}/responses", full))[1])
                    else:
                        ids.append((await _post(http, f"{base}/responses", full))["id"])

            await asyncio.gather(*(one() for _ in range(5)))  # warm
            ids.clear()
            cpu, start = cpu_seconds(pid), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            await _settled(http, base, ids)
            wall, used = time.perf_counter() - start, cpu_seconds(pid) - cpu
            kept_rows, kept_bytes = await _kept(db, ids)
            rows.append((way, wall / count * 1000, used / count * 1000, kept_rows / count, kept_bytes / count))
    return rows


async def first_token(base: str, count: int) -> list[tuple[str, float, float]]:
    out = []
    async with aiohttp.ClientSession() as http:
        for way, extra in (("foreground stream", {}), ("background stream", {"background": True})):
            times = [(await _stream(http, f"{base}/responses", {"model": SHAPE, "input": "hi", "stream": True,
                                                                 **extra}))[0] for _ in range(count)]
            out.append((way, pct(times, 50) * 1000, pct(times, 99) * 1000))
    return out


async def cancel_times(create_on: str, cancel_on: str, count: int) -> tuple[float, float]:
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            queued = await _post(http, f"{create_on}/responses", {"model": SLOW, "input": "hi", "background": True})
            while (await (await http.get(f"{cancel_on}/responses/{queued['id']}")).json())["status"] == "queued":
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            start = time.perf_counter()
            cancelled = await _post(http, f"{cancel_on}/responses/{queued['id']}/cancel", {})
            times.append(time.perf_counter() - start)
            assert cancelled["status"] == "cancelled", cancelled["status"]
    return pct(times, 50) * 1000, max(times) * 1000


@contextmanager
def _postgres() -> Iterator[str]:
    """A new database on the local PostgreSQL, dropped afterwards."""
    name = f"parley_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--count", type=int, default=200, help="responses per way")
    args = parser.parse_args(argv)
    with synthetic_upstream() as upstream_url:
        for kind in args.db.split(","):
            with ExitStack() as stack:
                db = f"sqlite:///{tempfile.mkdtemp()}/bench.db" if kind == "sqlite" else stack.enter_context(
                    _postgres())
                _measure(kind, db, upstream_url, args.count)
    return 0


def _measure(kind: str, db: str, upstream_url: str, count: int) -> None:
    common = ("--upstream", upstream_url, "--db", db, "--log-level", "warning")
    with ParleyProcess(*common) as parley:
        assert parley.process is not None
        print(f"\n### {kind}\n\n| way | wall ms / response | Parley CPU ms / response | kept rows / "
              "response | kept bytes / response |\n| --- | --- | --- | --- | --- |")
        for way, wall, cpu, rows, size in asyncio.run(per_response(parley.base_url, db, parley.process.pid, count)):
            print(f"| {way} | {wall:.2f} | {cpu:.2f} | {rows:.0f} | {size / 1024:.1f} KiB |")
        print("\n| time to first token, one at a time | p50 ms | p99 ms |\n| --- | --- | --- |")
        for way, p50, p99 in asyncio.run(first_token(parley.base_url, 50)):
            print(f"| {way} | {p50:.2f} | {p99:.2f} |")
        p50, worst = asyncio.run(cancel_times(parley.base_url, parley.base_url, 10))
        print(f"\ncancel on the instance running it: p50 {p50:.0f} ms, worst {worst:.0f} ms (10 cancels)")
        if kind != "sqlite":
            with ParleyProcess(*common, "--max-background-runs", "0") as other:
                p50, worst = asyncio.run(cancel_times(parley.base_url, other.base_url, 10))
            print(f"cancel through another instance: p50 {p50:.0f} ms, worst {worst:.0f} ms (10 cancels)")


if __name__ == "__main__":
    sys.exit(main())
