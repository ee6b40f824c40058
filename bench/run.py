"""Parley against the model it fronts: what the gateway adds, measured in one run on one machine.

Starts the synthetic upstream (bench/upstream.py) and a real ``parley serve`` in front of it
(SQLite store, ``store`` on), then measures each figure twice, through Parley and calling the
upstream directly, and prints a markdown table (absolute numbers and the ratio to direct)
and JSON.

    python bench/run.py --quick            # under 3 minutes on 2 cores
    python bench/run.py --full --json bench/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from parley.testing.server import ParleyProcess, free_port  # noqa: E402


@dataclass
class Mode:
    name: str
    sequential: int      # requests at concurrency 1
    concurrent: int      # requests at concurrency N
    concurrency: int
    saturation_s: float
    streams: int         # concurrent streams held open
    chain_turns: int
    chains: int
    embedded_tokens: int
    embedded_runs: int
    paced_streams: int   # concurrent streams at a realistic token rate, for Parley's CPU per token
    idle_streams: int    # concurrent slow streams (bounded by the file descriptors one process may hold)


QUICK = Mode("quick", 150, 400, 16, 5.0, 1000, 50, 1, 64, 2, 200, 2000)
FULL = Mode("full", 1000, 3000, 16, 20.0, 1000, 50, 3, 256, 5, 400, 10000)
SMOKE = Mode("smoke", 5, 10, 2, 0.5, 20, 3, 1, 8, 1, 10, 20)


@dataclass
class Row:
    metric: str
    parley: float
    direct: float | None
    unit: str
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return self.parley / self.direct if self.direct else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def model(ttft_ms: int = 0, tps: int = 0, tokens: int = 20) -> str:
    return f"bench-ttft{ttft_ms}-tps{tps}-tokens{tokens}"


class Paths:
    """The two ways of asking the same upstream: directly, and through Parley.  The driver uses
    aiohttp, the lightest Python client here, since it shares the machine's cores with both."""

    def __init__(self, upstream: str, parley: str) -> None:
        self.upstream, self.parley = upstream, parley
        self.http = self._client()

    @staticmethod
    def _client() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=300))

    async def fresh(self) -> None:
        """A new connection pool for the next phase: servers close idle keep-alive connections."""
        await self.http.close()
        self.http = self._client()

    async def create(self, path: str, m: str, previous: str | None = None,
                     history: list[dict[str, str]] | None = None) -> tuple[float, str | None]:
        start = time.perf_counter()
        if path == "direct":
            messages = (history or []) + [{"role": "user", "content": "hi"}]
            async with self.http.post(f"{self.upstream}/chat/completions",
                                      json={"model": m, "messages": messages}) as response:
                response.raise_for_status()
                await response.read()
            return time.perf_counter() - start, None
        body: dict[str, Any] = {"model": m, "input": "hi", "store": True}
        if previous:
            body["previous_response_id"] = previous
        async with self.http.post(f"{self.parley}/responses", json=body) as response:
            response.raise_for_status()
            data = await response.json()
        return time.perf_counter() - start, data["id"]

    async def stream(self, path: str, m: str) -> tuple[float, int]:
        """Time to the first content token, and the number of content tokens."""
        start, first, tokens = time.perf_counter(), 0.0, 0
        if path == "direct":
            url, body = f"{self.upstream}/chat/completions", {
                "model": m, "stream": True, "messages": [{"role": "user", "content": "hi"}],
                "stream_options": {"include_usage": True}}
            marker = b'"content":"w'
        else:
            url, body = f"{self.parley}/responses", {"model": m, "input": "hi", "stream": True}
            marker = b'"type":"response.output_text.delta"'
        async with self.http.post(url, json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if marker in line:
                    tokens += 1
                    if tokens == 1:
                        first = time.perf_counter() - start
        return first, tokens


async def run_count(count: int, concurrency: int, job) -> list[float]:
    results: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            results.append(await job())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def saturate(seconds: float, concurrency: int, job) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await job()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the worker processes of ``parley serve --workers N``)."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            children = Path(f"/proc/{pids[index]}/task/{pids[index]}/children").read_text().split()
        except OSError:
            children = []
        pids += [int(child) for child in children]
        index += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and its live descendants."""
    total = 0
    for one in process_tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of the process and its descendants."""
    total = 0
    for one in process_tree(pid):
        try:
            lines = Path(f"/proc/{one}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total


async def latency_rows(paths: Paths, mode: Mode) -> list[Row]:
    rows = []
    m = model()
    for concurrency, count in ((1, mode.sequential), (mode.concurrency, mode.concurrent)):
        got = {}
        for path in ("direct", "parley"):
            await run_count(min(20, count), concurrency, lambda p=path: paths.create(p, m))  # warm-up
            got[path] = [t for t in await run_count(count, concurrency,
                                                     lambda p=path: _first(paths.create(p, m)))]
        for q in (50, 95, 99):
            d, p = pct(got["direct"], q) * 1000, pct(got["parley"], q) * 1000
            target = {50: "added ≤ 0.5 ms", 99: "added ≤ 2 ms"}.get(q, "") if concurrency == 1 else ""
            rows.append(Row(f"non-streaming latency p{q}, concurrency {concurrency} (added {p - d:.2f} ms)",
                            p, d, "ms", target))
    return rows


async def _first(coroutine) -> float:
    return (await coroutine)[0]


async def ttft_rows(paths: Paths, mode: Mode) -> list[Row]:
    m = model(tokens=20)
    got = {}
    for path in ("direct", "parley"):
        await run_count(10, 1, lambda p=path: paths.stream(p, m))
        got[path] = [r[0] for r in await run_count(mode.sequential, 1, lambda p=path: paths.stream(p, m))]
    d, p = statistics.median(got["direct"]) * 1000, statistics.median(got["parley"]) * 1000
    return [Row(f"time to first token p50 (added {p - d:.2f} ms)", p, d, "ms", "added ≤ 0.5 ms")]


async def throughput_rows(paths: Paths, mode: Mode, parley_pid: int) -> list[Row]:
    """Closed-loop throughput at 1, 8 and 32 clients against an upstream that answers in about 1 ms (the
    issue's set-up; the synthetic upstream alone answers in 0.1 ms, which no gateway keeps 60 % of)."""
    m = model(ttft_ms=1, tokens=20)
    rows = []
    for clients in (1, 8, 32):
        await paths.fresh()  # (a connection idle through the other path's run may be closed by its server)
        direct = await saturate(mode.saturation_s, clients, lambda: paths.create("direct", m))
        await paths.fresh()
        through = await saturate(mode.saturation_s, clients, lambda: paths.create("parley", m))
        rows.append(Row(f"non-streaming throughput, {clients} client{'s' * (clients > 1)}, 1 ms upstream",
                        through, direct, "1/s", "≥ 0.6 of direct"))
    return rows


async def stream_cpu_rows(paths: Paths, mode: Mode, parley_pid: int) -> list[Row]:
    """Parley's CPU per streamed token: 32 streams as fast as the upstream goes, and many streams at a
    realistic 50 tokens per second each (a GPU server's load)."""
    rows = []
    for label, clients, m in (("32 unpaced streams", 32, model(tokens=100)),
                              (f"{mode.paced_streams} streams at 50 tokens/s", mode.paced_streams,
                               model(tps=50, tokens=100))):
        streamed = 0

        async def one(m: str = m) -> None:
            nonlocal streamed
            _, tokens = await paths.stream("parley", m)
            streamed += tokens  # not `streamed += await …`: that reads `streamed` before awaiting

        before = cpu_seconds(parley_pid)
        await saturate(max(mode.saturation_s, 4.0) if clients > 32 else mode.saturation_s, clients, one)
        used = cpu_seconds(parley_pid) - before
        rows.append(Row(f"Parley CPU time per streamed token, {label}", used / max(streamed, 1) * 1e6, None, "µs",
                        "≤ 10 µs"))
    return rows


def open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 1024


async def held_streams(paths: Paths, path: str, m: str, count: int, parley_pid: int,
                       tokens: int) -> tuple[int, int, int]:
    """``count`` streams at once: how many failed or came short, and Parley's RSS before and at its peak."""
    baseline, peak, stop = rss_kib(parley_pid), 0, False

    async def sample() -> None:
        nonlocal peak
        while not stop:
            peak = max(peak, rss_kib(parley_pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    results = await asyncio.gather(*(paths.stream(path, m) for _ in range(count)), return_exceptions=True)
    stop = True
    await sampler
    return sum(1 for r in results if isinstance(r, BaseException) or r[1] != tokens), baseline, peak


async def idle_stream_rows(paths: Paths, mode: Mode, parley_pid: int) -> list[Row]:
    """Many slow streams at once (an upstream giving 2 tokens per second): each holds a client connection
    and an upstream connection in Parley, so one process's file limit bounds how many can be tried."""
    count = min(mode.idle_streams, (open_files_limit(parley_pid) - 400) // 2)
    errors, baseline, peak = await held_streams(paths, "parley", model(tps=2, tokens=10), count, parley_pid, 10)
    return [Row(f"{count} concurrent slow streams: errors", errors, None, "count", "0 (10,000 wanted)"),
            Row(f"{count} concurrent slow streams: memory per stream", (peak - baseline) / count, None, "KiB")]


async def concurrent_stream_rows(paths: Paths, mode: Mode, parley_pid: int) -> list[Row]:
    m = model(tps=20, tokens=60)  # each stream stays open about 3 s
    direct_errors, _, _ = await held_streams(paths, "direct", m, mode.streams, parley_pid, 60)
    errors, baseline, peak = await held_streams(paths, "parley", m, mode.streams, parley_pid, 60)
    return [Row(f"{mode.streams} concurrent streams: errors", errors, direct_errors, "count", "0"),
            Row(f"{mode.streams} concurrent streams: Parley peak RSS", peak / 1024, None, "MiB"),
            Row(f"{mode.streams} concurrent streams: memory per in-flight stream", (peak - baseline) / mode.streams,
                None, "KiB", "≤ 50 KiB")]


async def chain_rows(paths: Paths, mode: Mode) -> list[Row]:
    m = model(tokens=20)
    parley_turns: dict[int, list[float]] = {}
    direct_turns: dict[int, list[float]] = {}
    for _ in range(mode.chains):
        previous = None
        history: list[dict[str, str]] = []
        for turn in range(1, mode.chain_turns + 1):
            elapsed, previous = await paths.create("parley", m, previous)
            parley_turns.setdefault(turn, []).append(elapsed)
            elapsed, _ = await paths.create("direct", m, history=history)
            direct_turns.setdefault(turn, []).append(elapsed)
            history += [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "w0 " * 20}]
    last = mode.chain_turns
    rows = []
    for turn in (1, last):
        p = statistics.median(parley_turns[turn]) * 1000
        d = statistics.median(direct_turns[turn]) * 1000
        rows.append(Row(f"chain turn {turn} latency (added {p - d:.2f} ms)", p, d, "ms",
                        "turn 50 costs what turn 1 does" if turn == last else ""))
    return rows


def sdk_rows(mode: Mode, upstream_url: str, parley_url: str) -> list[Row]:
    """The ``openai`` SDK three ways, one request at a time: Chat Completions on the upstream directly,
    the Responses API through ``parley serve`` over HTTP, and through the in-process ``parley.Client``
    (same SQLite store settings).  The SDK's own cost is in all three, so the differences are Parley's."""
    import openai

    import parley

    m = model()
    db = f"sqlite:///{tempfile.mkdtemp()}/library.db"
    direct = openai.OpenAI(base_url=upstream_url, api_key="-", max_retries=0)
    over_http = openai.OpenAI(base_url=parley_url, api_key="-", max_retries=0)
    library = parley.Client(upstream=upstream_url, db=db, log_level="warning")
    calls = {
        "direct": lambda: direct.chat.completions.create(model=m, messages=[{"role": "user", "content": "hi"}]),
        "http": lambda: over_http.responses.create(model=m, input="hi", store=True),
        "library": lambda: library.responses.create(model=m, input="hi", store=True),
    }
    got: dict[str, list[float]] = {}
    try:
        for name, call in calls.items():
            for _ in range(20):
                call()
            times = []
            for _ in range(mode.sequential):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            got[name] = times
    finally:
        for client in (direct, over_http, library):
            client.close()
    rows = []
    for q in (50, 99):
        d = pct(got["direct"], q) * 1000
        for name, label in (("http", "openai SDK, parley serve over HTTP"),
                            ("library", "openai SDK, in-process parley.Client")):
            p = pct(got[name], q) * 1000
            rows.append(Row(f"non-streaming latency p{q}, {label} (added {p - d:.2f} ms)", p, d, "ms",
                            "adds the least" if name == "library" else ""))
    return rows


def embedded_rows(mode: Mode) -> list[Row]:
    sys.path.insert(0, str(HERE))
    from embedded_tps import direct, through_parley

    direct_runs = [direct(mode.embedded_tokens) for _ in range(mode.embedded_runs)]
    with ParleyProcess("--db", f"sqlite:///{tempfile.mkdtemp()}/embedded.db") as server:
        through_parley(server, 8)
        runs = [through_parley(server, mode.embedded_tokens) for _ in range(mode.embedded_runs)]
    return [Row("embedded model tokens per second", statistics.median(runs), statistics.median(direct_runs),
                "tok/s", "≥ 90 % of direct")]


def render(rows: list[Row], mode: Mode, workers: int = 1) -> str:
    lines = [f"Parley benchmark, {mode.name} mode ({os.cpu_count()} cores, {workers} worker{'s' * (workers > 1)})", "",
             "| metric | Parley | direct | Parley / direct | unit | target |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        direct = f"{row.direct:.2f}" if row.direct is not None else "—"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
        lines.append(f"| {row.metric} | {row.parley:.2f} | {direct} | {ratio} | {row.unit} | {row.target} |")
    return "\n".join(lines)


async def measure(mode: Mode, upstream_url: str, parley: ParleyProcess) -> list[Row]:
    paths = Paths(upstream_url, parley.base_url)
    assert parley.process is not None
    pid = parley.process.pid
    rows: list[Row] = []
    try:
        # The slow streams last: closing thousands of connections at once leaves their loopback ports in
        # TIME_WAIT for a minute, and a phase after them could find none free for a new upstream connection
        # (--full's chain rows failed with a 502 that way).
        phases = (latency_rows, ttft_rows, throughput_rows, stream_cpu_rows, concurrent_stream_rows, chain_rows,
                  idle_stream_rows)
        for phase in phases:
            await paths.fresh()
            args = (paths, mode) if phase in (latency_rows, ttft_rows, chain_rows) else (paths, mode, pid)
            rows += await phase(*args)  # type: ignore[operator]
    finally:
        await paths.http.close()
    return rows


@contextmanager
def synthetic_upstream() -> Iterator[str]:
    """bench/upstream.py on a free loopback port, once it answers; its base URL."""
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        upstream.terminate()
        upstream.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="under 3 minutes on 2 cores (the default)")
    group.add_argument("--full", action="store_true", help="more requests, stabler figures")
    group.add_argument("--smoke", action="store_true", help="seconds; only checks that everything runs")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--skip-embedded", action="store_true", help="leave out the embedded model's figure")
    parser.add_argument("--workers", type=int, default=1, help="parley serve --workers N (CPU and memory figures "
                        "count every worker)")
    parser.add_argument("--db", help="Parley's store (default: a new SQLite file; --workers beyond 1 wants "
                        "PostgreSQL)")
    args = parser.parse_args(argv)
    mode = FULL if args.full else SMOKE if args.smoke else QUICK
    with synthetic_upstream() as upstream_url:
        db = args.db or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        with ParleyProcess("--upstream", upstream_url, "--db", db, "--log-level", "warning",
                           "--workers", str(args.workers)) as parley:
            try:
                rows = asyncio.run(measure(mode, upstream_url, parley))
                rows += sdk_rows(mode, upstream_url, parley.base_url)
            except Exception:
                print("Parley's log, last 6000 characters:\n" + parley.log()[-6000:], file=sys.stderr)
                raise
    if not args.skip_embedded:
        rows += embedded_rows(mode)
    print(render(rows, mode, args.workers))
    if args.json:
        args.json.write_text(json.dumps({"mode": mode.name, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
