"""Memory under large request bodies: N concurrent bodies of M MiB against a real ``parley serve``.

Prints Parley's RSS before and at its peak, the status codes (200, or 503 server_busy beyond
``--max-inflight-body-bytes``) and the peak RSS per admitted body MiB.

    .venv/bin/python bench/large_bodies.py                        # 8 bodies of 30 MiB, the default budget
    .venv/bin/python bench/large_bodies.py --budget-mib 1024      # every body admitted
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parley.testing import ParleyProcess, ScriptedBackend  # noqa: E402
from run import rss_kib  # noqa: E402  (bench/, the script's folder, is on the path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--mib", type=int, default=30)
    parser.add_argument("--budget-mib", type=int, default=None, help="--max-inflight-body-bytes, in MiB")
    args = parser.parse_args()
    text = "a" * (args.mib * 1024 * 1024 - 200)
    body = ('{"model": "m", "store": false, "max_output_tokens": 5, "input": "' + text + '"}').encode()
    options = ["--max-body-bytes", str(len(body) + 1024)]
    if args.budget_mib:
        options += ["--max-inflight-body-bytes", str(args.budget_mib * 1024 * 1024)]
    with ScriptedBackend() as backend, ParleyProcess("--upstream", backend.url, "--db",
                                                     f"sqlite:///{tempfile.mkdtemp()}/p.db", *options) as server:
        assert server.process is not None
        pid = server.process.pid
        idle = rss_kib(pid) / 1024
        peak, done = idle, threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(pid) / 1024)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(args.bodies) as pool:
            statuses = collections.Counter(pool.map(
                lambda _: httpx.post(f"{server.base_url}/responses", content=body, timeout=300,
                                     headers={"content-type": "application/json"}).status_code,
                range(args.bodies)))
        done.set()
        watcher.join()
    admitted = statuses.get(200, 0)
    print(f"{args.bodies} concurrent bodies of {args.mib} MiB: status codes {dict(statuses)}; Parley RSS idle "
          f"{idle:.0f} MiB, peak {peak:.0f} MiB (+{peak - idle:.0f}); "
          f"{(peak - idle) / max(admitted * args.mib, 1):.2f} MiB of RSS per admitted body MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
