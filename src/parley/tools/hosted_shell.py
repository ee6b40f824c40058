"""The hosted ``shell``: a ``shell`` tool whose ``environment`` is ``container_auto`` or ``container_reference``
runs its commands server-side, in a container, instead of handing them to the client.

Each call becomes two items: the ``shell_call`` (its commands streamed as ``shell_call_command.*`` events, its
``environment`` the container it ran in) and the ``shell_call_output`` (each command's stdout, stderr and
outcome, streamed as ``shell_call_output_content.*``).  ``container_auto`` keeps one container per
conversation, like ``code_interpreter``'s ``auto``: the turns of a shell agent build on what the earlier ones
left (a cloned repository, a built program), which a new container per response would throw away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import (
    ResponseFunctionShellToolCall,
    ResponseFunctionShellToolCallOutput,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseShellCallCommandAddedEvent,
    ResponseShellCallCommandDeltaEvent,
    ResponseShellCallCommandDoneEvent,
    ResponseShellCallOutputContentDeltaEvent,
    ResponseShellCallOutputContentDoneEvent,
)

from parley.containers.service import SKILLS_DIR
from parley.errors import ParleyError
from parley.ids import new_id
from parley.replayed_items import shell_output_text
from parley.sandbox.base import CommandResult
from parley.tools.base import Binding, CallDone, ItemDone, Offered, Produced, ToolCall
from parley.tools.containers import ContainerChoice

log = logging.getLogger("parley.shell")
FUNCTION = {"name": "shell", "description": "Run shell commands, in order, in a Linux container (bash, coreutils "
            "and Python with numpy, pandas and matplotlib; the user's files are in /mnt/data, the working "
            "directory; no network). Each command's stdout, stderr and exit code come back.",
            "parameters": {"type": "object", "required": ["commands"], "properties": {
                "commands": {"type": "array", "items": {"type": "string"}, "description": "Shell commands."},
                "timeout_ms": {"type": "integer"}, "max_output_length": {"type": "integer"}}}}
DEFAULT_OUTPUT = 16_000  # characters of each stream of a command kept, when the model does not say
MAX_COMMANDS = 20


def _action(arguments: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = {}
    parsed = parsed if isinstance(parsed, dict) else {}
    commands = parsed.get("commands")
    commands = [str(c) for c in commands] if isinstance(commands, list) else [str(commands)] if commands else []
    action: dict[str, Any] = {"commands": commands[:MAX_COMMANDS]}
    for key in ("timeout_ms", "max_output_length"):
        if isinstance(parsed.get(key), int) and parsed[key] > 0:
            action[key] = parsed[key]
    return action


def _outcome(result: CommandResult) -> dict[str, Any]:
    outcome = {"type": "exit", "exit_code": result.exit_code} if result.exit_code is not None else {"type": "timeout"}
    return {"stdout": result.stdout, "stderr": result.stderr, "outcome": outcome}


@dataclass
class HostedShell(Binding):
    """The ``shell`` tool bound to one response, its commands run in a container."""

    containers: Any
    choice: ContainerChoice
    _skills: list[dict[str, Any]] = field(default_factory=list)  # those the container mounts, for the model

    async def setup(self, first_index: int) -> AsyncIterator[Any]:
        """The skills the container mounts, so that the model is told of them."""
        self._skills = await self.choice.skills()
        return
        yield

    def offered(self) -> list[Offered]:
        function = dict(FUNCTION)
        if self._skills:
            function["description"] += " Skills, each a folder with a SKILL.md that says how to use it: " + \
                "; ".join(f"{s['name']} ({SKILLS_DIR}/{s['name']}): {s['description']}" for s in self._skills)
        return [Offered({"type": "function", "function": function}, source={"type": "shell"})]

    def start(self, call: ToolCall, approved: bool) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self._run(_action(call.arguments)))

    async def _run(self, action: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        try:
            container = await self.choice.get()
            timeout_s = action.get("timeout_ms", 10 ** 9) / 1000
            ran = await self.containers.shell(container, action["commands"], timeout_s,
                                              action.get("max_output_length", DEFAULT_OUTPUT))
            return [_outcome(result) for result in ran.result], None
        except ParleyError as exc:
            return [], exc.message
        except Exception:  # a failed run fails its items, never the response
            log.exception("shell call failed")
            return [], "The commands could not be run."

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        action = _action(call.arguments)
        try:
            container_id = (await self.choice.get()).id
        except ParleyError:
            container_id = self.choice.container_id or ""
        environment = {"type": "container_reference", "container_id": container_id}
        item = ResponseFunctionShellToolCall(id=new_id("sh"), type="shell_call", call_id=call.call_id,
                                             action={"commands": []}, status="in_progress", environment=environment)
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(),
                                           output_index=index, sequence_number=0)
        for i, command in enumerate(action["commands"]):
            yield ResponseShellCallCommandAddedEvent(type="response.shell_call_command.added", command="",
                                                     command_index=i, output_index=index, sequence_number=0)
            yield ResponseShellCallCommandDeltaEvent(type="response.shell_call_command.delta", delta=command,
                                                     command_index=i, output_index=index, sequence_number=0)
            yield ResponseShellCallCommandDoneEvent(type="response.shell_call_command.done", command=command,
                                                    command_index=i, output_index=index, sequence_number=0)
        item = ResponseFunctionShellToolCall.model_validate({**item.model_dump(), "action": action,
                                                             "status": "completed"})
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                          output_index=index, sequence_number=0)
        yield ItemDone(item)
        outputs, error = await run
        if error is not None:
            outputs = [{"stdout": "", "stderr": f"The commands were not run: {error}", "outcome": {
                "type": "exit", "exit_code": 1}}]
        output = ResponseFunctionShellToolCallOutput(id=new_id("sho"), type="shell_call_output",
                                                     call_id=call.call_id, output=[], status="in_progress",
                                                     max_output_length=action.get("max_output_length"))
        index += 1
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=output.model_copy(),
                                           output_index=index, sequence_number=0)
        for i, result in enumerate(outputs):
            yield ResponseShellCallOutputContentDeltaEvent(
                type="response.shell_call_output_content.delta", command_index=i, item_id=output.id,
                output_index=index, sequence_number=0, delta={"stdout": result["stdout"], "stderr": result["stderr"]})
            yield ResponseShellCallOutputContentDoneEvent(
                type="response.shell_call_output_content.done", command_index=i, item_id=output.id,
                output_index=index, sequence_number=0, output=[result])
        output = ResponseFunctionShellToolCallOutput.model_validate({**output.model_dump(), "output": outputs,
                                                                     "status": "completed"})
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=output.model_copy(),
                                          output_index=index, sequence_number=0)
        yield CallDone(output, {"role": "tool", "tool_call_id": call.call_id, "content": shell_output_text(outputs)})
