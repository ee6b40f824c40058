"""The remote sandbox: each container's kernel runs behind a Jupyter Kernel Gateway (``jupyter kernelgateway``,
or Enterprise Gateway, which places kernels in Kubernetes pods or YARN containers).

Parley runs no model-written code itself here: isolation is the gateway deployment's (Enterprise Gateway's
kernel pods with their own limits and network policy); what Parley bounds is what it takes back (output
bytes, file sizes) and how long a call may run (past it, the kernel is restarted).  Every instance reaches
every kernel by its id (the container's ``session_ref`` in the store), so a container never moves and its
variables survive whichever instance a request lands on.

Calls go over the kernel's WebSocket in the Jupyter messaging protocol.  Shell commands and the workspace's
files go through small helpers run in the kernel itself, which reports back on a marked line of its output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

import aiohttp

from parley.sandbox.base import WORKDIR, CellResult, CommandResult, FileState, Limits, SandboxError, stopped_at
from parley.sandbox.workspace import MAX_DEPTH, MAX_FILES, relative

MARK = "\x1eparley:"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HELPERS = r'''
import base64 as _b64, json as _json, os as _os, subprocess as _sp, signal as _signal
def _mark(value):
    print("\x1eparley:" + _json.dumps(value))
def _scan(root, limit, depth):
    found = []
    def walk(path, prefix, level):
        with _os.scandir(path) as entries:
            for entry in entries:
                if len(found) >= limit:
                    return
                info = entry.stat(follow_symlinks=False)
                if entry.is_file(follow_symlinks=False):
                    found.append([prefix + entry.name, info.st_size, info.st_mtime_ns])
                elif entry.is_dir(follow_symlinks=False) and level < depth:
                    walk(entry.path, prefix + entry.name + "/", level + 1)
    walk(root, "", 1)
    return found
def _read(path, limit):
    fd = _os.open(path, _os.O_RDONLY | _os.O_NOFOLLOW)
    with _os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    return None if len(data) > limit else _b64.b64encode(data).decode()
def _write(path, data):
    _os.makedirs(_os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(_b64.b64decode(data))
def _shell(command, cwd, timeout, limit):
    process = _sp.Popen(["/bin/sh", "-c", command], cwd=cwd, stdin=_sp.DEVNULL, stdout=_sp.PIPE, stderr=_sp.PIPE,
                        start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
        code = process.returncode
    except _sp.TimeoutExpired:
        _os.killpg(process.pid, _signal.SIGKILL)
        out, err = process.communicate()
        code = None
    cut = lambda b: b[:limit].decode("utf-8", "replace") + (
        "\n[output truncated: %d bytes in all]" % len(b) if len(b) > limit else "")
    return [cut(out), cut(err), code]
'''


def _message(msg_type: str, content: dict[str, Any], session: str) -> tuple[str, dict[str, Any]]:
    msg_id = uuid.uuid4().hex
    return msg_id, {"header": {"msg_id": msg_id, "username": "parley", "session": session, "msg_type": msg_type,
                               "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
                    "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}


class GatewaySession:
    def __init__(self, sandbox: KernelGatewaySandbox, container_id: str, kernel_id: str, limits: Limits) -> None:
        self.sandbox = sandbox
        self.container_id = container_id
        self.ref: str | None = kernel_id
        self.limits = limits
        self.workdir = sandbox.workdir.replace("{container}", container_id)
        self.lock = asyncio.Lock()
        self.client_session = uuid.uuid4().hex
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._alive = True

    @property
    def alive(self) -> bool:
        return self._alive

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            url = f"{self.sandbox.ws_url}/api/kernels/{self.ref}/channels"
            try:
                self._ws = await self.sandbox.http.ws_connect(url, headers=self.sandbox.headers,
                                                              max_msg_size=3 * self.limits.file_bytes + (8 << 20))
            except aiohttp.ClientError as exc:
                self._alive = False
                raise SandboxError(f"the kernel gateway's socket failed: {exc}") from None
        return self._ws

    async def setup(self) -> None:
        """The kernel's working directory, and the helpers the server's calls use."""
        result = await self._execute(f"import os as _os\n_os.makedirs({self.workdir!r}, exist_ok=True)\n"
                                     f"_os.chdir({self.workdir!r})\n{HELPERS}", self.limits.call_timeout_s, silent=True)
        if result.error:
            raise SandboxError(f"the kernel could not be set up: {result.logs[:500]}")

    async def _execute(self, code: str, timeout: float, silent: bool = False, limit: int | None = None) -> CellResult:
        """Run code in the kernel: its output (at most ``limit`` characters), images, error; past ``timeout`` the
        kernel restarts."""
        limit = limit or self.limits.output_bytes
        ws = await self._socket()
        msg_id, message = _message("execute_request", {
            "code": code, "silent": False, "store_history": not silent, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}, self.client_session)
        logs: list[str] = []
        size = 0
        images: list[str] = []
        error: str | None = None
        try:
            await ws.send_str(json.dumps(message))
            async with asyncio.timeout(timeout):
                while True:
                    frame = await ws.receive()
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise SandboxError(f"the kernel's socket closed ({frame.type.name})")
                    reply = json.loads(frame.data)
                    if reply.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = reply.get("msg_type") or reply["header"]["msg_type"], reply.get("content", {})
                    text = ""
                    if kind == "stream":
                        text = str(content.get("text", ""))
                    elif kind in ("execute_result", "display_data"):
                        data = content.get("data", {})
                        if "image/png" in data and len(images) < 8:
                            images.append(str(data["image/png"]).replace("\n", ""))
                        elif kind == "execute_result":
                            text = str(data.get("text/plain", "")) + "\n"
                    elif kind == "error":
                        error = str(content.get("ename", "Error"))
                        text = ANSI.sub("", "\n".join(map(str, content.get("traceback") or []))) + "\n" or \
                            f"{error}: {content.get('evalue', '')}\n"
                    elif kind == "status" and content.get("execution_state") == "idle":
                        break
                    if text:
                        size += len(text)
                        if size <= limit:
                            logs.append(text)
        except TimeoutError:
            await self._restart()
            return stopped_at(timeout)
        except (aiohttp.ClientError, ValueError, KeyError) as exc:
            self._alive = False
            raise SandboxError(f"the kernel gateway failed: {exc}") from None
        text = "".join(logs)
        if size > limit:
            text += f"\n[output truncated: {size} characters in all, the first {len(text)} shown]"
        return CellResult(logs=text, images=images, error=error)

    async def _restart(self) -> None:
        try:
            async with self.sandbox.http.post(f"{self.sandbox.url}/api/kernels/{self.ref}/restart",
                                              headers=self.sandbox.headers) as response:
                response.raise_for_status()
            if self._ws is not None:
                await self._ws.close()
            await self.setup()
        except (aiohttp.ClientError, SandboxError):
            self._alive = False

    async def _helper(self, call: str) -> Any:
        result = await self._execute(f"{HELPERS}\n_mark({call})", self.limits.call_timeout_s, silent=True,
                                     limit=2 * self.limits.file_bytes + 4096)
        if result.error or MARK not in result.logs:
            raise SandboxError(f"a helper failed in the kernel: {result.logs[-500:]}")
        return json.loads(result.logs.split(MARK, 1)[1].splitlines()[0])

    def _path(self, path: str) -> str:
        return f"{self.workdir}/{relative(path)}"

    async def python(self, code: str) -> CellResult:
        async with self.lock:
            return await self._execute(code, self.limits.call_timeout_s)

    async def shell(self, command: str, timeout_s: float, max_output: int) -> CommandResult:
        timeout_s = min(timeout_s, self.limits.call_timeout_s)
        limit = max(1, min(max_output, self.limits.output_bytes))
        async with self.lock:
            result = await self._execute(
                f"{HELPERS}\n_mark(_shell({command!r}, {self.workdir!r}, {timeout_s!r}, {limit!r}))",
                timeout_s + 10, silent=True)
        if result.timed_out or MARK not in result.logs:
            return CommandResult(stderr=result.logs[-2000:] or "The kernel stopped answering; it was restarted.")
        stdout, stderr, code = json.loads(result.logs.split(MARK, 1)[1].splitlines()[0])
        return CommandResult(stdout, stderr, code)

    async def files(self) -> list[FileState]:
        async with self.lock:
            found = await self._helper(f"_scan({self.workdir!r}, {MAX_FILES}, {MAX_DEPTH})")
        return [FileState(f"{WORKDIR}/{path}", size, mtime) for path, size, mtime in found]

    async def read(self, path: str, limit: int) -> bytes:
        async with self.lock:
            data = await self._helper(f"_read({self._path(path)!r}, {limit})")
        if data is None:
            raise SandboxError(f"{path} is larger than {limit} bytes")
        return base64.b64decode(data)

    async def write(self, path: str, data: bytes) -> None:
        async with self.lock:
            await self._helper(f"_write({self._path(path)!r}, {base64.b64encode(data).decode()!r})")

    async def remove(self, path: str) -> None:
        async with self.lock:
            await self._helper(f"_os.remove({self._path(path)!r}) if _os.path.lexists({self._path(path)!r}) "
                               f"else None")

    async def detach(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        self._alive = False

    async def close(self) -> None:
        await self.detach()
        await self.sandbox.delete_kernel(self.ref)


class KernelGatewaySandbox:
    """Containers as kernels of a Jupyter Kernel Gateway (or Enterprise Gateway) at ``url``."""

    name = "kernel_gateway"
    shared = True

    def __init__(self, url: str, token: str | None, workdir: str = WORKDIR, kernel: str = "python3") -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[len("http"):] if self.url.startswith("http") else self.url
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.workdir = workdir.rstrip("/")
        self.kernel = kernel
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        return self._http

    def unavailable(self) -> str | None:
        if not self.url.startswith(("http://", "https://")):
            return "--kernel-gateway-url must be an http(s) URL"
        return None

    async def _kernel_exists(self, kernel_id: str) -> bool:
        async with self.http.get(f"{self.url}/api/kernels/{kernel_id}", headers=self.headers) as response:
            return response.status == 200

    async def open(self, container_id: str, limits: Limits, ref: str | None = None,
                   mounts: dict[str, Any] | None = None) -> GatewaySession:
        if mounts:
            raise SandboxError("skills are mounted by the bwrap sandbox only")
        try:
            if ref is not None and await self._kernel_exists(ref):
                kernel_id = ref
            else:
                async with self.http.post(f"{self.url}/api/kernels", json={"name": self.kernel},
                                          headers=self.headers) as response:
                    if response.status >= 400:
                        raise SandboxError(f"the kernel gateway refused a new kernel (HTTP {response.status})")
                    kernel_id = str((await response.json())["id"])
        except (aiohttp.ClientError, ValueError, KeyError) as exc:
            raise SandboxError(f"the kernel gateway at {self.url} could not be reached: {exc}") from None
        session = GatewaySession(self, container_id, kernel_id, limits)
        await session.setup()
        return session

    async def delete_kernel(self, kernel_id: str | None) -> None:
        if kernel_id is None:
            return
        try:
            async with self.http.delete(f"{self.url}/api/kernels/{kernel_id}", headers=self.headers):
                pass
        except aiohttp.ClientError:
            pass  # the gateway culls idle kernels itself

    async def discard(self, container_id: str, ref: str | None = None) -> None:
        await self.delete_kernel(ref)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
