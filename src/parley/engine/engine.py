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
from typing import Any, get_args

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
from openai.types.responses.response_output_item import McpListTools

from parley.backends.router import Router
from parley.engine.approvals import resolve_approvals
from parley.engine.chat_request import chat_request
from parley.engine.client_tools import ClientTools
from parley.engine.history import build_messages, place_tool_message, with_instructions
from parley.engine.persistence import Persistence
from parley.engine.recorder import Recorder
from parley.engine.translate import ChunkTranslator
from parley.engine.turn import RunState, Turn, snapshot
from parley.errors import BackendError, InvalidRequest, ParleyError, StoreUnavailable
from parley.items import ReasoningItem, image_urls, item_resource
from parley.metrics import Metrics
from parley.netpolicy import AddressPolicy
from parley.reasoning import ReasoningCipher
from parley.request import CreateResponse
from parley.tool_specs import McpTool, ToolChoiceHosted, ToolChoiceMcp, WebSearchTool
from parley.settings import UpstreamConfig
from parley.store.base import Store
from parley.tools import CONTINUES, ServerTools
from parley.tools.mcp import MCPConnector
from parley.tools.mcp_tools import McpTools
from parley.tools.tool_search import ToolSearchKind
from parley.tools.web_search import FUNCTION_NAME as WEB_SEARCH_FUNCTION
from parley.tools.web_search import SearchProvider, WebSearchTools, require_provider
from parley.tracing import fail, start_span

log = logging.getLogger("parley.engine")
OVER_LIMIT = "This tool call was not run: the response reached its max_tool_calls limit."
# The protocol's closed enum for incomplete_details.reason has no value for tool bounds; "max_messages" is the
# one that names a bound on the loop, and strict clients parse it.
TOOL_BOUND_REASON = "max_messages"
TERMINAL_EVENTS = {"response.completed", "response.incomplete", "response.failed"}


def _build_protocol_types() -> None:
    """Build the SDK's Response and event validators now: pydantic defers each to its first use, where it
    costs about 15 ms (80 ms for all of them), which the first requests of a process would otherwise pay."""
    Response.model_rebuild()
    for event_type in get_args(get_args(ResponseStreamEvent)[0]):
        event_type.model_rebuild()


