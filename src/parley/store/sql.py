"""The SQL store: SQLAlchemy 2 on SQLite (WAL, the default) or PostgreSQL.

JSON columns are kept as text written by the engine, so a stored response is returned
byte-for-byte as it was produced and both databases behave the same.

Each operation is written once, as a function of a SQLAlchemy ``Connection`` run inside one
transaction, and :meth:`SqlStore.run` runs it the way its database goes fastest:
PostgreSQL through the async engine (asyncpg), SQLite on one thread of its own holding the
one connection, in a single hop per operation.  (With aiosqlite every statement, the begin
and the commit were each a hop to its thread and back: about 1 ms of a stored response's
latency, half of what Parley added to a request.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.store.base import InputItemsPage, StoredResponse
from parley.store.migrations import MIGRATIONS

metadata = sa.MetaData()
responses = sa.Table(
    "parley_responses", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("previous_response_id", sa.String(80)),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("owner", sa.String(64)),
)
instances = sa.Table(
    "parley_instances", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
input_items = sa.Table(
    "parley_input_items", metadata,
    sa.Column("response_id", sa.String(80), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(120), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
)
migrations_table = sa.Table(
    "parley_migrations", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


# Built once: constructing statements per call showed up in profiles of the request path.
_INSERT_RESPONSE = responses.insert()
_INSERT_ITEM = input_items.insert()
_FINISH_RESPONSE = responses.update().where(responses.c.id == sa.bindparam("rid"))
_PROGRESS_RESPONSE = responses.update().where(responses.c.id == sa.bindparam("rid"),
                                              responses.c.status == "in_progress")


T = TypeVar("T")


def normalize_url(url: str) -> str:
    """The driver Parley uses: Python's sqlite3 for SQLite, asyncpg for PostgreSQL (any spelling)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite+aiosqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class SqlStore:
    """:class:`parley.store.base.Store` over PostgreSQL (an async engine) or SQLite (a sync engine on its thread)."""

    def __init__(self, engine: AsyncEngine | sa.Engine) -> None:
        self.engine = engine
        self._thread = None if isinstance(engine, AsyncEngine) else ThreadPoolExecutor(1, "parley-sqlite")

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def run(self, operation: Callable[[sa.Connection], T]) -> T:
        """Run ``operation`` in one transaction and return what it returns."""
        if isinstance(self.engine, AsyncEngine):
            async with self.engine.begin() as conn:
                return await conn.run_sync(operation)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, operation)

    def _transaction(self, operation: Callable[[sa.Connection], T]) -> T:
        assert isinstance(self.engine, sa.Engine)
        with self.engine.begin() as conn:
            return operation(conn)

    async def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now."""
        postgres = self.is_postgres

        def migrate(conn: sa.Connection) -> list[str]:
            if postgres:  # several processes may start at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226537)"))
            migrations_table.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(migrations_table.c.name)).scalars())
            applied_now = []
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements:
                    conn.execute(sa.text(statement))
                conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
                applied_now.append(name)
            return applied_now

        return await self.run(migrate)

    async def create(self, record: StoredResponse) -> None:
        # The rows are serialized here, on the caller's thread: the store's thread only runs SQL.
        row = {"id": record.id, "tenant": record.tenant, "created_at": record.created_at, "status": record.status,
               "previous_response_id": record.previous_response_id, "response": record.serialized(),
               "messages": json.dumps(record.messages), "owner": record.owner}
        items = [{"response_id": record.id, "position": i, "item_id": item["id"], "item": json.dumps(item)}
                 for i, item in enumerate(record.input_items)]

        def create(conn: sa.Connection) -> None:
            conn.execute(_INSERT_RESPONSE, row)
            if items:
                conn.execute(_INSERT_ITEM, items)

        await self.run(create)

    async def finish(self, record: StoredResponse) -> None:
        await self._update(_FINISH_RESPONSE, record, status=record.status)

    async def progress(self, record: StoredResponse) -> None:
        await self._update(_PROGRESS_RESPONSE, record)

    async def _update(self, statement: Any, record: StoredResponse, **values: Any) -> None:
        parameters = {"rid": record.id, "response": record.serialized(), "messages": json.dumps(record.messages),
                      **values}
        await self.run(lambda conn: conn.execute(statement, parameters))

    async def get(self, response_id: str, tenant: str = "") -> StoredResponse | None:
        query = sa.select(responses).where(responses.c.id == response_id, responses.c.tenant == tenant)
        row = await self.run(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        return StoredResponse(
            id=row.id, tenant=row.tenant, created_at=row.created_at, status=row.status,
            previous_response_id=row.previous_response_id, response=json.loads(row.response),
            messages=json.loads(row.messages), response_json=row.response,
        )

    async def delete(self, response_id: str, tenant: str = "") -> bool:
        def delete(conn: sa.Connection) -> bool:
            result = conn.execute(responses.delete().where(responses.c.id == response_id, responses.c.tenant == tenant))
            if result.rowcount == 0:
                return False
            conn.execute(input_items.delete().where(input_items.c.response_id == response_id))
            return True

        return await self.run(delete)

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
        def read(conn: sa.Connection) -> list[Any] | None:
            exists = conn.execute(
                sa.select(responses.c.id).where(responses.c.id == response_id, responses.c.tenant == tenant)).first()
            if exists is None:
                return None
            return list(conn.execute(
                sa.select(input_items.c.item_id, input_items.c.item)
                .where(input_items.c.response_id == response_id)
                .order_by(input_items.c.position.asc() if order == "asc" else input_items.c.position.desc())
            ).all())

        rows = await self.run(read)
        if rows is None:
            return None
        ids = [row.item_id for row in rows]
        start = ids.index(after) + 1 if after in ids else 0
        end = ids.index(before) if before in ids else len(ids)
        window = rows[start:end]
        return InputItemsPage(data=[json.loads(row.item) for row in window[:limit]], has_more=len(window) > limit)

    async def heartbeat(self, instance: str) -> None:
        def beat(conn: sa.Connection) -> None:
            now = time.time()
            updated = conn.execute(instances.update().where(instances.c.id == instance).values(heartbeat_at=now))
            if updated.rowcount == 0:
                conn.execute(instances.insert().values(id=instance, heartbeat_at=now))

        await self.run(beat)

    async def forget_instance(self, instance: str) -> None:
        await self.run(lambda conn: conn.execute(instances.delete().where(instances.c.id == instance)))

    async def fail_abandoned(self, alive_since: float, message: str) -> list[str]:
        alive = sa.select(instances.c.id).where(instances.c.heartbeat_at >= alive_since)
        abandoned = sa.select(responses.c.id, responses.c.response).where(
            responses.c.status == "in_progress", sa.or_(responses.c.owner.is_(None), responses.c.owner.not_in(alive)))

        def fail(conn: sa.Connection) -> list[str]:
            failed = []
            for row in conn.execute(abandoned).all():
                data = json.loads(row.response)
                data.update(status="failed", error={"code": "server_error", "message": message})
                result = conn.execute(
                    responses.update().where(responses.c.id == row.id, responses.c.status == "in_progress")
                    .values(status="failed", response=json.dumps(data), owner=None))
                if result.rowcount:
                    failed.append(row.id)
            return failed

        return await self.run(fail)

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
            return
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        assert self._thread is not None
        self._thread.shutdown(wait=True)


async def open_store(url: str) -> SqlStore:
    """Connect to ``url``, creating the SQLite file's folder if needed, and migrate."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # One connection, used by the store's one thread: SQLite takes one writer at a time anyway, and
        # concurrent connections turn that into "database is locked" errors under load instead of a short wait.
        sqlite_engine = sa.create_engine(url, poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0,
                                         pool_reset_on_return=None)
        event.listen(sqlite_engine, "connect", _sqlite_pragmas)
        store = SqlStore(sqlite_engine)
    else:
        store = SqlStore(create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True))
    await store.migrate()
    return store
