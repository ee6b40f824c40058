"""The program that runs inside a container's sandbox: a persistent Python process that executes code cells
(their variables survive between cells, as in a notebook) and shell commands, one request at a time.

It speaks to the server over its stdin and stdout: each message is a 4-byte big-endian length and a JSON
object.  Before the first request it moves those two streams to private descriptors and points 0, 1 and 2
elsewhere, so that neither a cell nor a command can write into the protocol by accident.  (A cell can still
do it on purpose: the server treats a malformed reply as the kernel's death, never as data it trusts.)

Standard library only, so it runs under any Python the sandbox offers; it is not imported by the server.
"""

import ast
import base64
import io
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import traceback
import warnings

WORKDIR = "/mnt/data"
MAX_IMAGES = 8
MAX_IMAGE_BYTES = 4 * 1024 * 1024


class Capture:
    """Collects what is written to a descriptor through a pipe: the first ``limit`` bytes, and the count of all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        self.read_fd, self.write_fd = os.pipe()

    def take(self, piece: bytes) -> None:
        self.total += len(piece)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += piece[:room]

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        if self.total > len(self.data):
            text += f"\n[output truncated: {self.total} bytes in all, the first {len(self.data)} shown]"
        return text


class Drain(threading.Thread):
    """Reads captures until told to stop, then takes what is already in their pipes without waiting for a
    writer that never closes (a process a cell left behind)."""

    def __init__(self, captures: list[Capture]) -> None:
        super().__init__(daemon=True)
        self.captures = {c.read_fd: c for c in captures}
        self.stop_r, self.stop_w = os.pipe()

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for fd in self.captures:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self.stop_r, selectors.EVENT_READ)
        open_fds = set(self.captures)
        stopping = False
        while open_fds and not stopping:
            for key, _ in selector.select():
                if key.fd == self.stop_r:
                    stopping = True
                    continue
                piece = os.read(key.fd, 65536)
                if piece:
                    self.captures[key.fd].take(piece)
                else:
                    selector.unregister(key.fd)
                    open_fds.discard(key.fd)
        for fd in open_fds:  # what is buffered now, without blocking
            os.set_blocking(fd, False)
            try:
                while piece := os.read(fd, 65536):
                    self.captures[fd].take(piece)
            except BlockingIOError:
                pass
        selector.close()

    def finish(self) -> None:
        os.write(self.stop_w, b"x")
        self.join()
        for fd in (*self.captures, self.stop_r, self.stop_w):
            os.close(fd)


def _figures() -> list[str]:
    """PNGs of the figures a cell left open (matplotlib, when the cell imported it), closed after."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    images = []
    for number in pyplot.get_fignums()[:MAX_IMAGES]:
        buffer = io.BytesIO()
        try:
            pyplot.figure(number).savefig(buffer, format="png")
        except Exception:  # a figure that cannot be drawn is left out
            continue
        if buffer.tell() <= MAX_IMAGE_BYTES:
            images.append(base64.b64encode(buffer.getvalue()).decode())
    pyplot.close("all")
    return images


def drop_privileges() -> None:
    """Under a root server the sandbox starts as root (with no other capability than changing user) and
    becomes the container's own user here, for good, before it runs anything."""
    uid = os.environ.pop("SANDBOX_UID", None)
    if uid is not None:
        os.setgroups([])
        os.setresgid(int(uid), int(uid), int(uid))
        os.setresuid(int(uid), int(uid), int(uid))
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise SystemExit("no_new_privs could not be set")


class Kernel:
    def __init__(self) -> None:
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.stdin = os.fdopen(os.dup(0), "rb", buffering=0)
        self.stdout = os.fdopen(os.dup(1), "wb", buffering=0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.saved = [os.dup(1), os.dup(2)]
        self.console = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True, encoding="utf-8",
                                        errors="replace")

    def read(self):
        header = self.stdin.read(4)
        if len(header) < 4:
            return None
        size = struct.unpack(">I", header)[0]
        body = b""
        while len(body) < size:
            piece = self.stdin.read(size - len(body))
            if not piece:
                return None
            body += piece
        return json.loads(body)

    def reply(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.stdout.write(struct.pack(">I", len(body)) + body)

    def python(self, code: str, limit: int) -> dict:
        capture = Capture(limit)
        drain = Drain([capture])
        drain.start()
        os.dup2(capture.write_fd, 1)
        os.dup2(capture.write_fd, 2)
        os.close(capture.write_fd)
        sys.stdout = sys.stderr = self.console  # a cell may have replaced them
        error = None
        try:
            self._run(code)
        except BaseException as exc:  # noqa: B036 - a cell's SystemExit and KeyboardInterrupt are its errors too
            error = type(exc).__name__
            frames = traceback.extract_tb(exc.__traceback__)
            cell = [f for f in frames if f.filename == "<cell>"]
            sys.stderr.write("Traceback (most recent call last):\n" if cell else "")
            sys.stderr.write("".join(traceback.format_list(cell)))
            sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        try:
            sys.stdout.flush()
        except Exception:
            pass
        images = _figures()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        drain.finish()
        return {"logs": capture.text(), "images": images, "error": error}

    def _run(self, code: str) -> None:
        tree = ast.parse(code, "<cell>", "exec")
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        exec(compile(tree, "<cell>", "exec"), self.namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), self.namespace)
            if value is not None:
                print(repr(value))

    def shell(self, command: str, timeout: float, limit: int) -> dict:
        out, err = Capture(limit), Capture(limit)
        drain = Drain([out, err])
        drain.start()
        try:
            process = subprocess.Popen(["/bin/sh", "-c", command], cwd=WORKDIR, stdin=subprocess.DEVNULL,
                                       stdout=out.write_fd, stderr=err.write_fd, start_new_session=True)
        except OSError as exc:
            os.close(out.write_fd)
            os.close(err.write_fd)
            drain.finish()
            return {"stdout": "", "stderr": f"{exc}\n", "exit_code": 127}
        os.close(out.write_fd)
        os.close(err.write_fd)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the command's whole group, finished or not
        except OSError:
            pass
        process.wait()
        drain.finish()
        return {"stdout": out.text(), "stderr": err.text(), "exit_code": code}

    def serve(self) -> None:
        self.reply({"ready": True, "pid": os.getpid()})
        while (request := self.read()) is not None:
            if request.get("op") == "python":
                self.reply(self.python(str(request["code"]), int(request["limit"])))
            elif request.get("op") == "shell":
                self.reply(self.shell(str(request["command"]), float(request["timeout"]), int(request["limit"])))
            else:
                self.reply({"unknown": request.get("op")})


if __name__ == "__main__":
    drop_privileges()
    warnings.filterwarnings("ignore", message=".*non-interactive.*")  # plt.show() under the Agg backend
    os.chdir(WORKDIR)
    Kernel().serve()
