"""The SQL store: SQLAlchemy 2 async on SQLite (WAL, the default) or PostgreSQL.

JSON columns are kept as text written by the engine, so a stored response is returned
byte-for-byte as it was produced and both databases behave the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

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


def normalize_url(url: str) -> str:
    """Pick the async driver for plain ``sqlite://`` and ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
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
    """:class:`parley.store.base.Store` over one SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now."""
        applied_now: list[str] = []
        async with self.engine.begin() as conn:
            if self.is_postgres:  # several processes may start at once
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226537)"))
            await conn.run_sync(lambda c: migrations_table.create(c, checkfirst=True))
            done = set((await conn.execute(sa.select(migrations_table.c.name))).scalars())
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements:
                    await conn.execute(sa.text(statement))
                await conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
                applied_now.append(name)
        return applied_now

    async def create(self, record: StoredResponse) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_INSERT_RESPONSE, {
                "id": record.id, "tenant": record.tenant, "created_at": record.created_at, "status": record.status,
                "previous_response_id": record.previous_response_id, "response": record.serialized(),
                "messages": json.dumps(record.messages), "owner": record.owner,
            })
            if record.input_items:
                await conn.execute(_INSERT_ITEM, [
                    {"response_id": record.id, "position": i, "item_id": item["id"], "item": json.dumps(item)}
                    for i, item in enumerate(record.input_items)
                ])

    async def finish(self, record: StoredResponse) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_FINISH_RESPONSE, {
                "rid": record.id, "status": record.status, "response": record.serialized(),
                "messages": json.dumps(record.messages),
            })

    async def progress(self, record: StoredResponse) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_PROGRESS_RESPONSE, {
                "rid": record.id, "response": record.serialized(), "messages": json.dumps(record.messages),
            })

    async def get(self, response_id: str, tenant: str = "") -> StoredResponse | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                sa.select(responses).where(responses.c.id == response_id, responses.c.tenant == tenant)
            )).first()
        if row is None:
            return None
        return StoredResponse(
            id=row.id, tenant=row.tenant, created_at=row.created_at, status=row.status,
            previous_response_id=row.previous_response_id, response=json.loads(row.response),
            messages=json.loads(row.messages), response_json=row.response,
        )

    async def delete(self, response_id: str, tenant: str = "") -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                responses.delete().where(responses.c.id == response_id, responses.c.tenant == tenant)
            )
            if result.rowcount == 0:
                return False
            await conn.execute(input_items.delete().where(input_items.c.response_id == response_id))
        return True

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
        async with self.engine.connect() as conn:
            exists = (await conn.execute(
                sa.select(responses.c.id).where(responses.c.id == response_id, responses.c.tenant == tenant)
            )).first()
            if exists is None:
                return None
            rows = (await conn.execute(
                sa.select(input_items.c.item_id, input_items.c.item)
                .where(input_items.c.response_id == response_id)
                .order_by(input_items.c.position.asc() if order == "asc" else input_items.c.position.desc())
            )).all()
        ids = [row.item_id for row in rows]
        start = ids.index(after) + 1 if after in ids else 0
        end = ids.index(before) if before in ids else len(ids)
        window = rows[start:end]
        return InputItemsPage(data=[json.loads(row.item) for row in window[:limit]], has_more=len(window) > limit)

    async def heartbeat(self, instance: str) -> None:
        now = time.time()
        async with self.engine.begin() as conn:
            updated = await conn.execute(instances.update().where(instances.c.id == instance).values(heartbeat_at=now))
            if updated.rowcount == 0:
                await conn.execute(instances.insert().values(id=instance, heartbeat_at=now))

    async def forget_instance(self, instance: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(instances.delete().where(instances.c.id == instance))

    async def fail_abandoned(self, alive_since: float, message: str) -> list[str]:
        alive = sa.select(instances.c.id).where(instances.c.heartbeat_at >= alive_since)
        abandoned = sa.select(responses.c.id, responses.c.response).where(
            responses.c.status == "in_progress", sa.or_(responses.c.owner.is_(None), responses.c.owner.not_in(alive)))
        failed = []
        async with self.engine.begin() as conn:
            for row in (await conn.execute(abandoned)).all():
                data = json.loads(row.response)
                data.update(status="failed", error={"code": "server_error", "message": message})
                result = await conn.execute(
                    responses.update().where(responses.c.id == row.id, responses.c.status == "in_progress")
                    .values(status="failed", response=json.dumps(data), owner=None))
                if result.rowcount:
                    failed.append(row.id)
        return failed

    async def close(self) -> None:
        await self.engine.dispose()


async def open_store(url: str) -> SqlStore:
    """Connect to ``url``, creating the SQLite file's folder if needed, and migrate."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite takes one writer at a time anyway, and concurrent connections
        # turn that into "database is locked" errors under load instead of a short wait.
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60, pool_reset_on_return=None)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    store = SqlStore(engine)
    await store.migrate()
    return store
