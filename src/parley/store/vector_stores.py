"""Vector stores in the store's database: the stores, their files (each file's ingestion is a row that an
instance claims through ``owner``: :mod:`parley.store.ingestion_work`), file batches, and the chunks with their
embeddings.  Counts and statuses are read from the rows, never kept beside them, so they are exact."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from parley.ids import STORED_ID, new_id
from parley.store.embedding_matrices import forget
from parley.store.pages import Order, Page, page_query
from parley.store.pg_bm25 import PgBm25
from parley.store.pgvector import PgVector
from parley.store.sqlite_vec_index import SqliteVec
from parley.store.sql import SqlStore
from parley.store.tables import metadata

stores = sa.Table(
    "parley_vector_stores", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("name", sa.String(512)),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("last_active_at", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text),
    sa.Column("expires_after", sa.Text),
    sa.Column("embedding_model", sa.String(200), nullable=False),
)
store_files = sa.Table(
    "parley_vector_store_files", metadata,
    sa.Column("vector_store_id", sa.String(80), primary_key=True),
    sa.Column("file_id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("batch_id", sa.String(80)),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("attributes", sa.Text),
    sa.Column("chunking", sa.Text, nullable=False),
    sa.Column("usage_bytes", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
)
batches = sa.Table(
    "parley_vector_store_batches", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("vector_store_id", sa.String(80), nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
)
store_chunks = sa.Table(
    "parley_vector_store_chunks", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("vector_store_id", sa.String(80), nullable=False),
    sa.Column("file_id", sa.String(80), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("embedding", sa.LargeBinary, nullable=False),
)
STATUSES = ("in_progress", "completed", "failed", "cancelled")
TOUCH_S = 60  # a store's last_active_at is written again by a search once it is this old


@dataclass
class Entry:
    """A file to add to a vector store."""

    file_id: str
    filename: str
    attributes: dict[str, Any] | None
    chunking: dict[str, Any]


@dataclass
class StoreInfo:
    id: str
    tenant: str
    embedding_model: str
    name: str | None
    expired: bool
    last_active_at: int = 0


def _counts(rows: list[Any]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, number in rows:
        counts[status] = counts.get(status, 0) + number
    counts["total"] = sum(counts[s] for s in STATUSES)
    return counts


def _expires_at(row: Any) -> int | None:
    after = json.loads(row.expires_after) if row.expires_after else None
    return row.last_active_at + after["days"] * 86400 if after else None


def _expired(row: Any) -> bool:
    expires_at = _expires_at(row)
    return expires_at is not None and expires_at <= time.time()


def store_resource(row: Any, counts: dict[str, int], usage: int) -> dict[str, Any]:
    expires_at = _expires_at(row)
    expired = _expired(row)
    return {"id": row.id, "object": "vector_store", "created_at": row.created_at, "name": row.name,
            "description": row.description, "usage_bytes": usage, "file_counts": counts,
            "status": "expired" if expired else "in_progress" if counts["in_progress"] else "completed",
            "expires_after": json.loads(row.expires_after) if row.expires_after else None,
            "expires_at": expires_at, "last_active_at": row.last_active_at,
            "metadata": json.loads(row.metadata) if row.metadata else {}}


def file_resource(row: Any) -> dict[str, Any]:
    return {"id": row.file_id, "object": "vector_store.file", "usage_bytes": row.usage_bytes,
            "created_at": row.created_at, "vector_store_id": row.vector_store_id, "status": row.status,
            "last_error": json.loads(row.last_error) if row.last_error else None,
            "chunking_strategy": json.loads(row.chunking),
            "attributes": json.loads(row.attributes) if row.attributes else {}}


def batch_resource(row: Any, counts: dict[str, int]) -> dict[str, Any]:
    if row.cancelled:
        status = "cancelled" if not counts["in_progress"] else "cancelling"
    elif counts["in_progress"]:
        status = "in_progress"
    else:
        status = "failed" if counts["total"] and counts["failed"] == counts["total"] else "completed"
    return {"id": row.id, "object": "vector_store.file_batch", "created_at": row.created_at,
            "vector_store_id": row.vector_store_id, "status": status, "file_counts": counts}


class SqlVectorStores:
    """The vector stores of every tenant, in the store's database."""

    def __init__(self, store: SqlStore, bm25_index: bool = False) -> None:
        self.store = store
        self.bm25_index = bm25_index  # --bm25-index (PostgreSQL with pgvector)
        self.pgvector = PgVector()
        self.bm25 = PgBm25()
        self.sqlite_vec = SqliteVec()

    async def prepare(self) -> None:
        """Enable pgvector where the database has it (see :mod:`parley.store.pgvector`) with the BM25 keyword index
        (:mod:`parley.store.pg_bm25`, filled by ``bm25.fill``), or sqlite-vec's index on SQLite
        (:mod:`parley.store.sqlite_vec_index`)."""
        await self.pgvector.prepare(self.store)
        await self.bm25.prepare(self.store, self.pgvector.enabled, self.bm25_index)
        await self.sqlite_vec.prepare(self.store)

    # -- stores --------------------------------------------------------------------------------------------

    async def create(self, tenant: str, *, name: str | None, description: str | None, metadata: dict[str, str],
                     expires_after: dict[str, Any] | None, embedding_model: str,
                     entries: list[Entry]) -> dict[str, Any]:
        now_ns = time.time_ns()
        now = now_ns // 1_000_000_000
        store_id = new_id("vs")
        row = dict(id=store_id, tenant=tenant, name=name, description=description, created_at=now,
                   created_ns=now_ns, last_active_at=now, metadata=json.dumps(metadata),
                   expires_after=json.dumps(expires_after) if expires_after else None, embedding_model=embedding_model)

        def create(conn: sa.Connection) -> dict[str, Any]:
            conn.execute(stores.insert().values(**row))
            self._add(conn, store_id, tenant, entries, None)
            return self._resource(conn, store_id, tenant) or {}

        return await self.store.run(create)

    def _resource(self, conn: sa.Connection, store_id: str, tenant: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(stores).where(stores.c.id == store_id, stores.c.tenant == tenant)).first()
        if row is None:
            return None
        counts = _counts(list(conn.execute(
            sa.select(store_files.c.status, sa.func.count()).where(store_files.c.vector_store_id == store_id)
            .group_by(store_files.c.status)).all()))
        usage = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(store_files.c.usage_bytes), 0))
                             .where(store_files.c.vector_store_id == store_id)).scalar()
        return store_resource(row, counts, int(usage or 0))

    async def get(self, store_id: str, tenant: str) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(store_id):
            return None
        return await self.store.run(lambda conn: self._resource(conn, store_id, tenant))

    async def info(self, store_id: str, tenant: str) -> StoreInfo | None:
        """What a search needs of the store, from its row alone (``None``: not the tenant's)."""
        if not STORED_ID.fullmatch(store_id):
            return None
        row = await self.store.run(lambda conn: conn.execute(
            sa.select(stores).where(stores.c.id == store_id, stores.c.tenant == tenant)).first())
        return None if row is None else StoreInfo(store_id, tenant, row.embedding_model, row.name, _expired(row),
                                                  row.last_active_at)

    async def touch(self, used: list[StoreInfo]) -> None:
        """Record use (``last_active_at``, from which an ``expires_after`` of days counts) where the stored time is
        more than ``TOUCH_S`` old: a search is not a write each time."""
        now = int(time.time())
        store_ids = [info.id for info in used if now - info.last_active_at >= TOUCH_S]
        if store_ids:
            await self.store.run(lambda conn: conn.execute(
                stores.update().where(stores.c.id.in_(store_ids)).values(last_active_at=now)))

    async def list(self, tenant: str, *, after: str | None, before: str | None, limit: int, order: Order) -> Page:
        scope = stores.c.tenant == tenant
        query = page_query(sa.select(stores.c.id).where(scope), stores, stores.c.id, scope, after, before, order,
                            limit)

        def read(conn: sa.Connection) -> Page:
            ids = list(conn.execute(query).scalars())
            data = [self._resource(conn, i, tenant) for i in ids[:limit]]
            return Page([d for d in data if d is not None], len(ids) > limit)

        return await self.store.run(read)

    async def update(self, store_id: str, tenant: str, values: dict[str, Any]) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(store_id):
            return None
        row: dict[str, Any] = {}
        if "name" in values:
            row["name"] = values["name"]
        if "metadata" in values:
            row["metadata"] = json.dumps(values["metadata"] or {})
        if "expires_after" in values:
            row["expires_after"] = json.dumps(values["expires_after"]) if values["expires_after"] else None

        def update(conn: sa.Connection) -> dict[str, Any] | None:
            if row:
                conn.execute(stores.update().where(stores.c.id == store_id, stores.c.tenant == tenant).values(**row))
            return self._resource(conn, store_id, tenant)

        return await self.store.run(update)

    async def delete(self, store_id: str, tenant: str) -> bool:
        if not STORED_ID.fullmatch(store_id):
            return False

        def delete(conn: sa.Connection) -> bool:
            if not conn.execute(stores.delete().where(stores.c.id == store_id, stores.c.tenant == tenant)).rowcount:
                return False
            conn.execute(store_chunks.delete().where(store_chunks.c.vector_store_id == store_id))
            conn.execute(store_files.delete().where(store_files.c.vector_store_id == store_id))
            conn.execute(batches.delete().where(batches.c.vector_store_id == store_id))
            if conn.dialect.name == "sqlite":
                forget(conn, store_id)
            return True

        return await self.store.run(delete)

    # -- files ---------------------------------------------------------------------------------------------

    @staticmethod
    def _add(conn: sa.Connection, store_id: str, tenant: str, entries: list[Entry], batch_id: str | None) -> None:
        """Add files as ``in_progress`` work; a file the store already holds stays as it is (a batch adopts it
        only while it is still in progress)."""
        now_ns = time.time_ns()
        present = set(conn.execute(sa.select(store_files.c.file_id).where(
            store_files.c.vector_store_id == store_id, store_files.c.file_id.in_([e.file_id for e in entries])))
            .scalars()) if entries else set()
        rows = []
        for offset, entry in enumerate(entries):
            if entry.file_id in present:
                continue
            present.add(entry.file_id)
            rows.append(dict(vector_store_id=store_id, file_id=entry.file_id, tenant=tenant, filename=entry.filename,
                             batch_id=batch_id, created_at=now_ns // 1_000_000_000, created_ns=now_ns + offset,
                             status="in_progress", last_error=None,
                             attributes=json.dumps(entry.attributes) if entry.attributes is not None else None,
                             chunking=json.dumps(entry.chunking), usage_bytes=0, owner=None))
        if rows:
            conn.execute(store_files.insert(), rows)

    async def add_file(self, store_id: str, tenant: str, entry: Entry) -> dict[str, Any] | None:
        def add(conn: sa.Connection) -> dict[str, Any] | None:
            if not self._owns(conn, store_id, tenant):
                return None
            self._add(conn, store_id, tenant, [entry], None)
            return self._file(conn, store_id, entry.file_id)

        return await self.store.run(add)

    @staticmethod
    def _owns(conn: sa.Connection, store_id: str, tenant: str) -> bool:
        return STORED_ID.fullmatch(store_id) is not None and conn.execute(
            sa.select(stores.c.id).where(stores.c.id == store_id, stores.c.tenant == tenant)).first() is not None

    @staticmethod
    def _file(conn: sa.Connection, store_id: str, file_id: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(store_files).where(
            store_files.c.vector_store_id == store_id, store_files.c.file_id == file_id)).first()
        return None if row is None else file_resource(row)

    async def get_file(self, store_id: str, file_id: str, tenant: str) -> dict[str, Any] | None:
        def get(conn: sa.Connection) -> dict[str, Any] | None:
            return self._file(conn, store_id, file_id) if self._owns(conn, store_id, tenant) else None

        return await self.store.run(get)

    async def list_files(self, store_id: str, tenant: str, *, status: str | None, batch_id: str | None,
                         after: str | None, before: str | None, limit: int, order: Order) -> Page | None:
        scope = store_files.c.vector_store_id == store_id
        query = sa.select(store_files).where(scope)
        if status is not None:
            query = query.where(store_files.c.status == status)
        if batch_id is not None:
            query = query.where(store_files.c.batch_id == batch_id)
        query = page_query(query, store_files, store_files.c.file_id, scope, after, before, order, limit)

        def read(conn: sa.Connection) -> Page | None:
            if not self._owns(conn, store_id, tenant):
                return None
            rows = conn.execute(query).all()
            return Page([file_resource(r) for r in rows[:limit]], len(rows) > limit)

        return await self.store.run(read)

    async def update_file(self, store_id: str, file_id: str, tenant: str,
                          attributes: dict[str, Any] | None) -> dict[str, Any] | None:
        def update(conn: sa.Connection) -> dict[str, Any] | None:
            if not self._owns(conn, store_id, tenant):
                return None
            conn.execute(store_files.update().where(store_files.c.vector_store_id == store_id,
                                                    store_files.c.file_id == file_id)
                         .values(attributes=json.dumps(attributes) if attributes is not None else None))
            return self._file(conn, store_id, file_id)

        return await self.store.run(update)

    async def delete_file(self, store_id: str, file_id: str, tenant: str) -> bool:
        def delete(conn: sa.Connection) -> bool:
            if not self._owns(conn, store_id, tenant):
                return False
            where = (store_files.c.vector_store_id == store_id, store_files.c.file_id == file_id)
            if not conn.execute(store_files.delete().where(*where)).rowcount:
                return False
            conn.execute(store_chunks.delete().where(store_chunks.c.vector_store_id == store_id,
                                                     store_chunks.c.file_id == file_id))
            return True

        return await self.store.run(delete)

    async def file_chunks(self, store_id: str, file_id: str, tenant: str) -> list[str] | None:
        def read(conn: sa.Connection) -> list[str] | None:
            if not self._owns(conn, store_id, tenant) or self._file(conn, store_id, file_id) is None:
                return None
            return list(conn.execute(sa.select(store_chunks.c.text).where(
                store_chunks.c.vector_store_id == store_id, store_chunks.c.file_id == file_id)
                .order_by(store_chunks.c.seq)).scalars())

        return await self.store.run(read)

    # -- batches -------------------------------------------------------------------------------------------

    def _batch(self, conn: sa.Connection, store_id: str, batch_id: str, tenant: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(batches).where(batches.c.id == batch_id, batches.c.vector_store_id == store_id,
                                                    batches.c.tenant == tenant)).first()
        if row is None:
            return None
        counts = _counts(list(conn.execute(
            sa.select(store_files.c.status, sa.func.count()).where(store_files.c.batch_id == batch_id)
            .group_by(store_files.c.status)).all()))
        return batch_resource(row, counts)

    async def create_batch(self, store_id: str, tenant: str, entries: list[Entry]) -> dict[str, Any] | None:
        batch_id = new_id("vsfb")

        def create(conn: sa.Connection) -> dict[str, Any] | None:
            if not self._owns(conn, store_id, tenant):
                return None
            conn.execute(batches.insert().values(id=batch_id, vector_store_id=store_id, tenant=tenant,
                                                 created_at=int(time.time()), cancelled=False))
            self._add(conn, store_id, tenant, entries, batch_id)
            # Files the store already held and that are still being read count in the batch too.
            conn.execute(store_files.update().where(
                store_files.c.vector_store_id == store_id, store_files.c.batch_id.is_(None),
                store_files.c.status == "in_progress",
                store_files.c.file_id.in_([e.file_id for e in entries])).values(batch_id=batch_id))
            return self._batch(conn, store_id, batch_id, tenant)

        return await self.store.run(create)

    async def get_batch(self, store_id: str, batch_id: str, tenant: str) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(batch_id):
            return None
        return await self.store.run(lambda conn: self._batch(conn, store_id, batch_id, tenant))

    async def cancel_batch(self, store_id: str, batch_id: str, tenant: str) -> dict[str, Any] | None:
        if not STORED_ID.fullmatch(batch_id):
            return None

        def cancel(conn: sa.Connection) -> dict[str, Any] | None:
            if self._batch(conn, store_id, batch_id, tenant) is None:
                return None
            conn.execute(batches.update().where(batches.c.id == batch_id).values(cancelled=True))
            conn.execute(store_files.update().where(store_files.c.batch_id == batch_id,
                                                    store_files.c.status == "in_progress")
                         .values(status="cancelled", owner=None))
            return self._batch(conn, store_id, batch_id, tenant)

        return await self.store.run(cancel)
