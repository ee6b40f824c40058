"""Fuzz Parley's HTTP edge: N generated requests (hypothesis), none may get a 5xx.

Runs the app in process in front of the scripted backend; every example sends one create
request (near-valid JSON, junk JSON, or raw bytes) and one GET to a retrieve, input_items or
other path.  Prints the number of requests sent and any failure.

    .venv/bin/python bench/fuzz.py --examples 5000      # 10,000 requests
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parley.http.app import create_app  # noqa: E402
from parley.settings import Settings  # noqa: E402
from parley.testing import ScriptedBackend  # noqa: E402
from parley.testing.fuzz import GET_PATHS, raw_body  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=5000)
    args = parser.parse_args()
    sent = {"requests": 0, "5xx": 0}
    with ScriptedBackend() as backend:
        loop = asyncio.new_event_loop()
        app = create_app(Settings(upstream=backend.url, db=f"sqlite:///{tempfile.mkdtemp()}/fuzz.db"))
        lifespan = app.router.lifespan_context(app)
        loop.run_until_complete(lifespan.__aenter__())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley")

        @settings(max_examples=args.examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(request=raw_body, path=GET_PATHS)
        def property_no_5xx(request, path) -> None:
            kind, payload = request
            post = client.post("/v1/responses", **({"json": payload} if kind == "json" else {"content": payload}))
            for response in (loop.run_until_complete(post), loop.run_until_complete(client.get(path))):
                sent["requests"] += 1
                if response.status_code >= 500:
                    sent["5xx"] += 1
                    raise AssertionError(f"{response.status_code} for {payload!r} / {path}: {response.text[:300]}")

        start = time.perf_counter()
        try:
            property_no_5xx()
            outcome = "no 5xx"
        except AssertionError as failure:
            outcome = f"FAILED: {failure}"
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
    print(f"{sent['requests']} requests in {time.perf_counter() - start:.0f} s, {sent['5xx']} with a 5xx: {outcome}")
    return 0 if sent["5xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
