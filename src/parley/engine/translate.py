"""Chat Completions chunks to Responses stream events (pure: no I/O).

Per-token events are built with pydantic's own ``model_construct`` (no validation): their
fields are Parley's own values of plain types, they are the hot path, and every test
validates what is emitted.  (The ``openai`` SDK overrides ``model_construct`` with a
version that walks every field's type, eight times slower per event; it was 13 % of a
non-streamed request's CPU time in a py-spy profile.)

:class:`ChunkTranslator` takes the chunks of one backend call, as dicts in the Chat
Completions wire format, and yields the content events of the items they make:
reasoning (``reasoning_content``), assistant messages (text and refusals) and function
calls.  Each item is finished before the next one is added, as OpenAI does, so
``output_index`` rises by one per item.  Lifecycle events (created, completed…) and
``sequence_number`` belong to the engine, not here: events leave with
``sequence_number=0`` and the engine numbers them.

A non-streamed response is the fold of the same events, which keeps only the final state: its translator
(``deltas=False``) makes no events of the items it translates (deltas, item and part boundaries), only the finished
items.

Tool-call deltas are keyed by index *and* id: some providers reuse an index for a new
call, which must not be merged into the previous call's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import pydantic
from openai.types.chat import ChatCompletionAssistantMessageParam, ChatCompletionMessageToolCallParam
from openai.types.responses import (
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputTextAnnotationAddedEvent,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from parley.backends.chunk_shapes import chunk_list, chunk_text, malformed, tool_call_shape, usage_shape
from parley.errors import BackendError
from parley.engine.logprobs import chunk_logprobs, for_delta, for_done, for_part
from parley.engine.reasoning_stream import ReasoningStream
from parley.ids import new_id
from parley.tools.base import Citation, ClientTool
from parley.tools.client import client_call_item, close_client_call

_construct = pydantic.BaseModel.model_construct.__func__  # pydantic's, not the openai SDK's override

Event = ResponseStreamEvent
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass
class _Call:
    key: tuple[int, str | None]
    item: ResponseFunctionToolCall  # arguments accumulate here, under the name the backend used
    output_index: int
    hidden: bool = False  # a server-side tool call: the engine emits its own items for it
    chat_name: str = ""
    custom: Any = None  # the item of a client call that is not a function_call (custom, tool_search, shell…)
    tool: Any = None  # the client tool it calls (parley.tools.base.ClientTool)


@dataclass
class _Message:
    item: ResponseOutputMessage
    output_index: int
    part_kind: str | None = None  # "output_text" or "refusal": the part being streamed
    part_text: str = ""
    annotations: list[dict[str, Any]] = field(default_factory=list)
    annotated: set[tuple[int, int]] = field(default_factory=set)
    logprobs: list[dict[str, Any]] = field(default_factory=list)  # the part's token logprobs, when asked for


@dataclass
class ChunkTranslator:
    """State of one backend call's translation; ``first_index`` is where its items start."""

    first_index: int = 0
    server_names: frozenset[str] = frozenset()  # calls Parley runs itself: buffered, no events
    items: list[Any] = field(default_factory=list)  # finished output items, in output order
    server_calls: list[ResponseFunctionToolCall] = field(default_factory=list)
    cite: Callable[[str], list[Citation]] | None = None  # the citations of sources that a text holds
    client_tools: dict[str, ClientTool] = field(default_factory=dict)  # by the function name the backend sees
    encrypt: Callable[[str], str] | None = None  # set when the client asked for reasoning.encrypted_content
    reasoning_summary: bool = False  # the client set reasoning.summary: reasoning streams as the summary
    finish_reason: str | None = None
    service_tier: str | None = None  # the tier the upstream says served the call
    usage: dict[str, Any] | None = None
    deltas: bool = True  # False: a non-streamed answer's fold, which would discard its events: none made
    _open: _Call | _Message | ReasoningStream | None = None
    _calls: dict[tuple[int, str | None], _Call] = field(default_factory=dict)
    _latest_call_at: dict[int, _Call] = field(default_factory=dict)
    _text: list[str] = field(default_factory=list)
    _tool_calls: list[ChatCompletionMessageToolCallParam] = field(default_factory=list)
    _aborted: bool = False

    @property
    def next_index(self) -> int:
        open_visible = self._open is not None and not getattr(self._open, "hidden", False)
        return self.first_index + len(self.items) + (1 if open_visible else 0)

    # -- feeding -------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Events for one chunk (possibly none); a chunk not in the Chat Completions shape is a
        ``backend_protocol_error``."""
        if not isinstance(chunk, dict):
            raise malformed("a chunk that is not an object")
        if chunk.get("usage"):
            self.usage = usage_shape(chunk["usage"])
        if isinstance(chunk.get("service_tier"), str):
            self.service_tier = chunk["service_tier"]
        events: list[Event] = []
        for choice in chunk_list(chunk.get("choices"), "choices"):
            if not isinstance(choice, dict):
                raise malformed("a choice that is not an object")
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise malformed("a delta that is not an object")
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._reasoning_delta(reasoning)
            if delta.get("content"):
                events += self._message_delta("output_text", chunk_text(delta["content"], "content"),
                                              chunk_logprobs(choice))
            if delta.get("refusal"):
                events += self._message_delta("refusal", chunk_text(delta["refusal"], "refusal"))
            for call in chunk_list(delta.get("tool_calls"), "tool_calls"):
                events += self._tool_call_delta(tool_call_shape(call))
            if choice.get("finish_reason"):
                self.finish_reason = chunk_text(choice["finish_reason"], "finish_reason")
        return events

    def finish(self) -> list[Event]:
        """Close the open item once the backend's stream has ended."""
        return self._close()

    def abort(self) -> list[Event]:
        """Close the open item as ``incomplete`` when the backend failed mid-answer."""
        self._aborted = True
        return self._close()

    def text_part(self) -> tuple[str, int, int] | None:
        """The text part a plain text chunk would add to, as (item id, output index, content index), where its
        only event would be a text delta (a relay may frame it: :mod:`parley.engine.relay`); else ``None``."""
        state = self._open
        if type(state) is not _Message or state.part_kind != "output_text" or not self.deltas or self.cite \
                or state.logprobs:  # (a part whose chunks carry logprobs: the relay would decline each of them)
            return None
        return state.item.id, state.output_index, len(state.item.content)

    def absorb(self, text: str, service_tier: str | None) -> None:
        """Text a relay framed for :meth:`text_part`: kept as :meth:`feed` keeps a plain text chunk's."""
        state = self._open
        assert type(state) is _Message and state.part_kind == "output_text"
        state.part_text += text
        self._text.append(text)
        if service_tier is not None:
            self.service_tier = service_tier

    # -- results -------------------------------------------------------------------------

    @property
    def has_text(self) -> bool:
        """Whether the answer's output text has begun."""
        return bool(self._text)

    @property
    def incomplete_reason(self) -> str | None:
        return INCOMPLETE_REASONS.get(self.finish_reason or "")

    @property
    def client_calls(self) -> list[Any]:
        """The calls the client runs (function, custom, native and client tool_search calls): every item but
        messages and reasoning (Parley's own calls are not among the items)."""
        return [item for item in self.items if item.type not in ("message", "reasoning")]

    def assistant_message(self) -> ChatCompletionAssistantMessageParam:
        """The chat message this call produced, as the next backend call must see it."""
        message: ChatCompletionAssistantMessageParam = {"role": "assistant", "content": "".join(self._text) or None}
        if self._tool_calls:
            message["tool_calls"] = self._tool_calls
        return message

    # -- items ---------------------------------------------------------------------------

    def _status(self) -> str:
        return "incomplete" if self.incomplete_reason or self._aborted else "completed"

    def _reasoning_delta(self, text: str) -> list[Event]:
        events: list[Event] = []
        if not isinstance(self._open, ReasoningStream):
            events += self._close()
            self._open, added = ReasoningStream.open(self.next_index, self.reasoning_summary)
            events += added if self.deltas else []
        return events + self._open.delta(text, self.deltas)

    def _message_delta(self, kind: str, text: str, logprobs: list[dict[str, Any]] | None = None) -> list[Event]:
        events: list[Event] = []
        if not isinstance(self._open, _Message):
            events += self._close()
            index = self.next_index
            item = ResponseOutputMessage(id=new_id("msg"), type="message", role="assistant", content=[],
                                         status="in_progress")
            self._open = _Message(item, index)
            if self.deltas:
                events.append(ResponseOutputItemAddedEvent(
                    type="response.output_item.added", item=item.model_copy(deep=True), output_index=index,
                    sequence_number=0))
        state = self._open
        assert isinstance(state, _Message)
        if state.part_kind != kind:
            events += self._close_part(state)
            state.part_kind, state.part_text, state.annotations, state.annotated = kind, "", [], set()
            state.logprobs = []
            if self.deltas:
                events.append(ResponseContentPartAddedEvent(
                    type="response.content_part.added", item_id=state.item.id, output_index=state.output_index,
                    content_index=len(state.item.content), part=_empty_part(kind), sequence_number=0))
        state.part_text += text
        content_index = len(state.item.content)
        if kind == "output_text":
            self._text.append(text)
            state.logprobs += logprobs or []
            if self.deltas:
                events.append(_construct(ResponseTextDeltaEvent,
                    type="response.output_text.delta", item_id=state.item.id, output_index=state.output_index,
                    content_index=content_index, delta=text, logprobs=for_delta(logprobs or []), sequence_number=0))
            events += self._annotate(state, content_index)
        elif self.deltas:
            events.append(_construct(ResponseRefusalDeltaEvent, 
                type="response.refusal.delta", item_id=state.item.id, output_index=state.output_index,
                content_index=content_index, delta=text, sequence_number=0))
        return events

    def _annotate(self, state: _Message, content_index: int) -> list[Event]:
        """Annotations (``url_citation``, ``file_citation``) for citations that the text now holds complete."""
        if self.cite is None:
            return []
        events: list[Event] = []
        for citation in sorted(self.cite(state.part_text), key=lambda c: c.start):
            if (citation.start, citation.end) in state.annotated:
                continue
            state.annotated.add((citation.start, citation.end))
            annotation = citation.annotation
            events.append(ResponseOutputTextAnnotationAddedEvent(
                type="response.output_text.annotation.added", item_id=state.item.id,
                output_index=state.output_index, content_index=content_index,
                annotation_index=len(state.annotations), annotation=annotation, sequence_number=0))
            state.annotations.append(annotation)
        return events

    def _tool_call_delta(self, delta: dict[str, Any]) -> list[Event]:
        position = delta.get("index", 0)
        call_id = delta.get("id")
        function = delta.get("function") or {}
        known = self._latest_call_at.get(position)
        if known is not None and (call_id is None or call_id == known.item.call_id):
            state = known
        elif (position, call_id) in self._calls:
            state = self._calls[(position, call_id)]
        else:
            return self._open_call(position, call_id, function)
        if state is not self._open:
            raise BackendError(
                "The backend interleaved the arguments of several tool calls; Parley streams calls one at a time.",
                code="backend_protocol_error",
            )
        return self._call_progress(state, function)

    def _open_call(self, position: int, call_id: str | None, function: dict[str, Any]) -> list[Event]:
        events = self._close()
        index = self.next_index
        chat_name = function.get("name") or ""
        item = ResponseFunctionToolCall(
            id=new_id("fc"), type="function_call", call_id=call_id or new_id("call"),
            name=chat_name, arguments="", status="in_progress",
        )
        state = _Call((position, call_id), item, index, hidden=chat_name in self.server_names, chat_name=chat_name)
        tool = self.client_tools.get(chat_name)
        if tool is not None:
            state.custom, state.tool = client_call_item(tool, item.call_id), tool
            if state.custom is None and tool.namespace:
                item.name, item.namespace = tool.name, tool.namespace  # Codex needs the inner name and its group
        self._calls[state.key] = state
        self._latest_call_at[position] = state
        self._open = state
        if state.hidden or state.custom is not None:
            self._call_progress(state, {"arguments": function.get("arguments")})
            if state.custom is not None:
                events.append(ResponseOutputItemAddedEvent(
                    type="response.output_item.added", item=state.custom.model_copy(), output_index=index,
                    sequence_number=0))
            return events
        if self.deltas:
            events.append(ResponseOutputItemAddedEvent(
                type="response.output_item.added", item=item.model_copy(deep=True), output_index=index,
                sequence_number=0))
        return events + self._call_progress(state, {"arguments": function.get("arguments")})

    def _call_progress(self, state: _Call, function: dict[str, Any]) -> list[Event]:
        name = function.get("name")
        if name and name != state.chat_name:  # a name sent in pieces
            state.chat_name += name
            if state.custom is None and not state.item.namespace:
                state.item.name = state.chat_name
        arguments = function.get("arguments")
        if not arguments:
            return []
        state.item.arguments += arguments
        if state.hidden or state.custom is not None or not self.deltas:
            return []
        return [_construct(ResponseFunctionCallArgumentsDeltaEvent, 
            type="response.function_call_arguments.delta", item_id=state.item.id or "",
            output_index=state.output_index, delta=arguments, sequence_number=0)]

    # -- closing -------------------------------------------------------------------------

    def _close_part(self, state: _Message) -> list[Event]:
        if state.part_kind is None:
            return []
        item, index = state.item, state.output_index
        content_index = len(item.content)
        text = state.part_kind == "output_text"
        part: Any = ResponseOutputText(type="output_text", text=state.part_text, annotations=state.annotations,
                                       logprobs=for_part(state.logprobs)) if text else \
            ResponseOutputRefusal(type="refusal", refusal=state.part_text)
        item.content.append(part)
        state.part_kind = None
        if not self.deltas:  # (a folded answer: the part is in its item, and no event is sent)
            return []
        done: Event = ResponseTextDoneEvent(
            type="response.output_text.done", item_id=item.id, output_index=index, content_index=content_index,
            text=state.part_text, logprobs=for_done(state.logprobs), sequence_number=0) if text else \
            ResponseRefusalDoneEvent(
                type="response.refusal.done", item_id=item.id, output_index=index, content_index=content_index,
                refusal=state.part_text, sequence_number=0)
        return [done, ResponseContentPartDoneEvent(
            type="response.content_part.done", item_id=item.id, output_index=index, content_index=content_index,
            part=part.model_dump(), sequence_number=0)]

    def _close(self) -> list[Event]:
        state, self._open = self._open, None
        if state is None:
            return []
        events: list[Event] = []
        if isinstance(state, _Message):
            events += self._close_part(state)
        elif isinstance(state, ReasoningStream):
            closing = state.close(self.encrypt)  # (the item finished: its events kept where they are sent)
            events += closing if self.deltas else []
        else:
            item = state.item
            if not state.chat_name and not self._aborted:
                raise malformed("a tool call with no function name")
            self._tool_calls.append({"id": item.call_id, "type": "function",
                                     "function": {"name": state.chat_name, "arguments": item.arguments}})
            if state.hidden:
                item.status = self._status()  # type: ignore[assignment]
                self.server_calls.append(item)
                return events
            if state.custom is not None:
                done, closing = close_client_call(state.custom, item.arguments, state.output_index, state.tool)
                self.items.append(done)
                return events + closing
            if self.deltas:
                events.append(ResponseFunctionCallArgumentsDoneEvent(
                    type="response.function_call_arguments.done", item_id=item.id or "",
                    output_index=state.output_index, arguments=item.arguments, name=item.name, sequence_number=0))
        state.item.status = self._status()  # type: ignore[assignment]
        self.items.append(state.item)
        if self.deltas:
            events.append(ResponseOutputItemDoneEvent(
                type="response.output_item.done", item=state.item.model_copy(deep=True),
                output_index=state.output_index, sequence_number=0))
        return events


def _empty_part(kind: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    return {"type": "refusal", "refusal": ""}
