"""The one thing Parley needs from a model: streamed Chat Completions chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class ChatBackend(Protocol):
    """A source of streamed Chat Completions.

    ``stream`` takes a Chat Completions request body and yields its chunks as dicts in the
    wire format (usage in a final chunk).  Failures are raised as
    :class:`parley.errors.ParleyError` subclasses with a typed ``code``.
    """

    name: str

    def stream(self, request: dict[str, Any], api_key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """``api_key``, when given, replaces the upstream's configured key (client key forwarding)."""
        ...

    async def models(self) -> list[str]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...
