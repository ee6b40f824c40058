"""The SQL store: SQLAlchemy 2 on SQLite (WAL, the default) or PostgreSQL.

JSON columns are kept as text written by the engine, so a stored response is returned
byte-for-byte as it was produced and both databases behave the same.

Each operation is written once, as a function of a SQLAlchemy ``Connection`` run inside one
transaction, and :meth:`SqlStore.run` runs it the way its database goes fastest:
PostgreSQL through the async engine (asyncpg), SQLite on one thread of its own holding the
one connection, in a single hop per operation.  (With aiosqlite every statement, the begin
and the commit were each a hop to its thread and back: about 1 ms of a stored response's
latency, half of what Parley added to a request.)

A response's writes are grouped (``SqlStore._grouped``): those that arrive while another is being committed
share the next transaction, so a busy store pays one ``BEGIN``/``COMMIT`` and one sum of usage counts for
many responses, and each caller still returns only once its own write is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
import sqlean
from openai.types.responses import ResponseError
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.errors import InvalidRequest, StoreUnavailable
from parley.ids import STORED_ID
from parley.store.base import ABANDONED, NO_FACTS, NOT_ENDED, TERMINAL, UNSTORED, InputItemsPage, StoredResponse
from parley.store import faults, usage
from parley.store.lookups import ItemLookups
from parley.store.migrations import MIGRATIONS, statements_for
from parley.store.tables import (background, input_items, instances, migrations_table, output_items,
                                 response_events, responses)

log = logging.getLogger("parley.store")

# Built once: constructing statements per call showed up in profiles of the request path.
_INSERT_RESPONSE = responses.insert()
_INSERT_ITEM = input_items.insert()
_INSERT_OUTPUT_ID = output_items.insert()
# A final state is written once: every write to a stored response is conditional on its still running.
_UPDATE_RUNNING = responses.update().where(responses.c.id == sa.bindparam("rid"), responses.c.status == "in_progress")


def _sqlite_text(statement: Any, **values: Any) -> str:
    """A statement as SQLite text with named parameters, compiled once."""
    from sqlalchemy.dialects import sqlite

    compiled = statement.values(**values) if values else statement
    return str(compiled.compile(dialect=sqlite.dialect(paramstyle="named")))


# The same statements as SQLite text, which the request path runs on the driver's own connection inside the
# transaction SQLAlchemy opened: a stored response's insert (response, input item, output id) took 400 µs
# through SQLAlchemy's execution layer and 270 µs this way, in a loop of 2,000 on this project's 2-core machine.
_RUNNING_TEXT = responses.update().where(responses.c.id == sa.bindparam("rid"),
                                         responses.c.status == sa.literal_column("'in_progress'"))
_HOT_SQLITE = {
    "insert_response": _sqlite_text(_INSERT_RESPONSE, **{c.name: sa.bindparam(c.name) for c in responses.c}),
    "insert_item": _sqlite_text(_INSERT_ITEM, **{c.name: sa.bindparam(c.name) for c in input_items.c}),
    "insert_output": _sqlite_text(_INSERT_OUTPUT_ID, **{c.name: sa.bindparam(c.name) for c in output_items.c}),
    "update_running": _sqlite_text(_RUNNING_TEXT, response=sa.bindparam("response"),
                                   messages=sa.bindparam("messages"), call_ids=sa.bindparam("call_ids"),
                                   trace=sa.bindparam("trace")),
    "finish_running": _sqlite_text(_RUNNING_TEXT, response=sa.bindparam("response"),
                                   messages=sa.bindparam("messages"), call_ids=sa.bindparam("call_ids"),
                                   status=sa.bindparam("status"),
                                   **{name: sa.bindparam(name) for name in NO_FACTS.columns()}),
}
# SQLite's word index of responses' text (parley_response_search, FTS5): a row per ended response, its rowid
# kept in the response's search_rowid (0: nothing to index).  It is written by :meth:`SqlStore.index_text`,
# off the request path: an insert into it cost about a third of a stored response's write.  (PostgreSQL indexes
# a generated tsvector column of the response row instead.)
TEXT_BATCH = 500
_UNINDEXED = sa.select(responses.c.id, responses.c.search_text).where(
    responses.c.search_rowid.is_(None), responses.c.status.in_(TERMINAL)).limit(sa.bindparam("batch"))
_SEARCH_INSERT = "INSERT INTO parley_response_search (search_text) VALUES (?)"
_SEARCH_SET = "UPDATE parley_responses SET search_rowid = ? WHERE id = ? AND search_rowid IS NULL"
_CORE = {"insert_response": _INSERT_RESPONSE, "insert_item": _INSERT_ITEM, "insert_output": _INSERT_OUTPUT_ID,
         "update_running": _UPDATE_RUNNING, "finish_running": _UPDATE_RUNNING}
GROUP_MAX = 64  # writes committed in one transaction at most (group commit)
POOL_WAIT_S = 30.0  # how long an operation may wait for one of the pool's connections (load, not failure)


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
    import sqlite_vec  # vector distances for vector stores' search

    dbapi_connection.enable_load_extension(True)  # sqlean's build allows it on every platform
    sqlite_vec.load(dbapi_connection)
    dbapi_connection.enable_load_extension(False)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _db_now(dialect: str) -> Any:
    """The database's clock in epoch seconds: heartbeats and staleness are read on one clock, never on
    each host's own (two hosts whose clocks disagree would otherwise fail each other's responses)."""
    if dialect == "postgresql":
        return sa.extract("epoch", sa.func.clock_timestamp())
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


class SqlStore(ItemLookups):
    """:class:`parley.store.base.Store` over PostgreSQL (an async engine) or SQLite (a sync engine on its thread).

    Every operation is bounded by ``timeout_s``: on PostgreSQL the driver's connect and statement timeouts
    (and a backstop deadline beyond the wait for a pooled connection), on SQLite the busy timeout.  A failure
    of the database or of the path to it is raised as :class:`~parley.errors.StoreUnavailable`;
    ``available`` says how the last operation went.
    """

    def __init__(self, engine: AsyncEngine | sa.Engine, timeout_s: float = 5.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.available = True
        self._reachable_since: float | None = None  # (monotonic) since when every operation has reached it
        self._thread = None if isinstance(engine, AsyncEngine) else ThreadPoolExecutor(1, "parley-sqlite")
        self._driver_sql = engine.dialect.name == "sqlite"  # the hot statements on the driver (see _HOT_SQLITE)
        self._now = _db_now(engine.dialect.name)
        self.text_pending = asyncio.Event()  # set when a response ended: there is text to index (SQLite)
        # Group commit (see _grouped): whether a response's write is being committed, the writes waiting for
        # the next transaction, and the task that commits them.
        self._committing = False
        self._next_group: list[tuple[Callable[[sa.Connection, list[usage.Ended]], Any], asyncio.Future[Any]]] = []
        self._group_task: asyncio.Task[None] | None = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def run(self, operation: Callable[[sa.Connection], T]) -> T:
        """Run ``operation`` in one transaction and return what it returns."""
        try:
            if isinstance(self.engine, AsyncEngine):
                # The driver's connect and statement timeouts come first; this deadline is a backstop for any
                # step they miss, beyond the wait for a pooled connection (busy is not unavailable).
                async with asyncio.timeout(POOL_WAIT_S + 2 * self.timeout_s + 1):
                    async with self.engine.begin() as conn:
                        result = await conn.run_sync(operation)
            else:  # a local file: its lock waits are bounded by the busy timeout; waiting for the thread is load
                result = await asyncio.get_running_loop().run_in_executor(self._thread, self._transaction, operation)
        except Exception as exc:
            fault = faults.classify(exc)
            if fault == "request":
                raise InvalidRequest(f"The database refused what the request holds: {faults.summary(exc)}",
                                     code="invalid_value") from exc
            if fault == "other":
                raise
            if self.available:
                log.warning("the database is unavailable: %s: %.300s", type(exc).__name__, exc)
            self.available, self._reachable_since = False, None
            raise StoreUnavailable("The response store is unavailable; try again.") from exc
        self.available = True
        if self._reachable_since is None:
            self._reachable_since = time.monotonic()
        return result

    def reachable_for(self, seconds: float) -> bool:
        """Whether this process has reached the database in every operation for the last ``seconds``: only then
        may it take another instance's silence for a stop (after an outage every instance is silent, and a
        live one needs that long to be heard again)."""
        return self._reachable_since is not None and time.monotonic() - self._reachable_since >= seconds

    def _transaction(self, operation: Callable[[sa.Connection], T]) -> T:
        assert isinstance(self.engine, sa.Engine)
        with self.engine.begin() as conn:
            return operation(conn)

    async def ping(self) -> None:
        """A round trip to the database; raises :class:`StoreUnavailable` when it fails."""
        await self.run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    async def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now."""
        postgres = self.is_postgres
        dialect = self.engine.dialect.name

        def migrate(conn: sa.Connection) -> list[str]:
            if postgres:  # several processes may start at once
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226537)"))
            migrations_table.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(migrations_table.c.name)).scalars())
            applied_now = []
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements_for(statements, dialect):
                    conn.execute(sa.text(statement))
                conn.execute(migrations_table.insert().values(name=name, applied_at=time.time()))
                applied_now.append(name)
            return applied_now

        return await self.run(migrate)

    async def create(self, record: StoredResponse) -> StoredResponse | None:
        try:
            await self._grouped(self._insert(record))
        except (sa.exc.IntegrityError, sqlean.IntegrityError):  # a retried write whose first try landed
            return await self.run(lambda conn: self._winner(conn, record.id, record.serialized()))
        if record.status in TERMINAL:
            self.text_pending.set()
        return None

    async def _grouped(self, write: Callable[[sa.Connection, list[usage.Ended]], T]) -> T:
        """Run a response's write in a transaction of its own, or, while one is being committed, in the next
        transaction with the writes that arrive meanwhile (group commit: one ``BEGIN``/``COMMIT``, one flush of
        the log and one sum of usage counts for all of them).  Each caller returns once its own write is
        committed, so a response is still stored before its terminal event; an idle store adds no wait."""
        if self._committing:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._next_group.append((write, future))
            return await future
        self._committing = True
        try:
            return await self._alone(write)
        finally:
            if self._next_group:
                self._group_task = asyncio.create_task(self._commit_groups())
            else:
                self._committing = False

    async def _commit_groups(self) -> None:
        try:
            while self._next_group:
                group, self._next_group = self._next_group[:GROUP_MAX], self._next_group[GROUP_MAX:]
                await self._commit_group(group)
        finally:
            for _, future in self._next_group:  # (only when this task itself was cancelled: the store closes)
                _settle(future, exception=StoreUnavailable("The response store is closing; try again."))
            self._next_group, self._committing = [], False

    async def _commit_group(self, group: list[tuple[Callable[[sa.Connection, list[usage.Ended]], Any],
                                                    asyncio.Future[Any]]]) -> None:
        try:
            results = await self.run(lambda conn: self._counted(conn, [write for write, _ in group]))
        except StoreUnavailable as exc:  # each caller retries its own write, as after a write of its own
            for _, future in group:
                _settle(future, exception=StoreUnavailable(str(exc)))
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exception=exc)
                return
            # One write's own fault (a retried write whose first try landed) rolled back the whole group: each
            # write again in a transaction of its own, so the others land and that one gets its own error.
            for write, future in group:
                try:
                    result = await self._alone(write)
                except Exception as own:
                    _settle(future, exception=own)
                else:
                    _settle(future, result)
        except BaseException:  # cancelled: the store closes
            for _, future in group:
                _settle(future, exception=StoreUnavailable("The response store is closing; try again."))
            raise
        else:
            for (_, future), result in zip(group, results):
                _settle(future, result)

    async def _alone(self, write: Callable[[sa.Connection, list[usage.Ended]], T]) -> T:
        """Run one response's write in a transaction of its own."""
        return (await self.run(lambda conn: self._counted(conn, [write])))[0]

    def _counted(self, conn: sa.Connection, writes: list[Callable[[sa.Connection, list[usage.Ended]], T]]) -> list[T]:
        """Run ``writes`` on ``conn``, then add the responses they ended to the usage counts, all at once."""
        ended: list[usage.Ended] = []
        results = [write(conn, ended) for write in writes]
        if ended:
            usage.count(conn, ended, self._driver(conn))
        return results

    def _driver(self, conn: sa.Connection) -> Any:
        """SQLite's own connection under ``conn`` (the request path's statements run there), else ``None``."""
        return conn.connection.driver_connection if self._driver_sql else None

    def _hot(self, conn: sa.Connection, name: str, parameters: Any) -> int:
        """Run one of the request path's statements (a dict of parameters, or a list of them); its rowcount."""
        driver = self._driver(conn)
        if driver is None:
            return conn.execute(_CORE[name], parameters).rowcount
        if isinstance(parameters, list):
            return driver.executemany(_HOT_SQLITE[name], parameters).rowcount
        return driver.execute(_HOT_SQLITE[name], parameters).rowcount

    def inserter(self, record: StoredResponse) -> Callable[[sa.Connection], None]:
        """The insert of a response with its items, as an operation (a queued background response adds its
        own rows to the same transaction)."""
        insert = self._insert(record)
        return lambda conn: self._counted(conn, [insert])[0]

    def _insert(self, record: StoredResponse) -> Callable[[sa.Connection, list[usage.Ended]], None]:
        """The insert of a response with its items; it adds the response to ``ended`` when it ended."""
        # The rows are serialized here, on the caller's thread: the store's thread only runs SQL.
        row = {"id": record.id, "tenant": record.tenant, "created_at": record.created_at, "status": record.status,
               "previous_response_id": record.previous_response_id, "response": record.serialized(),
               "messages": json.dumps(record.messages), "owner": record.owner, "call_ids": _call_ids(record),
               **(record.facts or NO_FACTS).columns(), "search_rowid": None}
        items = [{"response_id": record.id, "position": i, "item_id": item["id"], "item": json.dumps(item)}
                 for i, item in enumerate(record.input_items)]

        outputs = _output_rows(record) if record.status != "in_progress" else []
        ended = _ended(record)

        def create(conn: sa.Connection, counted: list[usage.Ended]) -> None:
            self._hot(conn, "insert_response", row)
            if ended is not None:
                counted.append(ended)
            if items:
                self._hot(conn, "insert_item", items)
            if outputs:
                self._hot(conn, "insert_output", outputs)

        return create

    async def finish(self, record: StoredResponse) -> StoredResponse | None:
        parameters = self._update_parameters(record, status=record.status, **(record.facts or NO_FACTS).columns())
        outputs = _output_rows(record)
        ended = _ended(record)

        def finish(conn: sa.Connection, counted: list[usage.Ended]) -> StoredResponse | None:
            if self._hot(conn, "finish_running", parameters):
                if outputs:
                    self._hot(conn, "insert_output", outputs)
                if ended is not None:
                    counted.append(ended)
                return None
            return self._winner(conn, record.id, parameters["response"])

        try:
            return await self._grouped(finish)
        finally:
            self.text_pending.set()

    @staticmethod
    def _winner(conn: sa.Connection, response_id: str, ours: str) -> StoredResponse | None:
        """After a write that changed nothing: ``None`` when the stored row is already this write (a retry
        whose first try landed), else the stored final state, which stays."""
        row = conn.execute(sa.select(responses).where(responses.c.id == response_id)).first()
        if row is None or row.response == ours:
            return None
        return _record(row)

    async def progress(self, record: StoredResponse) -> None:
        parameters = self._update_parameters(record)
        await self.run(lambda conn: self._hot(conn, "update_running", parameters))

    @staticmethod
    def _update_parameters(record: StoredResponse, **values: Any) -> dict[str, Any]:
        return {"rid": record.id, "response": record.serialized(), "messages": json.dumps(record.messages),
                "call_ids": _call_ids(record), "trace": (record.facts or NO_FACTS).trace, **values}

    async def get(self, response_id: str, tenant: str = "") -> StoredResponse | None:
        if not STORED_ID.fullmatch(response_id):  # not an id at all (PostgreSQL refuses a NUL in any string)
            return None
        query = sa.select(responses).where(responses.c.id == response_id, responses.c.tenant == tenant)
        row = await self.run(lambda conn: conn.execute(query).first())
        return None if row is None else _record(row)

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

    async def close(self) -> None:
        if self._group_task is not None:  # the writes already handed to it land first
            await asyncio.gather(self._group_task, return_exceptions=True)
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
            return
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        assert self._thread is not None
        self._thread.shutdown(wait=True)


