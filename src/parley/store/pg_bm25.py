"""PostgreSQL with pgvector, with ``--bm25-index``: the keyword half of a search as BM25 over an index, so that it
reads the best chunks from the index instead of ranking every chunk that holds one of the query's words. Off by
default: at 30,000 chunks it took the keyword half from 47.5 to 8.0 ms p50, but ingestion from 1,330 to 237 chunks
per second (each chunk's entry in the sparse HNSW index; bench/README.md).

Each chunk's words (its ``tsv`` lexemes) are also a pgvector ``sparsevec`` in ``parley_bm25_chunks``: one
dimension per lexeme (``parley_bm25_terms`` numbers them), holding the lexeme's BM25 term weight in the chunk,
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))``. A query is the sparse vector of its
lexemes' inverse document frequencies, ``ln(1 + (N - n + 0.5) / (n + 0.5))``, so that the inner product of the two
is the chunk's BM25 score, and an HNSW index (inner product) finds the best ones.

Triggers keep it in step whichever process writes the chunks: a statement that inserts chunks counts their
lexemes (``parley_bm25_terms.chunks``, and the totals in ``parley_bm25_totals``) and writes their weights; one
that deletes chunks takes their counts and weights back. Chunks stored before (or by a version without this) are filled in the
background at start-up; until none is left, the keyword half is searched as before. A chunk keeps the weights of
the average length when it was written. HNSW on ``sparsevec`` takes at most 1,000 non-zero dimensions: a chunk
with more distinct lexemes keeps its 1,000 heaviest.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

log = logging.getLogger("parley.store")
DIMS = 1_000_000_000  # pgvector's most dimensions of a sparsevec: lexemes are numbered from 1, never reused
K1, B = 1.2, 0.75
MAX_TERMS = 1000  # HNSW on sparsevec indexes at most 1,000 non-zero dimensions
FILL_BATCH = 1000  # chunks a start-up fill writes per transaction
EF_SEARCH = 400  # HNSW candidates per search: 0.89 of the exact BM25 top 10 at 100,000 chunks (200: 0.83)
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
        INSERT INTO parley_bm25_chunks (chunk_id, bm25)
            SELECT l.id, COALESCE((
                SELECT ('{{' || string_agg(d.dim || ':' || d.weight, ',' ORDER BY d.dim) || '}}/{DIMS}')::sparsevec
                FROM (SELECT t.dim, (n.tf * {K1 + 1} / (n.tf + {K1} * ({1 - B} + {B} * l.length / average)))::real
                                    AS weight
                      FROM parley_bm25_new n JOIN parley_bm25_terms t ON t.lexeme = n.lexeme
                      WHERE n.id = l.id ORDER BY weight DESC LIMIT {MAX_TERMS}) d), {EMPTY})
            FROM (SELECT id, COALESCE(sum(tf), 0) AS length FROM parley_bm25_new GROUP BY id) l;
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
    "CREATE INDEX IF NOT EXISTS ix_parley_bm25_chunks ON parley_bm25_chunks USING hnsw (bm25 sparsevec_ip_ops)",
]
UNINDEXED = ("FROM parley_vector_store_chunks c WHERE NOT EXISTS "
             "(SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = c.id)")
FILL = sa.text(f"SELECT parley_bm25_index(ARRAY(SELECT c.id {UNINDEXED} ORDER BY c.id LIMIT {FILL_BATCH} "
               "FOR UPDATE OF c SKIP LOCKED))")
UNFILLED = sa.text(f"SELECT EXISTS (SELECT 1 {UNINDEXED})")
TERMS = sa.text("SELECT t.dim, t.chunks FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', :text))) u "
                "JOIN parley_bm25_terms t ON t.lexeme = u.lexeme WHERE t.chunks > 0 ORDER BY t.dim")
TOTAL = sa.text("SELECT chunks FROM parley_bm25_totals WHERE id = 1")
BM25 = sa.table("parley_bm25_chunks", sa.column("chunk_id"), sa.column("bm25"))


def _drop(conn: sa.Connection) -> None:
    if conn.execute(sa.text("SELECT to_regclass('parley_bm25_totals')")).scalar() is None:
        return
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226540)"))
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
        self.enabled = False  # the tables, the index and the triggers exist
        self.ready = False  # and every chunk's weights are written: the keyword half searches the index

    async def prepare(self, store: Any, pgvector_enabled: bool, wanted: bool) -> None:
        """Make the tables, triggers and index (pgvector only; then :meth:`fill` writes what is missing) where it is
        ``wanted`` (``--bm25-index``); where it is not, take away one an earlier start made (its triggers would make
        every write of chunks pay for it)."""
        if not store.is_postgres:
            return
        if not wanted:
            await store.run(_drop)
            return
        if not pgvector_enabled:
            log.warning("--bm25-index needs pgvector on the database server: the keyword half ranks its candidates")
            return

        def setup(conn: sa.Connection) -> None:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226540)"))  # instances starting together
            for statement in SETUP:
                conn.execute(sa.text(statement))

        try:
            await store.run(setup, statements=len(SETUP) + 1)
        except Exception as exc:  # (a pgvector without sparsevec, before 0.7: the keyword half ranks as before)
            log.warning("BM25 keyword index not made (%s); the keyword half ranks its candidates", exc)
            return
        self.enabled = True

    async def fill(self, store: Any) -> None:
        """Write the weights of chunks stored without them, a batch per transaction, then search by the index."""
        if not self.enabled:
            return
        while await store.run(lambda conn: conn.execute(FILL).scalar()):
            pass
        if not await store.read(lambda conn: conn.execute(UNFILLED).scalar()):
            self.ready = True
            log.info("BM25 keyword index: the keyword half of file search reads it")

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
