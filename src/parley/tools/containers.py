"""What the tool kinds that run code share: which container a response's calls of one tool run in.

A tool names a container, or asks for ``auto`` (``code_interpreter``) / ``container_auto`` (the hosted
shell): the conversation's newest living container with the same memory and skills, else a new one.  The
choice is made once per response, at the first call (or when the binding needs to know it earlier).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from parley.containers.store import Container
from parley.tools.base import BindContext


def earlier_containers(context: BindContext) -> list[str]:
    """Containers the conversation's earlier server-side calls ran in, newest first."""
    found = []
    for item in [*context.previous_output, *context.input]:
        kind = getattr(item, "type", None)
        if kind == "code_interpreter_call" and isinstance(getattr(item, "container_id", None), str):
            found.append(item.container_id)
        elif kind == "shell_call":
            environment = getattr(item, "environment", None)
            container_id = environment.get("container_id") if isinstance(environment, dict) else \
                getattr(environment, "container_id", None)
            if isinstance(container_id, str):
                found.append(container_id)
    return found[::-1]


@dataclass
class ContainerChoice:
    """The container one tool of a response runs in: ``container_id`` (named at ``id_param``), or else the
    conversation's auto container (``param`` names the request's auto settings, for errors)."""

    containers: Any  # parley.containers.service.Containers
    tenant: str
    earlier: list[str]
    name: str  # of a new auto container
    param: str
    container_id: str | None = None
    id_param: str = ""
    memory_limit: str | None = None
    file_ids: list[str] = field(default_factory=list)
    skill_refs: list[dict[str, Any]] | None = None
    _skills: list[dict[str, Any]] | None = None
    _task: asyncio.Task[Container] | None = None

    def get(self) -> asyncio.Task[Container]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._resolve())
        return self._task

    async def skills(self) -> list[dict[str, Any]]:
        """The skill versions the container mounts (the named container's, or those an auto one asks for)."""
        if self._skills is None:
            self._skills = (await self.get()).skills if self.container_id is not None else \
                await self.containers.skill_versions(self.tenant, self.skill_refs, f"{self.param}.skills")
        return self._skills

    async def _resolve(self) -> Container:
        if self.container_id is not None:
            return await self.containers.usable(self.container_id, self.tenant, self.id_param)
        return await self.containers.for_conversation(
            self.tenant, self.earlier, name=self.name, memory_limit=self.memory_limit, file_ids=self.file_ids,
            param=f"{self.param}.file_ids", skills=await self.skills())
