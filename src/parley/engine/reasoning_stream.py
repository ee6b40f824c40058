"""One reasoning item as it streams (pure).

By default the model's reasoning is the item's ``reasoning_text`` content, streamed with
``response.reasoning_text.*`` events.  When the request sets ``reasoning.summary``, it is the item's
summary instead, streamed with ``response.reasoning_summary_part.*`` / ``reasoning_summary_text.*``
events, as OpenAI sends its models' reasoning: Chat Completions backends give no separate summary, so the
summary is the reasoning text itself (clients such as the Vercel AI SDK read reasoning only from summaries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pydantic
from openai.types.responses import (
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseReasoningItem,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseStreamEvent,
)
from openai.types.responses.response_reasoning_item import Content, Summary

from parley.ids import new_id

Event = ResponseStreamEvent
_construct = pydantic.BaseModel.model_construct.__func__  # type: ignore[attr-defined]  # see translate.py


@dataclass
class ReasoningStream:
    item: ResponseReasoningItem
    output_index: int
    as_summary: bool = False
    text: str = ""

    @classmethod
    def open(cls, output_index: int, as_summary: bool) -> tuple[ReasoningStream, list[Event]]:
        item = ResponseReasoningItem(id=new_id("rs"), type="reasoning", summary=[], content=[], status="in_progress")
        stream = cls(item, output_index, as_summary)
        added: list[Event] = [ResponseOutputItemAddedEvent(
            type="response.output_item.added", item=item.model_copy(deep=True), output_index=output_index,
            sequence_number=0)]
        if as_summary:
            added.append(ResponseReasoningSummaryPartAddedEvent(
                type="response.reasoning_summary_part.added", item_id=item.id, output_index=output_index,
                summary_index=0, part={"type": "summary_text", "text": ""}, sequence_number=0))
        else:
            added.append(ResponseContentPartAddedEvent(
                type="response.content_part.added", item_id=item.id, output_index=output_index, content_index=0,
                part={"type": "reasoning_text", "text": ""}, sequence_number=0))
        return stream, added

    def delta(self, text: str, event: bool = True) -> list[Event]:
        """``text`` added to the reasoning, and its delta event (none for a non-streamed answer's fold)."""
        self.text += text
        if not event:
            return []
        if self.as_summary:
            return [_construct(ResponseReasoningSummaryTextDeltaEvent, type="response.reasoning_summary_text.delta",
                               item_id=self.item.id, output_index=self.output_index, summary_index=0, delta=text,
                               sequence_number=0)]
        return [_construct(ResponseReasoningTextDeltaEvent, type="response.reasoning_text.delta", item_id=self.item.id,
                           output_index=self.output_index, content_index=0, delta=text, sequence_number=0)]

    def close(self, encrypt: Callable[[str], str] | None) -> list[Event]:
        """The events that finish the item's text; the item gets its content or summary (and, when asked for,
        its ``encrypted_content``)."""
        item, index = self.item, self.output_index
        if encrypt is not None:
            item.encrypted_content = encrypt(self.text)
        if self.as_summary:
            summary = Summary(type="summary_text", text=self.text)
            item.summary = [summary]
            return [ResponseReasoningSummaryTextDoneEvent(
                        type="response.reasoning_summary_text.done", item_id=item.id, output_index=index,
                        summary_index=0, text=self.text, sequence_number=0),
                    ResponseReasoningSummaryPartDoneEvent(
                        type="response.reasoning_summary_part.done", item_id=item.id, output_index=index,
                        summary_index=0, part=summary.model_dump(), sequence_number=0)]
        part = Content(type="reasoning_text", text=self.text)
        item.content = [part]
        return [ResponseReasoningTextDoneEvent(
                    type="response.reasoning_text.done", item_id=item.id, output_index=index, content_index=0,
                    text=self.text, sequence_number=0),
                ResponseContentPartDoneEvent(
                    type="response.content_part.done", item_id=item.id, output_index=index, content_index=0,
                    part=part.model_dump(), sequence_number=0)]
