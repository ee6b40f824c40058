"""Containers: what the Containers API, ``code_interpreter`` and the hosted ``shell`` run on.

A container is a row and a file list in the store (:mod:`parley.containers.store`), so any instance can
answer for it, and at most one live :class:`~parley.sandbox.base.Session` (a sandboxed Python process with
the container's files under ``/mnt/data``) on the instance that used it last.  Before each call the session's
workspace is brought up to the store's file list (uploads made through any instance, files deleted); after
it, what the call wrote is stored (``source: assistant``), so the store is always the container's truth.  A
container used through another instance moves there: its files follow, its Python variables do not (the
note in the README says how to keep them: route a container's requests to one instance, or use a sandbox
every instance reaches).

A container expires after ``expires_after.minutes`` without use: its session is killed, its workspace and
stored files deleted, and its row kept as ``expired`` (so a late request gets a clear error).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from parley.containers.store import Container, ContainerFile, SqlContainers
from parley.containers.skills import SqlSkills, version_number
from parley.errors import InvalidRequest, NotFound, ParleyError, StoreUnavailable, UnsupportedParameter
from parley.containers.files import ContainerFiles, Live
from parley.containers.relay import Relay, Unreachable
from parley.sandbox.base import CellResult, CommandResult, Limits, Sandbox, SandboxError, Session
from parley.store.files import BLOB, FileRecord, SqlFiles

log = logging.getLogger("parley.containers")
MEMORY = {"1g": 1 << 30, "4g": 4 << 30, "16g": 16 << 30, "64g": 64 << 30}
SKILLS_DIR = "/mnt/skills"  # where a container's skills appear, each in a folder of its name


class SandboxFailed(ParleyError):
    """The sandbox could not run a call (it would not start): the server's fault, not the request's."""

    status_code = 500
    error_type = "server_error"


def expired_error(container_id: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Container '{container_id}' has expired (it was idle past its expires_after); create "
                          f"a new one.", param=param, code="container_expired")


@dataclass
class Ran:
    """A call's result, and the container files it created or changed."""

    result: Any
    changed: list[ContainerFile]


