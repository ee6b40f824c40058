"""Worker processes for work whose cost grows with what a user sent (reading a file, chunking, embedding).

Each piece of work runs in a process of its own, forked from a server started once per server process with
the heavy modules already imported (``multiprocessing``'s forkserver), so a job starts in milliseconds and
shares nothing with the server but its result.  A job's process may grow its address space by
``memory_bytes`` and use ``cpu_s`` seconds of CPU; past either it dies, and only that job fails
(:class:`WorkerFailed`), with the server's memory and event loop untouched.  At most ``processes`` jobs run at
once; the rest wait their turn.  A cancelled job's process is killed.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import logging
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing import context, forkserver, popen_forkserver, spawn, util
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("parley.workers")
_PR_SET_PDEATHSIG = 1


class WorkerFailed(Exception):
    """The job's process died or ran out of its bounds: ``code`` is ``worker_memory``, ``worker_cpu`` or
    ``worker_died``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobError(Exception):
    """An exception a job raised on purpose, carried back by name: ``kind`` is the exception's class name and
    ``args`` its arguments (exceptions are not pickled: the job's process may hold classes the server
    lacks)."""

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        super().__init__(kind, *args)
        self.kind = kind
        self.job_args = args


def _child(send: Connection, memory_bytes: int, cpu_s: float, job: Callable[..., Any], args: tuple[Any, ...],
           expected: tuple[type[BaseException], ...]) -> None:
    try:  # die with the forkserver, which ends with the server: no job outlives a kill -9 of the server
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * page
    resource.setrlimit(resource.RLIMIT_AS, (size + memory_bytes, size + memory_bytes))
    cpu = max(1, int(cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    try:
        result: tuple[str, Any] = ("ok", job(*args))
    except MemoryError:
        result = ("memory", None)
    except expected as exc:
        result = ("error", (type(exc).__name__, exc.args))
    try:
        send.send(result)
    except MemoryError:
        send.send(("memory", None))
    send.close()


class _Popen(popen_forkserver.Popen):
    """The forkserver's ``Popen`` less one thing: its child does not import the parent's ``__main__``.  A
    library user's script without an ``if __name__ == "__main__"`` guard would otherwise run again in every
    worker; Parley's jobs are module-level functions of its own package and need nothing of ``__main__``.
    (``_launch`` is the standard library's, 3.11 to 3.13, with the main module's two entries dropped.)"""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        context.set_spawning_popen(self)
        try:
            context.reduction.dump(prep_data, buf)
            context.reduction.dump(process_obj, buf)
        finally:
            context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


class WorkerPool:
    """Runs module-level functions in worker processes within bounds, ``processes`` at a time.  Every pool of a
    process forks from the one forkserver, whose ``preload`` the first pool that names one sets."""

    def __init__(self, processes: int = 2, memory_bytes: int = 1 << 30, cpu_s: float = 120.0,
                 preload: tuple[str, ...] = ()) -> None:
        self.memory_bytes = memory_bytes
        self.cpu_s = cpu_s
        self._context = multiprocessing.get_context("forkserver")
        if preload:
            self._context.set_forkserver_preload(list(preload))
        self._slots = asyncio.Semaphore(processes)

    async def run(self, job: Callable[..., Any], *args: Any,
                  expected: tuple[type[BaseException], ...] = ()) -> Any:
        """``job(*args)`` in a worker process: its result, :class:`JobError` for an ``expected`` exception it
        raised, or :class:`WorkerFailed`."""
        async with self._slots:
            receive, send = self._context.Pipe(duplex=False)
            process = _Process(target=_child, daemon=True, name=f"parley-worker-{job.__name__}",
                               args=(send, self.memory_bytes, self.cpu_s, job, args, expected))
            cancelled = threading.Event()
            try:
                outcome = await asyncio.to_thread(self._wait, process, send, receive, cancelled)
            except asyncio.CancelledError:
                cancelled.set()
                if process.pid is not None:
                    process.kill()
                raise
            finally:
                receive.close()
        kind, value = outcome
        if kind == "ok":
            return value
        if kind == "error":
            raise JobError(*value)
        if kind == "memory":
            raise WorkerFailed("worker_memory", f"the work needed more than {self.memory_bytes >> 20} MiB of memory")
        return self._died(value)

    @staticmethod
    def _wait(process: Any, send: Connection, receive: Connection, cancelled: threading.Event) -> tuple[str, Any]:
        process.start()
        send.close()
        if cancelled.is_set():
            process.kill()
        try:
            outcome = receive.recv()
        except (EOFError, OSError):
            outcome = ("died", None)
        process.join()
        return outcome if outcome[0] != "died" else ("died", process.exitcode)

    def _died(self, exitcode: int | None) -> Any:
        if exitcode == -signal.SIGXCPU:
            raise WorkerFailed("worker_cpu", f"the work took more than {self.cpu_s:g} s of CPU time")
        log.warning("a worker process died with exit code %s", exitcode)
        raise WorkerFailed("worker_died", f"the worker process doing it died (exit code {exitcode})")
