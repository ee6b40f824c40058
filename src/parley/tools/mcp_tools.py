"""The ``mcp`` tool of one response: its listings, calls, approvals and their output items.

The engine asks it three things: which function names the model may call on MCP servers
(:meth:`McpTools.chat_tools`), whether a call is one of them (:meth:`owns`), and to run a
step's calls (:meth:`execute`), which yields the ``mcp_call`` / ``mcp_approval_request``
items and their events, one item finished before the next, while the calls themselves run
concurrently.  Sessions are opened once per (URL, headers) per response.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import (
    ResponseMcpCallArgumentsDeltaEvent,
    ResponseMcpCallArgumentsDoneEvent,
    ResponseMcpCallCompletedEvent,
    ResponseMcpCallFailedEvent,
    ResponseMcpCallInProgressEvent,
    ResponseMcpListToolsCompletedEvent,
    ResponseMcpListToolsFailedEvent,
    ResponseMcpListToolsInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
)
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall, McpListTools

from parley.ids import new_id
from parley.tool_specs import McpTool
from parley.tools.mcp import MCPConnector, MCPResult, MCPSession, MCPToolInfo, MCPUnavailable

Event = ResponseStreamEvent
DENIED = "The user declined to run this tool call."
NOT_APPROVED = "This tool call was not approved, so it did not run."


@dataclass
class _Exposed:
    server: McpTool
    tool: MCPToolInfo


@dataclass
class McpTools:
    servers: list[McpTool]
    connector: MCPConnector
    previous_output: list[dict[str, Any]] = field(default_factory=list)
    _exposed: dict[str, _Exposed] = field(default_factory=dict)
    _sessions: dict[tuple[str, str], asyncio.Task[MCPSession]] = field(default_factory=dict)

    # -- listing -------------------------------------------------------------------------

    def _earlier_listing(self, server: McpTool) -> list[dict[str, Any]] | None:
        for item in self.previous_output:
            if item.get("type") == "mcp_list_tools" and item.get("server_label") == server.server_label \
                    and not item.get("error"):
                return item["tools"]
        return None

    def _expose(self, server: McpTool, tools: list[MCPToolInfo]) -> None:
        for tool in tools:
            name = tool.name if tool.name not in self._exposed else f"{server.server_label}__{tool.name}"
            self._exposed[name] = _Exposed(server, tool)

    async def list_tools(self, first_index: int) -> AsyncIterator[Event | McpListTools]:
        """Yield each new listing's events and, last for each, the finished ``mcp_list_tools`` item."""
        index = first_index
        for server in self.servers:
            earlier = self._earlier_listing(server)
            if earlier is not None:  # a chained turn reuses the listing its server already gave
                self._expose(server, [MCPToolInfo(t["name"], t.get("description"), t.get("input_schema") or {},
                                                  t.get("annotations")) for t in earlier if server.allows(t["name"])])
                continue
            item = McpListTools(id=new_id("mcpl"), type="mcp_list_tools", server_label=server.server_label, tools=[])
            yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(),
                                               output_index=index, sequence_number=0)
            yield ResponseMcpListToolsInProgressEvent(type="response.mcp_list_tools.in_progress", item_id=item.id,
                                                      output_index=index, sequence_number=0)
            try:
                session = await self.session(server)
                tools = [t for t in await session.list_tools() if server.allows(t.name)]
            except MCPUnavailable as exc:
                item = McpListTools.model_validate({**item.model_dump(), "error": exc.message})
                yield ResponseMcpListToolsFailedEvent(type="response.mcp_list_tools.failed", item_id=item.id,
                                                      output_index=index, sequence_number=0)
                yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                                  output_index=index, sequence_number=0)
                yield item
                raise
            item = McpListTools.model_validate({**item.model_dump(), "tools": [t.as_listing() for t in tools]})
            self._expose(server, tools)
            yield ResponseMcpListToolsCompletedEvent(type="response.mcp_list_tools.completed", item_id=item.id,
                                                     output_index=index, sequence_number=0)
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(deep=True),
                                              output_index=index, sequence_number=0)
            yield item
            index += 1

    async def session(self, server: McpTool) -> MCPSession:
        headers = server.connection_headers()
        key = (server.server_url, json.dumps(headers, sort_keys=True))
        if key not in self._sessions:
            self._sessions[key] = asyncio.ensure_future(self.connector.connect(server.server_url, headers))
        return await self._sessions[key]

    # -- what the model sees -------------------------------------------------------------

    def chat_tools(self) -> list[dict[str, Any]]:
        return [
            {"type": "function", "function": {
                "name": name, "parameters": exposed.tool.input_schema,
                "description": exposed.tool.description or f"{exposed.tool.name} on {exposed.server.server_label}",
            }}
            for name, exposed in self._exposed.items()
        ]

    def exposed_name(self, server_label: str, tool_name: str) -> str | None:
        return next((n for n, e in self._exposed.items()
                     if e.server.server_label == server_label and e.tool.name == tool_name), None)

    def owns(self, name: str) -> bool:
        return name in self._exposed

    def names(self) -> frozenset[str]:
        return frozenset(self._exposed)

    def forced_choice(self, server_label: str, name: str | None) -> Any:
        """``tool_choice: {type: mcp}`` as a Chat Completions tool choice (first step only)."""
        candidates = [n for n, e in self._exposed.items() if e.server.server_label == server_label
                      and (name is None or e.tool.name == name)]
        if len(candidates) == 1:
            return {"type": "function", "function": {"name": candidates[0]}}
        return "required"

    # -- calls ---------------------------------------------------------------------------

    async def _call(self, exposed: _Exposed, arguments: str) -> MCPResult:
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return MCPResult(None, f"The arguments are not valid JSON: {arguments!r}")
        if not isinstance(parsed, dict):
            return MCPResult(None, "The arguments must be a JSON object.")
        try:
            session = await self.session(exposed.server)
        except MCPUnavailable as exc:
            return MCPResult(None, exc.message)
        return await session.call_tool(exposed.tool.name, parsed)

    def start(self, call: Any, approved: bool) -> asyncio.Task[MCPResult] | None:
        """Start a call now, or return ``None`` when it must wait for the client's approval."""
        exposed = self._exposed[call.name]
        if not approved and exposed.server.needs_approval(exposed.tool.name):
            return None
        return asyncio.ensure_future(self._call(exposed, call.arguments))

    async def emit(self, call: Any, run: asyncio.Task[MCPResult] | None, index: int
                   ) -> AsyncIterator[Event | tuple[Any, dict[str, Any] | None]]:
        """The call's item and events; last, the pair (item, tool message or ``None`` if awaiting approval)."""
        exposed = self._exposed[call.name]
        if run is not None:
            async for event in self._emit_call(call, exposed, run, index):
                yield event
            return
        request = McpApprovalRequest(id=new_id("mcpr"), type="mcp_approval_request",
                                     server_label=exposed.server.server_label,
                                     name=exposed.tool.name, arguments=call.arguments)
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=request,
                                           output_index=index, sequence_number=0)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=request,
                                          output_index=index, sequence_number=0)
        yield request, None

    async def _emit_call(self, call: Any, exposed: _Exposed, run: asyncio.Task[MCPResult], index: int
                         ) -> AsyncIterator[Event | tuple[Any, dict[str, Any] | None]]:
        item = McpCall(id=new_id("mcp"), type="mcp_call", name=exposed.tool.name, arguments="",
                       server_label=exposed.server.server_label, status="in_progress",
                       approval_request_id=getattr(call, "approval_request_id", None))
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(),
                                           output_index=index, sequence_number=0)
        yield ResponseMcpCallInProgressEvent(type="response.mcp_call.in_progress", item_id=item.id,
                                             output_index=index, sequence_number=0)
        yield ResponseMcpCallArgumentsDeltaEvent(type="response.mcp_call_arguments.delta", item_id=item.id,
                                                 output_index=index, delta=call.arguments, sequence_number=0)
        yield ResponseMcpCallArgumentsDoneEvent(type="response.mcp_call_arguments.done", item_id=item.id,
                                                output_index=index, arguments=call.arguments, sequence_number=0)
        result = await run
        final: dict[str, Any] = {**item.model_dump(), "arguments": call.arguments}
        if result.error is None:
            final.update(output=result.output, status="completed")
            yield ResponseMcpCallCompletedEvent(type="response.mcp_call.completed", item_id=item.id,
                                                output_index=index, sequence_number=0)
        else:
            final.update(status="failed", error={"type": "mcp_tool_execution_error",
                                                 "content": [{"type": "text", "text": result.error}]})
            yield ResponseMcpCallFailedEvent(type="response.mcp_call.failed", item_id=item.id,
                                             output_index=index, sequence_number=0)
        item = McpCall.model_validate(final)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(deep=True),
                                          output_index=index, sequence_number=0)
        content = result.output if result.error is None else f"Error: {result.error}"
        yield item, {"role": "tool", "tool_call_id": call.call_id, "content": content or ""}

    async def aclose(self) -> None:
        for task in self._sessions.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                await task.result().aclose()
            else:
                task.cancel()
