"""PostgreSQL with pgvector, with ``--bm25-index``: the keyword half of a search as BM25 over an index, so that it
reads the best chunks from the index instead of ranking every chunk that holds one of the query's words. At
975,015 chunks it took a hybrid search from 114.8 to 43.8-51.7 ms p50 (the keyword half from 91.2 to 36 ms). A
new chunk's entry in the sparse HNSW index costs about 3 ms of the database's CPU (its graph search), so it is
not made while the chunks are written: ingestion into an indexed store ran at 457 chunks per second from an empty
store at 30,000, against 186 with the entries made in the write and 826 without the index. Off by default
(bench/README.md).

Each chunk's words (its ``tsv`` lexemes) are also a pgvector ``sparsevec`` in ``parley_bm25_chunks``: one
dimension per lexeme (``parley_bm25_terms`` numbers them), holding the lexeme's BM25 term weight in the chunk,
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))``. A query is the sparse vector of its
lexemes' inverse document frequencies, ``ln(1 + (N - n + 0.5) / (n + 0.5))``, so that the inner product of the two
is the chunk's BM25 score, and an HNSW index (inner product) finds the best ones.

Triggers keep it in step whichever process writes the chunks: a statement that inserts chunks counts their
lexemes (``parley_bm25_terms.chunks``, and the totals in ``parley_bm25_totals``) and writes their weights; one
that deletes chunks takes their counts and weights back. A chunk keeps the weights of the average length when it was
written. HNSW on ``sparsevec`` takes at most 1,000 non-zero dimensions: a chunk with more distinct lexemes keeps its
1,000 heaviest. Once the index exists, the weights a write makes wait beside it in ``parley_bm25_pending``: a search
reads the index's best and the waiting weights that hold one of its words (exactly, in one snapshot), and every
process moves the waiting weights into the index in the background, a batch per transaction, oldest first (rows
another process is moving are skipped). While more than ``PENDING_SEARCH_MAX`` wait, the keyword half ranks as it
does without the index.

The first start with the setting writes the weights of the chunks stored before (in the background, a batch per
transaction) and then builds the index over them in one pass (``CREATE INDEX CONCURRENTLY``, so that chunks are
written meanwhile; one process builds, under an advisory lock). Building the graph in memory costs a sixth or less of
growing it by inserts, given the memory: the build asks for ``maintenance_work_mem`` of about 1.25 KB a chunk, 4
GiB at most. Until then the keyword half is searched as before. A build cut off leaves the index invalid; the next
start takes it away and builds it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from parley.store.faults import classify, sqlstate
from parley.store.pg_bm25_sql import (ALL_WRITTEN, BM25, COUNT_PENDING, DIMS, FILL, INDEX, INDEX_VALID, LAST_ID,
                                      MEMORY, MOVE, PENDING, SETUP, TERMS, TOTAL, SparseVec)

log = logging.getLogger("parley.store")
FILL_BATCH = 1000  # chunks a start-up fill writes per transaction before the index is built
INDEXED_BATCH = 128  # and once it is (into the pending table, beside the index)
MOVE_BATCH = 64  # waiting weights moved into the index per transaction (each entry's graph search takes milliseconds)
MOVE_IDLE_S = 1.0  # how often the background move looks for waiting weights when it found none
PENDING_SEARCH_MAX = 20_000  # waiting weights searched exactly beside the index; above, the keyword half ranks as
# it does without the index until the background move has caught up
WAITING_READ = 4  # a search reads the best pool * this of the waiting weights, and all of them only where the
# scope (another store's chunks, a filter) kept fewer than pool of those
FILL_WINDOW = 20_000  # chunk ids a start-up fill looks at per transaction
EF_SEARCH = 400  # HNSW candidates per search: 0.76 of the exact BM25 top 10 at 975,015 chunks (200: 0.71, 1000: 0.84)
SETUP_LOCK = 7226540  # (a transaction's advisory lock: instances starting together make the tables in turn)
BUILD_LOCK = 7226541  # (a session's advisory lock: one process builds)
BUILD_BYTES_PER_CHUNK = 1280  # the graph in memory: a chunk's vector (about 280 bytes) and its neighbours
BUILD_MEMORY_CAP = 4 << 30  # the most maintenance_work_mem a build asks for (a little over 3 million chunks)
BUILD_TIMEOUT_S = 24 * 3600
BUILD_WAIT_S = 5.0  # how often a process that does not build looks whether another one has
RETRY_S = 30.0  # after a failed fill


def _all_written(conn: sa.Connection) -> bool:
    """Whether every chunk has its weights, where counting the chunks is quick (an index-only scan: 80 ms at a
    million); ``False`` where it takes over a second (a table not vacuumed since a bulk load), as if some had not."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text("SET LOCAL statement_timeout = '1s'"))
            return bool(conn.execute(ALL_WRITTEN).scalar())
    except sa.exc.DBAPIError as exc:
        if classify(exc) != "slow":  # (cancelled at that timeout)
            raise
        return False


