"""The database a store runs on: SQLAlchemy 2 over SQLite (WAL, the default) or PostgreSQL.

Each operation is written once, as a function of a SQLAlchemy ``Connection`` run inside one transaction, and
:meth:`Database.run` runs it the way its database goes fastest: PostgreSQL through the async engine (asyncpg),
SQLite on one thread of its own holding the one connection, in a single hop per operation.  (With aiosqlite
every statement, the begin and the commit were each a hop to its thread and back: about 1 ms of a stored
response's latency, half of what Parley added to a request.)

A failed statement is classified here, once (:mod:`parley.store.faults`): the request's fault is its 400, the
database's absence a :class:`~parley.errors.StoreUnavailable` (503) that marks the store unavailable until an
operation succeeds again, a statement the database cancelled at the store timeout a
:class:`~parley.errors.StoreTimeout` (504) for that request alone.  Migrations are applied here too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.errors import InvalidRequest, StoreTimeout, StoreUnavailable
from parley.store import checkpoints, faults
from parley.store.migrations import MIGRATIONS, statements_for
from parley.store.tables import migrations_table

log = logging.getLogger("parley.store")
POOL_WAIT_S = 30.0  # how long an operation may wait for one of the pool's connections (load, not failure)
# PostgreSQL: the server cancels a statement at the store timeout (a slow statement, SQLSTATE 57014); the driver
# waits this much longer before it takes the silence for a lost path (no answer at all: unavailable).
NO_ANSWER_GRACE_S = 2.0
SQLITE_PROGRESS_OPS = 10_000  # SQLite: virtual machine steps between two looks at a read's deadline
READERS = 2  # SQLite: reading connections beside the writing one (vector store search)
IDLE_PING_S = 1.0  # PostgreSQL: a pooled connection idle this long is pinged before use
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """The driver Parley uses: Python's sqlite3 for SQLite, asyncpg for PostgreSQL (any spelling)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite+aiosqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def _load_sqlite_vec(dbapi_connection: Any) -> None:
    import sqlite_vec  # vector distances and indexes for vector stores' search

    dbapi_connection.enable_load_extension(True)  # sqlean's build allows it on every platform
    sqlite_vec.load(dbapi_connection)
    dbapi_connection.enable_load_extension(False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, own_checkpoints: bool = False) -> None:
    _load_sqlite_vec(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    if own_checkpoints:  # checkpoints on a thread of their own (parley.store.checkpoints)
        for pragma in checkpoints.WRITER_PRAGMAS:
            cursor.execute(pragma)
    cursor.close()


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """A connection that only reads (vector store search), beside the store's one writing connection."""
    _load_sqlite_vec(dbapi_connection)
    dbapi_connection.execute("PRAGMA query_only=1")


def _transaction(engine: sa.Engine, operation: Callable[[sa.Connection], T]) -> T:
    """``operation`` in one transaction of a (SQLite) engine, on the thread that calls it."""
    with engine.begin() as conn:
        return operation(conn)


def _bounded_transaction(engine: sa.Engine, operation: Callable[[sa.Connection], T], seconds: float) -> T:
    """:func:`_transaction`, interrupted (SQLITE_INTERRUPT) once it has run ``seconds``: SQLite's own statement
    timeout, which it lacks."""
    deadline = time.monotonic() + seconds
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        raw.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_PROGRESS_OPS)
        try:
            return operation(conn)
        finally:
            raw.set_progress_handler(None, 0)


def _db_now(dialect: str) -> Any:
    """The database's clock in epoch seconds: heartbeats and staleness are read on one clock, never on
    each host's own (two hosts whose clocks disagree would otherwise fail each other's responses)."""
    if dialect == "postgresql":
        return sa.extract("epoch", sa.func.clock_timestamp())
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


