"""PostgreSQL with pgvector, with ``--bm25-index``: the keyword half of a search as BM25 over an index, so that it
reads the best chunks from the index instead of ranking every chunk that holds one of the query's words. At
975,015 chunks it took a hybrid search from 114.8 to 43.8-51.7 ms p50 (the keyword half from 91.2 to 36 ms), but a
chunk's entry in the sparse HNSW index costs milliseconds, so ingestion into an indexed store is several times
slower (185 chunks per second from an empty store at 30,000): off by default (bench/README.md).

Each chunk's words (its ``tsv`` lexemes) are also a pgvector ``sparsevec`` in ``parley_bm25_chunks``: one
dimension per lexeme (``parley_bm25_terms`` numbers them), holding the lexeme's BM25 term weight in the chunk,
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))``. A query is the sparse vector of its
lexemes' inverse document frequencies, ``ln(1 + (N - n + 0.5) / (n + 0.5))``, so that the inner product of the two
is the chunk's BM25 score, and an HNSW index (inner product) finds the best ones.

Triggers keep it in step whichever process writes the chunks: a statement that inserts chunks counts their
lexemes (``parley_bm25_terms.chunks``, and the totals in ``parley_bm25_totals``) and writes their weights; one
that deletes chunks takes their counts and weights back. A chunk keeps the weights of the average length when it was
written. HNSW on ``sparsevec`` takes at most 1,000 non-zero dimensions: a chunk with more distinct lexemes keeps its
1,000 heaviest.

The first start with the setting writes the weights of the chunks stored before (in the background, a batch per
transaction) and then builds the index over them in one pass (``CREATE INDEX CONCURRENTLY``, so that chunks are
written meanwhile; one process builds, under an advisory lock). Building the graph in memory costs a sixth or less of
growing it by inserts, given the memory: the build asks for ``maintenance_work_mem`` of about 1.25 KB a chunk, 4
GiB at most. Until then the keyword half is searched as before. A build cut off leaves the index invalid; the next
start takes it away and builds it again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

from parley.store.faults import sqlstate

log = logging.getLogger("parley.store")
DIMS = 1_000_000_000  # pgvector's most dimensions of a sparsevec: lexemes are numbered from 1, never reused
K1, B = 1.2, 0.75
MAX_TERMS = 1000  # HNSW on sparsevec indexes at most 1,000 non-zero dimensions
FILL_BATCH = 1000  # chunks a start-up fill writes per transaction before the index is built
INDEXED_BATCH = 128  # and once it is (each chunk's entry in the index takes milliseconds)
FILL_WINDOW = 20_000  # chunk ids a start-up fill looks at per transaction
EF_SEARCH = 400  # HNSW candidates per search: 0.76 of the exact BM25 top 10 at 975,015 chunks (200: 0.71, 1000: 0.84)
EMPTY = f"'{{}}/{DIMS}'::sparsevec"

SETUP = [
    """CREATE TABLE IF NOT EXISTS parley_bm25_terms (
        lexeme TEXT PRIMARY KEY,
        dim INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
        chunks BIGINT NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS parley_bm25_totals (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        chunks BIGINT NOT NULL,
        length BIGINT NOT NULL
    )""",
    "INSERT INTO parley_bm25_totals (id, chunks, length) VALUES (1, 0, 0) ON CONFLICT DO NOTHING",
    # (a table of its own: writing a chunk's weights into its own row would write the row, and its embedding's
    # HNSW entry, a second time)
    f"""CREATE TABLE IF NOT EXISTS parley_bm25_chunks (
        chunk_id BIGINT PRIMARY KEY,
        bm25 sparsevec({DIMS}) NOT NULL
    )""",
    # The chunks ``ids`` not indexed yet: counted, then their weights written. The totals row is taken first, so
    # that writers take their turns there and never lock term rows in two orders.
    f"""CREATE OR REPLACE FUNCTION parley_bm25_index(ids BIGINT[]) RETURNS INTEGER LANGUAGE plpgsql AS $$
    DECLARE
        average DOUBLE PRECISION;
        written INTEGER;
    BEGIN
        IF to_regclass('pg_temp.parley_bm25_new') IS NULL THEN
            CREATE TEMP TABLE parley_bm25_new (id BIGINT, lexeme TEXT, tf INTEGER) ON COMMIT DELETE ROWS;
        END IF;
        DELETE FROM parley_bm25_new;
        INSERT INTO parley_bm25_new
            SELECT c.id, u.lexeme, cardinality(u.positions) FROM parley_vector_store_chunks c
            LEFT JOIN LATERAL unnest(c.tsv) u ON true
            WHERE c.id = ANY(ids) AND NOT EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = c.id);
        UPDATE parley_bm25_totals SET chunks = parley_bm25_totals.chunks + x.chunks,
                                      length = parley_bm25_totals.length + x.length
            FROM (SELECT count(DISTINCT id) AS chunks, COALESCE(sum(tf), 0) AS length FROM parley_bm25_new) x
            WHERE id = 1
            RETURNING parley_bm25_totals.length::float8 / GREATEST(parley_bm25_totals.chunks, 1) INTO average;
        INSERT INTO parley_bm25_terms (lexeme)
            SELECT DISTINCT n.lexeme FROM parley_bm25_new n
            WHERE n.lexeme IS NOT NULL AND NOT EXISTS (SELECT 1 FROM parley_bm25_terms t WHERE t.lexeme = n.lexeme)
            ORDER BY 1
            ON CONFLICT (lexeme) DO NOTHING;
        UPDATE parley_bm25_terms t SET chunks = t.chunks + n.n
            FROM (SELECT lexeme, count(*) AS n FROM parley_bm25_new WHERE lexeme IS NOT NULL GROUP BY lexeme) n
            WHERE t.lexeme = n.lexeme;
        -- (one pass over the batch's lexemes: a chunk's weights, its heaviest MAX_TERMS, grouped into its vector)
        WITH lengths AS (SELECT id, COALESCE(sum(tf), 0) AS length FROM parley_bm25_new GROUP BY id),
        ranked AS (
            SELECT w.id, w.dim, w.weight, row_number() OVER (PARTITION BY w.id ORDER BY w.weight DESC, w.dim) AS r
            FROM (SELECT n.id, t.dim,
                         (n.tf * {K1 + 1} / (n.tf + {K1} * ({1 - B} + {B} * l.length / average)))::real AS weight
                  FROM parley_bm25_new n JOIN lengths l ON l.id = n.id
                  JOIN parley_bm25_terms t ON t.lexeme = n.lexeme) w),
        vectors AS (
            SELECT id, ('{{' || string_agg(dim || ':' || weight, ',' ORDER BY dim) || '}}/{DIMS}')::sparsevec AS bm25
            FROM ranked WHERE r <= {MAX_TERMS} GROUP BY id)
        INSERT INTO parley_bm25_chunks (chunk_id, bm25)
            SELECT l.id, COALESCE(v.bm25, {EMPTY}) FROM lengths l LEFT JOIN vectors v ON v.id = l.id;
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    END $$""",
    """CREATE OR REPLACE FUNCTION parley_bm25_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM parley_bm25_index(ARRAY(SELECT id FROM added ORDER BY id));
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION parley_bm25_forget() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE parley_bm25_totals SET chunks = parley_bm25_totals.chunks - x.chunks,
                                      length = parley_bm25_totals.length - x.length
            FROM (SELECT count(DISTINCT g.id) AS chunks, COALESCE(sum(cardinality(u.positions)), 0) AS length
                  FROM gone g LEFT JOIN LATERAL unnest(g.tsv) u ON true
                  WHERE EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = g.id)) x
            WHERE id = 1;
        UPDATE parley_bm25_terms t SET chunks = t.chunks - n.n
            FROM (SELECT u.lexeme, count(*) AS n FROM gone g, unnest(g.tsv) u
                  WHERE EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = g.id) GROUP BY u.lexeme) n
            WHERE t.lexeme = n.lexeme;
        DELETE FROM parley_bm25_chunks b USING gone g WHERE b.chunk_id = g.id;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS parley_bm25_ai ON parley_vector_store_chunks",
    "CREATE TRIGGER parley_bm25_ai AFTER INSERT ON parley_vector_store_chunks REFERENCING NEW TABLE AS added "
    "FOR EACH STATEMENT EXECUTE FUNCTION parley_bm25_added()",
    "DROP TRIGGER IF EXISTS parley_bm25_ad ON parley_vector_store_chunks",
    "CREATE TRIGGER parley_bm25_ad AFTER DELETE ON parley_vector_store_chunks REFERENCING OLD TABLE AS gone "
    "FOR EACH STATEMENT EXECUTE FUNCTION parley_bm25_forget()",
]
# Built once the weights are written (:meth:`PgBm25.fill`): HNSW builds a graph in memory six or more times faster
# than it grows by inserts, and CONCURRENTLY lets chunks be written meanwhile.
INDEX = ("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_parley_bm25_chunks ON parley_bm25_chunks "
         "USING hnsw (bm25 sparsevec_ip_ops)")
