"""Where Parley's CPU goes on the hot path: py-spy samples of a real ``parley serve`` (only while a thread holds
the GIL, 200 a second, 12 s per load) under two loads against the synthetic upstream, each sample counted
for the innermost frame that belongs to a known layer.

    .venv/bin/python bench/profile.py            # prints a markdown table; the stacks stay in --out
    .venv/bin/python bench/profile.py --out /tmp/stacks

Loads: 8 clients in a closed loop, non-streaming, store on, 20 tokens from an upstream answering in 1 ms; and
200 streams at 50 tokens per second each. py-spy needs the right to read the server's memory (root, or
``ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from parley.testing import ParleyProcess  # noqa: E402

# (layer, parts of a frame's file path), matched from a sample's innermost frame outwards: the first frame that
# belongs to a layer takes the sample
LAYERS = [
    ("store (SQLAlchemy, SQLite driver, thread hop)",
     ("sqlalchemy", "sqlean", "parley/store", "asyncpg", "concurrent/futures", "threading.py")),
    ("upstream client (parley/backends, SSE parsing)", ("aiohttp", "parley/backends", "yarl", "multidict")),
    ("pydantic and JSON (request parsing, Response snapshots)", ("pydantic", "json/", "parley/wire", "openai/")),
    ("HTTP server (uvicorn, httptools)", ("uvicorn", "httptools", "h11")),
    ("FastAPI / Starlette", ("fastapi", "starlette")),
    ("Parley's HTTP edge (create route, SSE, middleware)", ("parley/http",)),
    ("engine: events, translation, lifecycle", ("parley/",)),
    ("event loop (uvloop, asyncio)", ("uvloop", "asyncio", "selectors")),
]
SECONDS = 12


def shares(stacks: Path) -> dict[str, float]:
    """py-spy's raw output (``frame;frame;... count`` per line): each layer's share of the samples."""
    counts: collections.Counter[str] = collections.Counter()
    for line in stacks.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        for frame in reversed(stack.split(";")):
            layer = next((name for name, parts in LAYERS if any(part in frame for part in parts)), None)
            if layer:
                counts[layer] += int(n)
                break
        else:
            counts["other"] += int(n)
    total = sum(counts.values()) or 1
    return {layer: counts[layer] / total for layer in [name for name, _ in LAYERS] + ["other"]}


async def load(paths: run.Paths, name: str, seconds: float) -> None:
    if name == "non-streaming":
        m = run.model(ttft_ms=1, tokens=20)
        await run.saturate(seconds, 8, lambda: paths.create("parley", m))
        return
    if name == "short-streams":  # what a streamed response costs beside its tokens
        m = run.model(ttft_ms=1, tokens=20)
        await run.saturate(seconds, 8, lambda: paths.stream("parley", m))
        return
    m, stop = run.model(tps=50, tokens=100), time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < stop:
            await paths.stream("parley", m)

    await asyncio.gather(*(one() for _ in range(200)))


async def profile(upstream: str, server: ParleyProcess, name: str, out: Path) -> Path:
    assert server.process is not None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    paths = run.Paths(upstream, server.base_url)
    stacks = out / f"{name}.txt"
    try:
        await paths.fresh()
        loading = asyncio.create_task(load(paths, name, SECONDS + 3))
        await asyncio.sleep(1.5)  # warm: connections, caches
        spy = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(server.process.pid), "--gil", "--nonblocking", "--rate", "200",
            "--duration", str(SECONDS), "--format", "raw", "-o", str(stacks),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, error = await spy.communicate()
        await loading
        if spy.returncode:
            raise SystemExit(f"py-spy failed: {error.decode()[-500:]}")
    finally:
        await paths.http.close()
    return stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="where py-spy's stacks go (default: a new folder)")
    parser.add_argument("--loads", default="non-streaming,streaming",
                        help="of non-streaming, streaming, short-streams (8 clients streaming 20 tokens unpaced)")
    parser.add_argument("--db", default=None, help="the server's store (default: a new SQLite file), for example "
                        "postgresql://postgres@127.0.0.1:5432/a_new_database")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="parley-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    loads = tuple(args.loads.split(","))
    if not loads or not set(loads) <= {"non-streaming", "streaming", "short-streams"}:
        parser.error(f"--loads: unknown load in {args.loads!r}")
    with run.synthetic_upstream() as upstream, \
            ParleyProcess("--upstream", upstream, "--db", args.db or f"sqlite:///{tempfile.mkdtemp()}/profile.db",
                          "--log-level", "warning") as server:
        found = {name: shares(asyncio.run(profile(upstream, server, name, out))) for name in loads}
    print(f"| share of the samples | {' | '.join(loads)} |\n| --- |{' --- |' * len(loads)}")
    for layer in found[loads[0]]:
        print(f"| {layer} | " + " | ".join(f"{found[name][layer]:.0%}" for name in loads) + " |")
    print(f"\nstacks in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