class Database:
    """One database, its connections and its clock.

    Every operation is bounded by ``timeout_s``: on PostgreSQL the server's statement timeout, the driver's
    connect timeout and its own deadline a little later (and a backstop deadline beyond the wait for a pooled
    connection), on SQLite the busy timeout, and for a read a deadline of its own.
    ``available`` says how the last operation went.
    """

    def __init__(self, engine: AsyncEngine | sa.Engine, timeout_s: float = 5.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.available = True
        self._reachable_since: float | None = None  # (monotonic) since when every operation has reached it
        self._thread = None if isinstance(engine, AsyncEngine) else ThreadPoolExecutor(1, "parley-sqlite")
        self._now = _db_now(engine.dialect.name)
        # SQLite (a file): connections that only read, each on a thread of its own (WAL lets readers run beside
        # the writer and each other); made at the first read.
        self._readers: ThreadPoolExecutor | None = None
        self._read_engine: sa.Engine | None = None
        self.checkpoints: checkpoints.Checkpointer | None = None
        if not isinstance(engine, AsyncEngine) and checkpoints.applies(engine.url):
            self.checkpoints = checkpoints.Checkpointer(engine)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def run(self, operation: Callable[[sa.Connection], T], statements: int = 1) -> T:
        """Run ``operation`` in one transaction and return what it returns; ``statements``: how many statements
        it makes at most (on PostgreSQL each has ``timeout_s``, and the backstop deadline is their sum: a large
        write made of bounded statements is slow, not unavailable)."""
        return await self._classified(self._run(operation, statements))

    async def read(self, operation: Callable[[sa.Connection], T], bounded: bool = True) -> T:
        """Run ``operation``, which only reads: on a SQLite file on a reading connection of its own, so that it
        neither waits for the writer's thread nor makes it wait, and, where ``bounded`` (a request's read, not a
        whole store's embeddings read in the background), interrupted past ``timeout_s``; elsewhere as
        :meth:`run`."""
        if isinstance(self.engine, AsyncEngine) or self.engine.url.database in (None, "", ":memory:"):
            return await self.run(operation)
        if self._read_engine is None:
            self._read_engine = sa.create_engine(
                self.engine.url, module=self.engine.dialect.dbapi, poolclass=sa.pool.QueuePool, pool_size=READERS,
                max_overflow=0, pool_reset_on_return=None,
                connect_args={"timeout": self.timeout_s, "check_same_thread": False})
            event.listen(self._read_engine, "connect", _sqlite_reader_pragmas)
            self._readers = ThreadPoolExecutor(READERS, "parley-sqlite-read")
        work = (partial(_bounded_transaction, self._read_engine, operation, self.timeout_s) if bounded
                else partial(_transaction, self._read_engine, operation))
        return await self._classified(asyncio.get_running_loop().run_in_executor(self._readers, work))

    async def _run(self, operation: Callable[[sa.Connection], T], statements: int = 1) -> T:
        if isinstance(self.engine, AsyncEngine):
            # The driver's connect and statement timeouts come first; this deadline is a backstop for any
            # step they miss, beyond the wait for a pooled connection (busy is not unavailable).
            async with asyncio.timeout(POOL_WAIT_S + (1 + statements) * self.timeout_s + 1):
                async with self.engine.begin() as conn:
                    return await conn.run_sync(operation)
        # a local file: its lock waits are bounded by the busy timeout; waiting for the thread is load
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, operation)

    def _write(self, operation: Callable[[sa.Connection], T]) -> T:
        """On the writing thread: ``operation`` in one transaction, then a look at the log's size."""
        result = _transaction(self.engine, operation)  # type: ignore[arg-type]
        if self.checkpoints is not None:
            self.checkpoints.after_commit()
        return result

    async def _classified(self, work: Awaitable[T]) -> T:
        """``work``'s result; its failure as the request's 400, a slow statement (504), the database's absence
        (503), or as it is."""
        try:
            result = await work
        except Exception as exc:
            fault = faults.classify(exc)
            if fault == "request":
                raise InvalidRequest(f"The database refused what the request holds: {faults.summary(exc)}",
                                     code="invalid_value") from exc
            if fault == "slow":  # the database answered: it is there
                self._reached()
                raise StoreTimeout(f"The database did not finish this request's statement within the store "
                                   f"timeout ({self.timeout_s:g} s); try again.") from exc
            if fault == "other":
                raise
            if self.available:
                log.warning("the database is unavailable: %s: %.300s", type(exc).__name__, exc)
            self.available, self._reachable_since = False, None
            raise StoreUnavailable("The response store is unavailable; try again.") from exc
        self._reached()
        return result

    def _reached(self) -> None:
        self.available = True
        if self._reachable_since is None:
            self._reachable_since = time.monotonic()

    def reachable_for(self, seconds: float) -> bool:
        """Whether this process has reached the database in every operation for the last ``seconds``: only then
        may it take another instance's silence for a stop (after an outage every instance is silent, and a
        live one needs that long to be heard again)."""
        return self._reachable_since is not None and time.monotonic() - self._reachable_since >= seconds

    async def ping(self) -> None:
        """A round trip to the database; raises :class:`StoreUnavailable` when it fails."""
        await self.run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())

    async def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied now."""
        postgres = self.is_postgres
        dialect = self.engine.dialect.name

        def migrate(conn: sa.Connection) -> list[str]:
            # Several processes may start at once (--workers): each migrates in turn, and reads what is applied
            # only once it holds the lock, so none applies a migration another has just applied.
            if postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226537)"))
            else:  # SQLite's write lock, taken before the first read (waiting out the others: the busy timeout)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
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

    async def close(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
            return
        if self.checkpoints is not None:
            await asyncio.to_thread(self.checkpoints.close)
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.dispose)
        assert self._thread is not None
        self._thread.shutdown(wait=True)
        if self._read_engine is not None and self._readers is not None:
            self._read_engine.dispose()
            self._readers.shutdown(wait=True)


def _ping_when_idle(engine: sa.Engine, idle_s: float) -> None:
    """PostgreSQL: a pooled connection is pinged before use only once it has been idle ``idle_s`` seconds, and
    replaced when the ping fails (a database restarted or a proxy that dropped it while it sat in the pool).

    SQLAlchemy's ``pool_pre_ping`` pinged at every checkout: a round trip more in every transaction, 0.4 ms of a
    stored non-streamed response's 3.5-4 ms here (``bench/README.md``, "A stored response on PostgreSQL").  A
    connection used within ``idle_s`` that the database has meanwhile dropped fails its operation instead, which is
    the database's absence (503) for that request, and SQLAlchemy then discards the pool's older connections."""

    @event.listens_for(engine, "checkin")
    def idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["parley.idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("parley.idle_since")  # (none: a new connection; the info goes with the connection)
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces it and checks out again
            raise sa.exc.DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def open_engine(url: str, timeout_s: float, idle_ping_s: float = IDLE_PING_S) -> AsyncEngine | sa.Engine:
    """The engine for ``url``, creating the SQLite file's folder if needed.

    ``timeout_s`` bounds each connection attempt and each statement (PostgreSQL's ``statement_timeout``, with the
    driver's deadline :data:`NO_ANSWER_GRACE_S` later); the SQLite file waits as long for its lock.  A PostgreSQL
    connection idle ``idle_ping_s`` seconds in the pool is pinged before use (:func:`_ping_when_idle`)."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args = {"timeout": timeout_s, "command_timeout": timeout_s + NO_ANSWER_GRACE_S}
        engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_timeout=POOL_WAIT_S,
                                     connect_args=connect_args)
        _ping_when_idle(engine.sync_engine, idle_ping_s)
        # Set on each new connection rather than in its startup packet, which a pooler (PgBouncer) refuses.
        timeout = f"SET statement_timeout = {round(timeout_s * 1000)}"  # (milliseconds)
        event.listen(engine.sync_engine, "connect",
                     lambda dbapi_connection, _record: dbapi_connection.run_async(lambda conn: conn.execute(timeout)))
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    # One connection, used by the store's one thread: SQLite takes one writer at a time anyway, and
    # concurrent connections turn that into "database is locked" errors under load instead of a short wait.
    # sqlean.py: Python's sqlite3 module built with a recent SQLite (FTS5) that may load extensions
    # (sqlite-vec), which many Pythons' own sqlite3 (pyenv's, some distributions') may not.
    import sqlean

    engine = sa.create_engine(url, module=sqlean, poolclass=sa.pool.QueuePool, pool_size=1, max_overflow=0,
                              pool_reset_on_return=None, connect_args={"timeout": timeout_s})
    event.listen(engine, "connect", partial(_sqlite_pragmas, own_checkpoints=checkpoints.applies(parsed)))
    return engine