async def _write_missing(store: Any, batch: int) -> None:
    """Write the weights of every chunk stored without them, a batch per transaction (chunks stored from now on
    are written by the triggers)."""
    end = await store.read(lambda conn: conn.execute(LAST_ID).scalar())
    after = 0
    while after < end:
        row = await store.run(partial(_fill_after, after, batch))
        after = row.last if row.n == batch else after + FILL_WINDOW


def _fill_after(after: int, batch: int, conn: sa.Connection) -> Any:
    return conn.execute(FILL, {"after": after, "window": FILL_WINDOW, "batch": batch}).one()


async def _vacuum_pending(store: Any) -> None:
    """The waiting weights' table without the rows moved out of it (a read of it reads every page it still has: a
    drained table of 15,600 moved rows took 5.8 ms to read empty)."""
    async with store.engine.connect() as conn:
        await (await conn.get_raw_connection()).driver_connection.execute("VACUUM parley_bm25_pending")


def _drop(conn: sa.Connection) -> None:
    if conn.execute(sa.text("SELECT to_regclass('parley_bm25_totals')")).scalar() is None:
        return
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})"))
    for statement in ("DROP TRIGGER IF EXISTS parley_bm25_ai ON parley_vector_store_chunks",
                      "DROP TRIGGER IF EXISTS parley_bm25_ad ON parley_vector_store_chunks",
                      "DROP TABLE IF EXISTS parley_bm25_chunks, parley_bm25_pending, parley_bm25_terms, "
                      "parley_bm25_totals",
                      "DROP FUNCTION IF EXISTS parley_bm25_added(), parley_bm25_forget(), parley_bm25_index(BIGINT[])"):
        conn.execute(sa.text(statement))
    log.info("BM25 keyword index taken away (--bm25-index is off)")