MEMORY = "SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'"
INDEX_VALID = sa.text("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('ix_parley_bm25_chunks')")
SETUP_LOCK = 7226540  # (a transaction's advisory lock: instances starting together make the tables in turn)
BUILD_LOCK = 7226541  # (a session's advisory lock: one process builds)
BUILD_BYTES_PER_CHUNK = 1280  # the graph in memory: a chunk's vector (about 280 bytes) and its neighbours
BUILD_MEMORY_CAP = 4 << 30  # the most maintenance_work_mem a build asks for (a little over 3 million chunks)
BUILD_TIMEOUT_S = 24 * 3600
BUILD_WAIT_S = 5.0  # how often a process that does not build looks whether another one has
RETRY_S = 30.0  # after a failed fill
# A batch of the chunks without weights among the next FILL_WINDOW ids: a statement's reads stay bounded however
# large the table (a start with the setting looks at every chunk once). Chunks locked by a writer are skipped: its
# statement's trigger writes them.
FILL = sa.text("""WITH batch AS (
    SELECT c.id FROM parley_vector_store_chunks c
    WHERE c.id > :after AND c.id <= :after + :window
          AND NOT EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = c.id)
    ORDER BY c.id LIMIT :batch FOR UPDATE OF c SKIP LOCKED)
SELECT parley_bm25_index(ARRAY(SELECT id FROM batch ORDER BY id)), (SELECT count(*) FROM batch) AS n,
       (SELECT max(id) FROM batch) AS last""")
