"""The ``code_interpreter`` tool: Python the model writes, run server-side in a container's persistent process.

The model sees one function, ``code_interpreter(code)``.  Each call becomes a ``code_interpreter_call`` item
(``code``, ``container_id``, and its ``outputs`` when the request includes ``code_interpreter_call.outputs``:
``logs``, and an ``image`` for each figure the code left open), streamed as ``in_progress``, the code's
``delta`` and ``done``, ``interpreting`` and ``completed``.  The model gets the output back, with the paths of
the files the code wrote under ``/mnt/data``; the answer's mentions of those paths become
``container_file_citation`` annotations.

``container`` is a container's id, or ``{"type": "auto"}``: the container an earlier call of the conversation
used, while it lives, or else a new one (with the ``file_ids`` copied in).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.responses import (
    ResponseCodeInterpreterCallCodeDeltaEvent,
    ResponseCodeInterpreterCallCodeDoneEvent,
    ResponseCodeInterpreterCallCompletedEvent,
    ResponseCodeInterpreterCallInProgressEvent,
    ResponseCodeInterpreterCallInterpretingEvent,
    ResponseCodeInterpreterToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from pydantic import Field, field_validator

from parley.containers.store import ContainerFile
from parley.errors import InvalidRequest, ParleyError
from parley.ids import new_id
from parley.tools.containers import ContainerChoice, earlier_containers
from parley.tools.base import AllowedCallers, BindContext, Binding, CallDone, Citation, Offered, Produced, ToolCall, \
    SingleToolKind, ToolEnv, ToolModel

log = logging.getLogger("parley.code_interpreter")
FUNCTION_NAME = "code_interpreter"
INCLUDE_OUTPUTS = "code_interpreter_call.outputs"
MAX_MODEL_OUTPUT = 16_000  # characters of a call's output the model gets back


class AutoContainer(ToolModel):
    type: Literal["auto"]
    file_ids: list[str] | None = Field(None, max_length=100)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: dict[str, Any] | None = None

    @field_validator("network_policy")
    @classmethod
    def _no_network(cls, policy: dict[str, Any] | None) -> dict[str, Any] | None:
        if policy is not None and policy.get("type") != "disabled":
            raise ValueError("containers have no network access in Parley; only {\"type\": \"disabled\"} is "
                             "supported")
        return policy


class CodeInterpreterTool(ToolModel):
    type: Literal["code_interpreter"]
    container: str | AutoContainer
    allowed_callers: AllowedCallers = None

    @field_validator("container")
    @classmethod
    def _container_id(cls, container: str | AutoContainer) -> str | AutoContainer:
        if isinstance(container, str) and not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", container):
            raise ValueError("a container id or {\"type\": \"auto\"}")
        return container


class ToolChoiceCodeInterpreter(ToolModel):
    type: Literal["code_interpreter"]


def _code(arguments: str) -> str:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return arguments or ""  # a model that sent the code itself, not JSON
    if isinstance(parsed, dict):
        return str(parsed.get("code") or parsed.get("input") or "")
    return str(parsed)


def _model_text(result: Any, changed: list[ContainerFile]) -> str:
    logs = result.logs if len(result.logs) <= MAX_MODEL_OUTPUT else \
        result.logs[:MAX_MODEL_OUTPUT] + "\n[the rest of the output was cut]"
    parts = [logs if logs.strip() else "(no output)"]
    if result.images:
        parts.append(f"[{len(result.images)} figure(s) shown to the user as images]")
    if changed:
        parts.append("Files written (link them as sandbox:<path>): " + ", ".join(f.path for f in changed))
    return "\n".join(parts)


@dataclass
class CodeInterpreterTools(Binding):
    """The ``code_interpreter`` tool bound to one response."""

    containers: Any
    include_outputs: bool
    choice: ContainerChoice
    files: dict[str, ContainerFile] = field(default_factory=dict)  # written by this response's calls, by path

    def offered(self) -> list[Offered]:
        return [Offered({"type": "function", "function": {
            "name": FUNCTION_NAME,
            "description": "Run Python code in a persistent session (variables stay between calls), as in a "
                           "notebook: the value of the last expression and what the code prints come back. numpy, "
                           "pandas and matplotlib are there (figures left open are shown to the user). The user's "
                           "files are in /mnt/data; save files there, and link them in the answer as "
                           "sandbox:/mnt/data/<name>. There is no network access.",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        }}, source={"type": "code_interpreter"})]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION_NAME}}

    def start(self, call: ToolCall, approved: bool) -> asyncio.Task[Any]:
        return asyncio.ensure_future(self._run(_code(call.arguments)))

    async def _run(self, code: str) -> tuple[Any, list[ContainerFile], str | None]:
        try:
            container = await self.choice.get()
            ran = await self.containers.python(container, code)
            return ran.result, ran.changed, None
        except ParleyError as exc:
            return None, [], exc.message
        except Exception:  # a failed run fails its item, never the response
            log.exception("code_interpreter call failed")
            return None, [], "The code could not be run."

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        code = _code(call.arguments)
        try:
            container_id = (await self.choice.get()).id
        except ParleyError:
            container_id = self.choice.container_id or ""
        item = ResponseCodeInterpreterToolCall(id=new_id("ci"), type="code_interpreter_call", status="in_progress",
                                               code="", container_id=container_id, outputs=None)
        common = {"item_id": item.id, "output_index": index, "sequence_number": 0}
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(),
                                           output_index=index, sequence_number=0)
        yield ResponseCodeInterpreterCallInProgressEvent(type="response.code_interpreter_call.in_progress", **common)
        for line in code.splitlines(keepends=True):
            yield ResponseCodeInterpreterCallCodeDeltaEvent(type="response.code_interpreter_call_code.delta",
                                                            delta=line, **common)
        yield ResponseCodeInterpreterCallCodeDoneEvent(type="response.code_interpreter_call_code.done", code=code,
                                                       **common)
        yield ResponseCodeInterpreterCallInterpretingEvent(type="response.code_interpreter_call.interpreting",
                                                           **common)
        result, changed, error = await run
        if error is not None:
            item = item.model_copy(update={"status": "failed", "code": code})
            text = f"The code failed: {error}"
        else:
            for record in changed:
                self.files[record.path] = record
            outputs = [{"type": "logs", "logs": result.logs}] + \
                [{"type": "image", "url": f"data:image/png;base64,{png}"} for png in result.images]
            item = ResponseCodeInterpreterToolCall.model_validate({
                **item.model_dump(), "status": "completed", "code": code,
                "outputs": outputs if self.include_outputs else None})
            text = _model_text(result, changed)
            yield ResponseCodeInterpreterCallCompletedEvent(type="response.code_interpreter_call.completed",
                                                            **common)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                          output_index=index, sequence_number=0)
        yield CallDone(item, {"role": "tool", "tool_call_id": call.call_id, "content": text})

    def cites(self) -> bool:
        return bool(self.files)

    def cite(self, text: str) -> list[Citation]:
        """Mentions of files this response's code wrote (``sandbox:/mnt/data/x.csv`` or the path itself):
        ``container_file_citation`` annotations over the mention (the whole markdown link when it is one)."""
        citations = []
        for path, record in self.files.items():
            for found in re.finditer(r"\[[^\]\n]*\]\((?:sandbox:)?" + re.escape(path) + r"\)|(?:sandbox:)?"
                                     + re.escape(path), text):
                citations.append(Citation(found.start(), found.end(), {
                    "type": "container_file_citation", "container_id": record.container_id, "file_id": record.id,
                    "filename": path.rsplit("/", 1)[-1], "start_index": found.start(), "end_index": found.end()}))
        return citations


class CodeInterpreterKind(SingleToolKind):
    label = "code_interpreter"
    models = {"code_interpreter": CodeInterpreterTool}
    choices = {"code_interpreter": ToolChoiceCodeInterpreter}

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        if env.containers is None:
            raise InvalidRequest("This server cannot run code.", param="tools", code="sandbox_unavailable")
        for where, tool in tools:
            spec = tool.container
            if isinstance(spec, str):
                await env.containers.admit(tenant, f"{where}.container", container_id=spec)
            else:
                await env.containers.admit(tenant, f"{where}.container", memory_limit=spec.memory_limit,
                                           file_ids=spec.file_ids)

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        spec = tools[0].container
        choice = ContainerChoice(context.env.containers, context.tenant, earlier_containers(context),
                                 "code_interpreter", "tools.container", id_param="tools.container",
                                 container_id=spec if isinstance(spec, str) else None,
                                 memory_limit=None if isinstance(spec, str) else spec.memory_limit,
                                 file_ids=[] if isinstance(spec, str) else spec.file_ids or [])
        return CodeInterpreterTools(context.env.containers, INCLUDE_OUTPUTS in context.include, choice)


KIND = CodeInterpreterKind()
