"""The SQL store: stored responses on SQLite or PostgreSQL (:mod:`parley.store.database`), written by
:mod:`parley.store.writes` and read, deleted, recovered and swept here.

JSON columns are kept as text written by the engine, so a stored response is returned byte-for-byte as it
was produced and both databases behave the same.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import sqlalchemy as sa
from openai.types.responses import ResponseError

from parley.ids import STORED_ID
from parley.store import usage
from parley.store.base import ABANDONED, NOT_ENDED, TERMINAL, UNSTORED, InputItemsPage, StoredResponse
from parley.store.database import open_engine
from parley.store.lookups import ItemLookups
from parley.store.tables import background, input_items, instances, output_items, response_events, responses
from parley.store.writes import ResponseWrites, record_of

# SQLite's word index of responses' text (parley_response_search, FTS5): a row per ended response, its rowid
# kept in the response's search_rowid (0: nothing to index).  It is written by :meth:`SqlStore.index_text`,
# off the request path: an insert into it cost about a third of a stored response's write.  (PostgreSQL indexes
# a generated tsvector column of the response row instead.)
TEXT_BATCH = 500
_UNINDEXED = sa.select(responses.c.id, responses.c.search_text).where(
    responses.c.search_rowid.is_(None), responses.c.status.in_(TERMINAL)).limit(sa.bindparam("batch"))
_SEARCH_INSERT = "INSERT INTO parley_response_search (search_text) VALUES (?)"
_SEARCH_SET = "UPDATE parley_responses SET search_rowid = ? WHERE id = ? AND search_rowid IS NULL"


class SqlStore(ResponseWrites, ItemLookups):
    """:class:`parley.store.base.Store` over PostgreSQL (an async engine) or SQLite (a sync engine on its thread):
    a response's writes (:class:`~parley.store.writes.ResponseWrites`), its reads and deletes, the liveness of
    instances and the recovery of what a stopped one left, and retention."""

    async def get(self, response_id: str, tenant: str = "") -> StoredResponse | None:
        if not STORED_ID.fullmatch(response_id):  # not an id at all (PostgreSQL refuses a NUL in any string)
            return None
        query = sa.select(responses).where(responses.c.id == response_id, responses.c.tenant == tenant)
        row = await self.run(lambda conn: conn.execute(query).first())
        return None if row is None else record_of(row)

    async def delete(self, response_id: str, tenant: str = "") -> bool:
        if not STORED_ID.fullmatch(response_id):
            return False

        def delete(conn: sa.Connection) -> bool:
            _delete_search(conn, [response_id], tenant)
            result = conn.execute(responses.delete().where(responses.c.id == response_id, responses.c.tenant == tenant))
            if result.rowcount == 0:
                return False
            _delete_dependents(conn, [response_id])
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
        if not STORED_ID.fullmatch(response_id):
            return None

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
        now = self._now

        def beat(conn: sa.Connection) -> None:
            updated = conn.execute(instances.update().where(instances.c.id == instance).values(heartbeat_at=now))
            if updated.rowcount == 0:
                conn.execute(instances.insert().values(id=instance, heartbeat_at=now))

        await self.run(beat)

    async def forget_instance(self, instance: str) -> None:
        await self.run(lambda conn: conn.execute(instances.delete().where(instances.c.id == instance)))

    async def fail_abandoned(self, stale_s: float, instance: str | None = None,
                             running: frozenset[str] = frozenset(), others: bool = True) -> list[str]:
        """Fail the ``in_progress`` responses that no live instance runs: with ``others``, those of instances
        silent for ``stale_s`` (and of none); always ``instance``'s own that are not in ``running``."""
        alive = sa.select(instances.c.id).where(instances.c.heartbeat_at >= self._now - stale_s)
        whose = sa.or_(responses.c.owner.is_(None), responses.c.owner.not_in(alive), responses.c.owner == instance) \
            if others else responses.c.owner == instance
        abandoned = sa.select(responses.c.id, responses.c.owner, responses.c.response, responses.c.tenant,
                              responses.c.created_at, responses.c.model).where(responses.c.status == "in_progress", whose)

        def fail(conn: sa.Connection) -> list[str]:
            failed, ended = [], []
            for row in conn.execute(abandoned).all():
                own = row.owner == instance
                if own and row.id in running:
                    continue  # this instance is still running it
                data = json.loads(row.response)
                error = ResponseError(code="server_error", message=UNSTORED if own else ABANDONED)
                data.update(status="failed", error=error.model_dump(mode="json"))
                result = conn.execute(
                    responses.update().where(responses.c.id == row.id, responses.c.status == "in_progress")
                    .values(status="failed", response=json.dumps(data), owner=None, error_code=error.code,
                            ended_at=time.time()))
                if result.rowcount:
                    failed.append(row.id)
                    ended.append(usage.Ended(row.tenant, row.created_at, True, row.model, error_code=error.code))
            usage.count(conn, ended)
            return failed

        return await self.run(fail)

    async def sweep(self, before: float, batch: int = 500) -> int:
        """Delete responses that ended before ``before`` (epoch seconds), with their items, a batch per
        transaction; the number deleted.  A queued or running response is never touched, however old."""
        def sweep(conn: sa.Connection) -> int:
            ids = list(conn.execute(sa.select(responses.c.id).where(
                responses.c.created_at < before, responses.c.status.not_in(NOT_ENDED),
                sa.func.coalesce(responses.c.ended_at, responses.c.created_at) < before)
                .limit(batch)).scalars())
            if ids:
                _delete_dependents(conn, ids)
                _delete_search(conn, ids)
                conn.execute(responses.delete().where(responses.c.id.in_(ids)))
            return len(ids)

        total = 0
        while deleted := await self.run(sweep):
            total += deleted
        return total

    async def index_text(self, batch: int = TEXT_BATCH) -> int:
        """Add up to ``batch`` ended responses to SQLite's word index; the number added (0 on PostgreSQL,
        whose index is kept by the database)."""
        if not self._driver_sql:
            return 0

        def index(conn: sa.Connection) -> int:
            driver = self._driver(conn)
            # The write lock first (a no-op update takes it, waiting out other writers): a transaction that read
            # first could not write after another process's commit, and two processes never index a row twice.
            driver.execute("UPDATE parley_responses SET search_rowid = NULL WHERE 0")
            rows = conn.execute(_UNINDEXED, {"batch": batch}).all()
            for response_id, text in rows:
                rowid = driver.execute(_SEARCH_INSERT, (text,)).lastrowid if text else 0
                driver.execute(_SEARCH_SET, (rowid, response_id))
            return len(rows)

        return await self.run(index)


def _delete_search(conn: sa.Connection, ids: list[str], tenant: str | None = None) -> None:
    """SQLite's word-index rows of these responses (of ``tenant``'s, when given); before the responses go."""
    if conn.dialect.name != "sqlite":
        return
    owned = " AND tenant = :tenant" if tenant is not None else ""
    conn.execute(sa.text("DELETE FROM parley_response_search WHERE rowid IN (SELECT search_rowid FROM "
                         f"parley_responses WHERE id IN :ids{owned})").bindparams(sa.bindparam("ids", expanding=True)),
                 {"ids": ids, "tenant": tenant})


def _delete_dependents(conn: sa.Connection, ids: list[str]) -> None:
    """The rows that belong to these responses: their items, background job and kept events."""
    for table in (input_items, output_items, background, response_events):
        conn.execute(table.delete().where(table.c.response_id.in_(ids)))


async def open_store(url: str, timeout_s: float = 5.0) -> SqlStore:
    """Connect to ``url`` (see :func:`~parley.store.database.open_engine`) and migrate."""
    store = SqlStore(open_engine(url, timeout_s), timeout_s)
    await store.migrate()
    return store
