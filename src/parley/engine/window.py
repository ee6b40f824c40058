"""The model's context window, kept by the engine: the chat body cut to fit it (``truncation: "auto"``), and
``context_management``'s compaction of the history before the current turn into a summary the model writes.
The pure parts (fitting, sealing a summary) are :mod:`parley.engine.context` and
:mod:`parley.engine.compaction`; here they meet the backend that counts tokens and summarizes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import (ResponseCompactionItem, ResponseOutputItemAddedEvent,
                                    ResponseOutputItemDoneEvent, ResponseStreamEvent)

from parley.backends.router import Router
from parley.engine import compaction, context, token_count
from parley.engine.chat_request import chat_request
from parley.engine.turn import RunState, Turn
from parley.reasoning import ReasoningCipher


class Window:
    def __init__(self, router: Router, cipher: ReasoningCipher | None) -> None:
        self.router = router
        self.cipher = cipher

    async def summarize(self, turn: Turn, messages: list[Any]) -> tuple[str, Any]:
        key = turn.client_key if turn.upstream.forward_client_key else None
        base = chat_request(turn.request, [], model=turn.request.model, max_tokens_param=turn.upstream.max_tokens_param,
                            forward=turn.upstream.forward_params)
        base.pop(turn.upstream.max_tokens_param, None)  # the answer's bound is not the summary's
        return await compaction.summarize(self.router.backends[turn.upstream.name], key, base, messages,
                                          turn.request.instructions)

    async def compacted(self, turn: Turn, state: RunState, body: dict[str, Any]
                         ) -> AsyncIterator[ResponseStreamEvent]:
        """``context_management``: when this call's prompt passes the threshold, the history before the current
        turn becomes its user messages and a summary, and the ``compaction`` item goes into the output."""
        messages = state.conversation
        current = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
        if current == 0:
            return  # nothing before the current turn to compact
        backend = self.router.backends[turn.upstream.name]
        if (await token_count.count(backend, body))[0] <= (turn.compact_threshold or 0):
            return
        summary, usage = await self.summarize(turn, messages[:current])
        state.usage.input_tokens += usage.input_tokens
        state.usage.output_tokens += usage.output_tokens
        state.conversation = compaction.compacted_chat(messages[:current], summary) + messages[current:]
        item = ResponseCompactionItem(**compaction.seal(self.cipher, summary))
        index = len(state.output)
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item, output_index=index,
                                           sequence_number=0)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=index,
                                          sequence_number=0)
        state.output.append(item)

    async def fitted(self, turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
        """The chat body cut to the model's context window, for ``truncation: "auto"``."""
        if turn.context_window is None:
            return body
        backend = self.router.backends[turn.upstream.name]

        async def count(candidate: dict[str, Any]) -> int:
            return (await token_count.count(backend, candidate))[0]

        return await context.fit(body, turn.context_window,
                                 context.answer_room(turn.context_window, turn.request.max_output_tokens),
                                 count, turn.request.model)
