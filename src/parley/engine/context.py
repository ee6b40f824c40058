"""Fitting a chat into the model's context window (``truncation: "auto"``).

The oldest messages go first, whole: the system message (the instructions) and the newest message stay, a
tool result never stays without the assistant message that called it, and an assistant message's tool calls
never stay without their results (both go together).  The tokens are counted the way
``POST /v1/responses/input_tokens`` counts them (the upstream's tokenizer where it has one, else the
estimate), and room is left for the answer: ``max_output_tokens`` when the request sets it, else an eighth
of the window (at most 4,096 tokens).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from parley.errors import InvalidRequest

Counter = Callable[[dict[str, Any]], Awaitable[int]]
MAX_PASSES = 6  # counts per fit: each pass drops what the estimate says is too much, then counts again


def answer_room(window: int, max_output_tokens: int | None) -> int:
    return max_output_tokens if max_output_tokens is not None else min(window // 8, 4096)


def _groups(messages: list[dict[str, Any]], start: int) -> list[tuple[int, int]]:
    """The messages after the leading system messages as units, oldest first, as (first, end) index pairs:
    an assistant message with tool calls together with the tool results that follow it."""
    groups, i = [], start
    while i < len(messages):
        end = i + 1
        if messages[i].get("role") == "assistant" and messages[i].get("tool_calls"):
            while end < len(messages) and messages[end].get("role") == "tool":
                end += 1
        groups.append((i, end))
        i = end
    return groups


def _size(messages: list[dict[str, Any]]) -> int:
    return math.ceil(len(json.dumps(messages, ensure_ascii=False)) / 4)


async def fit(body: dict[str, Any], window: int, room: int, count: Counter, model: str) -> dict[str, Any]:
    """``body`` with its oldest messages dropped so that its prompt and ``room`` tokens of answer fit in
    ``window``; a 400 when even the current turn alone (from its newest user message on) does not."""
    budget = window - room
    tokens = await count(body)
    if tokens <= budget:
        return body
    messages = body["messages"]
    head = 0
    while head < len(messages) and messages[head].get("role") in ("system", "developer"):
        head += 1
    groups = _groups(messages, head)
    users = [n for n, (a, _) in enumerate(groups) if messages[a].get("role") == "user"]
    droppable = users[-1] if users else max(len(groups) - 1, 0)  # the current turn stays
    dropped, trimmed = 0, body
    for _ in range(MAX_PASSES):
        if dropped == droppable:
            break
        # How much to drop, by the estimate scaled to the counter's tokens; then count again.
        scale = tokens / max(1, _size(trimmed["messages"]))
        removed = 0.0
        while dropped < droppable and removed < tokens - budget:
            first, end = groups[dropped]
            removed += _size(messages[first:end]) * scale
            dropped += 1
        trimmed = {**body, "messages": messages[:head] + messages[groups[dropped - 1][1]:]}
        tokens = await count(trimmed)
        if tokens <= budget:
            return trimmed
    raise InvalidRequest(
        f"The input does not fit in the context window of model '{model}' ({window} tokens, {room} of them kept "
        f"for the answer) even with only its current turn left.", param="input", code="context_length_exceeded")
