"""Finding items of stored responses by their id, through the output-item and input-item indexes: what
``item_reference`` and replayed server-side items need."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from parley.store.tables import input_items, output_items, responses

T = TypeVar("T")


class ItemLookups:
    """Mixed into :class:`~parley.store.sql.SqlStore`, whose ``run`` executes each lookup in one transaction."""

    async def run(self, operation: Callable[[sa.Connection], T]) -> T:
        raise NotImplementedError

    async def find_call(self, item_id: str, tenant: str = "") -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The chat tool call a server-side output item stands for, and the tool message that answered it, from
        the tenant's stored response that made the item (``None`` when there is none)."""
        if not item_id or "\x00" in item_id or len(item_id) > 120:
            return None
        query = sa.select(responses.c.messages, responses.c.call_ids) \
            .join(output_items, output_items.c.response_id == responses.c.id) \
            .where(output_items.c.item_id == item_id, responses.c.tenant == tenant).limit(1)

        def find(conn: sa.Connection) -> tuple[dict[str, Any], dict[str, Any]] | None:
            row = conn.execute(query).first()
            call_id = json.loads(row.call_ids).get(item_id) if row is not None and row.call_ids else None
            if call_id is None:
                return None
            messages = json.loads(row.messages)
            call = next((c for m in messages for c in m.get("tool_calls") or [] if c.get("id") == call_id), None)
            answer = next((m for m in messages if m.get("role") == "tool" and m.get("tool_call_id") == call_id), None)
            return (call, answer) if call is not None and answer is not None else None

        return await self.run(find)

    async def find_item(self, item_id: str, tenant: str = "") -> dict[str, Any] | None:
        """An item of the tenant's stored responses (output first, then input) by its id, through the indexes."""
        if not item_id or "\x00" in item_id or len(item_id) > 120:
            return None
        in_output = sa.select(responses.c.response).join(output_items, output_items.c.response_id == responses.c.id) \
            .where(output_items.c.item_id == item_id, responses.c.tenant == tenant).limit(1)
        in_input = sa.select(input_items.c.item).join(responses, input_items.c.response_id == responses.c.id) \
            .where(input_items.c.item_id == item_id, responses.c.tenant == tenant).limit(1)

        def find(conn: sa.Connection) -> dict[str, Any] | None:
            response = conn.execute(in_output).scalar()
            if response is not None:
                return next((i for i in json.loads(response).get("output", []) if i.get("id") == item_id), None)
            item = conn.execute(in_input).scalar()
            return None if item is None else json.loads(item)

        return await self.run(find)
