"""The ``mcp`` tool kind: remote MCP servers whose tools Parley lists and calls itself.

Before the first model call, each server's tools are listed (an ``mcp_list_tools`` item; a chained
turn reuses its server's earlier listing), and they are offered to the model as functions.  A call
becomes an ``mcp_call`` item; one that ``require_approval`` holds becomes an ``mcp_approval_request``
(the :class:`~parley.tools.approval.Gated` wrapper).  Sessions are opened once per (URL, headers)
per response.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

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
from openai.types.responses.response_output_item import McpCall, McpListTools

from pydantic import Field

from parley.errors import InvalidRequest
from parley.redaction import redact_userinfo
from parley.ids import new_id
from parley.replayed_items import McpListToolsItem
from parley.tools.approval import Gated
from parley.tools.base import AllowedCallers, BindContext, Binding, CallDone, ItemDone, Offered, Produced, ToolCall, \
    ToolEnv, ToolKind, ToolModel
from parley.tools.mcp import MCPConnector, MCPResult, MCPSession, MCPToolInfo, MCPUnavailable

Event = ResponseStreamEvent


class ToolNames(ToolModel):
    tool_names: list[str] = Field(default_factory=list)
    read_only: bool | None = None


class ApprovalFilter(ToolModel):
    always: ToolNames | None = None
    never: ToolNames | None = None


class McpTool(ToolModel):
    """A remote MCP server whose tools Parley lists and calls itself."""

    UNSUPPORTED = {
        "connector_id": "Connectors are services OpenAI hosts (Gmail, Google Drive…), which Parley cannot reach: run "
                        "an MCP server for the service and give its 'server_url'.",
        "tunnel_id": "Only MCP servers named by 'server_url' are supported."}
    type: Literal["mcp"]
    server_label: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    server_url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] | None = None
    authorization: str | None = None
    server_description: str | None = None
    allowed_callers: AllowedCallers = None
    allowed_tools: list[str] | ToolNames | None = None
    require_approval: Literal["always", "never"] | ApprovalFilter | None = None  # None: the server's default

    def allows(self, name: str) -> bool:
        if self.allowed_tools is None:
            return True
        names = self.allowed_tools if isinstance(self.allowed_tools, list) else self.allowed_tools.tool_names
        return name in names

    def needs_approval(self, name: str, default: str = "never") -> bool:
        policy = self.require_approval or default
        if isinstance(policy, str):
            return policy == "always"
        if policy.never and name in policy.never.tool_names:
            return False
        if policy.always and name in policy.always.tool_names:
            return True
        return True  # OpenAI's default: a tool neither filter names needs approval

    def connection_headers(self) -> dict[str, str]:
        headers = dict(self.headers or {})
        if self.authorization:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers

    def reference(self) -> dict[str, str]:
        return {"type": "mcp", "server_label": self.server_label}

    def echo(self) -> dict[str, Any]:
        """The tool as the Response echoes it: credentials never leave in a response or the store."""
        data = self.model_dump(exclude_none=True)
        data["server_url"] = redact_userinfo(self.server_url)
        if self.headers:
            data["headers"] = {name: "<redacted>" for name in self.headers}
        if self.authorization:
            data["authorization"] = "<redacted>"
        return data


class ToolChoiceMcp(ToolModel):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


@dataclass
class _Exposed:
    server: McpTool
    tool: MCPToolInfo


@dataclass
class McpTools(Binding):
    servers: list[McpTool]
    connector: MCPConnector
    previous_output: list[Any] = field(default_factory=list)  # the earlier response's output items
    default_approval: str = "never"  # for a tool that does not say (--mcp-require-approval)
    _exposed: dict[str, _Exposed] = field(default_factory=dict)
    _sessions: dict[tuple[str, str], asyncio.Task[MCPSession]] = field(default_factory=dict)

    # -- listing -------------------------------------------------------------------------

    def _earlier_listing(self, server: McpTool) -> list[MCPToolInfo] | None:
        for item in self.previous_output:
            if isinstance(item, McpListTools) and item.server_label == server.server_label and not item.error:
                return [MCPToolInfo(t.name, t.description, t.input_schema or {}, t.annotations) for t in item.tools]
        return None

    def _expose(self, server: McpTool, tools: list[MCPToolInfo]) -> None:
        for tool in tools:
            name = tool.name if tool.name not in self._exposed else f"{server.server_label}__{tool.name}"
            self._exposed[name] = _Exposed(server, tool)

    async def setup(self, first_index: int) -> AsyncIterator[Event | ItemDone]:
        """Yield each new listing's events and, last for each, the finished ``mcp_list_tools`` item."""
        index = first_index
        for server in self.servers:
            earlier = self._earlier_listing(server)
            if earlier is not None:  # a chained turn reuses the listing its server already gave
                self._expose(server, [tool for tool in earlier if server.allows(tool.name)])
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
                yield ItemDone(item)
                raise
            item = McpListTools.model_validate({**item.model_dump(), "tools": [t.as_listing() for t in tools]})
            self._expose(server, tools)
            yield ResponseMcpListToolsCompletedEvent(type="response.mcp_list_tools.completed", item_id=item.id,
                                                     output_index=index, sequence_number=0)
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(deep=True),
                                              output_index=index, sequence_number=0)
            yield ItemDone(item)
            index += 1

    async def session(self, server: McpTool) -> MCPSession:
        headers = server.connection_headers()
        key = (server.server_url, json.dumps(headers, sort_keys=True))
        if key not in self._sessions:
            self._sessions[key] = asyncio.ensure_future(self.connector.connect(server.server_url, headers))
        return await self._sessions[key]

    # -- what the model sees -------------------------------------------------------------

    def offered(self) -> list[Offered]:
        return [Offered({"type": "function", "function": {
            "name": name, "parameters": exposed.tool.input_schema,
            "description": exposed.tool.description or f"{exposed.tool.name} on {exposed.server.server_label}",
        }}, source={"type": "mcp", "server_label": exposed.server.server_label, "name": exposed.tool.name})
            for name, exposed in self._exposed.items()]

    def function_for(self, server_label: str, name: str) -> str | None:
        return next((n for n, e in self._exposed.items()
                     if e.server.server_label == server_label and e.tool.name == name), None)

    def forced(self, choice: ToolModel) -> Any:
        """``tool_choice: {type: mcp}`` as a Chat Completions tool choice (first step only)."""
        assert isinstance(choice, ToolChoiceMcp)
        candidates = [n for n, e in self._exposed.items() if e.server.server_label == choice.server_label
                      and (choice.name is None or e.tool.name == choice.name)]
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

    def approval(self, call: ToolCall) -> dict[str, str] | None:
        exposed = self._exposed[call.name]
        if not exposed.server.needs_approval(exposed.tool.name, self.default_approval):
            return None
        return {"server_label": exposed.server.server_label, "name": exposed.tool.name}

    def start(self, call: ToolCall, approved: bool) -> asyncio.Task[MCPResult]:
        return asyncio.ensure_future(self._call(self._exposed[call.name], call.arguments))

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        """The ``mcp_call`` item and its events; last, its :class:`CallDone`."""
        async for produced in self._emit_call(call, self._exposed[call.name], run, index):
            yield produced

    async def _emit_call(self, call: ToolCall, exposed: _Exposed, run: asyncio.Task[MCPResult], index: int
                         ) -> AsyncIterator[Produced]:
        item = McpCall(id=new_id("mcp"), type="mcp_call", name=exposed.tool.name, arguments="",
                       server_label=exposed.server.server_label, status="in_progress",
                       approval_request_id=call.approval_request_id)
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
        yield CallDone(item, {"role": "tool", "tool_call_id": call.call_id, "content": content or ""})

    async def aclose(self) -> None:
        for task in self._sessions.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                await task.result().aclose()
            else:
                task.cancel()


class McpKind(ToolKind):
    models = {"mcp": McpTool}
    choices = {"mcp": ToolChoiceMcp}

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        labels = [t.server_label for t in tools]
        if len(labels) != len(set(labels)):
            raise InvalidRequest("Each MCP tool needs a distinct 'server_label'.", param="tools")
        if isinstance(choice, ToolChoiceMcp) and choice.server_label not in labels:
            raise InvalidRequest(f"No MCP tool has server_label '{choice.server_label}'.", param="tool_choice")

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        for where, tool in tools:
            await env.address_policy.check(tool.server_url, f"{where}.server_url")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        connector = context.env.shared.get("mcp.connector")
        if connector is None:  # one per server: it remembers which transport each URL speaks
            connector = context.env.shared["mcp.connector"] = MCPConnector(context.env.tool_timeout,
                                                                           context.env.address_policy)
        replayed = [McpListTools.model_validate({**item.model_dump(exclude_none=True), "id": item.id or new_id("mcpl")})
                    for item in context.input if isinstance(item, McpListToolsItem)]  # listings sent back as input
        return Gated(McpTools(tools, connector, context.previous_output + replayed, context.env.mcp_require_approval))


KIND = McpKind()
