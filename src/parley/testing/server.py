"""Run a real ``parley serve`` process on loopback (for tests, ``parley verify`` and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ParleyProcess:
    """``python -m parley serve`` in a child process, started and stopped for real."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 120.0) -> None:
        self.args = list(args)
        self.env = env or {}
        self.port = free_port()
        self.startup_timeout = startup_timeout
        fd, path = tempfile.mkstemp(prefix="parley-serve-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        self.process: subprocess.Popen[bytes] | None = None
        self._kept_log = ""  # the log of a stopped server, whose file is removed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the ``openai`` client takes as ``base_url``."""
        return f"{self.url}/v1"

    def log(self) -> str:
        """What the server wrote, while it runs and after it stopped."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return self._kept_log

    def start(self) -> ParleyProcess:
        env = {**os.environ, **self.env}
        command = [sys.executable, "-m", "parley", "serve", "--port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"parley serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"parley serve did not become ready:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_path.exists():  # (kept in memory: a suite's hundreds of servers leave no files behind)
            self._kept_log = self.log()
            self.log_path.unlink()

    def __enter__(self) -> ParleyProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
