"""kill -9 in the middle of streams: after a restart the unfinished responses are failed, the finished intact."""

from __future__ import annotations

import json
import time

import httpx

from parley.testing import ParleyProcess, Reply


def test_kill_9_mid_stream_then_restart(backend, db_url) -> None:
    args = ("--upstream", backend.url, "--db", db_url, "--instance-stale-s", "1.5")
    with ParleyProcess(*args) as server:
        finished = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": "done"}).json()
        backend.hold()
        started = []
        streams = [httpx.stream("POST", f"{server.base_url}/responses", timeout=30,
                                json={"model": "m", "input": f"cut {i}", "stream": True}) for i in range(3)]
        for request in streams:
            response = request.__enter__()
            lines = response.iter_lines()
            assert next(lines) == "event: response.created"
            started.append(json.loads(next(lines)[6:])["response"]["id"])
        server.process.kill()  # SIGKILL: no shutdown code runs
        server.process.wait()
        backend.release()
    with ParleyProcess(*args) as restarted:
        deadline = time.monotonic() + 30
        for response_id in started:
            while True:
                stored = httpx.get(f"{restarted.base_url}/responses/{response_id}").json()
                if stored["status"] != "in_progress":
                    break
                assert time.monotonic() < deadline, "the abandoned response was never marked failed"
                time.sleep(0.1)
            assert stored["status"] == "failed"
            assert stored["error"]["message"] == "The server stopped before the response finished."
        intact = httpx.get(f"{restarted.base_url}/responses/{finished['id']}").json()
        assert intact == finished
