"""Tenant isolation: what one tenant's hostile uploads and searches cost another tenant of the same server.

A real ``parley serve`` with two API keys.  The quiet tenant runs stored creates and vector store searches
from ``--clients`` threads for ``--seconds``; a poller reads ``/health`` every 50 ms; the server's RSS is
sampled.  The run is done twice in one sitting: alone, then with the noisy tenant at the same time, which
adds a DOCX that inflates to 200 MB and a 15 MB text file (3.7 million tokens: indexed, under
``--max-file-tokens``) to a vector store, sends a DOCX that inflates to
1 GB as an ``input_file``, and searches with a 1,000-clause filter, over and over.  It prints the quiet
tenant's errors and latency percentiles, the slowest ``/health`` answer and the server's peak RSS for both
runs, and what became of the noisy tenant's requests.

    .venv/bin/python bench/tenants.py                        # SQLite, 4 clients, 60 s per run
    .venv/bin/python bench/tenants.py --db postgres          # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/tenants.py --smoke                # a few seconds, for the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from parley.testing import ParleyProcess, ScriptedBackend  # noqa: E402
from run import rss_kib  # noqa: E402  (bench/, the script's folder, is on the path)
from tests.files_fixtures import docx_bomb  # noqa: E402

QUIET, NOISY = "sk-quiet-tenant", "sk-noisy-tenant"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Watch:
    """The server's RSS and /health latency, sampled while a run goes."""

    def __init__(self, server: ParleyProcess) -> None:
        self.server, self.peak_kib, self.health_ms = server, 0, []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._rss), threading.Thread(target=self._health)]

    def _rss(self) -> None:
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.server.process.pid))
            time.sleep(0.02)

    def _health(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self.done.is_set():
                start = time.perf_counter()
                http.get(f"{self.server.url}/health")
                self.health_ms.append((time.perf_counter() - start) * 1000)
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


def quiet_tenant(server: ParleyProcess, store_id: str, clients: int, seconds: float) -> dict:
    """Creates and searches from ``clients`` threads: latencies (ms) and errors."""
    latencies: dict[str, list[float]] = {"create": [], "search": []}
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {QUIET}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
            i = 0
            while time.monotonic() < stop:
                kind = "create" if (i + n) % 2 == 0 else "search"
                start = time.perf_counter()
                try:
                    if kind == "create":
                        answer = http.post("/responses", json={"model": "m", "input": f"question {n}.{i}"})
                    else:
                        answer = http.post(f"/vector_stores/{store_id}/search", json={"query": "heron marsh"})
                    status = answer.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    if status == 200:
                        latencies[kind].append(elapsed)
                    else:
                        errors[f"{kind} {status}"] += 1
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": dict(errors)}


def noisy_tenant(server: ParleyProcess, seconds: float, text_mb: int, bomb_mb: int) -> dict:
    """The hostile tenant, for ``seconds``: what each of its requests came to."""
    outcomes: collections.Counter[str] = collections.Counter()
    stop = time.monotonic() + seconds
    rng = random.Random(5)
    words = ("the heron waits in the reeds of the marsh while the tide comes over the mudflat and the wind moves "
             "across the dunes towards the lagoon where egrets and pelicans feed in the shallow water").split()
    big_text = " ".join(rng.choice(words) for _ in range(text_mb * 200_000)).encode()  # about text_mb MB
    bomb = docx_bomb(bomb_mb)
    input_bomb = base64.b64encode(docx_bomb(bomb_mb * 5)).decode()
    wide = {"type": "or", "filters": [{"type": "eq", "key": f"k{i}", "value": i} for i in range(1000)]}
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {NOISY}"}, timeout=300) as http:
        store = http.post("/vector_stores", json={"name": "noisy"}).json()["id"]
        added_ids = {}
        for name, data in (("bomb.docx", bomb), ("big.txt", big_text)):
            uploaded = http.post("/files", files={"file": (name, data)}, data={"purpose": "assistants"}).json()
            added = http.post(f"/vector_stores/{store}/files", json={"file_id": uploaded["id"]})
            outcomes[f"add {name} ({len(data) / 1e6:.1f} MB): {added.status_code}"] += 1
            added_ids[name] = uploaded["id"]
        while time.monotonic() < stop:
            searched = http.post(f"/vector_stores/{store}/search", json={"query": "x", "filters": wide})
            outcomes[f"1,000-clause search: {searched.status_code}"] += 1
            sent = http.post("/responses", json={"model": "m", "input": [{"role": "user", "content": [
                {"type": "input_file", "filename": "b.docx", "file_data": f"data:{DOCX};base64,{input_bomb}"}]}]})
            outcomes[f"input_file bomb: {sent.status_code}"] += 1
        deadline = time.monotonic() + 600  # (its files' outcomes, once their indexing ends)
        while (files := http.get(f"/vector_stores/{store}/files").json()["data"]) and time.monotonic() < deadline \
                and any(entry["status"] == "in_progress" for entry in files):
            time.sleep(0.5)
        names = {uploaded_id: name for name, uploaded_id in added_ids.items()}
        for entry in files:
            error = entry.get("last_error")
            outcomes[f"{names.get(entry['id'], entry['id'])} ended {entry['status']}"
                     f"{': ' + error['message'] if error else ''}"] += 1
    return dict(outcomes)


def run(server: ParleyProcess, store_id: str, args: argparse.Namespace, noisy: bool) -> dict:
    with Watch(server) as watch:
        result: dict = {}
        noise = threading.Thread(target=lambda: result.update(noisy=noisy_tenant(
            server, args.seconds, args.text_mb, args.bomb_mb))) if noisy else None
        if noise:
            noise.start()
        result.update(quiet_tenant(server, store_id, args.clients, args.seconds))
        if noise:
            noise.join()
    result.update(peak_rss_mib=watch.peak_kib / 1024, health_max_ms=max(watch.health_ms, default=float("nan")),
                  health_p99_ms=percentile(watch.health_ms, 0.99))
    return result


def admin(sql: str) -> None:
    """One statement on PostgreSQL's admin database."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def database(kind: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp()}/tenants.db", None
    name = f"parley_bench_{secrets.token_hex(4)}"
    admin(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--text-mb", type=int, default=14)
    parser.add_argument("--bomb-mb", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="a few seconds and small files")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.seconds, args.text_mb, args.bomb_mb = 2, 3.0, 1, 5
    url, created = database(args.db)
    try:
        with ScriptedBackend() as backend, ParleyProcess(
                "--upstream", backend.url, "--db", url, "--api-keys", f"{QUIET}=quiet,{NOISY}=noisy") as server:
            with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {QUIET}"},
                              timeout=120) as http:
                uploaded = http.post("/files", files={"file": ("marsh.txt", b"Herons nest in the reeds of the "
                                                       b"marsh.")}, data={"purpose": "assistants"}).json()
                store_id = http.post("/vector_stores", json={"name": "quiet", "file_ids": [uploaded["id"]]}).json()["id"]
                while http.get(f"/vector_stores/{store_id}").json()["file_counts"]["in_progress"]:
                    time.sleep(0.05)
            alone = run(server, store_id, args, noisy=False)
            shared = run(server, store_id, args, noisy=True)
    finally:
        if created:
            admin(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
    rows = []
    for name, result in (("alone", alone), ("with the noisy tenant", shared)):
        for kind in ("create", "search"):
            done = result["latencies"][kind]
            rows.append({"run": name, "what": f"quiet {kind}", "count": len(done),
                         "p50_ms": round(percentile(done, 0.5), 1), "p99_ms": round(percentile(done, 0.99), 1)})
    print(f"tenant isolation on {args.db}, {args.clients} quiet clients, {args.seconds:g} s per run")
    print("| run | what | done | p50 | p99 |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['run']} | {row['what']} | {row['count']} | {row['p50_ms']} ms | {row['p99_ms']} ms |")
    for name, result in (("alone", alone), ("with the noisy tenant", shared)):
        print(f"{name}: quiet tenant's errors {sum(result['errors'].values())} {result['errors'] or ''}; "
              f"/health p99 {result['health_p99_ms']:.1f} ms, slowest {result['health_max_ms']:.1f} ms; "
              f"server peak RSS {result['peak_rss_mib']:.0f} MiB")
    print(f"the noisy tenant's requests: {json.dumps(shared.get('noisy', {}), indent=None)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "alone": alone, "shared": shared}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
