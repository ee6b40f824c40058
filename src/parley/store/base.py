"""The store's interface and record types; :mod:`parley.store.sql` implements it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


# A stored response's statuses: those it ends in, and those it has before (queued: a background response
# waiting for its run).
TERMINAL = ("completed", "incomplete", "failed", "cancelled")
NOT_ENDED = ("in_progress", "queued")

# The errors of responses that recovery fails (``fail_abandoned``).
ABANDONED = "The server stopped before the response finished."
UNSTORED = "The response was produced but its final state could not be stored."


@dataclass
class ResponseFacts:
    """A stored response's facts kept in indexed columns beside its JSON, so the console's lists, filters
    and charts are queries, not a parse of every stored response."""

    model: str | None = None
    duration_ms: float | None = None  # from the request's arrival to its final state (None while it runs)
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_code: str | None = None
    search_text: str | None = None  # the start of its input and output text, for the console's text filter
    trace: str | None = None  # the run's timeline as JSON (parley.engine.timeline)
    ended_at: float | None = None  # when it reached its final state, epoch seconds (None while it runs)

    def columns(self) -> dict[str, Any]:
        return {"model": self.model, "duration_ms": self.duration_ms, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "error_code": self.error_code,
                "search_text": self.search_text, "trace": self.trace, "ended_at": self.ended_at}


NO_FACTS = ResponseFacts()


@dataclass
class StoredResponse:
    """One response as stored: the API object, the chat messages to resume from, its input items.

    ``messages`` holds the exact chat conversation of the response's last backend call (without
    that turn's instructions) followed by the model's answer, so a chained turn continues from it
    without re-converting Responses items.
    """

    id: str
    created_at: float
    status: str
    response_json: str  # the Response object as stored: JSON text, parsed once by whoever reads it
    messages: list[dict[str, Any]] = field(default_factory=list)
    input_items: list[dict[str, Any]] = field(default_factory=list)
    previous_response_id: str | None = None
    tenant: str = ""
    owner: str | None = None  # the server instance running it, while in_progress
    # Its server-side output items (MCP calls and approval requests, web searches), each with the id of the chat
    # tool call it stands for.
    call_ids: dict[str, str] = field(default_factory=dict)
    output_ids: list[str] = field(default_factory=list)  # its output items' ids, indexed for item_reference
    facts: ResponseFacts | None = None  # what the console lists and filters by, in columns of their own

    @property
    def response(self) -> dict[str, Any]:
        """The Response object as a dict, parsed anew at each use (the engine parses it into the SDK's
        ``Response`` instead)."""
        return json.loads(self.response_json)

    @response.setter
    def response(self, value: dict[str, Any]) -> None:
        self.response_json = json.dumps(value)

    def serialized(self) -> str:
        return self.response_json


@dataclass
class InputItemsPage:
    data: list[dict[str, Any]]
    has_more: bool


class Store(Protocol):
    """What the engine and the HTTP edge need from persistence."""

    available: bool  # how the last operation went: False after the database could not be reached

    async def ping(self) -> None:
        """A round trip to the database; raises ``StoreUnavailable`` when it fails."""

    async def create(self, record: StoredResponse) -> StoredResponse | None:
        """Insert a response (``in_progress``, or final for a response stored only at its end) with its
        input items.  Safe to retry: when an earlier try of the same write landed, this one changes nothing
        and returns ``None``; when another record holds the id, that record is returned."""

    async def finish(self, record: StoredResponse) -> StoredResponse | None:
        """Write a response's final state (status, object, messages) if it is still ``in_progress``.

        Returns ``None`` when the stored state is this record (written now, or by an earlier try of the
        same write), else the final state stored before, which stays: a final state never changes."""

    async def progress(self, record: StoredResponse) -> None:
        """Write a running response's state so far; a no-op once it is no longer ``in_progress``."""

    async def get(self, response_id: str, tenant: str = "") -> StoredResponse | None:
        """A response with its messages, or ``None``; another tenant's response is ``None``."""

    async def delete(self, response_id: str, tenant: str = "") -> bool:
        """Delete a response and its items; ``False`` when there was none."""

    async def find_call(self, item_id: str, tenant: str = "") -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The chat tool call and tool message of a stored server-side output item (``None`` when unknown)."""

    async def find_item(self, item_id: str, tenant: str = "") -> dict[str, Any] | None:
        """An output or input item of the tenant's stored responses, by its id (``None`` when there is none)."""

    async def input_items(
        self,
        response_id: str,
        tenant: str = "",
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> InputItemsPage | None:
        """A page of a response's input items, or ``None`` when the response does not exist."""

    async def heartbeat(self, instance: str) -> None:
        """Record that a server instance is alive now."""

    async def forget_instance(self, instance: str) -> None:
        """A server instance stopped cleanly."""

    async def fail_abandoned(self, stale_s: float, instance: str | None = None,
                             running: frozenset[str] = frozenset(), others: bool = True) -> list[str]:
        """Mark ``in_progress`` responses as failed when (with ``others``) their instance has not beaten for
        ``stale_s`` seconds of the database's clock, or when they are ``instance``'s own and not among those it
        is ``running`` (a final write that never landed)."""

    def reachable_for(self, seconds: float) -> bool:
        """Whether every operation of the last ``seconds`` reached the database."""

    async def close(self) -> None:
        """Release connections."""
