"""Reasoning written inside the answer as ``<think>…</think>`` (DeepSeek-R1 distills, QwQ, Qwen3 served
without a reasoning parser), turned into the ``reasoning_content`` deltas Parley reads as reasoning.

An upstream with ``reasoning_parser: think_tags`` gets its backend wrapped in :class:`ThinkTagsBackend`;
``think_tags_open`` is for chat templates that open ``<think>`` in the prompt, so the answer starts inside
the reasoning and only ``</think>`` appears.  Tags split across chunks are recognised: the end of a piece
that could be the start of a tag is held until the next piece decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from parley.backends.base import ChatBackend

OPEN, CLOSE = "<think>", "</think>"


class ThinkTags:
    """The state of one answer: inside the reasoning or not, and a held piece that may begin a tag."""

    def __init__(self, inside: bool = False) -> None:
        self.inside = inside
        self.held = ""

    def split(self, text: str) -> list[tuple[str, str]]:
        """``text`` as (``"reasoning_content"`` or ``"content"``, piece) pairs, tags removed."""
        text, self.held = self.held + text, ""
        pieces: list[tuple[str, str]] = []
        while text:
            tag = CLOSE if self.inside else OPEN
            at = text.find(tag)
            if at >= 0:
                self._add(pieces, text[:at])
                self.inside = not self.inside
                text = text[at + len(tag):]
                continue
            keep = next((n for n in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-n:])), 0)
            self._add(pieces, text[:len(text) - keep])
            self.held = text[len(text) - keep:]
            break
        return pieces

    def flush(self) -> list[tuple[str, str]]:
        """What is held once the answer ends (it was no tag after all)."""
        pieces: list[tuple[str, str]] = []
        self._add(pieces, self.held)
        self.held = ""
        return pieces

    def _add(self, pieces: list[tuple[str, str]], text: str) -> None:
        if text:
            pieces.append(("reasoning_content" if self.inside else "content", text))


def _with_delta(chunk: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    choice = {**chunk["choices"][0], "delta": delta}
    return {**chunk, "choices": [choice]}


def split_chunk(tags: ThinkTags, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """``chunk`` as one chunk per piece of its content (the other delta fields ride on the last)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return [chunk]
    delta = choices[0].get("delta")
    if not isinstance(delta, dict) or not isinstance(delta.get("content"), str):
        return [chunk]
    rest = {k: v for k, v in delta.items() if k != "content"}
    pieces = tags.split(delta["content"]) + (tags.flush() if choices[0].get("finish_reason") else [])
    if not pieces:
        return [_with_delta(chunk, rest)] if rest or choices[0].get("finish_reason") else []
    out = [_with_delta({**chunk, "choices": [{**choices[0], "finish_reason": None}]}, {kind: text})
           for kind, text in pieces]
    out[-1] = _with_delta(chunk, {**rest, pieces[-1][0]: pieces[-1][1]})
    return out


class ThinkTagsBackend:
    """A backend whose answers carry their reasoning in ``<think>`` tags."""

    def __init__(self, inner: ChatBackend, start_inside: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.start_inside = start_inside

    async def stream(self, request: dict[str, Any], api_key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        tags = ThinkTags(self.start_inside)
        async for chunk in self.inner.stream(request, api_key):
            for piece in split_chunk(tags, chunk):
                yield piece
        for kind, text in tags.flush():  # a stream that ended without a finish reason
            yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {kind: text}}]}

    async def models(self) -> list[str]:
        return await self.inner.models()

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()