class Containers:
    def __init__(self, store: SqlContainers, files: SqlFiles, sandbox: Sandbox | None, instance: str, *,
                 limits: Limits, max_memory: str, unavailable: str | None = None, sweep_s: float = 30.0,
                 relay: Relay | None = None, skills: SqlSkills | None = None) -> None:
        self.store = store
        self.files = files
        self.sandbox = sandbox
        self.instance = instance
        self.limits = limits
        self.max_memory = max_memory
        self.why_unavailable = unavailable if sandbox is None else sandbox.unavailable()
        self.sweep_s = sweep_s
        self.relay = relay  # to and from the other instances of this host (the local sandbox only)
        self.skills = skills
        self.container_files = ContainerFiles(store, files, limits)
        self.live: dict[str, Live] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- what the API and the tools check --------------------------------------------------------------------

    def check_available(self, param: str) -> None:
        """A 400 that says what to install, where no sandbox can run code here."""
        if self.why_unavailable is not None:
            raise InvalidRequest(f"This server cannot run code: {self.why_unavailable}. Code runs only in a "
                                 f"sandbox; Parley never runs it unsandboxed.", param=param,
                                 code="sandbox_unavailable")

    def check_memory(self, memory_limit: str | None, param: str) -> str:
        memory_limit = memory_limit or "1g"
        if memory_limit not in MEMORY:
            raise InvalidRequest("memory_limit must be one of 1g, 4g, 16g, 64g.", param=param)
        if MEMORY[memory_limit] > MEMORY[self.max_memory]:
            raise InvalidRequest(f"This server allows containers of at most {self.max_memory} "
                                 f"(--container-max-memory).", param=param)
        return memory_limit

    async def get(self, container_id: str, tenant: str, param: str = "container_id") -> Container:
        container = await self.store.get(container_id, tenant) if len(container_id) <= 80 else None
        if container is None:
            raise NotFound(f"No container with id '{container_id}' found.", param=param)
        return container

    async def usable(self, container_id: str, tenant: str, param: str) -> Container:
        container = await self.get(container_id, tenant, param)
        if container.expired:
            raise expired_error(container_id, param)
        return container

    async def admit(self, tenant: str, param: str, *, container_id: str | None = None,
                    memory_limit: str | None = None, file_ids: list[str] | None = None) -> None:
        """A tool's container checked before the model runs: code can run here, and the named container (at
        ``param.container_id``-like places) or the auto container's memory and files are the tenant's to use."""
        self.check_available(param)
        if container_id is not None:
            await self.usable(container_id, tenant, param)
            return
        self.check_memory(memory_limit, f"{param}.memory_limit")
        await self._files_of(tenant, file_ids or [], f"{param}.file_ids")

    async def _files_of(self, tenant: str, file_ids: list[str], param: str) -> list[FileRecord]:
        """The tenant's files ``file_ids`` names; a 404 naming the first that is not there (``param[i]``)."""
        records = []
        for i, file_id in enumerate(file_ids):
            record = await self.files.get(file_id, tenant)
            if record is None:
                raise NotFound(f"No file with id '{file_id}' found.", param=f"{param}[{i}]")
            records.append(record)
        return records

    async def for_conversation(self, tenant: str, earlier: list[str], *, name: str, memory_limit: str | None,
                               file_ids: list[str], param: str, skills: list[dict[str, Any]] | None = None
                               ) -> Container:
        """An ``auto`` container: the newest of the conversation's ``earlier`` containers that still lives (with
        the memory and skills asked for), or a new one with ``file_ids`` copied in and ``skills`` mounted."""
        memory = memory_limit or "1g"
        for container_id in earlier:
            found = await self.store.get(container_id, tenant)
            if found is not None and not found.expired and found.memory_limit == memory and \
                    found.skills == (skills or []):
                return found
        return await self.create(tenant, name, file_ids=file_ids, minutes=20, memory_limit=memory, param=param,
                                 skills=skills)

    # -- the Containers API ------------------------------------------------------------------------------------

    async def skill_versions(self, tenant: str, refs: list[dict[str, Any]] | None, param: str) -> list[dict[str, Any]]:
        """The skill versions ``refs`` name (``{"type": "skill_reference", "skill_id", "version"}``), as a container
        keeps them; a 404 or 400 naming the first that is not the tenant's or cannot be mounted."""
        if not refs:
            return []
        if self.skills is None or (self.sandbox is not None and self.sandbox.shared):
            raise UnsupportedParameter(param, "Skills are mounted by the bwrap sandbox only.")
        found = []
        for i, ref in enumerate(refs):
            where = f"{param}[{i}]"
            if not isinstance(ref, dict) or ref.get("type") != "skill_reference":
                raise UnsupportedParameter(f"{where}.type", "Only skill_reference skills are supported by Parley.")
            skill_id, version = ref.get("skill_id"), ref.get("version")
            if not isinstance(skill_id, str):
                raise InvalidRequest(f"Missing required parameter: '{where}.skill_id'.", param=f"{where}.skill_id")
            try:
                if version == "latest":
                    number = int((await self.skills.get(skill_id, tenant))["latest_version"])
                else:  # None or "default": the skill's default version
                    number = None if version in (None, "default") else version_number(str(version),
                                                                                      f"{where}.version")
                chosen = await self.skills.version(skill_id, tenant, number, f"{where}.version")
            except NotFound as exc:
                raise NotFound(exc.message, param=f"{where}.skill_id" if exc.param == "skill_id" else exc.param) \
                    from None
            found.append({"skill_id": chosen.skill_id, "version": chosen.version, "name": chosen.name,
                          "description": chosen.description})
        if len({s["name"] for s in found}) != len(found):
            raise InvalidRequest("Two of the skills have the same name.", param=param)
        return found

    async def create(self, tenant: str, name: str, *, file_ids: list[str], minutes: int,
                     memory_limit: str | None, param: str = "file_ids",
                     skills: list[dict[str, Any]] | None = None) -> Container:
        memory = self.check_memory(memory_limit, "memory_limit")
        sources = await self._files_of(tenant, file_ids, param)
        container = await self.store.create(tenant, name, minutes, memory, skills)
        for record in sources:
            await self.container_files.copy(container, record)
        return container

    async def delete(self, container: Container) -> None:
        await self._close(container.id, container.session_ref)
        await self._drop_blobs(container.tenant, await self.store.delete(container.id))

    # -- running code --------------------------------------------------------------------------------------------

    async def python(self, container: Container, code: str) -> Ran:
        ran = await self._run(container, {"op": "python", "code": code})
        return Ran(CellResult(**ran["result"]), [ContainerFile(**f) for f in ran["changed"]])

    async def shell(self, container: Container, commands: list[str], timeout_s: float, max_output: int) -> Ran:
        ran = await self._run(container, {"op": "shell", "commands": commands, "timeout_s": timeout_s,
                                          "max_output": max_output})
        return Ran([CommandResult(**r) for r in ran["result"]], [ContainerFile(**f) for f in ran["changed"]])

    @staticmethod
    async def _execute(session: Session, op: dict[str, Any]) -> Any:
        """One call (a cell, or commands in order within one deadline) as plain data."""
        if op["op"] == "python":
            return asdict(await session.python(str(op["code"])))
        results = []
        deadline = time.monotonic() + float(op["timeout_s"])
        for command in op["commands"]:
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(CommandResult(stderr="Not run: the call's time was used up.", exit_code=None))
                continue
            results.append(await session.shell(str(command), left, int(op["max_output"])))
        return [asdict(r) for r in results]

    async def _run(self, container: Container, op: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` where the container lives: here, or on the instance of this host that holds its session."""
        self.check_available("tools")
        row = await self.store.get(container.id, container.tenant) or container
        if row.expired:
            raise expired_error(container.id, "container")
        if self.relay is not None and row.host not in (None, self.instance):
            try:
                return await self.relay.call(row.host, container.id, container.tenant, op)
            except Unreachable:
                pass  # its instance is gone, or on another host: the container moves here
        return await self._run_here(row, op)

    async def _relayed(self, container_id: str, tenant: str, op: dict[str, Any]) -> dict[str, Any]:
        """A call another instance of this host handed over."""
        return await self._run_here(await self.usable(container_id, tenant, "container"), op)

    async def _run_here(self, container: Container, op: dict[str, Any]) -> dict[str, Any]:
        shared = bool(self.sandbox and self.sandbox.shared)
        lock = self._locks.setdefault(container.id, asyncio.Lock())
        async with lock:
            before = await self.store.touch(container.id, self.instance)
            live = self.live.get(container.id)
            if live is not None and not live.session.alive:
                await self._release(container.id)
                live = None
            elif live is not None and before not in (None, self.instance):
                if shared:
                    live.known.clear()  # another instance used the session: what its workspace holds is read again
                else:
                    await self._close(container.id)  # the container moved away and back: start afresh
                    live = None
            if live is None:
                try:
                    session = await self.sandbox.open(container.id, self._limits(container),  # type: ignore
                                                      container.session_ref if shared else None,
                                                      await self._mounts(container))
                except SandboxError as exc:
                    raise SandboxFailed(f"The container could not start: {exc}") from None
                if session.ref != container.session_ref:
                    await self.store.set_ref(container.id, session.ref)
                live = self.live[container.id] = Live(session)
            try:
                await self.container_files.sync_down(container, live)
                result = await self._execute(live.session, op)
                changed = await self.container_files.sync_up(container, live)
            except SandboxError as exc:
                await self._release(container.id)
                raise SandboxFailed(f"The container failed: {exc}") from None
            return {"result": result, "changed": [asdict(f) for f in changed]}

    async def _mounts(self, container: Container) -> dict[str, Path]:
        """The container's skills, unpacked on this host, by where they appear in it (read-only)."""
        if not container.skills or self.skills is None:
            return {}
        mounts = {}
        for skill in container.skills:
            try:
                version = await self.skills.version(skill["skill_id"], container.tenant, int(skill["version"]))
            except NotFound:
                continue  # deleted since: the container runs without it
            mounts[f"{SKILLS_DIR}/{skill['name']}"] = await self.skills.unpacked(version, container.tenant)
        return mounts

    def _limits(self, container: Container) -> Limits:
        return replace(self.limits, memory_bytes=MEMORY.get(container.memory_limit, MEMORY["1g"]))

    # -- expiry and shutdown ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.sandbox is not None:
            self._sweeper = asyncio.create_task(self._sweep())
        if self.relay is not None:
            await self.relay.listen(self._relayed)

    async def _sweep(self) -> None:
        while True:
            try:
                await self.expire_due()
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("expiring containers failed; retrying")
            await asyncio.sleep(self.sweep_s)

    async def expire_due(self) -> list[str]:
        """Expire the containers idle past their time (any instance may), and close the sessions here whose
        container expired, was deleted or moved to another instance."""
        due = await self.store.due(time.time())
        for container_id in due:
            row = await self.store.get_any(container_id)
            await self._close(container_id, row.session_ref if row else None)
            if row is not None:
                await self._drop_blobs(row.tenant, await self.store.expire(container_id))
        for container_id in list(self.live):
            row = await self.store.get_any(container_id)
            if row is None or row.expired:
                await self._close(container_id)
            elif row.host != self.instance:  # another instance uses it now
                await self._release(container_id)
        return due

    async def _drop_blobs(self, tenant: str, blobs: list[str]) -> None:
        for blob in blobs:
            await self.files.delete(blob, tenant, BLOB)

    async def _close(self, container_id: str, ref: str | None = None) -> None:
        """End the container's session (and remove what it left)."""
        live = self.live.pop(container_id, None)
        if live is not None:
            ref = ref or live.session.ref
            await live.session.close()
        if self.sandbox is not None:
            await self.sandbox.discard(container_id, ref)

    async def _release(self, container_id: str) -> None:
        """Let go of the container's session here: a shared one runs on for the other instances; a local one
        ends, and its workspace goes with it (the next session starts from the store's files)."""
        if not (self.sandbox and self.sandbox.shared):
            await self._close(container_id)
            return
        live = self.live.pop(container_id, None)
        if live is not None:
            await live.session.detach()

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.relay is not None:
            await self.relay.aclose()
        for container_id in list(self.live):  # shared sessions run on for the other instances
            live = self.live.pop(container_id)
            await (live.session.detach() if self.sandbox and self.sandbox.shared else live.session.close())
        if self.sandbox is not None:
            await self.sandbox.aclose()
