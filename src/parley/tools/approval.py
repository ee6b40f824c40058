"""Approval as a wrapper around any binding: a call its binding says needs approval does not run; it
ends the response with an ``mcp_approval_request`` item, which the client answers in the next turn
(see :mod:`parley.engine.approvals`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from openai.types.responses import ResponseOutputItemAddedEvent, ResponseOutputItemDoneEvent
from openai.types.responses.response_output_item import McpApprovalRequest

from parley.ids import new_id
from parley.tools.base import Binding, Citation, Event, ItemDone, Offered, Produced, ToolCall, ToolModel, CallDone

DENIED = "The user declined to run this tool call."
NOT_APPROVED = "This tool call was not approved, so it did not run."


@dataclass(frozen=True)
class ApprovedCall:
    """A call of an earlier turn that the client approved: the chat call, and what its approval request named."""

    call_id: str
    arguments: str
    server_label: str
    name: str
    approval_request_id: str


class Gated(Binding):
    """``inner`` with its calls held for approval where ``inner.approval`` asks for it."""

    def __init__(self, inner: Binding) -> None:
        self.inner = inner

    def setup(self, first_index: int) -> AsyncIterator[Event | ItemDone]:
        return self.inner.setup(first_index)

    def offered(self) -> list[Offered]:
        return self.inner.offered()

    def forced(self, choice: ToolModel) -> Any:
        return self.inner.forced(choice)

    def start(self, call: ToolCall, approved: bool) -> Awaitable[Any] | None:
        if not approved and self.inner.approval(call) is not None:
            return None
        return self.inner.start(call, approved)

    async def emit(self, call: ToolCall, run: Awaitable[Any] | None, index: int) -> AsyncIterator[Produced]:
        if run is not None:
            async for produced in self.inner.emit(call, run, index):
                yield produced
            return
        asked = self.inner.approval(call)
        assert asked is not None
        request = McpApprovalRequest(id=new_id("mcpr"), type="mcp_approval_request", arguments=call.arguments,
                                     server_label=asked["server_label"], name=asked["name"])
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=request,
                                           output_index=index, sequence_number=0)
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=request,
                                          output_index=index, sequence_number=0)
        yield CallDone(request, None)

    def function_for(self, server_label: str, name: str) -> str | None:
        return self.inner.function_for(server_label, name)

    def cite(self, text: str) -> list[Citation]:
        return self.inner.cite(text)

    def cites(self) -> bool:
        return self.inner.cites()

    async def aclose(self) -> None:
        await self.inner.aclose()
