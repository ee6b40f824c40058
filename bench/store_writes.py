"""Stored responses per second through the store alone, at 1, 8 and 32 concurrent writers.

Each writer stores completed responses (one input item, one output message, its facts and usage counts, all
created now, so writers share usage rows as a busy server's do) through ``SqlStore.create``, the final write of
every stored response, for ``--seconds``; the figure is responses written per second, their mean and p99
latency, and this process's CPU per response (the store's Python side: statement building, driver, threads).

    .venv/bin/python bench/store_writes.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/store_writes.py --db sqlite --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from parley.store import StoredResponse, open_store  # noqa: E402
from parley.store.base import ResponseFacts  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
_ids = itertools.count()


def record(tenant: str) -> StoredResponse:
    n = next(_ids)
    rid = f"resp_write{n:012d}{random.randrange(1 << 30):08x}"
    question, answer = f"what is the boiling point of water, question {n}?", "It boils at 100 °C at sea level. " * 4
    now = time.time()
    body = {"id": rid, "object": "response", "created_at": int(now), "status": "completed", "model": "bench-model",
            "output": [{"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": answer, "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 40, "total_tokens": 52}}
    trace = {"total_ms": 3.0, "model_ms": 2.0, "tool_ms": 0.0, "parley_ms": 1.0,
             "steps": [{"kind": "model", "start_ms": 0.5, "ms": 2.0, "messages": 1, "items": []}]}
    return StoredResponse(
        id=rid, created_at=now, status="completed", tenant=tenant, response_json=json.dumps(body),
        messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        input_items=[{"id": f"msg_in_{rid}", "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": question}]}],
        output_ids=[f"msg_{rid}"],
        facts=ResponseFacts(model="bench-model", duration_ms=3.0, input_tokens=12, output_tokens=40,
                            search_text=f"{question}\n{answer}", trace=json.dumps(trace)))


async def measure(url: str, writers: int, seconds: float) -> dict[str, float]:
    store = await open_store(url)
    await store.migrate()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def writer(tenant: str) -> None:
        while time.perf_counter() < stop:
            one = record(tenant)
            start = time.perf_counter()
            await store.create(one)
            latencies.append(time.perf_counter() - start)

    try:
        await asyncio.gather(*(writer("") for _ in range(min(writers, 2))))  # warm: connections, statements
        latencies.clear()
        stop = time.perf_counter() + seconds
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(writer("") for _ in range(writers)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await store.close()
    latencies.sort()
    return {"per_s": len(latencies) / wall, "mean_ms": statistics.fmean(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "cpu_us": cpu / len(latencies) * 1e6}


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both, comma-separated")
    parser.add_argument("--writers", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    print("| store | writers | responses/s | mean ms | p99 ms | store CPU µs / response |")
    print("| --- | --- | --- | --- | --- | --- |")
    for db in args.db.split(","):
        for writers in (int(w) for w in args.writers.split(",")):
            database = f"parley_bench_writes_{random.randrange(1 << 32):08x}"
            if db == "postgres":
                asyncio.run(_admin(f'CREATE DATABASE "{database}"'))
                url = ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + database
            else:
                url = f"sqlite:///{tempfile.mkdtemp()}/writes.db"
            try:
                figures = asyncio.run(measure(url, writers, args.seconds))
            finally:
                if db == "postgres":
                    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            name = "PostgreSQL" if db == "postgres" else "SQLite"
            print(f"| {name} | {writers} | {figures['per_s']:.0f} | {figures['mean_ms']:.2f} | "
                  f"{figures['p99_ms']:.2f} | {figures['cpu_us']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
