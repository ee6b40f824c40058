"""Fuzz a real ``parley serve`` over HTTP: N generated requests (hypothesis), none may get a 5xx, and the
server stays healthy throughout.

Starts the scripted backend and ``parley serve`` (SQLite by default, ``--db`` for PostgreSQL) on loopback.
Each example sends one create request, built from the SDK's ``ResponseCreateParams`` shapes or near-valid,
with one value anywhere replaced by a hostile one (a wrong type, a huge string or number, nesting past any
limit), or junk JSON, or raw bytes, and one GET to a retrieve, input_items or other path.  Every 250
examples ``/health`` must answer 200 with the store ok.  Prints the requests sent, the status codes seen,
Parley's RSS before and after, and any failure.

    .venv/bin/python bench/fuzz.py --examples 10000     # 20,000 requests
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import HypothesisWarning

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from parley.testing import ParleyProcess, ScriptedBackend  # noqa: E402
from run import rss_kib  # noqa: E402  (bench/, the script's folder, is on the path)
from tests.fuzz.strategies import GET_PATHS, http_body  # noqa: E402


def main() -> int:
    warnings.filterwarnings("ignore", category=HypothesisWarning)  # the huge values make long reprs, on purpose
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of the store (default: a new SQLite file)")
    args = parser.parse_args()
    statuses: collections.Counter[int] = collections.Counter()
    failures: list[str] = []
    db = args.db or f"sqlite:///{tempfile.mkdtemp()}/fuzz.db"
    with ScriptedBackend() as backend, ParleyProcess("--upstream", backend.url, "--db", db) as server:
        assert server.process is not None
        rss_before = rss_kib(server.process.pid) / 1024
        client = httpx.Client(base_url=server.url, timeout=60)
        examples = 0

        def send(method: str, path: str, **kwargs: object) -> None:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{response.status_code} for {method} {path}: {response.text[:300]}")

        @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(request=http_body, path=GET_PATHS)
        def property_no_5xx(request, path) -> None:
            nonlocal examples
            kind, payload = request
            content = json.dumps(payload).encode() if kind == "json" else payload
            send("POST", "/v1/responses", content=content, headers={"content-type": "application/json"})
            send("GET", path)
            examples += 1
            if examples % 250 == 0:
                health = client.get("/health")
                if health.status_code != 200 or health.json().get("store") != "ok":
                    failures.append(f"unhealthy after {examples} examples: {health.status_code} {health.text}")
            if failures:
                raise AssertionError(failures[0])

        start = time.perf_counter()
        try:
            property_no_5xx()
        except AssertionError:
            pass
        elapsed = time.perf_counter() - start
        health = client.get("/health")
        rss_after = rss_kib(server.process.pid) / 1024
    sent = sum(statuses.values())
    print(f"{sent} requests in {elapsed:.0f} s; status codes: {dict(sorted(statuses.items()))}; "
          f"health at the end: {health.status_code} {health.text}; Parley RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    print("no 5xx" if not failures else f"FAILED: {failures[0]}")
    return 0 if not failures and health.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