def _settle(future: asyncio.Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # its caller was cancelled; the write itself went on
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _delete_search(conn: sa.Connection, ids: list[str], tenant: str | None = None) -> None:
    """SQLite's word-index rows of these responses (of ``tenant``'s, when given); before the responses go."""
    if conn.dialect.name != "sqlite":
        return
    owned = " AND tenant = :tenant" if tenant is not None else ""
    conn.execute(sa.text("DELETE FROM parley_response_search WHERE rowid IN (SELECT search_rowid FROM "
                         f"parley_responses WHERE id IN :ids{owned})").bindparams(sa.bindparam("ids", expanding=True)),
                 {"ids": ids, "tenant": tenant})


def _ended(record: StoredResponse) -> usage.Ended | None:
    """What the overview counts of a final state written now (nothing for a running or queued one)."""
    if record.status not in TERMINAL:
        return None
    facts = record.facts or NO_FACTS
    return usage.Ended(record.tenant, record.created_at, record.status == "failed", facts.model,
                       facts.input_tokens or 0, facts.output_tokens or 0, facts.duration_ms, facts.error_code)


def _delete_dependents(conn: sa.Connection, ids: list[str]) -> None:
    """The rows that belong to these responses: their items, background job and kept events."""
    for table in (input_items, output_items, background, response_events):
        conn.execute(table.delete().where(table.c.response_id.in_(ids)))


def _output_rows(record: StoredResponse) -> list[dict[str, Any]]:
    return [{"response_id": record.id, "position": i, "item_id": item_id}
            for i, item_id in enumerate(record.output_ids) if item_id]


def _call_ids(record: StoredResponse) -> str | None:
    return json.dumps(record.call_ids) if record.call_ids else None


def _record(row: Any) -> StoredResponse:
    return StoredResponse(
        id=row.id, tenant=row.tenant, created_at=row.created_at, status=row.status,
        previous_response_id=row.previous_response_id, response_json=row.response, messages=json.loads(row.messages),
        call_ids=json.loads(row.call_ids) if row.call_ids else {},
    )


async def open_store(url: str, timeout_s: float = 5.0) -> SqlStore:
    """Connect to ``url``, creating the SQLite file's folder if needed, and migrate.

    ``timeout_s`` bounds each connection attempt and each statement; the SQLite file waits as long for
    its lock."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # One connection, used by the store's one thread: SQLite takes one writer at a time anyway, and
        # concurrent connections turn that into "database is locked" errors under load instead of a short wait.
        # sqlean.py: Python's sqlite3 module built with a recent SQLite (FTS5) that may load extensions
        # (sqlite-vec), which many Pythons' own sqlite3 (pyenv's, some distributions') may not.
        import sqlean

        sqlite_engine = sa.create_engine(url, module=sqlean, poolclass=sa.pool.QueuePool, pool_size=1,
                                         max_overflow=0, pool_reset_on_return=None,
                                         connect_args={"timeout": timeout_s})
        event.listen(sqlite_engine, "connect", _sqlite_pragmas)
        store = SqlStore(sqlite_engine, timeout_s)
    else:
        store = SqlStore(create_async_engine(
            url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_timeout=POOL_WAIT_S,
            connect_args={"timeout": timeout_s, "command_timeout": timeout_s}), timeout_s)
    await store.migrate()
    return store
