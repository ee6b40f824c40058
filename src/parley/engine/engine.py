"""The engine: one create request becomes one stream of Responses events.

``prepare`` checks everything that can be checked before a stream starts (so those
errors are plain HTTP 4xx, also for ``stream: true``).  ``run`` yields the events; the
lifecycle (created, in_progress, exactly one terminal event), ``sequence_number`` and
the mapping of exceptions to ``response.failed`` live in it alone, while the inner step
only yields content events.  ``respond`` (non-streaming) is a fold over ``run``.
"""

from __future__ import annotations

import asyncio
import json
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

from parley.backends.router import Router
from parley.engine.approvals import resolve_approvals
from parley.engine.chat_request import chat_request
from parley.engine.history import place_tool_message, with_instructions
from parley.engine.persistence import Persistence
from parley.engine.recorder import Recorder
from parley.engine.relay import relay_for
from parley.engine.sources import HistorySources
from parley.engine.window import Window
from parley.engine.translate import ChunkTranslator
from parley.engine.turn import Queued, RunState, Turn, snapshot
from parley.engine import compaction, token_count
from parley.engine import opening
from parley.errors import BackendError, InvalidRequest, NotFound, ParleyError, StoreUnavailable
from parley.files import FileReader
from parley.items import image_urls, input_files, item_resource, uploaded_images
from parley.moderation import Moderator, applies, moderated
from parley.moderation_guard import GuardModerator
from parley.metrics import Metrics
from parley.reasoning import ReasoningCipher
from parley.request import CreateResponse, check_served
from parley.store.base import Store
from parley.tools.base import BindContext, CallDone, ItemDone, ToolCall, ToolEnv
from parley.tools.registry import REGISTRY, Registry, Toolset
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

    def __init__(self, store: Store, router: Router, tools: ToolEnv | None = None, *, registry: Registry = REGISTRY,
                 max_tool_iterations: int = 10, metrics: Metrics | None = None,
                 cipher: ReasoningCipher | None = None, store_retry_s: float = 15.0,
                 files: FileReader | None = None, conversations: Any = None,
                 moderator: Moderator | GuardModerator | None = None) -> None:
        self.store = store
        self.conversations = conversations  # parley.store.conversations.SqlConversations, for `conversation`
        self.moderator = moderator  # the operator's moderations endpoint or guard model, for `moderation`
        self.router = router
        self.tools = tools or ToolEnv()
        self.files = files or FileReader(self.tools.address_policy, timeout=self.tools.tool_timeout)
        self.registry = registry
        self.max_tool_iterations = max_tool_iterations
        self.metrics = metrics
        self.cipher = cipher
        self.sources = HistorySources(store, conversations, cipher)
        self.window = Window(router, cipher)
        self.recorder = Recorder(store, store_retry_s)
        _build_protocol_types()

    async def prepare(self, request: CreateResponse, tenant: str = "", client_key: str | None = None,
                      queued: Queued | None = None) -> Turn:
        """Resolve the model and the previous response and build the conversation; raises the errors a client
        gets as plain HTTP errors, before any stream.  A streamed response's ``in_progress`` row is written by
        :meth:`run`, beside its first step, and before its first event (:class:`NotOpened` when it cannot be).

        A background request is stored by :mod:`parley.background` as ``queued`` instead; the instance that
        claims it prepares it again, with what was kept of it (``queued``), and runs it."""
        upstream = self.router.upstream_config(request.model)
        persistence = Persistence.for_request(store=request.store, stream=request.stream,
                                              background=request.background)
        if persistence.needs_store and not self.store.available:  # refused before the model runs, not after
            raise StoreUnavailable("The response store is unavailable; try again.")
        request.input = await self.sources.resolve_references(request.input, tenant)
        await self.registry.admit(request.tools, self.tools, tenant)
        check_served(request, upstream.forward_params, moderated=self.moderator is not None)
        for param, url in image_urls(request.input):  # the backend fetches these on the user's behalf
            await self.tools.address_policy.check(url, param)
        await self.files.read(input_files(request.input), tenant)
        await self.files.read_images(uploaded_images(request.input), tenant)
        conversation, previous = await self.sources.conversation(request, upstream, tenant)
        # The stored response, parsed once into the protocol's types: what the tools and approvals read of it.
        previous_output = Response.model_validate_json(previous.serialized()).output if previous else []
        self.registry.check_turn(previous_output, request.input)
        approved = resolve_approvals(request, previous_output, previous.call_ids if previous else {}, conversation)
        programs = await self.sources.programs(request, previous, conversation, tenant)
        if not conversation:
            raise InvalidRequest("The input is empty.", param="input", code="invalid_value")
        items = [item_resource(item) for item in request.input]
        turn = Turn(request=request, upstream=upstream, conversation=conversation, input_items=items, tenant=tenant,
                    previous_output=previous_output, approved=approved, programs=programs, client_key=client_key,
                    persistence=persistence)
        if request.truncation == "auto":  # unknown: a 400 now, not a failure in the stream
            turn.context_window = await self.router.context_window(request.model)
        if request.context_management:
            turn.compact_threshold = request.context_management[0].compact_threshold or int(
                0.8 * (turn.context_window or await self.router.context_window(request.model)))
        if queued is not None:
            turn.id, turn.arrived_at, turn.created_at, turn.input_items, turn.queued = (
                queued.id, queued.created_at, int(queued.created_at), queued.input_items, True)
        # Its in_progress row is written when the run starts, beside the run's first step, so that the model's
        # first token does not wait for the database (a background one is queued instead, and a claimed one's row
        # became in_progress when it was claimed).
        turn.unopened = persistence.at_start and queued is None and not request.background
        return turn

    async def count_input_tokens(self, request: CreateResponse, tenant: str = "") -> tuple[int, str]:
        """The tokens the first model call of this request would send (its messages and the tools offered as
        functions, MCP tools excepted: counting does not connect to MCP servers); nothing is stored."""
        request = request.model_copy(update={"store": False, "stream": False})
        turn = await self.prepare(request, tenant)
        tools = self.registry.bind(request.tools, request.tool_choice, BindContext(
            self.tools, turn.previous_output, list(request.input), tenant, list(request.include)))
        try:
            body = await self.window.fitted(turn, self._chat_body(turn, RunState(conversation=turn.conversation), tools,
                                                            first=True))
        finally:
            await tools.aclose()
        return await token_count.count(self.router.backend_for(request.model), body)

    async def compact(self, request: CreateResponse, tenant: str = "", client_key: str | None = None
                      ) -> dict[str, Any]:
        """``POST /v1/responses/compact``: the user messages of the request's history and a ``compaction`` item
        holding the model's summary of the rest (see :mod:`parley.engine.compaction`); nothing is stored."""
        turn = await self.prepare(request.model_copy(update={"store": False, "stream": False}), tenant, client_key)
        summary, usage = await self.window.summarize(turn, turn.conversation)
        items = compaction.user_items(turn.conversation) + [compaction.seal(self.cipher, summary)]
        return compaction.compacted_response(items, usage)

    async def run(self, turn: Turn, state: RunState | None = None) -> AsyncIterator[ResponseStreamEvent]:
        """Every event of the response, numbered from 0 (from 2 for a queued one: ``response.created`` and
        ``response.queued`` were sent when it was queued)."""
        state = state or RunState(conversation=turn.conversation)
        started, first_token = time.perf_counter(), True
        state.sequence = 2 if turn.queued else 0
        state.timeline.origin = started if turn.queued else turn.started  # (a queued one's wait is not its run)
        state.span = start_span("parley.response", response_id=turn.id, model=turn.request.model,
                                stream=turn.request.stream)
        try:
            async for event in self._lifecycle_events(turn, state):
                event.sequence_number = state.sequence
                state.sequence += 1
                if self.metrics is not None:
                    if first_token and event.type == "response.output_text.delta":
                        first_token = False
                        self.metrics.first_token(time.perf_counter() - started)
                    elif event.type in TERMINAL_EVENTS:
                        if first_token and state.first_text_at is not None:  # (non-streamed: no delta events)
                            self.metrics.first_token(state.first_text_at - started)
                        self.metrics.finished(event.response, state.error.code if state.error else None)  # type: ignore
                yield event
                del event  # (a slow stream does not hold its last event while it waits for the next)
        finally:
            self.recorder.forget(turn.id)  # also when the run was cut short: recovery may then fail the row
            if state.opened is not None and not state.opened.done():  # (cut short while its row was written)
                state.opened.add_done_callback(lambda _: self.recorder.forget(turn.id))
            if state.error:
                fail(state.span, state.error.message)
            state.span.set_attribute("status", state.status)
            state.span.end()

    async def respond(self, turn: Turn) -> Response:
        """The non-streaming answer: the terminal snapshot of :meth:`run`.

        A failed response is raised as its error, so the client gets the HTTP status the
        failure deserves (400 for a request the backend rejected, 502 for a broken backend…).
        """
        state = RunState(conversation=turn.conversation, deltas=False)
        final: Response | None = None
        async for event in self.run(turn, state):
            if event.type in TERMINAL_EVENTS:
                final = event.response  # type: ignore[union-attr]
        if state.error is not None:
            raise state.error
        assert final is not None
        return final

    async def _lifecycle_events(self, turn: Turn, state: RunState) -> AsyncIterator[ResponseStreamEvent]:
        preamble = _preamble(turn, state)
        steps = moderated(self._step(turn, state) if state.generate else _nothing(), turn.request.moderation,
                          self.moderator, turn.request.input, state)
        first: asyncio.Future[Any] | None = None  # the first step's first event, made while the row is written
        if turn.unopened:  # its row is written beside the first step (parley.engine.opening)
            turn.unopened = False
            first = opening.begin(self.recorder, turn, state, preamble[-1].response, steps)  # type: ignore[union-attr]
        try:
            await opening.before_events(state, first, steps)  # (NotOpened: the client gets a 503)
            for event in preamble:
                yield event
            preamble = []
            state.stepping = True
            try:
                if first is not None:
                    event, first = await first, None
                    if event is not None:
                        yield event
                async for event in steps:
                    yield event
                    del event
            except ParleyError as exc:
                state.error = exc
            except asyncio.CancelledError:  # a background response's cancel (parley.background), or shutdown
                if not state.cancel_requested:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                state.cancelled = True
            except Exception:
                log.exception("response %s failed", turn.id)
                state.error = BackendError("The server had an error while processing the response.")
        finally:
            state.stepping = False
            if first is not None and not first.done():  # (the run was cut short)
                first.cancel()
        status = state.status = ("cancelled" if state.cancelled else "failed" if state.error else
                                 "incomplete" if state.incomplete_reason else "completed")
        final = snapshot(turn, state, status)
        if turn.request.conversation and status in ("completed", "incomplete"):
            final = await self._append_turn(turn, state, final)
            status = state.status = final.status or status
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
        elif status == "cancelled":  # the protocol has no event of its own for it: a failed one, status cancelled
            yield ResponseFailedEvent(type="response.failed", response=final, sequence_number=0)
        elif status == "incomplete":
            yield ResponseIncompleteEvent(type="response.incomplete", response=final, sequence_number=0)
        else:
            yield ResponseCompletedEvent(type="response.completed", response=final, sequence_number=0)

    async def _append_turn(self, turn: Turn, state: RunState, final: Response) -> Response:
        """Add the turn's input and output items to its conversation, as one block; a turn that cannot be added
        fails (its conversation was deleted, or the database is away)."""
        items = turn.input_items + [json.loads(item.model_dump_json(exclude_none=True)) for item in final.output]
        try:
            if await self.conversations.append(turn.request.conversation, turn.tenant, items):
                return final
            state.error = NotFound(f"Conversation with id '{turn.request.conversation}' was deleted.",
                                   param="conversation")
        except StoreUnavailable:
            state.error = StoreUnavailable("The response was produced but could not be added to its conversation.")
        return snapshot(turn, state, "failed")

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
        """The agent loop: set the tools up, call the model, run its server-side calls, repeat."""
        tools = self.registry.bind(turn.request.tools, turn.request.tool_choice, BindContext(
            self.tools, turn.previous_output, list(turn.request.input), turn.tenant, list(turn.request.include),
            programs=turn.programs))
        try:
            if tools.sets_up():  # (an MCP server's listing, a container's start: after the row is written)
                await opening.opened(state)
            setup_started = time.perf_counter()  # (listing an MCP server's tools is tool time)
            async for produced in tools.setup(len(state.output)):
                if isinstance(produced, ItemDone):
                    state.output.append(produced.item)
                    state.timeline.tool_call(setup_started, time.perf_counter(), produced.item)
                else:
                    yield produced
            async for event in self._run_calls(state, tools, tools.approved(turn.approved) + tools.resumed(),
                                               approved=True):
                yield event
            if state.awaiting_approval:  # a program that went on waits for more of the client's outputs
                return
            await self._save_progress(turn, state)
            for iteration in range(self.max_tool_iterations):
                body = self._chat_body(turn, state, tools, first=iteration == 0)
                if turn.compact_threshold is not None and not any(
                        getattr(item, "type", None) == "compaction" for item in state.output):  # once per response
                    history = state.conversation
                    async for event in self.window.compacted(turn, state, body):
                        yield event
                    if state.conversation is not history:  # compacted: the body is made from the new history
                        body = self._chat_body(turn, state, tools, first=iteration == 0)
                body = await self.window.fitted(turn, body)
                translator = ChunkTranslator(first_index=len(state.output), server_names=tools.server_names(),
                                             cite=tools.citing(), client_tools=tools.client_tools(),
                                             encrypt=self.cipher.encrypt if self.cipher and
                                             "reasoning.encrypted_content" in turn.request.include else None,
                                             reasoning_summary=turn.request.wants_reasoning_summary,
                                             deltas=state.deltas)
                async for event in self._backend_call(body, turn, state, translator):
                    yield event
                    del event
                if not translator.server_calls or state.incomplete_reason:
                    return
                calls = [ToolCall(c.call_id, c.name, c.arguments) for c in translator.server_calls]
                left = self._calls_left(turn, state)
                async for event in self._run_calls(state, tools, calls[:left]):
                    yield event
                for skipped in calls[left:]:  # answered in the stored chat, so a chained turn can go on from here
                    place_tool_message(state.conversation, {"role": "tool", "tool_call_id": skipped.call_id,
                                                            "content": OVER_LIMIT})
                if state.awaiting_approval or translator.client_calls:
                    return
                if calls[left:] or iteration == self.max_tool_iterations - 1:
                    # The model wants more than the bounds allow: the response ends here, incomplete.
                    bound = "max_tool_calls" if calls[left:] else "max_tool_iterations"
                    log.info("response %s stopped at its %s bound", turn.id, bound, extra={"response_id": turn.id})
                    state.incomplete_reason = TOOL_BOUND_REASON
                    return
                if state.steered is not None and state.steered():
                    state.incomplete_reason = "steered"  # a successor takes the steering input from here
                    return
                await self._save_progress(turn, state)  # only when the model is called again: else the final write
        finally:
            await tools.aclose()

    async def _save_progress(self, turn: Turn, state: RunState) -> None:
        """After a tool step, a streamed stored response is written with its items so far: a client polling
        its id sees them, and a crash keeps them (the recovered response fails with its finished items)."""
        if turn.persistence.after_tool_steps and state.output:
            await opening.opened(state)
            await self.recorder.progress(turn, state, snapshot(turn, state, "in_progress"))

    @staticmethod
    def _calls_left(turn: Turn, state: RunState) -> int:
        cap = turn.request.max_tool_calls
        return 1 << 30 if cap is None else max(cap - state.server_tool_calls, 0)

    def _chat_body(self, turn: Turn, state: RunState, tools: Toolset, *, first: bool) -> dict[str, Any]:
        return chat_request(
            turn.request, with_instructions(turn.request.instructions, state.conversation),
            model=turn.request.model, max_tokens_param=turn.upstream.max_tokens_param,
            tools=tools.chat_tools(), tool_choice=tools.tool_choice(first), forward=turn.upstream.forward_params,
        )

    async def _run_calls(self, state: RunState, tools: Toolset, calls: list[ToolCall], approved: bool = False
                         ) -> AsyncIterator[ResponseStreamEvent]:
        if not calls:
            return
        await opening.opened(state)  # a tool acts only once the response's row is written
        approved_ids = {c.call_id for c in calls} if approved else set()
        spans = [start_span("parley.tool.call", state.span, tool=c.name) for c in calls]
        finished = 0  # items come in the order of the calls
        try:
            async for produced in tools.execute(calls, len(state.output), approved_ids):
                if isinstance(produced, ItemDone):
                    state.output.append(produced.item)
                elif isinstance(produced, CallDone):
                    self._call_done(state, produced, calls[finished], spans[finished])
                    finished += 1
                else:
                    yield produced
        finally:
            for span in spans[finished:]:
                span.end()

    @staticmethod
    def _call_done(state: RunState, done: CallDone, call: ToolCall, span: Any) -> None:
        span.set_attribute("item_type", done.item.type)
        if getattr(done.item, "status", None) == "failed":
            fail(span, "the tool call failed")
        span.end()
        state.output.append(done.item)
        state.timeline.tool_call(done.started, done.ended, done.item)
        state.call_ids[done.item.id] = call.call_id  # stored: an approval or a replay finds its exact call
        if done.message is None:  # waits for the client's approval
            state.awaiting_approval = True
        else:
            state.server_tool_calls += 1
            place_tool_message(state.conversation, done.message)

    async def _backend_call(self, body: dict[str, Any], turn: Turn, state: RunState,
                            translator: ChunkTranslator) -> AsyncIterator[ResponseStreamEvent]:
        """One backend call: its chunks translated into content events."""
        backend = self.router.backends[turn.upstream.name]
        key = turn.client_key if turn.upstream.forward_client_key else None
        span = start_span("parley.backend.call", state.span, upstream=turn.upstream.name, model=body["model"],
                          messages=len(body["messages"]))
        started, first_chunk = time.perf_counter(), None
        relay = relay_for(backend, state, translator, moderated=applies(turn.request.moderation, self.moderator))
        try:
            async for chunk in (backend.stream(body, key, relay) if relay else backend.stream(body, key)):
                if first_chunk is None:
                    first_chunk = time.perf_counter()
                try:
                    events = translator.feed(chunk)
                except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a shape feed does not check
                    log.warning("response %s: unreadable chunk %.300r", turn.id, chunk, exc_info=True)
                    raise BackendError("The model backend sent a chunk Parley could not read.",
                                       code="backend_protocol_error") from exc
                for event in events:
                    yield event
                    del event  # (neither the events nor their items are held while the next chunk is awaited)
                del events
                if relay is not None:
                    relay.aim(translator.text_part())
                if state.first_text_at is None and not state.deltas and translator.has_text:
                    state.first_text_at = time.perf_counter()
        except (Exception, asyncio.CancelledError) as exc:  # (cancelled: a background response's cancel)
            fail(span, str(exc) or type(exc).__name__)
            for event in translator.abort():  # the partial item is kept, marked incomplete
                yield event
            state.output += translator.items
            state.timeline.model_call(started, first_chunk, time.perf_counter(), messages=len(body["messages"]),
                                      items=_ids(translator.items), usage=translator.usage,
                                      error=str(exc) or type(exc).__name__)
            raise
        finally:
            span.end()
        ended = time.perf_counter()
        for event in translator.finish():
            yield event
        state.output += translator.items
        state.usage.add_chat_usage(translator.usage or {})
        state.timeline.model_call(started, first_chunk, ended, messages=len(body["messages"]),
                                  items=_ids(translator.items), usage=translator.usage)
        state.conversation = [*state.conversation, translator.assistant_message()]
        state.incomplete_reason = translator.incomplete_reason
        state.service_tier = translator.service_tier or state.service_tier


def _ids(items: list[Any]) -> list[str]:
    return [item.id for item in items if getattr(item, "id", None)]


def _preamble(turn: Turn, state: RunState) -> list[ResponseStreamEvent]:
    """The events that open a run: ``response.created`` (unless it was sent when the response was queued) and
    ``response.in_progress``; none for a folded answer (not streamed), which has no use for them, unless its row is
    to be written from their snapshot."""
    if not (state.deltas or turn.unopened):
        return []
    started = snapshot(turn, state, "in_progress")
    return ([] if turn.queued else [ResponseCreatedEvent(type="response.created", response=started, sequence_number=0)]
            ) + [ResponseInProgressEvent(type="response.in_progress", response=started, sequence_number=0)]


async def _nothing() -> AsyncIterator[ResponseStreamEvent]:
    return
    yield
