"""The console's reads of the other stored objects: files, vector stores with their files, conversations
with their items.  ``scope`` is a tenant, or ``None`` for an admin (every tenant); lists are newest first
and bounded."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from parley.ids import STORED_ID
from parley.store.console import scoped
from parley.store.conversations import conversation_items, conversations
from parley.store.files import files
from parley.store.sql import SqlStore
from parley.store.vector_stores import store_files, stores

LISTED = 200  # rows a list shows
ITEMS = 1000  # items a conversation's page shows


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in result]


class ConsoleData:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def files(self, scope: str | None) -> list[dict[str, Any]]:
        query = scoped(sa.select(files.c.id, files.c.tenant, files.c.filename, files.c.purpose, files.c.bytes,
                                 files.c.created_at, files.c.expires_at, files.c.complete), scope, files)
        query = query.order_by(files.c.created_ns.desc()).limit(LISTED)
        return await self.store.run(lambda conn: _rows(conn.execute(query)))

    async def vector_stores(self, scope: str | None) -> list[dict[str, Any]]:
        """Vector stores with the number of their files by status and the bytes they hold."""
        query = scoped(sa.select(stores.c.id, stores.c.tenant, stores.c.name, stores.c.created_at,
                                 stores.c.last_active_at, stores.c.embedding_model), scope, stores)
        query = query.order_by(stores.c.created_ns.desc()).limit(LISTED)

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            found = _rows(conn.execute(query))
            counts = conn.execute(sa.select(
                store_files.c.vector_store_id, store_files.c.status, sa.func.count(),
                sa.func.coalesce(sa.func.sum(store_files.c.usage_bytes), 0))
                .where(store_files.c.vector_store_id.in_([s["id"] for s in found]))
                .group_by(store_files.c.vector_store_id, store_files.c.status)).all() if found else []
            by_store: dict[str, dict[str, Any]] = {}
            for store_id, status, count, used in counts:
                entry = by_store.setdefault(store_id, {"files": {}, "bytes": 0})
                entry["files"][status] = int(count)
                entry["bytes"] += int(used)
            return [{**s, **by_store.get(s["id"], {"files": {}, "bytes": 0})} for s in found]

        return await self.store.run(read)

    async def vector_store(self, scope: str | None, store_id: str) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(store_id):
            return None

        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(scoped(sa.select(stores).where(stores.c.id == store_id), scope, stores)).first()
            if row is None:
                return None
            listed = conn.execute(sa.select(
                store_files.c.file_id, store_files.c.filename, store_files.c.status, store_files.c.last_error,
                store_files.c.usage_bytes, store_files.c.created_at, store_files.c.attributes)
                .where(store_files.c.vector_store_id == store_id)
                .order_by(store_files.c.created_ns.desc()).limit(LISTED))
            return {**dict(row._mapping), "files": _rows(listed)}

        return await self.store.run(read)

    async def conversations(self, scope: str | None) -> list[dict[str, Any]]:
        """Conversations, the most recently used first, with their number of items."""
        query = scoped(sa.select(conversations), scope, conversations)
        query = query.order_by(conversations.c.updated_at.desc()).limit(LISTED)

        def read(conn: sa.Connection) -> list[dict[str, Any]]:
            found = _rows(conn.execute(query))
            counts = dict(conn.execute(sa.select(conversation_items.c.conversation_id, sa.func.count())
                                       .where(conversation_items.c.conversation_id.in_([c["id"] for c in found]))
                                       .group_by(conversation_items.c.conversation_id)).all()) if found else {}
            return [{**c, "item_count": int(counts.get(c["id"], 0)),
                     "metadata": json.loads(c["metadata"]) if c["metadata"] else {}} for c in found]

        return await self.store.run(read)

    async def conversation(self, scope: str | None, conversation_id: str) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(conversation_id):
            return None

        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(scoped(sa.select(conversations).where(conversations.c.id == conversation_id),
                                      scope, conversations)).first()
            if row is None:
                return None
            items = [json.loads(item) for item in conn.execute(
                sa.select(conversation_items.c.item).where(conversation_items.c.conversation_id == conversation_id)
                .order_by(conversation_items.c.position).limit(ITEMS)).scalars()]
            found = dict(row._mapping)
            return {**found, "metadata": json.loads(found["metadata"]) if found["metadata"] else {}, "items": items}

        return await self.store.run(read)
