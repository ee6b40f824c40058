"""Programmatic tool calling (``{"type": "programmatic_tool_calling"}``): the model writes a JavaScript program
that calls the request's tools, and Parley runs it in a sandbox.

A Chat model is offered one function, ``program``, whose description lists the tools a program may call: the
function and custom tools whose ``allowed_callers`` include ``programmatic`` (a tool that allows only programs is
not offered to the model directly).  A call becomes a ``program`` item and runs
(:mod:`parley.sandbox.program_run`): a program that finishes gives a ``program_output`` item, whose ``result`` is
what the model gets back; a program that calls the client's tools stops the response with a ``function_call`` (or
``custom_tool_call``) for each call it waits for, ``caller: {"type": "program", "caller_id": …}``, and goes on
in the request that gives their outputs (:mod:`parley.tools.program_replay`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal

from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from openai.types.responses.response_output_item import Program, ProgramOutput

from parley.errors import InvalidRequest
from parley.ids import new_id
from parley.sandbox.program_run import Outcome, failed, run_program
from parley.tools.base import (
    BindContext,
    Binding,
    CallDone,
    ItemDone,
    Offered,
    Produced,
    ToolCall,
    ToolEnv,
    SingleToolKind,
    ToolModel,
    arguments_of,
)
from parley.tools.program_replay import (
    MAX_PROGRAM_CALLS,
    PROGRAM,
    PendingProgram,
    inner_call_id,
    new_fingerprint,
)

MAX_RESULT_CHARS = 64 * 1024  # of a program's result, as the model gets it


class ProgrammaticToolCallingTool(ToolModel):
    type: Literal["programmatic_tool_calling"]


class ProgrammaticToolCallingChoice(ToolModel):
    type: Literal["programmatic_tool_calling"]


def callable_by_programs(tool: Any) -> bool:
    return "programmatic" in (getattr(tool, "allowed_callers", None) or [])


def _describe(tools: list[Any]) -> str:
    lines = []
    for tool in tools:
        if tool.type == "custom":
            signature = f"tools.{tool.name}(text)"
        else:
            signature = f"tools.{tool.name}(args)  args: {json.dumps(tool.parameters or {'type': 'object'})}"
        lines.append(f"- {signature}" + (f": {tool.description}" if tool.description else ""))
    return "\n".join(lines) or "(no tools: a program can only compute)"


def program_function(tools: list[Any]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": PROGRAM,
        "description": (
            "Run a JavaScript program that calls tools, instead of calling them one by one. The code is the body "
            "of an async function: call a tool as `await tools.NAME(...)` (each call gives a Promise of the tool's "
            "output, a string; run calls side by side with Promise.all), and `return` the result you want back "
            "(strings as they are, other values as JSON; without a return, what console.log printed). There is no "
            "network, file system or timer; Math.random and Date are fixed for the program. The tools:\n"
            + _describe(tools)),
        "parameters": {"type": "object", "properties": {"code": {"type": "string", "description":
                                                                 "The JavaScript program."}},
                       "required": ["code"], "additionalProperties": False}}}


def _added_and_done(item: Any, index: int) -> list[Produced]:
    return [ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(deep=True),
                                         output_index=index, sequence_number=0),
            ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=index,
                                        sequence_number=0)]


def _call_events(call: ResponseFunctionToolCall | ResponseCustomToolCall, index: int) -> list[Produced]:
    """A program's call to a client tool as the model's would stream: added empty, its arguments (or input) in
    one delta, done."""
    common = {"item_id": call.id or "", "output_index": index, "sequence_number": 0}
    if isinstance(call, ResponseCustomToolCall):
        opened = call.model_copy(update={"input": ""})
        middle: list[Produced] = [
            ResponseCustomToolCallInputDeltaEvent(type="response.custom_tool_call_input.delta", delta=call.input,
                                                  **common),
            ResponseCustomToolCallInputDoneEvent(type="response.custom_tool_call_input.done", input=call.input,
                                                 **common)]
    else:
        opened = call.model_copy(update={"arguments": "", "status": "in_progress"})
        middle = [ResponseFunctionCallArgumentsDeltaEvent(type="response.function_call_arguments.delta",
                                                          delta=call.arguments, **common),
                  ResponseFunctionCallArgumentsDoneEvent(type="response.function_call_arguments.done",
                                                         arguments=call.arguments, name=call.name, **common)]
    return [ResponseOutputItemAddedEvent(type="response.output_item.added", item=opened, output_index=index,
                                         sequence_number=0), *middle,
            ResponseOutputItemDoneEvent(type="response.output_item.done", item=call, output_index=index,
                                        sequence_number=0)]


class Programs(Binding):
    def __init__(self, env: ToolEnv, tools: list[Any], pending: list[PendingProgram]) -> None:
        self.env = env
        self.tools = {tool.name: tool for tool in tools}
        self.pending = {program.call_id: program for program in pending}

    def offered(self) -> list[Offered]:
        return [Offered(program_function(list(self.tools.values())), None, {"type": "programmatic_tool_calling"})]  # type: ignore[arg-type]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": PROGRAM}}

    def resumed(self) -> list[ToolCall]:
        return [ToolCall(p.call_id, PROGRAM, json.dumps({"code": p.code})) for p in self.pending.values()]

    def start(self, call: ToolCall, approved: bool) -> Awaitable[Any]:
        return asyncio.ensure_future(self._run(call))

    async def _run(self, call: ToolCall) -> tuple[Program | None, str, Outcome, int]:
        """The program item (``None`` for a program of an earlier response), its item id, the run's outcome,
        and how many calls it had made before."""
        program = self.pending.get(call.call_id)
        if program is not None:
            item, item_id, code, seed, now_ms = None, program.item_id, program.code, program.seed, program.now_ms
            recorded = [{"name": c.name, "arguments": c.arguments, "output": c.output or ""} for c in program.calls]
        else:
            code = arguments_of(call.arguments).get("code")
            code = code if isinstance(code, str) else ""
            fingerprint, seed, now_ms = new_fingerprint(self.env.cipher, call.call_id, code)
            item_id, recorded = new_id("prog"), []
            item = Program(id=item_id, type="program", call_id=call.call_id, code=code, fingerprint=fingerprint)
        if not code.strip():
            return item, item_id, failed("the program has no code."), 0
        containers = self.env.containers
        outcome = await run_program(containers.sandbox, containers.limits, code=code, recorded=recorded,
                                    tools={name: tool.type for name, tool in self.tools.items()}, seed=seed,
                                    now_ms=now_ms, max_calls=MAX_PROGRAM_CALLS)
        return item, item_id, outcome, len(recorded)

    async def emit(self, call: ToolCall, run: Awaitable[Any] | None, index: int) -> AsyncIterator[Produced]:
        assert run is not None
        item, item_id, outcome, made = await run
        if item is not None:
            for produced in _added_and_done(item, index):
                yield produced
            yield ItemDone(item)
            index += 1
        if outcome.status == "pending":
            caller = {"type": "program", "caller_id": call.call_id}
            for n, pending in enumerate(outcome.calls):
                call_id = inner_call_id(item_id, made + n)
                made_call: Any = ResponseCustomToolCall(
                    id=new_id("ctc"), type="custom_tool_call", call_id=call_id, name=pending.name,
                    input=pending.arguments, caller=caller) if self.tools[pending.name].type == "custom" else \
                    ResponseFunctionToolCall(id=new_id("fc"), type="function_call", call_id=call_id,
                                             name=pending.name, arguments=pending.arguments, status="completed",
                                             caller=caller)
                for produced in _call_events(made_call, index + n):
                    yield produced
                last = n == len(outcome.calls) - 1
                yield CallDone(made_call, None) if last else ItemDone(made_call)  # the client's outputs come next
            return
        result = outcome.result
        if len(result) > MAX_RESULT_CHARS:
            result = result[:MAX_RESULT_CHARS] + f"\n[result truncated: {len(outcome.result)} characters in all]"
        output = ProgramOutput(id=new_id("progo"), type="program_output", call_id=call.call_id, result=result,
                               status="completed" if outcome.status == "completed" else "incomplete")
        for produced in _added_and_done(output, index):
            yield produced
        yield CallDone(output, {"role": "tool", "tool_call_id": call.call_id, "content": result})


class ProgramKind(SingleToolKind):
    label = "programmatic_tool_calling"
    models = {"programmatic_tool_calling": ProgrammaticToolCallingTool}
    choices = {"programmatic_tool_calling": ProgrammaticToolCallingChoice}

    def check_request(self, tools: list[Any]) -> None:
        enabled = any(isinstance(tool, ProgrammaticToolCallingTool) for tool in tools)
        for i, tool in enumerate(tools):
            for j, inner in enumerate(getattr(tool, "tools", None) or [] if tool.type == "namespace" else []):
                if callable_by_programs(inner):
                    raise InvalidRequest("Programs call the request's top-level function and custom tools, not "
                                         "those of a namespace.", param=f"tools[{i}].tools[{j}].allowed_callers")
            if enabled and getattr(tool, "name", None) == PROGRAM and tool.type in ("function", "custom"):
                raise InvalidRequest(f"With a programmatic_tool_calling tool, no other tool may be named "
                                     f"'{PROGRAM}' (the model runs programs under that name).",
                                     param=f"tools[{i}].name")
            if callable_by_programs(tool) and not enabled:
                raise InvalidRequest("allowed_callers 'programmatic' needs a tool of type programmatic_tool_calling "
                                     "in 'tools'.", param=f"tools[{i}].allowed_callers")

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        if env.containers is None:
            raise InvalidRequest("This server runs no sandbox, where programs run.", param=tools[0][0],
                                 code="sandbox_unavailable")
        env.containers.check_available(tools[0][0])

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        callable_tools = [t for t in context.request_tools if t.type in ("function", "custom") and
                          callable_by_programs(t)]
        return Programs(context.env, callable_tools, context.programs)


KIND = ProgramKind()
