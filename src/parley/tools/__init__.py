"""Server-side tools: each kind is a small module; :class:`ServerTools` runs a step's calls.

A tool kind exposes functions to the model (``names``, ``chat_tools``), starts a call
(``start``, returning a task, or ``None`` when the call waits for approval) and emits the
call's output item and events (``emit``).  Starting every call of a step before emitting
any lets independent calls run concurrently while their items still stream one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol


CONTINUES: dict[str, str] = {"continues": "the call has another item"}
"""In place of the tool message of a pair: the call's item is done and another item of the same call follows."""


class ToolKind(Protocol):
    def names(self) -> frozenset[str]: ...

    def chat_tools(self) -> list[dict[str, Any]]: ...

    def start(self, call: Any, approved: bool) -> asyncio.Task[Any] | None: ...

    def emit(self, call: Any, run: asyncio.Task[Any] | None, index: int) -> AsyncIterator[Any]: ...

    async def aclose(self) -> None: ...


class ServerTools:
    """Every server-side tool kind of one response."""

    def __init__(self, kinds: list[ToolKind]) -> None:
        self.kinds = kinds

    def names(self) -> frozenset[str]:
        return frozenset().union(*(kind.names() for kind in self.kinds))

    def chat_tools(self) -> list[dict[str, Any]]:
        return [tool for kind in self.kinds for tool in kind.chat_tools()]

    def _owner(self, name: str) -> ToolKind:
        return next(kind for kind in self.kinds if name in kind.names())

    async def execute(self, calls: list[Any], first_index: int, approved_ids: set[str]) -> AsyncIterator[Any]:
        """Yields events and, after each item, the pair (item, tool message, ``None`` while awaiting approval,
        or :data:`CONTINUES` when the same call makes another item)."""
        runs = [self._owner(call.name).start(call, call.call_id in approved_ids) for call in calls]
        index = first_index
        try:
            for call, run in zip(calls, runs):
                async for produced in self._owner(call.name).emit(call, run, index):
                    if isinstance(produced, tuple):
                        index += 1  # one call may make several items (a tool search: its call and output)
                    yield produced
        finally:
            for run in runs:
                if run is not None:
                    run.cancel()

    async def aclose(self) -> None:
        for kind in self.kinds:
            await kind.aclose()