class Engine:
    """Runs responses against the backends and keeps them in the store."""

    def __init__(self, store: Store, router: Router, *, max_tool_iterations: int = 10,
                 search_provider: SearchProvider | None = None, address_policy: AddressPolicy | None = None,
                 tool_timeout: float = 30.0, metrics: Metrics | None = None,
                 cipher: ReasoningCipher | None = None, store_retry_s: float = 15.0) -> None:
        self.store = store
        self.router = router
        self.address_policy = address_policy or AddressPolicy(enforce=False)
        self.connector = MCPConnector(tool_timeout, self.address_policy)
        self.max_tool_iterations = max_tool_iterations
        self.search_provider = search_provider
        self.metrics = metrics
        self.cipher = cipher
        self.recorder = Recorder(store, store_retry_s)
        _build_protocol_types()

    async def prepare(self, request: CreateResponse, tenant: str = "", client_key: str | None = None) -> Turn:
        """Resolve the model and the previous response, build the conversation and store the response
        as ``in_progress``; raises the errors a client gets as plain HTTP errors, before any stream."""
        upstream = self.router.upstream_config(request.model)
        persistence = Persistence.for_request(store=request.store, stream=request.stream)
        if persistence.needs_store and not self.store.available:  # refused before the model runs, not after
            raise StoreUnavailable("The response store is unavailable; try again.")
        for i, tool in enumerate(request.tools):
            if isinstance(tool, McpTool):
                await self.address_policy.check(tool.server_url, f"tools[{i}].server_url")
        for param, url in image_urls(request.input):  # the backend fetches these on the user's behalf
            await self.address_policy.check(url, param)
        if any(isinstance(t, WebSearchTool) and t.live for t in request.tools):
            require_provider(self.search_provider, "tools")
        prior: list[dict[str, Any]] = []
        previous = None
        if request.previous_response_id:
            previous = await self.store.get(request.previous_response_id, tenant)
            if previous is None:
                raise InvalidRequest(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id", code="previous_response_not_found",
                )
            prior = previous.messages
        conversation = build_messages(prior, request.input, self._replayed_reasoning(request, upstream))
        previous_output = previous.response.get("output", []) if request.previous_response_id else []
        approved = resolve_approvals(request, previous_output, conversation)
        if not conversation:
            raise InvalidRequest("The input is empty.", param="input", code="invalid_value")
        items = [item_resource(item) for item in request.input]
        turn = Turn(request=request, upstream=upstream, conversation=conversation, input_items=items, tenant=tenant,
                    previous_output=previous_output, approved=approved, client_key=client_key,
                    persistence=persistence)
        if persistence.at_start:
            started = RunState(conversation)
            turn.opening = snapshot(turn, started, "in_progress")
            await self.recorder.open(turn, started, turn.opening)
        return turn

    def _replayed_reasoning(self, request: CreateResponse, upstream: UpstreamConfig) -> dict[int, str]:
        """Decrypt replayed ``encrypted_content``; an altered or foreign one is a 400."""
        texts: dict[int, str] = {}
        for i, item in enumerate(request.input):
            if isinstance(item, ReasoningItem) and item.encrypted_content:
                text = self.cipher.decrypt(item.encrypted_content) if self.cipher else None
                if text is None:
                    raise InvalidRequest("This encrypted_content was not made by this server or was altered.",
                                         param=f"input[{i}].encrypted_content", code="invalid_encrypted_content")
                if upstream.replay_reasoning:
                    texts[i] = text
        return texts

    async def run(self, turn: Turn, state: RunState | None = None) -> AsyncIterator[ResponseStreamEvent]:
        """Every event of the response, numbered from 0."""
        state = state or RunState(conversation=turn.conversation)
        sequence, started, first_token = 0, time.perf_counter(), True
        async for event in self._lifecycle(turn, state):
            event.sequence_number = sequence
            sequence += 1
            if self.metrics is not None:
                if first_token and event.type == "response.output_text.delta":
                    first_token = False
                    self.metrics.first_token(time.perf_counter() - started)
                elif event.type in TERMINAL_EVENTS:
                    self.metrics.finished(event.response, state.error.code if state.error else None)  # type: ignore
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
        state.span = start_span("parley.response", response_id=turn.id, model=turn.request.model,
                                stream=turn.request.stream)
        try:
            async for event in self._lifecycle_events(turn, state):
                yield event
        finally:
            self.recorder.forget(turn.id)  # also when the run was cut short: recovery may then fail the row
            if state.error:
                fail(state.span, state.error.message)
            state.span.set_attribute("status", state.status)
            state.span.end()

    async def _lifecycle_events(self, turn: Turn, state: RunState) -> AsyncIterator[ResponseStreamEvent]:
        started = turn.opening or snapshot(turn, state, "in_progress")
        yield ResponseCreatedEvent(type="response.created", response=started, sequence_number=0)
        yield ResponseInProgressEvent(type="response.in_progress", response=started, sequence_number=0)
        try:
            async for event in self._step(turn, state):
                yield event
        except ParleyError as exc:
            state.error = exc
        except Exception:
            log.exception("response %s failed", turn.id)
            state.error = BackendError("The server had an error while processing the response.")
        status = state.status = "failed" if state.error else "incomplete" if state.incomplete_reason else "completed"
        final = snapshot(turn, state, status)
        if turn.persistence.at_end:  # written before the terminal event goes out: a client that saw it can retrieve it
            final = await self._store_final(turn, state, final)
            status = state.status = final.status or status
        log.info("response %s %s", turn.id, status, extra={
            "response_id": turn.id, "model": turn.request.model, "status": status, "tenant": turn.tenant,
            "input_tokens": state.usage.input_tokens, "output_tokens": state.usage.output_tokens,
            "error_code": state.error.code if state.error else None})
        if state.error:
            yield ResponseErrorEvent(type="error", code=state.error.code, message=state.error.message,
                                     param=state.error.param, sequence_number=0)
            yield ResponseFailedEvent(type="response.failed", response=final, sequence_number=0)
        elif status == "incomplete":
            yield ResponseIncompleteEvent(type="response.incomplete", response=final, sequence_number=0)
        else:
            yield ResponseCompletedEvent(type="response.completed", response=final, sequence_number=0)

    async def _store_final(self, turn: Turn, state: RunState, final: Response) -> Response:
        """The final state as stored: a write that never lands fails the response; a final state stored
        before this one (recovery took the response for abandoned) is what the client is told."""
        try:
            stored = await self.recorder.close(turn, state, final)
        except StoreUnavailable:
            state.error = StoreUnavailable("The response was produced but could not be stored.")
            return snapshot(turn, state, "failed")
        if stored is not final and stored.status == "failed":
            state.error = ParleyError(stored.error.message if stored.error else "The response failed.")
        return stored

    async def _step(self, turn: Turn, state: RunState) -> AsyncIterator[ResponseStreamEvent]:
        """The agent loop: list server tools, call the model, run its server-side calls, repeat."""
        mcp = McpTools([t for t in turn.request.tools if isinstance(t, McpTool)], self.connector,
                       turn.previous_output)
        search = next((t for t in turn.request.tools if isinstance(t, WebSearchTool) and t.live), None)
        web = WebSearchTools(self.search_provider, search.search_context_size, search.allowed_domains) \
            if search else None
        client = ClientTools(turn.request, loaded=turn.loaded_tools())
        kinds: list[Any] = [mcp] + ([web] if web else [])
        if client.search is not None and client.search.execution == "server":
            kinds.append(ToolSearchKind(client))
        tools = ServerTools(kinds)
        try:
            async for produced in mcp.list_tools(len(state.output)):
                if isinstance(produced, McpListTools):
                    state.output.append(produced)
                else:
                    yield produced
            async for event in self._run_calls(state, tools, turn.approved_calls(mcp), approved=True):
                yield event
            await self._save_progress(turn, state)
            for iteration in range(self.max_tool_iterations):
                translator = ChunkTranslator(first_index=len(state.output), server_names=tools.names(),
                                             sources=web.sources if web else [], client_tools=client.by_chat_name,
                                             encrypt=self.cipher.encrypt if self.cipher and
                                             "reasoning.encrypted_content" in turn.request.include else None)
                body = self._chat_body(turn, state, mcp, tools, client, first=iteration == 0)
                async for event in self._backend_call(body, turn, state, translator):
                    yield event
                if not translator.server_calls or state.incomplete_reason:
                    return
                left = self._calls_left(turn, state)
                async for event in self._run_calls(state, tools, translator.server_calls[:left]):
                    yield event
                over = translator.server_calls[left:]
                for skipped in over:  # answered in the stored chat, so a chained turn can go on from here
                    place_tool_message(state.conversation, {"role": "tool", "tool_call_id": skipped.call_id,
                                                            "content": OVER_LIMIT})
                if state.awaiting_approval or translator.client_calls:
                    return
                if over or iteration == self.max_tool_iterations - 1:
                    # The model wants more than the bounds allow: the response ends here, incomplete.
                    bound = "max_tool_calls" if over else "max_tool_iterations"
                    log.info("response %s stopped at its %s bound", turn.id, bound, extra={"response_id": turn.id})
                    state.incomplete_reason = TOOL_BOUND_REASON
                    return
                await self._save_progress(turn, state)  # only when the model is called again: else the final write
        finally:
            await tools.aclose()

    async def _save_progress(self, turn: Turn, state: RunState) -> None:
        """After a tool step, a streamed stored response is written with its items so far: a client polling
        its id sees them, and a crash keeps them (the recovered response fails with its finished items)."""
        if turn.persistence.after_tool_steps and state.output:
            await self.recorder.progress(turn, state, snapshot(turn, state, "in_progress"))

    @staticmethod
    def _calls_left(turn: Turn, state: RunState) -> int:
        cap = turn.request.max_tool_calls
        return 1 << 30 if cap is None else max(cap - state.server_tool_calls, 0)

    def _chat_body(self, turn: Turn, state: RunState, mcp: McpTools, tools: ServerTools, client: ClientTools, *,
                   first: bool) -> dict[str, Any]:
        choice = turn.request.tool_choice
        override: Any = None
        if isinstance(choice, ToolChoiceMcp):
            override = mcp.forced_choice(choice.server_label, choice.name) if first else "auto"
        elif isinstance(choice, ToolChoiceHosted):
            override = {"type": "function", "function": {"name": WEB_SEARCH_FUNCTION}} if first else "auto"
        elif not first and choice != "none":
            override = "auto"  # a forced choice applies to the first step only, or the loop never ends
        return chat_request(
            turn.request, with_instructions(turn.request.instructions, state.conversation),
            model=turn.request.model, max_tokens_param=turn.upstream.max_tokens_param,
            server_tools=tools.chat_tools(), tool_choice=override,
            client_tools=client.chat,
        )

    async def _run_calls(self, state: RunState, tools: ServerTools, calls: list[Any], approved: bool = False
                         ) -> AsyncIterator[ResponseStreamEvent]:
        if not calls:
            return
        approved_ids = {c.call_id for c in calls} if approved else set()
        spans = [start_span("parley.tool.call", state.span, tool=c.name) for c in calls]
        finished = 0  # items come in the order of the calls
        try:
            async for produced in tools.execute(calls, len(state.output), approved_ids):
                if not isinstance(produced, tuple):
                    yield produced
                    continue
                item, tool_message = produced
                if tool_message is CONTINUES:
                    state.output.append(item)
                    continue
                spans[finished].set_attribute("item_type", item.type)
                if getattr(item, "status", None) == "failed":
                    fail(spans[finished], "the tool call failed")
                spans[finished].end()
                finished += 1
                state.output.append(item)
                state.server_tool_calls += tool_message is not None
                if tool_message is None:
                    state.awaiting_approval = True
                else:
                    place_tool_message(state.conversation, tool_message)
        finally:
            for span in spans[finished:]:
                span.end()

    async def _backend_call(self, body: dict[str, Any], turn: Turn, state: RunState,
                            translator: ChunkTranslator) -> AsyncIterator[ResponseStreamEvent]:
        """One backend call: its chunks translated into content events."""
        backend = self.router.backends[turn.upstream.name]
        key = turn.client_key if turn.upstream.forward_client_key else None
        span = start_span("parley.backend.call", state.span, upstream=turn.upstream.name, model=body["model"],
                          messages=len(body["messages"]))
        try:
            async for chunk in backend.stream(body, key):
                try:
                    events = translator.feed(chunk)
                except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a shape feed does not check
                    log.warning("response %s: unreadable chunk %.300r", turn.id, chunk, exc_info=True)
                    raise BackendError("The model backend sent a chunk Parley could not read.",
                                       code="backend_protocol_error") from exc
                for event in events:
                    yield event
        except Exception as exc:
            fail(span, str(exc))
            for event in translator.abort():  # the partial item is kept, marked incomplete
                yield event
            state.output += translator.items
            raise
        finally:
            span.end()
        for event in translator.finish():
            yield event
        state.output += translator.items
        state.usage.add_chat_usage(translator.usage or {})
        state.conversation = [*state.conversation, translator.assistant_message()]
        state.incomplete_reason = translator.incomplete_reason
