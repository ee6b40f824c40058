"""The worker processes that read files: a job that exhausts its memory or CPU, dies, or is cancelled costs
its own process only, and the server's process is left as it was."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path

import pytest

from parley.workers import JobError, WorkerFailed, WorkerPool


def add(a: int, b: int) -> int:
    return a + b


def refuse(reason: str) -> None:
    raise LookupError("refused", reason)


def hog_memory() -> int:
    blocks = []
    while True:  # 64 MiB at a time, touched, until the limit stops it
        blocks.append(bytearray(64 << 20))
        blocks[-1][::4096] = b"x" * len(blocks[-1][::4096])


def spin() -> None:
    while True:
        pass


def die() -> None:
    os._exit(7)


def wait_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # (a zombie until the forkserver reaps it: dead all the same)
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


@pytest.mark.anyio
async def test_a_job_returns_its_result_or_its_expected_error() -> None:
    pool = WorkerPool(processes=2, memory_bytes=256 << 20, cpu_s=30)
    assert await asyncio.gather(*(pool.run(add, i, 1) for i in range(4))) == [1, 2, 3, 4]
    with pytest.raises(JobError) as info:
        await pool.run(refuse, "too odd", expected=(LookupError,))
    assert info.value.kind == "LookupError" and info.value.job_args == ("refused", "too odd")


@pytest.mark.anyio
async def test_memory_cpu_and_death_fail_the_job_alone() -> None:
    pool = WorkerPool(processes=2, memory_bytes=256 << 20, cpu_s=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(WorkerFailed) as memory:
        await pool.run(hog_memory)
    assert memory.value.code == "worker_memory" and "256 MiB" in memory.value.message
    with pytest.raises(WorkerFailed) as cpu:
        await pool.run(spin)
    assert cpu.value.code == "worker_cpu"
    with pytest.raises(WorkerFailed) as died:
        await pool.run(die)
    assert died.value.code == "worker_died" and "exit code 7" in died.value.message
    assert await pool.run(add, 2, 2) == 4  # the pool goes on
    # the server's own peak memory did not take the hog's 256 MiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


@pytest.mark.anyio
async def test_a_cancelled_job_kills_its_process(tmp_path: Path) -> None:
    pool = WorkerPool(processes=1, memory_bytes=256 << 20, cpu_s=30)
    pid_file = tmp_path / "pid"
    job = asyncio.create_task(pool.run(wait_forever, str(pid_file)))
    while not pid_file.exists() or not pid_file.read_text():
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    while not _gone(pid):
        await asyncio.sleep(0.01)
    assert await pool.run(add, 1, 1) == 2  # its slot is free again


def test_a_script_without_a_main_guard_runs_once_not_again_in_each_worker(tmp_path: Path) -> None:
    """A library user's script that uses the pool at its top level (no ``if __name__ == "__main__"``): the
    workers do not import it again (multiprocessing's forkserver children would, and run it)."""
    import subprocess
    import sys

    marker = tmp_path / "runs"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import asyncio\n"
        "from parley.workers import WorkerPool\n"
        "from tests.unit.test_workers import add\n"
        f"open({str(marker)!r}, 'a').write('ran\\n')\n"
        "pool = WorkerPool(processes=2, preload=('parley.retrieval.warm',))\n"
        "print(asyncio.run(pool.run(add, 20, 22)))\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=root, env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "42" and marker.read_text() == "ran\n"
