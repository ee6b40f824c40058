"""Code execution: what a container costs to start, to call, and to keep.

A real ``parley serve`` with the bwrap sandbox, in front of the scripted backend (the model-free baseline: the
model's replies cost next to nothing, so what is measured is Parley and the sandbox).  Rows:

- **sandbox cold start**: a new container's first call, in process (``BwrapSandbox.open`` until its kernel
  answers), and through the server (a response whose one ``code_interpreter`` call is its container's first,
  less the same response on a warm container);
- **warm call**: ``print(1)`` in process (the session's round trip), and a response with one
  ``code_interpreter`` call on a warm container, against the same server's response with no tool (one model
  call instead of two);
- **50 containers at once**: responses that each start a container, all at the same time, their errors and
  wall time; then the proportional memory (PSS) of every sandbox process, per idle container, and the server's
  own RSS.

    .venv/bin/python bench/containers.py              # 30 rounds, 50 containers
    .venv/bin/python bench/containers.py --smoke      # a few rounds and 5 containers, for the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from parley.sandbox.base import Limits  # noqa: E402
from parley.sandbox.bwrap import BwrapSandbox  # noqa: E402
from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall  # noqa: E402

CODE = re.compile(r"```python\n(.*?)```", re.S)


def model(request: dict) -> Reply:
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text="done")
    block = CODE.search(last["content"]) if isinstance(last["content"], str) else None
    return Reply(tool_calls=[ToolCall("code_interpreter", {"code": block.group(1)})]) if block else Reply(text="hi")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def sandbox_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"/opt/parley/kernel.py" in command:  # bwrap (its argv names the kernel) and the kernel
                pids.append(int(entry.name))
    return pids


async def in_process(rounds: int, directory: Path) -> tuple[list[float], list[float]]:
    sandbox = BwrapSandbox(directory)
    cold, warm = [], []
    for i in range(rounds):
        started = time.perf_counter()
        session = await sandbox.open(f"cntr_bench{i}", Limits())
        cold.append((time.perf_counter() - started) * 1000)
        for _ in range(5):
            started = time.perf_counter()
            assert (await session.python("print(1)")).logs == "1\n"
            warm.append((time.perf_counter() - started) * 1000)
        await session.close()
        await sandbox.discard(f"cntr_bench{i}")
    return cold, warm


def timed(client: httpx.Client, body: dict) -> float:
    started = time.perf_counter()
    response = client.post("/responses", json=body)
    response.raise_for_status()
    assert response.json()["status"] == "completed", response.text
    return (time.perf_counter() - started) * 1000


def through_server(server: ParleyProcess, rounds: int, containers: int) -> dict:
    client = httpx.Client(base_url=server.base_url, timeout=120)
    call = "```python\nprint(1)\n```"
    warm_id = client.post("/containers", json={"name": "warm"}).json()["id"]
    tool = [{"type": "code_interpreter", "container": warm_id}]
    for _ in range(3):  # warm both paths
        timed(client, {"model": "m", "input": "hello"})
        timed(client, {"model": "m", "input": call, "tools": tool})
    baseline = [timed(client, {"model": "m", "input": "hello"}) for _ in range(rounds)]
    warm = [timed(client, {"model": "m", "input": call, "tools": tool}) for _ in range(rounds)]
    cold = []
    for _ in range(rounds):
        fresh = client.post("/containers", json={"name": "cold"}).json()["id"]
        cold.append(timed(client, {"model": "m", "input": call, "tools": [
            {"type": "code_interpreter", "container": fresh}]}))
        client.delete(f"/containers/{fresh}")
    before = sandbox_pids()
    server_before = pss_kib(server.process.pid)

    def one(_: int) -> str | None:
        with httpx.Client(base_url=server.base_url, timeout=300) as own:
            try:
                response = own.post("/responses", json={"model": "m", "input": "```python\nvalue = 1\n```", "tools": [
                    {"type": "code_interpreter", "container": {"type": "auto"}}]})
                body = response.json()
                if response.status_code != 200 or body["output"][0]["status"] != "completed":
                    return response.text[:200]
            except httpx.HTTPError as exc:
                return repr(exc)
        return None

    started = time.perf_counter()
    with ThreadPoolExecutor(containers) as pool:
        failures = [f for f in pool.map(one, range(containers)) if f is not None]
    wall = time.perf_counter() - started
    added = [pid for pid in sandbox_pids() if pid not in before]
    sandbox_pss = sum(pss_kib(pid) for pid in added)
    client.close()
    return {"baseline": baseline, "warm": warm, "cold": cold, "failures": failures, "wall_s": wall,
            "containers": containers, "sandbox_processes": len(added), "sandbox_pss_kib": sandbox_pss,
            "server_pss_before_kib": server_before, "server_pss_after_kib": pss_kib(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.containers = 3, 5
    with tempfile.TemporaryDirectory() as scratch:
        cold_in, warm_in = asyncio.run(in_process(args.rounds, Path(scratch) / "direct"))
        with ScriptedBackend(model) as backend, ParleyProcess(
                "--upstream", backend.url, "--db", f"sqlite:///{scratch}/parley.db", "--sandbox", "bwrap",
                "--containers-dir", f"{scratch}/containers") as server:
            served = through_server(server, args.rounds, args.containers)
    base50, warm50, cold50 = (percentile(served[k], 0.5) for k in ("baseline", "warm", "cold"))
    rows = [
        ("sandbox cold start, in process (open until the kernel answers)", percentile(cold_in, 0.5),
         percentile(cold_in, 0.99), "ms"),
        ("warm print(1), in process (session round trip)", percentile(warm_in, 0.5), percentile(warm_in, 0.99), "ms"),
        ("response, no tool (baseline: one model call)", base50, percentile(served["baseline"], 0.99), "ms"),
        ("response, one code_interpreter print(1), warm container", warm50, percentile(served["warm"], 0.99), "ms"),
        ("  added by the warm call (p50 difference)", warm50 - base50, None, "ms"),
        ("response, one code_interpreter print(1), new container", cold50, percentile(served["cold"], 0.99), "ms"),
        ("  added by the cold start (p50 difference from warm)", cold50 - warm50, None, "ms"),
        (f"{served['containers']} containers at once: errors", len(served["failures"]), None, ""),
        (f"{served['containers']} containers at once: wall time", served["wall_s"], None, "s"),
        ("memory per idle container (PSS of its sandbox processes)",
         served["sandbox_pss_kib"] / 1024 / served["containers"], None, "MiB"),
        ("server PSS before / after the containers", served["server_pss_before_kib"] / 1024,
         served["server_pss_after_kib"] / 1024, "MiB"),
    ]
    print("| metric | p50 (or value) | p99 (or second value) | unit |\n| --- | ---: | ---: | --- |")
    for metric, first, second, unit in rows:
        print(f"| {metric} | {first:.1f} | {'' if second is None else f'{second:.1f}'} | {unit} |")
    if served["failures"]:
        print("failures:", served["failures"][:3])
    if args.json:
        args.json.write_text(json.dumps({"rows": [{"metric": m, "value": a, "second": b, "unit": u}
                                                  for m, a, b, u in rows], "failures": served["failures"]}))


if __name__ == "__main__":
    main()
