"""A container's workspace on this host's disk, handled as hostile: code in the sandbox wrote it, so every path
is resolved one component at a time beneath the workspace, never through a symbolic link, and only regular
files are read.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

from parley.sandbox.base import WORKDIR, FileState, SandboxError

MAX_FILES = 1000
MAX_DEPTH = 16


def relative(path: str) -> str:
    """A container file's path (``/mnt/data/a/b.csv``, or relative to it) as a clean path under the workspace;
    ``ValueError`` for anything that would leave it."""
    if "\x00" in path:
        raise ValueError("a path may not contain NUL")
    if path.startswith(WORKDIR + "/"):
        path = path[len(WORKDIR) + 1:]
    elif path.startswith("/"):
        raise ValueError(f"a container file's path must be under {WORKDIR}")
    clean = posixpath.normpath(path)
    if clean in (".", "") or clean.startswith("../") or clean == ".." or len(clean.split("/")) > MAX_DEPTH:
        raise ValueError(f"not a file path under {WORKDIR}: {path!r}")
    return clean


def _open_parent(root: Path, rel: str, create: bool, owner: int | None) -> tuple[int, str]:
    """A descriptor of the directory that holds ``rel`` (made when ``create``), and the file's name."""
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                if owner is not None:
                    os.chown(part, owner, owner, dir_fd=fd, follow_symlinks=False)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd, parts[-1]


def scan(root: Path) -> list[FileState]:
    """The regular files under ``root`` (at most :data:`MAX_FILES`), by their container paths."""
    found: list[FileState] = []

    def walk(fd: int, prefix: str, depth: int) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                if len(found) >= MAX_FILES:
                    return
                info = entry.stat(follow_symlinks=False)
                path = f"{prefix}{entry.name}"
                if stat.S_ISREG(info.st_mode):
                    found.append(FileState(f"{WORKDIR}/{path}", info.st_size, info.st_mtime_ns))
                elif stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
                    try:
                        child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    except OSError:
                        continue
                    try:
                        walk(child, f"{path}/", depth + 1)
                    finally:
                        os.close(child)

    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    try:
        walk(top, "", 1)
    finally:
        os.close(top)
    return found


def read(root: Path, path: str, limit: int) -> bytes:
    parent, name = _open_parent(root, relative(path), False, None)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxError(f"{path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SandboxError(f"{path} is larger than {limit} bytes")
    return data


def write(root: Path, path: str, data: bytes, owner: int | None) -> None:
    parent, name = _open_parent(root, relative(path), True, owner)
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise SandboxError(f"{path} is a directory") from None
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if owner is not None:
            os.chown(name, owner, owner, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def remove(root: Path, path: str) -> None:
    try:
        parent, name = _open_parent(root, relative(path), False, None)
    except FileNotFoundError:
        return
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.EPERM):
            raise
    finally:
        os.close(parent)