class PgBm25:
    def __init__(self) -> None:
        self.enabled = False  # the tables and the triggers exist (the index is built by fill)
        self.ready = False  # and every chunk's weights are written: the keyword half searches the index
        self.pending = 0  # weights waiting beside the index, as last counted by this process's background move
        self._serial = False  # build the index without parallel workers (a parallel build failed)

    async def prepare(self, store: Any, pgvector_enabled: bool, wanted: bool) -> None:
        """Make the tables and triggers (pgvector only; then :meth:`fill` writes what is missing and builds the
        index) where it is ``wanted`` (``--bm25-index``); where it is not, take away one an earlier start made (its
        triggers would make every write of chunks pay for it)."""
        if not store.is_postgres:
            return
        if not wanted:
            await store.run(_drop)
            return
        if not pgvector_enabled:
            log.warning("--bm25-index needs pgvector on the database server: the keyword half ranks its candidates")
            return

        def setup(conn: sa.Connection) -> None:
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})"))
            for statement in SETUP:
                conn.execute(sa.text(statement))

        try:
            await store.run(setup, statements=len(SETUP) + 1)
        except Exception as exc:  # (a pgvector without sparsevec, before 0.7: the keyword half ranks as before)
            log.warning("BM25 keyword index not made (%s); the keyword half ranks its candidates", exc)
            return
        self.enabled = True

    async def fill(self, store: Any) -> None:
        """Write the weights of chunks stored without them, a batch per transaction; where the index is missing (the
        first start with the setting, or a build cut off), build it once they are written; then search by the index.
        A failure (the database gone at start) is logged and the whole is tried again."""
        while self.enabled:
            try:
                while not await store.read(lambda conn: conn.execute(INDEX_VALID).scalar()):
                    if not await self._build(store):
                        await asyncio.sleep(BUILD_WAIT_S)  # (another process builds it)
                if not await store.read(_all_written):  # (a restart: most often all are)
                    await _write_missing(store, INDEXED_BATCH)
                self.ready = True
                log.info("BM25 keyword index: the keyword half of file search reads it")
                return
            except Exception as exc:
                log.warning("BM25 keyword index not filled (%s: %.300s); trying again in %.0f s", type(exc).__name__,
                            exc, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _build(self, store: Any) -> bool:
        """Write every chunk's weights and build the index over them, unless another process is at it: whether this
        one was. An index a build cut off left invalid is taken away first."""
        async with store.engine.connect() as conn:
            # (the driver's own connection, outside any transaction: CREATE INDEX CONCURRENTLY runs in none, and
            # its session keeps the lock and the memory setting)
            raw = (await conn.get_raw_connection()).driver_connection
            if not await raw.fetchval("SELECT pg_try_advisory_lock($1)", BUILD_LOCK):
                return False
            try:
                if await raw.fetchval(INDEX_VALID.text) is False:
                    await raw.execute("DROP INDEX IF EXISTS ix_parley_bm25_chunks")
                await _write_missing(store, FILL_BATCH)
                chunks = await raw.fetchval("SELECT count(*) FROM parley_bm25_chunks")
                memory = max(int(await raw.fetchval(MEMORY)), min(BUILD_MEMORY_CAP, chunks * BUILD_BYTES_PER_CHUNK))
                await raw.execute(f"SET maintenance_work_mem = '{memory // 1024}kB'")
                await raw.execute("SET statement_timeout = 0")  # (not the store timeout: the build has its own)
                if self._serial:
                    await raw.execute("SET max_parallel_maintenance_workers = 0")
                log.info("BM25 keyword index: building it over %d chunks (maintenance_work_mem %d MiB%s)", chunks,
                         memory >> 20, ", no parallel workers" if self._serial else "")
                started = time.monotonic()
                await raw.execute(INDEX, timeout=BUILD_TIMEOUT_S)
                log.info("BM25 keyword index: built in %.1f s", time.monotonic() - started)
            except BaseException as exc:
                # A parallel build shares its graph through the server's shared memory, which a container's small
                # /dev/shm may refuse ("could not resize shared memory segment": disk_full); the next try builds
                # without parallel workers.
                self._serial = self._serial or sqlstate(exc) == "53100"
                raise
            finally:
                await conn.invalidate()  # (closed, not pooled: its session's lock and settings go with it)
        return True

    @property
    def searchable(self) -> bool:
        """Whether the keyword half reads the index (and the weights waiting beside it)."""
        return self.ready and self.pending <= PENDING_SEARCH_MAX

    async def run(self, store: Any) -> None:
        """:meth:`fill`, then move the weights written since into the index, in the background, for good."""
        await self.fill(store)
        counted, unvacuumed, failing = -math.inf, 0, False
        while self.enabled:
            try:
                moved = await self.move_pending(store)
            except Exception as exc:  # (the database gone or slow: the weights wait, and are searched meanwhile)
                if not failing:  # (once until a move succeeds again: an outage is not a line a second)
                    log.warning("BM25 keyword index: waiting weights not moved (%s: %.300s)", type(exc).__name__, exc)
                moved, failing = 0, True
            else:
                failing = False
            unvacuumed += moved
            if moved < MOVE_BATCH or time.monotonic() - counted > MOVE_IDLE_S:  # (what waits, all processes' writes)
                with contextlib.suppress(Exception):
                    await self.count_pending(store)
                counted = time.monotonic()
            if moved < MOVE_BATCH:
                if unvacuumed:  # caught up: the moved rows' space given back, so that reading what waits stays quick
                    with contextlib.suppress(Exception):
                        await _vacuum_pending(store)
                    unvacuumed = 0
                await asyncio.sleep(MOVE_IDLE_S)

    async def move_pending(self, store: Any) -> int:
        """One transaction's move of waiting weights into the index; how many it moved."""
        return await store.run(lambda conn: conn.execute(MOVE, {"batch": MOVE_BATCH}).rowcount)

    async def count_pending(self, store: Any) -> int:
        """How many chunks' weights wait beside the index now (every process's writes), kept in ``pending``."""
        self.pending = int(await store.read(lambda conn: conn.execute(COUNT_PENDING).scalar()))
        return self.pending

    def ranked(self, joined: sa.Select[Any], scope: Any, words: list[str], pool: int, iterative: bool) -> Any:
        """A transaction's work: (chunk id, BM25 score > 0) of the ``pool`` best chunks within ``scope`` that hold
        one of ``words``."""
        def run(conn: sa.Connection) -> list[tuple[int, float]]:
            # (one snapshot for the index and the waiting weights: a chunk the background move takes from one to the
            # other meanwhile is read once, neither missed nor twice)
            conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            terms = conn.execute(TERMS, {"text": " ".join(words)}).all()
            if not terms:
                return []
            total = float(conn.execute(TOTAL).scalar() or 0)
            weights = ",".join(f"{row.dim}:{math.log(1 + (total - row.chunks + 0.5) / (row.chunks + 0.5)):.6g}"
                               for row in terms)
            asked = sa.cast(sa.literal(f"{{{weights}}}/{DIMS}"), SparseVec())
            chunk_id = sa.literal_column("parley_vector_store_chunks.id")
            indexed = joined.join(BM25, BM25.c.chunk_id == chunk_id).add_columns(
                BM25.c.bm25.op("<#>")(asked).label("d")).where(scope).order_by("d").limit(pool)
            conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {min(1000, max(EF_SEARCH, pool))}"))
            if iterative:  # (pgvector 0.8: past the chunks that the filters drop)
                conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            found = [(row.id, float(row.d)) for row in conn.execute(indexed).all() if row.d < 0]
            # Beside it, the best waiting weights that hold a word of the query, read exactly, then which of their
            # chunks the scope keeps, looked up by id (a join could read a large store's chunks for a few waiting
            # rows): the best WAITING_READ * pool, or all of them where the scope kept fewer than pool of those.
            distance = PENDING.c.bm25.op("<#>")(asked)
            best = sa.select(PENDING.c.chunk_id, distance.label("d")).where(distance < 0).order_by("d")
            for query in (best.limit(WAITING_READ * pool), best):
                waiting = dict(conn.execute(query).all())
                ids = sa.cast(sa.bindparam("ids", list(waiting)), ARRAY(sa.BigInteger))
                kept = conn.execute(joined.where(scope, chunk_id == sa.any_(ids))).scalars().all() if waiting else []
                if len(kept) >= pool or len(waiting) < WAITING_READ * pool:
                    break
            found += [(kept_id, float(waiting[kept_id])) for kept_id in kept]
            return [(found_id, -d) for found_id, d in sorted(found, key=lambda pair: pair[1])[:pool]]

        return run
