"""Where a turn's history comes from, read from the store: the previous response or the conversation it
continues, the stored items its ``item_reference``s name, the stored calls and results of server-side items
it replays, and the text of replayed reasoning (decrypted).  The chat messages themselves are built by
:mod:`parley.engine.history` (pure)."""

from __future__ import annotations

from typing import Any

from parley.engine import compaction
from parley.engine.history import build_messages, unanswered_calls
from parley.errors import InvalidRequest, NotFound
from parley.items import InputItem, ReasoningItem, parse_item
from parley.reasoning import ReasoningCipher
from parley.replayed_items import SERVER_CALLS, ItemReference, McpCallItem
from parley.request import CreateResponse
from parley.settings import UpstreamConfig
from parley.store.base import Store, StoredResponse
from parley.tools.program_replay import PROGRAM, PendingProgram, check_answered, pending_programs, \
    program_call_ids, read_fingerprint

MAX_PROGRAM_HOPS = 64  # earlier responses read back to find a waiting program's item


class HistorySources:
    """Reads what a turn continues, for one tenant at a time."""

    def __init__(self, store: Store, conversations: Any, cipher: ReasoningCipher | None) -> None:
        self.store = store
        self.conversations = conversations  # parley.store.conversations.SqlConversations, for `conversation`
        self.cipher = cipher

    async def conversation(self, request: CreateResponse, upstream: UpstreamConfig, tenant: str
                           ) -> tuple[list[dict[str, Any]], StoredResponse | None]:
        """The chat the request continues with its own input after it, and the previous response it names."""
        prior: list[dict[str, Any]] = []
        previous = None
        if request.previous_response_id:
            previous = await self.store.get(request.previous_response_id, tenant)
            if previous is None:
                raise InvalidRequest(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id", code="previous_response_not_found",
                )
            prior = previous.messages
        elif request.conversation:
            prior = await self._conversation_history(request.conversation, tenant)
        return build_messages(prior, request.input, self._replayed_reasoning(request, upstream),
                              await self._stored_calls(request.input, tenant),
                              compaction.summaries(self.cipher, request.input, "input")), previous

    async def programs(self, request: CreateResponse, previous: StoredResponse | None,
                       conversation: list[dict[str, Any]], tenant: str) -> list[PendingProgram]:
        """The programs this request continues (their model calls unanswered in the chat): each with its calls
        and their outputs, read from the input, the conversation, or the responses of the chain; a 400 when an
        output is missing or a program's item cannot be found."""
        waiting = {call["id"] for call in unanswered_calls(conversation) if call["function"]["name"] == PROGRAM}
        if not waiting:
            return []
        if not any(getattr(tool, "type", None) == "programmatic_tool_calling" for tool in request.tools):
            raise InvalidRequest("This request goes on with a program the model wrote: give the "
                                 "programmatic_tool_calling tool in 'tools' again.", param="tools")
        items: list[Any] = list(request.input)
        if request.conversation and self.conversations is not None:
            items = list(await self.conversations.items(request.conversation, tenant, turn=True) or []) + items
        record, hops = previous, 0
        while record is not None and hops < MAX_PROGRAM_HOPS and not waiting <= program_call_ids(items):
            items = await self._input_items(record, tenant) + record.response.get("output", []) + items
            hops += 1
            record = await self.store.get(record.previous_response_id, tenant) if record.previous_response_id \
                else None
        programs = pending_programs(items, waiting)
        if len(programs) < len(waiting):
            raise InvalidRequest("The previous response waits for a program whose item Parley cannot find any "
                                 "more; send the program item back in 'input'.", param="input")
        for program in programs:
            check_answered(program)
            read_fingerprint(self.cipher, program)
        return programs

    async def _input_items(self, record: StoredResponse, tenant: str) -> list[dict[str, Any]]:
        """All the input items of a stored response, oldest first."""
        found: list[dict[str, Any]] = []
        while True:
            page = await self.store.input_items(record.id, tenant, after=found[-1]["id"] if found else None,
                                                limit=100, order="asc")
            if page is None:
                return found
            found += page.data
            if not page.has_more or not page.data:
                return found

    async def _conversation_history(self, conversation_id: str, tenant: str) -> list[dict[str, Any]]:
        """The chat that a conversation's items make (the history a response on it continues)."""
        stored = await self.conversations.items(conversation_id, tenant, turn=True) if self.conversations else None
        if stored is None:
            raise NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation")
        items = [parse_item(entry, f"conversation.items[{i}]") for i, entry in enumerate(stored)]
        return build_messages([], items, None, await self._stored_calls(items, tenant),
                              compaction.summaries(self.cipher, items, "conversation.items"))

    async def resolve_references(self, items: list[InputItem], tenant: str) -> list[InputItem]:
        """Each ``item_reference`` replaced by the stored item it names (of the caller's tenant)."""
        resolved = list(items)
        for i, item in enumerate(items):
            if isinstance(item, ItemReference):
                found = await self.store.find_item(item.id, tenant)
                if found is None:
                    raise InvalidRequest(f"No stored item with id '{item.id}'.", param=f"input[{i}].id",
                                         code="item_not_found")
                resolved[i] = parse_item(found, f"input[{i}]")
        return resolved

    async def _stored_calls(self, items: list[InputItem], tenant: str) -> dict[str, Any]:
        """For replayed server-side items that this tenant's stored responses made: their chat call and result."""
        known = {}
        for item in items:
            # (a call run after an approval stays under the id its approval request gives it in the replay)
            if isinstance(item, SERVER_CALLS) or (
                    isinstance(item, McpCallItem) and not item.approval_request_id):
                found = await self.store.find_call(item.id, tenant)
                if found is not None:
                    known[item.id] = found
        return known

    def _replayed_reasoning(self, request: CreateResponse, upstream: UpstreamConfig) -> dict[int, str]:
        """The text of replayed reasoning items, for upstreams that take reasoning back (``replay_reasoning``):
        decrypted ``encrypted_content`` (an altered or foreign one is a 400), else the item's own text."""
        texts: dict[int, str] = {}
        for i, item in enumerate(request.input):
            if not isinstance(item, ReasoningItem):
                continue
            text = item.text
            if item.encrypted_content:
                text = self.cipher.decrypt(item.encrypted_content) if self.cipher else None
                if text is None:
                    raise InvalidRequest("This encrypted_content was not made by this server or was altered.",
                                         param=f"input[{i}].encrypted_content", code="invalid_encrypted_content")
            if upstream.replay_reasoning and text:
                texts[i] = text
        return texts
