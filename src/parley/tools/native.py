"""The native client tools ``shell``, ``local_shell`` and ``apply_patch``: the client runs them (the Agents
SDK's ShellTool and ApplyPatchTool, Codex), Parley offers them to chat backends as functions with the
arguments those tools define and turns the calls back into ``shell_call``, ``local_shell_call`` and
``apply_patch_call`` items; their ``*_output`` items come back as input (see :mod:`parley.engine.history`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from openai.types.responses import (
    ResponseApplyPatchToolCall,
    ResponseFunctionShellToolCall,
    ResponseOutputItemDoneEvent,
    ResponseShellCallCommandAddedEvent,
    ResponseShellCallCommandDeltaEvent,
    ResponseShellCallCommandDoneEvent,
)
from openai.types.responses.response_output_item import LocalShellCall
from pydantic import Field

from parley.errors import InvalidRequest, UnsupportedParameter
from parley.ids import new_id
from parley.tools.base import AllowedCallers, BindContext, Binding, ClientTool, Offered, Produced, ToolCall, ToolEnv, \
    ToolKind, ToolModel, arguments_of
from parley.tools.client import CALL_CLOSERS, CALL_OPENERS
from parley.tools.containers import ContainerChoice, earlier_containers
from parley.tools.hosted_shell import HostedShell

STRINGS = {"type": "array", "items": {"type": "string"}}
FUNCTIONS: dict[str, dict[str, Any]] = {
    "shell": {"description": "Run shell commands on the user's machine; each command's output comes back.",
              "parameters": {"type": "object", "required": ["commands"], "properties": {
                  "commands": {**STRINGS, "description": "Shell commands, run in order."},
                  "timeout_ms": {"type": "integer"}, "max_output_length": {"type": "integer"}}}},
    "local_shell": {"description": "Run one command (its argv) on the user's machine.",
                    "parameters": {"type": "object", "required": ["command"], "properties": {
                        "command": {**STRINGS, "description": "The program and its arguments."},
                        "working_directory": {"type": "string"}, "timeout_ms": {"type": "integer"},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                        "user": {"type": "string"}}}},
    "apply_patch": {"description": "Create, update or delete one file; create and update take a V4A diff.",
                    "parameters": {"type": "object", "required": ["type", "path"], "properties": {
                        "type": {"type": "string", "enum": ["create_file", "update_file", "delete_file"]},
                        "path": {"type": "string"}, "diff": {"type": "string"}}}},
}


class LocalEnvironment(ToolModel):
    type: Literal["local"]
    skills: list[dict[str, Any]] | None = None


class ContainerAuto(ToolModel):
    type: Literal["container_auto"]
    file_ids: list[str] | None = Field(None, max_length=100)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: dict[str, Any] | None = None  # only {"type": "disabled"} (NativeKind.precheck)
    skills: list[dict[str, Any]] | None = Field(None, max_length=50)  # skill references (Containers.skill_versions)


class ContainerReference(ToolModel):
    type: Literal["container_reference"]
    container_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")


class ShellTool(ToolModel):
    type: Literal["shell"]
    environment: LocalEnvironment | ContainerAuto | ContainerReference | None = Field(None, discriminator="type")
    allowed_callers: AllowedCallers = None

    @property
    def hosted(self) -> bool:
        """Whether Parley runs its commands (in a container), not the client."""
        return isinstance(self.environment, (ContainerAuto, ContainerReference))


class LocalShellTool(ToolModel):
    type: Literal["local_shell"]


class ApplyPatchTool(ToolModel):
    type: Literal["apply_patch"]
    allowed_callers: AllowedCallers = None


class ToolChoiceNative(ToolModel):
    type: Literal["shell", "apply_patch"]


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def _open(tool: ClientTool, call_id: str) -> Any:
    if tool.kind == "shell":
        return ResponseFunctionShellToolCall(id=new_id("sh"), type="shell_call", call_id=call_id,
                                             action={"commands": []}, status="in_progress")
    if tool.kind == "local_shell":
        return LocalShellCall(id=new_id("lsh"), type="local_shell_call", call_id=call_id, status="in_progress",
                              action={"type": "exec", "command": [], "env": {}})
    return ResponseApplyPatchToolCall(id=new_id("apc"), type="apply_patch_call", call_id=call_id, status="in_progress",
                                      operation={"type": "delete_file", "path": ""})


def _done(item: Any, index: int) -> ResponseOutputItemDoneEvent:
    return ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(), output_index=index,
                                       sequence_number=0)


def _close_shell(item: ResponseFunctionShellToolCall, arguments: str, index: int,
                 tool: ClientTool) -> tuple[Any, list[Any]]:
    args = arguments_of(arguments)
    action: dict[str, Any] = {"commands": _strings(args.get("commands"))}
    action.update({k: args[k] for k in ("timeout_ms", "max_output_length") if isinstance(args.get(k), int)})
    item = item.model_validate({**item.model_dump(), "action": action, "status": "completed"})
    events: list[Any] = []
    for i, command in enumerate(item.action.commands):
        events += [ResponseShellCallCommandAddedEvent(type="response.shell_call_command.added", command="",
                                                      command_index=i, output_index=index, sequence_number=0),
                   ResponseShellCallCommandDeltaEvent(type="response.shell_call_command.delta", delta=command,
                                                      command_index=i, output_index=index, sequence_number=0),
                   ResponseShellCallCommandDoneEvent(type="response.shell_call_command.done", command=command,
                                                     command_index=i, output_index=index, sequence_number=0)]
    return item, events + [_done(item, index)]


def _close_local_shell(item: LocalShellCall, arguments: str, index: int,
                       tool: ClientTool) -> tuple[Any, list[Any]]:
    args = arguments_of(arguments)
    action = {"type": "exec", "command": _strings(args.get("command")),
              "env": {str(k): str(v) for k, v in (args.get("env") or {}).items()} if isinstance(args.get("env"), dict)
              else {}}
    action.update({k: args[k] for k in ("working_directory", "user") if isinstance(args.get(k), str)})
    if isinstance(args.get("timeout_ms"), int):
        action["timeout_ms"] = args["timeout_ms"]
    item = item.model_validate({**item.model_dump(), "action": action, "status": "completed"})
    return item, [_done(item, index)]


def _close_apply_patch(item: ResponseApplyPatchToolCall, arguments: str, index: int,
                       tool: ClientTool) -> tuple[Any, list[Any]]:
    args = arguments_of(arguments)
    kind = args.get("type") if args.get("type") in ("create_file", "update_file", "delete_file") else "update_file"
    operation: dict[str, Any] = {"type": kind, "path": str(args.get("path") or "")}
    if kind != "delete_file":
        operation["diff"] = str(args.get("diff") or "")
    item = item.model_validate({**item.model_dump(), "operation": operation, "status": "completed"})
    return item, [_done(item, index)]


CALL_OPENERS.update(dict.fromkeys(FUNCTIONS, _open))
CALL_CLOSERS.update({"shell_call": _close_shell, "local_shell_call": _close_local_shell,
                     "apply_patch_call": _close_apply_patch})


class NativeTools(Binding):
    """The native tools of one response: the client runs them, but for a hosted shell, which Parley runs."""

    def __init__(self, kinds: list[str], hosted: HostedShell | None = None) -> None:
        self.kinds = kinds
        self.hosted = hosted

    def offered(self) -> list[Offered]:
        offered = [Offered({"type": "function", "function": {"name": kind, **FUNCTIONS[kind]}},
                           ClientTool(kind, kind), {"type": kind}) for kind in self.kinds]
        return offered + (self.hosted.offered() if self.hosted else [])

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": choice.type}}  # type: ignore[attr-defined]

    async def setup(self, first_index: int) -> AsyncIterator[Any]:
        if self.hosted is not None:
            async for produced in self.hosted.setup(first_index):
                yield produced

    def start(self, call: ToolCall, approved: bool) -> Any:
        assert self.hosted is not None, "only the hosted shell runs here"
        return self.hosted.start(call, approved)

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        assert self.hosted is not None, "only the hosted shell runs here"
        async for produced in self.hosted.emit(call, run, index):
            yield produced


class NativeKind(ToolKind):
    models = {"shell": ShellTool, "local_shell": LocalShellTool, "apply_patch": ApplyPatchTool}
    choices = {"shell": ToolChoiceNative, "apply_patch": ToolChoiceNative}

    def precheck(self, raw: dict[str, Any], where: str) -> None:
        environment = raw.get("environment")
        if not isinstance(environment, dict) or environment.get("type") != "container_auto":
            return
        policy = environment.get("network_policy")
        if isinstance(policy, dict) and policy.get("type") != "disabled":
            raise UnsupportedParameter(f"{where}.environment.network_policy", "Containers have no network access "
                                       "in Parley; only network_policy {\"type\": \"disabled\"} is supported.")

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        kinds = [t.type for t in tools]
        if len(kinds) != len(set(kinds)):
            raise InvalidRequest("Give each of shell, local_shell and apply_patch at most once.", param="tools")
        if choice is not None and choice.type not in kinds:  # type: ignore[attr-defined]
            raise InvalidRequest(f"tool_choice names {choice.type}, but 'tools' has no such tool.",  # type: ignore
                                 param="tool_choice")

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        for where, tool in tools:
            if not getattr(tool, "hosted", False):
                continue
            if env.containers is None:
                raise InvalidRequest("This server cannot run code.", param=f"{where}.environment",
                                     code="sandbox_unavailable")
            environment = tool.environment
            if isinstance(environment, ContainerReference):
                await env.containers.admit(tenant, f"{where}.environment.container_id",
                                           container_id=environment.container_id)
            else:
                await env.containers.admit(tenant, f"{where}.environment", memory_limit=environment.memory_limit,
                                           file_ids=environment.file_ids)
                await env.containers.skill_versions(tenant, environment.skills, f"{where}.environment.skills")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        hosted = next((t for t in tools if getattr(t, "hosted", False)), None)
        shell = None
        if hosted is not None:
            environment = hosted.environment
            named = environment.container_id if isinstance(environment, ContainerReference) else None
            choice = ContainerChoice(
                context.env.containers, context.tenant, earlier_containers(context), "shell", "tools.environment",
                container_id=named, id_param="tools.environment.container_id",
                memory_limit=getattr(environment, "memory_limit", None),
                file_ids=getattr(environment, "file_ids", None) or [], skill_refs=getattr(environment, "skills", None))
            shell = HostedShell(context.env.containers, choice)
        return NativeTools([t.type for t in tools if t is not hosted], shell)


KIND = NativeKind()
