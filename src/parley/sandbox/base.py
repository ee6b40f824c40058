"""The one small interface every sandbox implements, and what a run gives back.

A :class:`Sandbox` starts :class:`Session` s: one per live container on this instance, each a persistent
Python process (its variables survive between cells) in which shell commands also run, with the container's
files under ``/mnt/data``.  A session that dies (a timeout, a limit, the kernel killed) is replaced by a fresh
one at the next call: its variables are gone, its files are not (the container's files live in the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

WORKDIR = "/mnt/data"


class SandboxError(Exception):
    """The sandbox could not run a call (it could not start, or its kernel broke the protocol)."""


@dataclass(frozen=True)
class Limits:
    """What one container may use: memory per process, processes, open files, bytes of all its files (also the
    most one file may hold), seconds per call, bytes of output kept per stream; and the largest file that is
    taken back from it (``file_bytes``: larger ones stay in its workspace only)."""

    memory_bytes: int = 1024 ** 3
    processes: int = 128
    open_files: int = 256
    file_bytes: int = 20 * 1024 ** 2
    disk_bytes: int = 1024 ** 3
    call_timeout_s: float = 60.0
    output_bytes: int = 64 * 1024
    lifetime_cpu_s: int = 3600


@dataclass
class CellResult:
    """A Python cell's run: its output (stdout and stderr together), PNGs of the figures it left open (base64),
    the name of the exception it raised, and whether it ran past its time (the session is then gone)."""

    logs: str = ""
    images: list[str] = field(default_factory=list)
    error: str | None = None
    timed_out: bool = False


def stopped_at(seconds: float) -> CellResult:
    """A cell stopped at its time limit; its session's process was restarted (or is gone)."""
    return CellResult(logs=f"The code ran longer than {seconds:g} seconds and was stopped; the container's Python "
                           f"process was restarted (its variables are gone).", error="TimeoutError", timed_out=True)


@dataclass
class CommandResult:
    """A shell command's run: its output, and its exit code (``None`` when it ran past its time)."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class FileState:
    """A file of a workspace, by its path under ``/mnt/data``."""

    path: str
    size: int
    mtime_ns: int


class Session(Protocol):
    """One live container, as this instance reaches it."""

    # What names the session to the other instances, where they can reach it (a remote kernel's id); None for a
    # session only this host can reach.
    ref: str | None

    async def python(self, code: str) -> CellResult: ...

    async def shell(self, command: str, timeout_s: float, max_output: int) -> CommandResult: ...

    async def files(self) -> list[FileState]:
        """The regular files under ``/mnt/data`` now (symbolic links and special files are never followed)."""
        ...

    async def read(self, path: str, limit: int) -> bytes:
        """A file of the workspace (at most ``limit`` bytes, or :class:`SandboxError`)."""
        ...

    async def write(self, path: str, data: bytes) -> None: ...

    async def remove(self, path: str) -> None: ...

    @property
    def alive(self) -> bool: ...

    async def close(self) -> None:
        """End the session: its whole process tree killed (its kernel, for a remote one)."""
        ...

    async def detach(self) -> None:
        """Let go of the session here, leaving it running for the other instances (a remote kernel); a local
        session ends."""
        ...


class Sandbox(Protocol):
    name: str
    shared: bool  # whether every instance reaches every session (by its ref), so containers never move

    def unavailable(self) -> str | None:
        """Why this sandbox cannot run code here (what to install), or ``None`` when it can."""
        ...

    async def open(self, container_id: str, limits: Limits, ref: str | None = None,
                   mounts: dict[str, Path] | None = None) -> Session:
        """The container's session: the one ``ref`` names when it still runs (a shared sandbox), else a new one
        whose workspace is what the last session left on this instance, with ``mounts`` (folders of this host
        by where they appear in the container) read-only."""
        ...

    async def discard(self, container_id: str, ref: str | None = None) -> None:
        """Remove what the container left: its workspace on this instance, the session ``ref`` names."""
        ...

    async def aclose(self) -> None: ...
