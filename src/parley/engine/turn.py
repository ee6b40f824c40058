"""What one response run works with: the resolved request (``Turn``), what it has produced so far
(``RunState``), and the full Response object at any point of the run (``snapshot``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import Response

from parley.engine.approvals import ApprovedCall
from parley.engine.persistence import NOT_STORED, Persistence
from parley.engine.translate import Usage
from parley.errors import ParleyError
from parley.ids import new_id
from parley.items import ToolSearchOutputItem
from parley.request import CreateResponse
from parley.tool_specs import FunctionTool, McpTool, ToolChoiceHosted
from parley.settings import UpstreamConfig
from parley.tools.mcp_tools import McpTools


@dataclass
class Turn:
    """A validated request with everything resolved that it needs to run."""

    request: CreateResponse
    upstream: UpstreamConfig
    conversation: list[dict[str, Any]]
    input_items: list[dict[str, Any]]
    tenant: str = ""
    previous_output: list[dict[str, Any]] = field(default_factory=list)
    approved: list[ApprovedCall] = field(default_factory=list)  # approved MCP calls to run first
    client_key: str | None = field(default=None, repr=False)  # forwarded upstream only when configured to
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    opening: Response | None = None  # the in_progress snapshot, when prepare already made it to store it
    persistence: Persistence = NOT_STORED  # which writes it gets

    def loaded_tools(self) -> list[dict[str, Any]]:
        """Tools that searches of this conversation loaded: from replayed or earlier tool_search_output items."""
        replayed = [item.tools for item in self.request.input if isinstance(item, ToolSearchOutputItem)]
        earlier = [item.get("tools", []) for item in self.previous_output if item.get("type") == "tool_search_output"]
        return [tool for tools in earlier + replayed for tool in tools]

    def approved_calls(self, mcp: McpTools) -> list[ApprovedCall]:
        """Approved calls whose server this request still names, under the names the model sees."""
        calls = []
        for call in self.approved:
            name = mcp.exposed_name(call.server_label, call.name)
            if name is not None:
                calls.append(ApprovedCall(call.call_id, name, call.arguments, call.server_label,
                                          call.approval_request_id))
        return calls


@dataclass
class RunState:
    """What a run has produced so far."""

    conversation: list[dict[str, Any]]
    output: list[Any] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    incomplete_reason: str | None = None
    error: ParleyError | None = None
    awaiting_approval: bool = False
    server_tool_calls: int = 0
    status: str = "in_progress"
    span: Any = None  # the response's tracing span (see parley.tracing)


def _tool_echo(request: CreateResponse) -> list[dict[str, Any]]:
    return [
        t.echo() if isinstance(t, McpTool) else
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
         "strict": t.strict} if isinstance(t, FunctionTool) else
        t.model_dump(exclude_none=True)
        for t in request.tools
    ]


def _tool_choice_echo(request: CreateResponse) -> Any:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceHosted) and not choice.type.startswith("web_search_preview"):
        # Clients send {"type": "web_search"}, but the Response's tool_choice enum only knows the preview names.
        return {"type": "web_search_preview"}
    return choice if isinstance(choice, str) else choice.model_dump(exclude_none=True)


def snapshot(turn: Turn, state: RunState, status: str) -> Response:
    """The full Response object at one point of the run (every field present)."""
    request = turn.request
    terminal = status in ("completed", "incomplete", "failed")
    error = state.error
    return Response(
        id=turn.id,
        object="response",
        created_at=turn.created_at,
        status=status,
        completed_at=int(time.time()) if status == "completed" else None,
        error={"code": error.response_error_code, "message": error.message} if error else None,
        incomplete_details={"reason": state.incomplete_reason} if status == "incomplete" else None,
        instructions=request.instructions,
        metadata=request.metadata or {},
        model=request.model,
        output=list(state.output),
        parallel_tool_calls=request.parallel_tool_calls,
        temperature=request.temperature if request.temperature is not None else 1.0,
        top_p=request.top_p if request.top_p is not None else 1.0,
        tool_choice=_tool_choice_echo(request),
        tools=_tool_echo(request),
        usage=state.usage.as_response_usage() if terminal else None,
        previous_response_id=request.previous_response_id,
        background=False,
        max_output_tokens=request.max_output_tokens,
        max_tool_calls=request.max_tool_calls,
        reasoning={"effort": request.reasoning.effort if request.reasoning else None,
                   "summary": request.reasoning.summary if request.reasoning else None},
        text={"format": request.text.format.model_dump(by_alias=True),
              "verbosity": request.text.verbosity or "medium"},
        truncation=request.truncation,
        top_logprobs=0,
        service_tier="default",
        store=request.store,
        user=request.user,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
        prompt_cache_retention=request.prompt_cache_retention,
        conversation=None,
    )
