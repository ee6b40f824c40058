"""A Codex-style session of chained turns over WebSocket mode against the same over HTTP (SSE), one run.

    python bench/websocket.py            # 5 sessions of 20 turns each way
    python bench/websocket.py --smoke    # 1 session of 3 turns (the test suite runs this)

Each turn streams a response chained to the previous one (``previous_response_id``) with the official
``openai`` client, from sending the create to its terminal event; HTTP sends each turn as a streamed ``POST``
on one kept-alive connection, WebSocket sends every turn of a session on one socket.  The upstream is
``bench/upstream.py`` (20 tokens, no delay), so the figures are Parley's own cost per turn.  The two modes
alternate session by session, so a busy moment of the machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import synthetic_upstream  # noqa: E402

from parley.testing.server import ParleyProcess  # noqa: E402

MODEL = "bench-ttft0-tps0-tokens20"
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "error")


def http_session(client: openai.OpenAI, turns: int) -> list[float]:
    times, previous = [], None
    for turn in range(turns):
        started = time.perf_counter()
        with client.responses.create(model=MODEL, input=f"turn {turn}", previous_response_id=previous,
                                     stream=True) as stream:
            for event in stream:
                if event.type in TERMINAL:
                    break
        assert event.type == "response.completed", event
        previous = event.response.id
        times.append(time.perf_counter() - started)
    return times


def socket_session(client: openai.OpenAI, turns: int) -> tuple[list[float], float]:
    times, previous = [], None
    opened = time.perf_counter()
    with client.responses.connect() as conn:
        connected = time.perf_counter() - opened
        for turn in range(turns):
            started = time.perf_counter()
            conn.response.create(model=MODEL, input=f"turn {turn}", previous_response_id=previous)
            event = conn.recv()
            while event.type not in TERMINAL:
                event = conn.recv()
            assert event.type == "response.completed", event
            previous = event.response.id
            times.append(time.perf_counter() - started)
    return times, connected


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    sessions, turns = (1, 3) if args.smoke else (args.sessions, args.turns)
    results: dict[str, list[float]] = {"http": [], "websocket": []}
    totals: dict[str, list[float]] = {"http": [], "websocket": []}
    connects: list[float] = []
    with tempfile.TemporaryDirectory() as folder, synthetic_upstream() as upstream, ParleyProcess(
            "--upstream", upstream, "--db", f"sqlite:///{folder}/bench.db") as server:
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0,
                           http_client=httpx.Client(timeout=60)) as client:
            http_session(client, 2)  # warm both paths up
            socket_session(client, 2)
            for _ in range(sessions):
                times = http_session(client, turns)
                results["http"] += times
                totals["http"].append(sum(times))
                times, connected = socket_session(client, turns)
                results["websocket"] += times
                totals["websocket"].append(sum(times) + connected)
                connects.append(connected)
    rows = []
    for mode in ("http", "websocket"):
        times = results[mode]
        rows.append({"mode": mode, "turns": len(times), "turn_p50_ms": statistics.median(times) * 1000,
                     "turn_p90_ms": percentile(times, 0.9) * 1000,
                     "session_ms": statistics.median(totals[mode]) * 1000})
    print(f"| mode | turns | per turn p50 | per turn p90 | {turns}-turn session (median) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['mode']} | {row['turns']} | {row['turn_p50_ms']:.1f} ms | {row['turn_p90_ms']:.1f} ms | "
              f"{row['session_ms']:.0f} ms |")
    print(f"socket connect (median): {statistics.median(connects) * 1000:.1f} ms, counted in its session")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "connect_ms": statistics.median(connects) * 1000}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
