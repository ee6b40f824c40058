"""The console's pages with 100,000 stored responses: how long each page takes to load.

Fills a fresh store (SQLite, and PostgreSQL when given) with N stored responses of two tenants, spread over 30
days (five models, about 5 % failed, an MCP call in every tenth), each with its input item, timeline and facts,
written through the store's own insert; then starts a real ``parley serve`` on it and times each console page
over HTTP (the whole HTML, server-side rendering included) as a tenant and as an admin.  Target: every page
under 200 ms.

    python bench/console.py                  # SQLite, 100,000 responses
    python bench/console.py --postgres       # and PostgreSQL (a new database on 127.0.0.1:5432, dropped after)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from parley.store import StoredResponse, open_store  # noqa: E402
from parley.store.base import ResponseFacts  # noqa: E402
from parley.testing.server import ParleyProcess  # noqa: E402

MODELS = ["llama-3.1-8b", "qwen2.5-7b", "gpt-4o-mini", "mistral-small", "smollm2-135m-instruct"]
WORDS = ("what how why the capital boiling point weather invoice summary translate refactor python test deploy "
         "database latency error budget search paper quarterly revenue").split()
DAY = 86400.0


def one(n: int, now: float, rng: random.Random) -> StoredResponse:
    rid = f"resp_bench{n:010d}"
    created = now - rng.random() * 30 * DAY
    status = rng.choices(["completed", "failed", "incomplete"], [94, 5, 1])[0]
    error = rng.choice(["server_error", "rate_limit_exceeded", "invalid_prompt"]) if status == "failed" else None
    question = " ".join(rng.choice(WORDS) for _ in range(12)) + f" #{n}"
    answer = " ".join(rng.choice(WORDS) for _ in range(60))
    model = rng.choice(MODELS)
    output = []
    steps = [{"kind": "model", "start_ms": 1.0, "ms": 300.0, "messages": 1, "items": []}]
    if n % 10 == 0:
        output.append({"id": f"mcp_{n}", "type": "mcp_call", "server_label": "tools", "name": "lookup",
                       "arguments": '{"q": "x"}', "output": "result " * 20, "status": "completed"})
        steps.append({"kind": "tool", "start_ms": 301.0, "ms": 120.0, "item": f"mcp_{n}"})
    output.append({"id": f"msg_{n}", "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": answer, "annotations": []}]})
    body = {"id": rid, "object": "response", "created_at": int(created), "status": status, "model": model,
            "output": output, "error": {"code": error, "message": "failed"} if error else None,
            "usage": {"input_tokens": 40, "output_tokens": 80, "total_tokens": 120}}
    duration = rng.lognormvariate(6.5, 0.8)
    trace = {"total_ms": duration, "model_ms": duration * 0.8, "tool_ms": 0.0, "parley_ms": duration * 0.2,
             "steps": steps}
    return StoredResponse(
        id=rid, created_at=created, status=status, tenant="alice" if (n // 10) % 2 else "bob",
        response_json=json.dumps(body),
        messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        input_items=[{"id": f"msg_in_{n}", "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": question}]}],
        facts=ResponseFacts(model=model, duration_ms=duration, input_tokens=40, output_tokens=80, error_code=error,
                            search_text=f"{question}\n{answer}", trace=json.dumps(trace)))


async def fill(url: str, count: int) -> None:
    store = await open_store(url)
    rng, now = random.Random(7), time.time()
    start = time.perf_counter()
    try:
        batch = 1000
        for first in range(0, count, batch):
            inserts = [store.inserter(one(n, now, rng)) for n in range(first, min(first + batch, count))]

            def write(conn, inserts=inserts) -> None:
                for insert in inserts:
                    insert(conn)

            await store.run(write)
        while await store.index_text():  # (what the server's indexer does as responses end)
            pass
    finally:
        await store.close()
    print(f"stored {count:,} responses in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def pages(client: httpx.Client, sample_id: str) -> dict[str, str]:
    recent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3 * DAY))
    return {
        "list, first page": "/console/responses",
        "list, status failed": "/console/responses?status=failed",
        "list, one model": f"/console/responses?model={quote(MODELS[2])}",
        "list, last 3 days": f"/console/responses?since={recent}",
        "list, text found often": "/console/responses?q=boiling",
        "list, text found once": "/console/responses?q=%2377777",
        "list, text found nowhere": "/console/responses?q=zebra",
        "list, live refresh": "/console/responses?fragment=1",
        "list, page 20 (cursor)": "",  # filled in by walking
        "response page (with MCP call)": f"/console/responses/{sample_id}",
        "overview, 24h": "/console/overview?range=24h",
        "overview, 30d": "/console/overview?range=30d",
    }


def deep_page(client: httpx.Client, depth: int) -> str:
    path = "/console/responses"
    for _ in range(depth - 1):
        html = client.get(path).text
        marker = 'id="older" href="'
        path = html[html.index(marker) + len(marker):].split('"', 1)[0].replace("&amp;", "&")
    return path


def measure(server: ParleyProcess, key: str, runs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    with httpx.Client(base_url=server.url, cookies={"parley_console_key": key}, timeout=60) as client:
        sample = "resp_bench0000077770" if key == "sk-alice" else "resp_bench0000077780"
        targets = pages(client, sample)
        targets["list, page 20 (cursor)"] = deep_page(client, 20)
        for name, path in targets.items():
            client.get(path).raise_for_status()  # warm
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                reply = client.get(path)
                times.append((time.perf_counter() - start) * 1000)
                reply.raise_for_status()
            timings[name] = times
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10, help="loads of each page")
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="also on PostgreSQL: a new database made through this admin URL, dropped after")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)
    urls = [] if args.skip_sqlite else [f"sqlite:///{tempfile.mkdtemp()}/console.db"]
    database = f"parley_bench_console_{random.randrange(1 << 32):08x}"
    if args.postgres:
        asyncio.run(_admin(args.postgres, f'CREATE DATABASE "{database}"'))
        urls.append(args.postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + database)
    print("| store | viewer | page | p50 ms | max ms |\n| --- | --- | --- | --- | --- |")
    try:
        for url in urls:
            run_one(url, args)
    finally:
        if args.postgres:
            asyncio.run(_admin(args.postgres, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return 0


def run_one(url: str, args: argparse.Namespace) -> None:
    asyncio.run(fill(url, args.count))
    store = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    with ParleyProcess("--upstream", "http://127.0.0.1:9/v1", "--db", url, "--log-level", "warning",
                       "--api-keys", "sk-alice=alice,sk-bob-0000=bob", "--admin-keys", "sk-root-0000") as server:
        for viewer, key in (("tenant", "sk-alice"), ("admin", "sk-root-0000")):
            for name, times in measure(server, key, args.runs).items():
                print(f"| {store} | {viewer} | {name} | {statistics.median(times):.1f} | {max(times):.1f} |",
                      flush=True)


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
