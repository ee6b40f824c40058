"""The local sandbox: each container's kernel runs under bubblewrap (``bwrap``) on this host.

What a session's processes get: new user, PID, network, IPC, UTS and cgroup namespaces (no network at all, no
view of the host's processes), no capabilities and no further user namespaces; a root file system of its own
in which ``/usr``, the Python that runs the kernel and a few files of ``/etc`` are read-only, ``/tmp`` is a
small tmpfs and the container's workspace (``/mnt/data``) is the only writable place on disk.  Resource limits
(``setrlimit``) bound each process's memory, the processes of the container, open files, the size of a file
and its CPU time; each call has a wall-clock limit after which the whole PID namespace is killed.  When the
server runs as root, each container's processes run as a user id of their own (so that the process limit is
the container's and root's exemptions do not apply); otherwise they run as the server's user.

After every call, the processes the call left behind are killed: only the kernel outlives a call.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import struct
import sys
import zlib
from pathlib import Path

from parley.sandbox import workspace
from parley.sandbox.base import WORKDIR, CellResult, CommandResult, FileState, Limits, SandboxError, stopped_at

KERNEL = Path(__file__).with_name("kernel_main.py")
MAX_REPLY = 64 * 1024 * 1024
UID_BASE = 2_000_000  # root: each container's processes get a user id of their own from here on
UID_SPAN = 1_000_000
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "fonts", "mime.types")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
       "MPLCONFIGDIR": "/tmp/matplotlib", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "TMPDIR": "/tmp"}


def _ns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _running(pid: int) -> bool:
    """Whether a process is alive (not a zombie its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _processes_in(namespace: str) -> list[int]:
    """The host pids of every live process in a PID namespace."""
    return [int(name) for name in os.listdir("/proc")
            if name.isdigit() and _ns_of(int(name)) == namespace and _running(int(name))]


def _own_tasks() -> int:
    """How many tasks this user runs now (the process limit counts them all when the server is not root)."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


def _path_mounts() -> list[tuple[str, str]]:
    """(kind, path) of the host paths the kernel needs: ``/usr`` and its links, the Python installation and the
    environment it runs in (when outside ``/usr``)."""
    mounts = [("ro", "/usr")]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            mounts.append(("link", top))
        elif os.path.isdir(top):
            mounts.append(("ro", top))
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}):
        if not prefix.startswith("/usr/") and prefix != "/usr":
            mounts.append(("ro", prefix))
    for name in ETC_FILES:
        if os.path.exists(f"/etc/{name}"):
            mounts.append(("ro", f"/etc/{name}"))
    return mounts


class BwrapSession:
    def __init__(self, container_id: str, root: Path, limits: Limits, uid: int | None,
                 mounts: dict[str, Path] | None = None) -> None:
        self.container_id = container_id
        self.mounts = mounts or {}  # host folders by where they appear, read-only (skills)
        self.root = root
        self.limits = limits
        self.uid = uid  # the host user id its processes run as (root only)
        self.process: asyncio.subprocess.Process | None = None
        self.namespace: str | None = None
        self.init_pid = 0
        self.kernel_pid = 0
        self.lock = asyncio.Lock()
        self.ref: str | None = None  # only this host reaches it
        self._alive = False

    @property
    def alive(self) -> bool:
        return self._alive and self.process is not None and self.process.returncode is None

    def _arguments(self, info_fd: int, passwd_fd: int) -> list[str]:
        if self.uid is None:  # an unprivileged bwrap: its own user namespace, mapped to the server's user
            args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns"]
        else:  # as root: no user namespace (it would map to root); the kernel drops to the container's user
            args = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                    "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        args += ["--die-with-parent", "--new-session", "--hostname", "container", "--clearenv",
                 "--info-fd", str(info_fd)]
        if self.uid is None:
            args += ["--uid", "1000", "--gid", "1000", "--cap-drop", "ALL"]
        made = {"/", "/proc", "/dev", "/tmp"}

        def place(*option: str) -> None:  # an option whose last word is a path: its parents made open to all
            nonlocal args
            for parent in reversed(Path(option[-1]).parents):  # (bwrap copies the host's modes: /root is 0700)
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += list(option)

        # /tmp first: a Python installed under /tmp (a venv made there) is mounted over it, not hidden by it
        args += ["--perms", "1777", "--size", str(64 * 1024 * 1024), "--tmpfs", "/tmp"]
        for kind, path in _path_mounts():
            place("--symlink", os.readlink(path), path) if kind == "link" else place("--ro-bind", path, path)
        args += ["--perms", "0644", "--ro-bind-data", str(passwd_fd), "/etc/passwd", "--proc", "/proc", "--dev", "/dev"]
        place("--bind", str(self.root), WORKDIR)
        for where, source in sorted(self.mounts.items()):
            place("--ro-bind", str(source), where)
        place("--ro-bind", str(KERNEL), "/opt/parley/kernel.py")
        args += ["--chdir", WORKDIR]
        env = {**ENV, "SANDBOX_UID": str(self.uid)} if self.uid is not None else ENV
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args + ["--", os.path.realpath(sys.executable) if sys.prefix == sys.base_prefix else sys.executable,
                       "-I", "-B", "/opt/parley/kernel.py"]

    def _limit(self) -> None:  # runs in the child between fork and exec
        limits = self.limits
        processes = limits.processes if self.uid is not None else self._processes
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_NPROC, processes),
                             (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_FSIZE, limits.disk_bytes),
                             (resource.RLIMIT_CPU, limits.lifetime_cpu_s), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))

    async def start(self) -> None:
        self._processes = self.limits.processes + (await asyncio.to_thread(_own_tasks) if self.uid is None else 0)
        opened: list[int] = []
        try:
            passwd_fd = os.memfd_create("passwd")
            os.write(passwd_fd, b"sandbox:x:1000:1000:sandbox:/mnt/data:/bin/sh\n")
            os.lseek(passwd_fd, 0, os.SEEK_SET)
            info_r, info_w = os.pipe()
            opened += [passwd_fd, info_r, info_w]
            self.process = await asyncio.create_subprocess_exec(
                *self._arguments(info_w, passwd_fd), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=(passwd_fd, info_w), preexec_fn=self._limit, limit=MAX_REPLY,
                env={"PATH": ENV["PATH"]})  # bwrap itself is the sandbox's PID 1: none of the server's variables
            os.close(info_w)
            opened.remove(info_w)
            info = await asyncio.to_thread(_read_all, info_r)
            ready = await asyncio.wait_for(self._receive(), self.limits.call_timeout_s)
        except (OSError, asyncio.TimeoutError, SandboxError) as exc:
            await self.close()
            detail = ""
            if self.process is not None and self.process.stderr is not None:
                detail = (await self.process.stderr.read(4096)).decode(errors="replace").strip()
            raise SandboxError(f"the sandbox did not start: {detail or exc}") from None
        finally:
            for fd in opened:
                os.close(fd)
        if not ready.get("ready"):
            await self.close()
            raise SandboxError("the sandbox's kernel did not start")
        try:
            self.init_pid = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            await self.close()
            raise SandboxError("bwrap did not report its sandbox") from None
        self.namespace = _ns_of(self.init_pid)
        others = [pid for pid in _processes_in(self.namespace or "") if pid != self.init_pid]
        self.kernel_pid = others[0] if len(others) == 1 else 0
        self._alive = self.namespace is not None and self.kernel_pid != 0
        if not self._alive:
            await self.close()
            raise SandboxError("the sandbox's kernel could not be found")

    async def _receive(self) -> dict:
        assert self.process is not None and self.process.stdout is not None
        try:
            header = await self.process.stdout.readexactly(4)
            size = struct.unpack(">I", header)[0]
            if size > MAX_REPLY:
                raise SandboxError("the kernel's reply is too large")
            message = json.loads(await self.process.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ValueError) as exc:
            raise SandboxError(f"the kernel broke off ({exc.__class__.__name__})") from None
        if not isinstance(message, dict):
            raise SandboxError("the kernel's reply is not an object")
        return message

    async def _call(self, request: dict, timeout: float) -> dict | None:
        """The kernel's reply, or ``None`` when the call ran past ``timeout`` (the session is then killed)."""
        async with self.lock:
            if not self.alive:
                raise SandboxError("the session has ended")
            assert self.process is not None and self.process.stdin is not None
            body = json.dumps(request).encode()
            try:
                self.process.stdin.write(struct.pack(">I", len(body)) + body)
                await self.process.stdin.drain()
                reply = await asyncio.wait_for(self._receive(), timeout)
            except asyncio.TimeoutError:
                await self.close()
                return None
            except (OSError, SandboxError):
                await self.close()
                raise SandboxError("the sandbox's kernel died (a limit was reached, or it was killed)") from None
            finally:
                if self.alive:
                    await asyncio.to_thread(self._reap)
            return reply

    def _reap(self) -> None:
        """Kill every process of the sandbox but its init and the kernel (what a call left running)."""
        for _ in range(100):
            left = [pid for pid in _processes_in(self.namespace or "") if pid not in (self.init_pid, self.kernel_pid)]
            if not left:
                return
            for pid in left:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        os.kill(self.init_pid, 9)  # it would not stop forking: the whole namespace goes

    async def python(self, code: str) -> CellResult:
        reply = await self._call({"op": "python", "code": code, "limit": self.limits.output_bytes},
                                 self.limits.call_timeout_s)
        if reply is None:
            return stopped_at(self.limits.call_timeout_s)
        images = reply.get("images") if isinstance(reply.get("images"), list) else []
        return CellResult(logs=str(reply.get("logs", "")), images=[str(i) for i in images],
                          error=str(reply["error"]) if reply.get("error") else None)

    async def shell(self, command: str, timeout_s: float, max_output: int) -> CommandResult:
        timeout_s = min(timeout_s, self.limits.call_timeout_s)
        limit = max(1, min(max_output, self.limits.output_bytes))
        reply = await self._call({"op": "shell", "command": command, "timeout": timeout_s, "limit": limit},
                                 timeout_s + 10)
        if reply is None:
            return CommandResult(stderr="The sandbox stopped answering; it was restarted.")
        code = reply.get("exit_code")
        return CommandResult(str(reply.get("stdout", "")), str(reply.get("stderr", "")),
                             code if isinstance(code, int) else None)

    async def files(self) -> list[FileState]:
        return await asyncio.to_thread(workspace.scan, self.root)

    async def read(self, path: str, limit: int) -> bytes:
        try:
            return await asyncio.to_thread(workspace.read, self.root, path, limit)
        except OSError as exc:
            raise SandboxError(f"{path} could not be read: {exc.strerror}") from None

    async def write(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(workspace.write, self.root, path, data, self.uid)

    async def remove(self, path: str) -> None:
        await asyncio.to_thread(workspace.remove, self.root, path)

    async def detach(self) -> None:
        await self.close()

    async def close(self) -> None:
        self._alive = False
        for pid in (self.init_pid, self.process.pid if self.process else 0):
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if self.process is not None:
            await self.process.wait()


def _read_all(fd: int) -> bytes:
    chunks = []
    while piece := os.read(fd, 4096):
        chunks.append(piece)
        if b"}" in piece:
            break
    return b"".join(chunks)


class BwrapSandbox:
    """Containers as bubblewrap sandboxes on this host, their workspaces under ``directory``."""

    name = "bwrap"
    shared = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "the bwrap sandbox needs Linux"
        if shutil.which("bwrap") is None:
            return "bubblewrap is not installed (Debian and Ubuntu: apt-get install bubblewrap)"
        return None

    def _uid(self, container_id: str) -> int | None:
        return UID_BASE + zlib.crc32(container_id.encode()) % UID_SPAN if os.getuid() == 0 else None

    def _root(self, container_id: str) -> Path:
        if not container_id.replace("_", "").isalnum():
            raise SandboxError("not a container id")
        return self.directory / container_id

    async def open(self, container_id: str, limits: Limits, ref: str | None = None,
                   mounts: dict[str, Path] | None = None) -> BwrapSession:
        root, uid = self._root(container_id), self._uid(container_id)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        root.mkdir(exist_ok=True, mode=0o700)
        if uid is not None:
            os.chown(root, uid, uid)
        session = BwrapSession(container_id, root, limits, uid, mounts or {})
        await session.start()
        return session

    async def discard(self, container_id: str, ref: str | None = None) -> None:
        await asyncio.to_thread(shutil.rmtree, self._root(container_id), True)

    async def aclose(self) -> None:
        return None