LAST_ID = sa.text("SELECT COALESCE(max(id), 0) FROM parley_vector_store_chunks")
# Every chunk has its weights: the totals count exactly the chunks that have them (one statement, one snapshot).
ALL_WRITTEN = sa.text("SELECT (SELECT chunks FROM parley_bm25_totals WHERE id = 1) = "
                      "(SELECT count(*) FROM parley_vector_store_chunks)")
TERMS = sa.text("SELECT t.dim, t.chunks FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', :text))) u "
                "JOIN parley_bm25_terms t ON t.lexeme = u.lexeme WHERE t.chunks > 0 ORDER BY t.dim")
TOTAL = sa.text("SELECT chunks FROM parley_bm25_totals WHERE id = 1")
BM25 = sa.table("parley_bm25_chunks", sa.column("chunk_id"), sa.column("bm25"))


def _all_written(conn: sa.Connection) -> bool:
    """Whether every chunk has its weights, where counting the chunks is quick (an index-only scan: 80 ms at a
    million); ``False`` where it takes over a second (a table not vacuumed since a bulk load), as if some had not."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text("SET LOCAL statement_timeout = '1s'"))
            return bool(conn.execute(ALL_WRITTEN).scalar())
    except sa.exc.DBAPIError as exc:
        if sqlstate(exc) != "57014":  # (query_canceled: the timeout)
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


def _drop(conn: sa.Connection) -> None:
    if conn.execute(sa.text("SELECT to_regclass('parley_bm25_totals')")).scalar() is None:
        return
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({SETUP_LOCK})"))
    for statement in ("DROP TRIGGER IF EXISTS parley_bm25_ai ON parley_vector_store_chunks",
                      "DROP TRIGGER IF EXISTS parley_bm25_ad ON parley_vector_store_chunks",
                      "DROP TABLE IF EXISTS parley_bm25_chunks, parley_bm25_terms, parley_bm25_totals",
                      "DROP FUNCTION IF EXISTS parley_bm25_added(), parley_bm25_forget(), parley_bm25_index(BIGINT[])"):
        conn.execute(sa.text(statement))
    log.info("BM25 keyword index taken away (--bm25-index is off)")


class SparseVec(UserDefinedType[Any]):
    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return f"sparsevec({DIMS})"


class PgBm25:
    def __init__(self) -> None:
        self.enabled = False  # the tables and the triggers exist (the index is built by fill)
        self.ready = False  # and every chunk's weights are written: the keyword half searches the index
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

    def ranked(self, joined: sa.Select[Any], scope: Any, words: list[str], pool: int, iterative: bool) -> Any:
        """A transaction's work: (chunk id, BM25 score > 0) of the ``pool`` best chunks within ``scope`` that hold
        one of ``words``."""
        def run(conn: sa.Connection) -> list[tuple[int, float]]:
            terms = conn.execute(TERMS, {"text": " ".join(words)}).all()
            if not terms:
                return []
            total = float(conn.execute(TOTAL).scalar() or 0)
            weights = ",".join(f"{row.dim}:{math.log(1 + (total - row.chunks + 0.5) / (row.chunks + 0.5)):.6g}"
                               for row in terms)
            distance = BM25.c.bm25.op("<#>")(sa.cast(sa.literal(f"{{{weights}}}/{DIMS}"), SparseVec()))
            query = joined.join(BM25, BM25.c.chunk_id == sa.literal_column("parley_vector_store_chunks.id")) \
                .add_columns(distance.label("d")).where(scope).order_by("d").limit(pool)
            conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {min(1000, max(EF_SEARCH, pool))}"))
            if iterative:  # (pgvector 0.8: past the chunks that the filters drop)
                conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            return [(row.id, -float(row.d)) for row in conn.execute(query).all() if row.d < 0]

        return run
