"""Calls for a container whose live session another instance on this host holds, handed to that instance.

Each instance with the local sandbox listens on a Unix socket of its own in the containers directory
(``.run/<instance>.sock``; the directory is the server user's alone and is never mounted into a sandbox).  An
instance that gets a call for a container held by another instance of the same host sends the call there, so
the container's Python variables survive whichever ``--workers`` process or instance a request lands on; when
the holder is gone (its socket refuses), the caller takes the container over.

A socket's path has room for about 107 bytes; where the containers directory is deeper than that allows, the
sockets are reached through a descriptor of their directory held open (``/proc/self/fd/<n>/<name>``, Linux).

A message is 4 bytes of length and a JSON object: ``{"container", "tenant", "op"}`` one way, and ``{"ran"}`` or
``{"error": {"status", "message", "param", "code"}}`` the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from parley.errors import ParleyError

log = logging.getLogger("parley.containers")
MAX_MESSAGE = 16 * 1024 * 1024
MAX_SOCKET_PATH = 107  # bytes the kernel takes for a Unix socket's path (sun_path, less its NUL)

Handler = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Unreachable(Exception):
    """No instance listens at that socket (it stopped, or it is on another host)."""


class Forwarded(ParleyError):
    """The error the holding instance answered with, raised again here as it was."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "The container's instance failed.")), param=error.get("param"),
                         code=error.get("code"))
        self.status_code = int(error.get("status", 500))
        self.error_type = str(error.get("type", "server_error"))


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    if size > MAX_MESSAGE:
        raise ValueError("message too large")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, dict):
        raise ValueError("not an object")
    return message


def _write(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    writer.write(struct.pack(">I", len(body)) + body)


class Relay:
    def __init__(self, directory: Path, instance: str) -> None:
        self.directory = directory / ".run"
        self.instance = instance
        self._server: asyncio.AbstractServer | None = None
        self._directory_fd: int | None = None  # (held open where the directory's path is too long for a socket)

    def path(self, instance: str) -> Path:
        """The instance's socket (a short name: a socket's path has room for about 107 bytes)."""
        return self.directory / f"{hashlib.sha256(instance.encode()).hexdigest()[:16]}.sock"

    def _address(self, instance: str) -> str:
        """The path to bind or connect the instance's socket by: its own, or one through the directory's
        descriptor where its own is too long."""
        path = self.path(instance)
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            return str(path)
        if self._directory_fd is None:
            self._directory_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._directory_fd}/{path.name}"

    async def listen(self, handler: Handler) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                request = await _read(reader)
                try:
                    reply = {"ran": await handler(str(request["container"]), str(request["tenant"]), request["op"])}
                except ParleyError as exc:
                    reply = {"error": {"status": exc.status_code, "type": exc.error_type, "message": exc.message,
                                       "param": exc.param, "code": exc.code}}
                _write(writer, reply)
                await writer.drain()
            except (OSError, ValueError, KeyError, asyncio.IncompleteReadError):
                log.warning("a relayed container call broke off")
            finally:
                writer.close()

        try:
            self._server = await asyncio.start_unix_server(serve, path=self._address(self.instance),
                                                           limit=MAX_MESSAGE)
        except OSError as exc:  # (no /proc, say): containers then move between instances
            log.warning("containers cannot be handed between this host's instances (%s): a container used "
                        "through another instance starts afresh there, with its files", exc)

    async def call(self, instance: str, container_id: str, tenant: str, op: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` on the instance that holds the container; :class:`Unreachable` when none listens there."""
        path = self.path(instance)
        try:
            reader, writer = await asyncio.open_unix_connection(self._address(instance), limit=MAX_MESSAGE)
        except (FileNotFoundError, ConnectionRefusedError):
            with contextlib.suppress(OSError):
                if path.exists():
                    path.unlink()  # the socket of an instance that is gone
            raise Unreachable(instance) from None
        try:
            _write(writer, {"container": container_id, "tenant": tenant, "op": op})
            await writer.drain()
            reply = await _read(reader)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            # it went away during the call: what ran of it is unknown, so it is not run again here
            raise Forwarded({"status": 500, "message": "The instance that held the container stopped during the "
                                                       "call; the container moves to another at its next call."}) from None
        finally:
            writer.close()
        if "error" in reply:
            raise Forwarded(reply["error"])
        return reply["ran"]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(OSError):
                self.path(self.instance).unlink()
        if self._directory_fd is not None:
            os.close(self._directory_fd)
            self._directory_fd = None
