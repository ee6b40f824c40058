"""Conversations (``/v1/conversations``) in the store's database: each one's items in order, by position.

Items are appended in blocks, each in one transaction that takes the conversation's row first (``FOR UPDATE``
on PostgreSQL; SQLite has one writer), so a turn's input and output land together and two turns racing on
one conversation never interleave: they are appended whole, in the order they finish.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import sqlalchemy as sa

from parley.ids import STORED_ID, new_id
from parley.store.pages import Page
from parley.store.sql import SqlStore
from parley.store.tables import metadata

conversations = sa.Table(
    "parley_conversations", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text),
    sa.Column("updated_at", sa.BigInteger),
)
conversation_items = sa.Table(
    "parley_conversation_items", metadata,
    sa.Column("conversation_id", sa.String(80), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(120), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
)


def _resource(row: Any) -> dict[str, Any]:
    return {"id": row.id, "object": "conversation", "created_at": row.created_at,
            "metadata": json.loads(row.metadata) if row.metadata else {}}


class SqlConversations:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def _row(self, conn: sa.Connection, conversation_id: str, tenant: str, lock: bool = False) -> Any:
        if not STORED_ID.fullmatch(conversation_id):
            return None
        query = sa.select(conversations).where(conversations.c.id == conversation_id,
                                               conversations.c.tenant == tenant)
        if lock and self.store.is_postgres:
            query = query.with_for_update()
        return conn.execute(query).first()

    @staticmethod
    def _touch(conn: sa.Connection, conversation_id: str) -> None:
        conn.execute(conversations.update().where(conversations.c.id == conversation_id)
                     .values(updated_at=int(time.time())))

    def _append(self, conn: sa.Connection, conversation_id: str, items: list[dict[str, Any]]) -> None:
        last = conn.execute(sa.select(sa.func.max(conversation_items.c.position))
                            .where(conversation_items.c.conversation_id == conversation_id)).scalar()
        start = -1 if last is None else last
        if items:
            conn.execute(conversation_items.insert(), [
                {"conversation_id": conversation_id, "position": start + 1 + i, "item_id": item["id"],
                 "item": json.dumps(item)} for i, item in enumerate(items)])

    async def create(self, tenant: str, metadata: dict[str, str], items: list[dict[str, Any]]) -> dict[str, Any]:
        now = int(time.time())
        row = {"id": new_id("conv"), "tenant": tenant, "created_at": now, "updated_at": now,
               "metadata": json.dumps(metadata)}

        def create(conn: sa.Connection) -> dict[str, Any]:
            conn.execute(conversations.insert().values(**row))
            self._append(conn, row["id"], items)
            return _resource(self._row(conn, row["id"], tenant))

        return await self.store.run(create)

    async def get(self, conversation_id: str, tenant: str) -> dict[str, Any] | None:
        row = await self.store.run(lambda conn: self._row(conn, conversation_id, tenant))
        return None if row is None else _resource(row)

    async def update(self, conversation_id: str, tenant: str, metadata: dict[str, str]) -> dict[str, Any] | None:
        def update(conn: sa.Connection) -> dict[str, Any] | None:
            if self._row(conn, conversation_id, tenant) is None:
                return None
            conn.execute(conversations.update().where(conversations.c.id == conversation_id)
                         .values(metadata=json.dumps(metadata), updated_at=int(time.time())))
            return _resource(self._row(conn, conversation_id, tenant))

        return await self.store.run(update)

    async def delete(self, conversation_id: str, tenant: str) -> bool:
        def delete(conn: sa.Connection) -> bool:
            if self._row(conn, conversation_id, tenant) is None:
                return False
            conn.execute(conversation_items.delete().where(conversation_items.c.conversation_id == conversation_id))
            conn.execute(conversations.delete().where(conversations.c.id == conversation_id))
            return True

        return await self.store.run(delete)

    async def append(self, conversation_id: str, tenant: str, items: list[dict[str, Any]]) -> bool:
        """Append ``items`` as one block; ``False`` when the conversation is not the tenant's (or is gone)."""
        def append(conn: sa.Connection) -> bool:
            if self._row(conn, conversation_id, tenant, lock=True) is None:
                return False
            self._append(conn, conversation_id, items)
            self._touch(conn, conversation_id)
            return True

        return await self.store.run(append)

    async def items(self, conversation_id: str, tenant: str, turn: bool = False) -> list[dict[str, Any]] | None:
        """Every item, oldest first (the history a response on the conversation continues).  With ``turn`` a
        turn starts on it: that is a use, and retention counts from it."""
        def read(conn: sa.Connection) -> list[dict[str, Any]] | None:
            if self._row(conn, conversation_id, tenant) is None:
                return None
            if turn:
                self._touch(conn, conversation_id)
            return [json.loads(text) for text in conn.execute(
                sa.select(conversation_items.c.item).where(conversation_items.c.conversation_id == conversation_id)
                .order_by(conversation_items.c.position)).scalars()]

        return await self.store.run(read)

    async def page(self, conversation_id: str, tenant: str, *, after: str | None, limit: int,
                   order: Literal["asc", "desc"]) -> Page | None:
        position = conversation_items.c.position

        def read(conn: sa.Connection) -> Page | None:
            if self._row(conn, conversation_id, tenant) is None:
                return None
            query = sa.select(conversation_items.c.item).where(conversation_items.c.conversation_id == conversation_id)
            if after is not None:
                point = sa.select(position).where(conversation_items.c.conversation_id == conversation_id,
                                                  conversation_items.c.item_id == after).scalar_subquery()
                query = query.where(position < point if order == "desc" else position > point)
            query = query.order_by(position.desc() if order == "desc" else position).limit(limit + 1)
            rows = [json.loads(text) for text in conn.execute(query).scalars()]
            return Page(rows[:limit], len(rows) > limit)

        return await self.store.run(read)

    async def item(self, conversation_id: str, item_id: str, tenant: str) -> dict[str, Any] | None:
        def read(conn: sa.Connection) -> dict[str, Any] | None:
            if self._row(conn, conversation_id, tenant) is None:
                return None
            text = conn.execute(sa.select(conversation_items.c.item).where(
                conversation_items.c.conversation_id == conversation_id,
                conversation_items.c.item_id == item_id)).scalar()
            return None if text is None else json.loads(text)

        return await self.store.run(read)

    async def delete_item(self, conversation_id: str, item_id: str, tenant: str) -> dict[str, Any] | None:
        """Remove the item; the conversation (``None`` when it or the item is not there)."""
        def delete(conn: sa.Connection) -> dict[str, Any] | None:
            row = self._row(conn, conversation_id, tenant, lock=True)
            if row is None or not conn.execute(conversation_items.delete().where(
                    conversation_items.c.conversation_id == conversation_id,
                    conversation_items.c.item_id == item_id)).rowcount:
                return None
            return _resource(row)

        return await self.store.run(delete)

    async def sweep(self, before: float, batch: int = 500) -> int:
        """Delete conversations unused since ``before`` (epoch seconds), with their items, a batch per
        transaction; the number deleted."""
        def sweep(conn: sa.Connection) -> tuple[int, int]:
            ids = list(conn.execute(sa.select(conversations.c.id).where(conversations.c.updated_at < before)
                                    .limit(batch)).scalars())
            if not ids:
                return 0, 0
            # (the condition again: a turn that started since the select touched its conversation, and on
            # PostgreSQL the delete sees that row's new version and skips it)
            deleted = list(conn.execute(conversations.delete().where(
                conversations.c.id.in_(ids), conversations.c.updated_at < before)
                .returning(conversations.c.id)).scalars())
            if deleted:
                conn.execute(conversation_items.delete().where(conversation_items.c.conversation_id.in_(deleted)))
            return len(ids), len(deleted)

        total = 0
        while True:
            selected, deleted = await self.store.run(sweep)
            total += deleted
            if not selected:
                return total
