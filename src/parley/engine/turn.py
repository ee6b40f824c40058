"""What one response run works with: the resolved request (``Turn``), what it has produced so far
(``RunState``), and the full Response object at any point of the run (``snapshot``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import Response

from parley.engine.persistence import NOT_STORED, Persistence
from parley.engine.timeline import Timeline
from parley.engine.usage import Usage
from parley.errors import ParleyError
from parley.ids import new_id
from parley.request import CreateResponse
from parley.settings import UpstreamConfig
from parley.store.base import TERMINAL
from parley.tools.approval import ApprovedCall


@dataclass
class Turn:
    """A validated request with everything resolved that it needs to run."""

    request: CreateResponse
    upstream: UpstreamConfig
    conversation: list[ChatCompletionMessageParam]  # the chat so far (the SDK's TypedDicts)
    input_items: list[dict[str, Any]]
    tenant: str = ""
    previous_output: list[Any] = field(default_factory=list)  # the earlier response's output items (SDK types)
    approved: list[ApprovedCall] = field(default_factory=list)  # calls approved in this request, run first
    programs: list[Any] = field(default_factory=list)  # programs that go on in this request (PendingProgram)
    client_key: str | None = field(default=None, repr=False)  # forwarded upstream only when configured to
    id: str = field(default_factory=lambda: new_id("resp"))
    arrived_at: float = field(default_factory=time.time)  # its stored row's time: queues and lists go by it
    created_at: int = -1  # the Response's (whole seconds): when it arrived unless given
    unopened: bool = False  # its in_progress row is still to be written: the run writes it beside its first step
    persistence: Persistence = NOT_STORED  # which writes it gets
    context_window: int | None = None  # known when the request asks for truncation: auto
    compact_threshold: int | None = None  # the prompt size that compacts the history (context_management)
    queued: bool = False  # a background response run after it was queued (its first events were sent then)
    started: float = field(default_factory=time.perf_counter)  # when the request arrived

    def __post_init__(self) -> None:
        if self.created_at < 0:
            self.created_at = int(self.arrived_at)


@dataclass
class Queued:
    """A queued background response an instance claimed: what it keeps of the queued one."""

    id: str
    created_at: float
    input_items: list[dict[str, Any]]


@dataclass
class RunState:
    """What a run has produced so far."""

    conversation: list[ChatCompletionMessageParam]
    output: list[Any] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    incomplete_reason: str | None = None
    error: ParleyError | None = None
    awaiting_approval: bool = False
    call_ids: dict[str, str] = field(default_factory=dict)  # server-side output item id -> its chat tool call id
    server_tool_calls: int = 0
    status: str = "in_progress"
    service_tier: str | None = None  # as the upstream reported it
    span: Any = None  # the response's tracing span (see parley.tracing)
    stepping: bool = False  # in the agent loop, where a cancel may stop it (see parley.background)
    cancel_requested: bool = False
    cancelled: bool = False
    timeline: Timeline = field(default_factory=Timeline)  # its model and tool calls, timed
    # Set by a WebSocket connection: whether steering input waits, so that the run stops at its next safe
    # boundary (after a tool step, before the next model call) as incomplete, reason "steered".
    steered: Callable[[], bool] | None = None
    moderation: dict[str, Any] | None = None  # the Response's moderation results (parley.moderation)
    generate: bool = True  # False (a WebSocket's generate: false): the input is kept, the model is not called
    deltas: bool = True  # False: folded into the final Response (non-streamed): no per-token or opening events
    first_text_at: float | None = None  # (deltas off) when the output text began, for the first-token metric
    sequence: int = 0  # the next event's sequence number (a relay numbers the frames it makes from it)
    opened: asyncio.Future[None] | None = None  # the in_progress row's write, while the first step runs beside it


def snapshot(turn: Turn, state: RunState, status: str) -> Response:
    """The full Response object at one point of the run (every field present)."""
    request = turn.request
    terminal = status in TERMINAL
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
        # Open Responses fields, which the SDK's type keeps as extra fields
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        tool_choice=request.tool_choice if isinstance(request.tool_choice, str) else request.tool_choice.echo(),
        tools=[tool.echo() for tool in request.tools],
        usage=state.usage.as_response_usage() if terminal else None,
        previous_response_id=request.previous_response_id,
        background=request.background,
        max_output_tokens=request.max_output_tokens,
        max_tool_calls=request.max_tool_calls,
        reasoning={"effort": request.reasoning.effort if request.reasoning else None,
                   "summary": request.reasoning.summary if request.reasoning else None},
        text={"format": request.text.format.model_dump(by_alias=True),
              "verbosity": request.text.verbosity or "medium"},
        truncation=request.truncation,
        top_logprobs=request.top_logprobs or 0,
        service_tier=state.service_tier or "default",
        store=request.store,
        user=request.user,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
        prompt_cache_retention=request.prompt_cache_retention,
        conversation={"id": request.conversation} if request.conversation else None,
        moderation=state.moderation,
        prompt_cache_options=_dumped(request.prompt_cache_options),
        image=_dumped(request.image),
        access_programs=_dumped(request.access_programs),
        prompt=_dumped(request.prompt),
    )


def _dumped(options: Any) -> dict[str, Any] | None:
    return None if options is None else options.model_dump(exclude_none=True)
