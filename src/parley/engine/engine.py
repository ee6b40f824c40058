"""The engine: one create request becomes one stream of Responses events.

``prepare`` checks everything that can be checked before a stream starts (so those
errors are plain HTTP 4xx, also for ``stream: true``).  ``run`` yields the events; the
lifecycle (created, in_progress, exactly one terminal event), ``sequence_number`` and
the mapping of exceptions to ``response.failed`` live in it alone, while the inner step
only yields content events.  ``respond`` (non-streaming) is a fold over ``run``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseStreamEvent,
)

from parley.backends.router import Router
from parley.engine.chat_request import chat_request
from parley.engine.history import build_messages, with_instructions
from parley.engine.translate import ChunkTranslator, Usage
from parley.errors import BackendError, InvalidRequest, ParleyError
from parley.ids import new_id
from parley.items import item_resource
from parley.request import CreateResponse, ToolChoiceFunction
from parley.settings import UpstreamConfig
from parley.store.base import Store, StoredResponse

log = logging.getLogger("parley.engine")
TERMINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


@dataclass
class Turn:
    """A validated request with everything resolved that it needs to run."""

    request: CreateResponse
    upstream: UpstreamConfig
    conversation: list[dict[str, Any]]
    input_items: list[dict[str, Any]]
    tenant: str = ""
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))


@dataclass
class RunState:
    """What a run has produced so far."""

    conversation: list[dict[str, Any]]
    output: list[Any] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    incomplete_reason: str | None = None
    error: ParleyError | None = None


def _tool_echo(request: CreateResponse) -> list[dict[str, Any]]:
    return [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
         "strict": t.strict}
        for t in request.tools
    ]


def _tool_choice_echo(request: CreateResponse) -> Any:
    choice = request.tool_choice
    return {"type": "function", "name": choice.name} if isinstance(choice, ToolChoiceFunction) else choice


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


class Engine:
    """Runs responses against the backends and keeps them in the store."""

    def __init__(self, store: Store, router: Router) -> None:
        self.store = store
        self.router = router

    async def prepare(self, request: CreateResponse, tenant: str = "") -> Turn:
        """Resolve the model and the previous response and build the conversation; raises 4xx errors."""
        upstream = self.router.upstream_config(request.model)
        prior: list[dict[str, Any]] = []
        if request.previous_response_id:
            previous = await self.store.get(request.previous_response_id, tenant)
            if previous is None:
                raise InvalidRequest(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id", code="previous_response_not_found",
                )
            prior = previous.messages
        conversation = build_messages(prior, request.input)
        if not conversation:
            raise InvalidRequest("The input is empty.", param="input", code="invalid_value")
        items = [item_resource(item) for item in request.input]
        return Turn(request=request, upstream=upstream, conversation=conversation, input_items=items, tenant=tenant)

    async def run(self, turn: Turn, state: RunState | None = None) -> AsyncIterator[ResponseStreamEvent]:
        """Every event of the response, numbered from 0."""
        sequence = 0
        async for event in self._lifecycle(turn, state or RunState(conversation=turn.conversation)):
            event.sequence_number = sequence
            sequence += 1
            yield event

    async def respond(self, turn: Turn) -> Response:
        """The non-streaming answer: the terminal snapshot of :meth:`run`.

        A failed response is raised as its error, so the client gets the HTTP status the
        failure deserves (400 for a request the backend rejected, 502 for a broken backend…).
        """
        state = RunState(conversation=turn.conversation)
        final: Response | None = None
        async for event in self.run(turn, state):
            if event.type in TERMINAL_EVENTS:
                final = event.response  # type: ignore[union-attr]
        if state.error is not None:
            raise state.error
        assert final is not None
        return final

    async def _lifecycle(self, turn: Turn, state: RunState) -> AsyncIterator[ResponseStreamEvent]:
        if turn.request.store:
            await self.store.create(self._record(turn, state, snapshot(turn, state, "in_progress")))
        yield ResponseCreatedEvent(type="response.created", response=snapshot(turn, state, "in_progress"),
                                   sequence_number=0)
        yield ResponseInProgressEvent(type="response.in_progress", response=snapshot(turn, state, "in_progress"),
                                      sequence_number=0)
        try:
            async for event in self._step(turn, state):
                yield event
        except ParleyError as exc:
            state.error = exc
        except Exception:
            log.exception("response %s failed", turn.id)
            state.error = BackendError("The server had an error while processing the response.")
        status = "failed" if state.error else "incomplete" if state.incomplete_reason else "completed"
        final = snapshot(turn, state, status)
        if turn.request.store:
            await self.store.finish(self._record(turn, state, final))
        if state.error:
            yield ResponseErrorEvent(type="error", code=state.error.code, message=state.error.message,
                                     param=state.error.param, sequence_number=0)
            yield ResponseFailedEvent(type="response.failed", response=final, sequence_number=0)
        elif status == "incomplete":
            yield ResponseIncompleteEvent(type="response.incomplete", response=final, sequence_number=0)
        else:
            yield ResponseCompletedEvent(type="response.completed", response=final, sequence_number=0)

    async def _step(self, turn: Turn, state: RunState) -> AsyncIterator[ResponseStreamEvent]:
        """One backend call: its chunks translated into content events."""
        backend = self.router.backends[turn.upstream.name]
        messages = with_instructions(turn.request.instructions, state.conversation)
        body = chat_request(turn.request, messages, model=turn.request.model,
                            max_tokens_param=turn.upstream.max_tokens_param)
        translator = ChunkTranslator(first_index=len(state.output))
        try:
            async for chunk in backend.stream(body):
                for event in translator.feed(chunk):
                    yield event
        except Exception:
            for event in translator.abort():  # the partial item is kept, marked incomplete
                yield event
            state.output += translator.items
            raise
        for event in translator.finish():
            yield event
        state.output += translator.items
        state.usage.add_chat_usage(translator.usage or {})
        state.conversation = [*state.conversation, translator.assistant_message()]
        state.incomplete_reason = translator.incomplete_reason

    @staticmethod
    def _record(turn: Turn, state: RunState, response: Response) -> StoredResponse:
        return StoredResponse(
            id=turn.id, tenant=turn.tenant, created_at=turn.created_at, status=response.status or "in_progress",
            response=response.model_dump(mode="json", by_alias=True), messages=state.conversation,
            input_items=turn.input_items, previous_response_id=turn.request.previous_response_id,
        )
