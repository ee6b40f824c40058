"""The SQL of the BM25 keyword index (:mod:`parley.store.pg_bm25`): its tables, the functions and triggers that
keep the weights in step with the chunks, the index, and the statements that fill, search and move them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

DIMS = 1_000_000_000  # pgvector's most dimensions of a sparsevec: lexemes are numbered from 1, never reused
K1, B = 1.2, 0.75
MAX_TERMS = 1000  # HNSW on sparsevec indexes at most 1,000 non-zero dimensions
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
    # Weights written once the index exists wait here, outside it, so that a write of chunks does not pay for the
    # index's graph search (about 3 ms a chunk); searched exactly beside the index, and moved into it in the background.
    f"""CREATE TABLE IF NOT EXISTS parley_bm25_pending (
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
        IF to_regclass('pg_temp.parley_bm25_vectors') IS NULL THEN
            CREATE TEMP TABLE parley_bm25_vectors (chunk_id BIGINT, bm25 sparsevec({DIMS})) ON COMMIT DELETE ROWS;
        END IF;
        DELETE FROM parley_bm25_new;
        DELETE FROM parley_bm25_vectors;
        INSERT INTO parley_bm25_new
            SELECT c.id, u.lexeme, cardinality(u.positions) FROM parley_vector_store_chunks c
            LEFT JOIN LATERAL unnest(c.tsv) u ON true
            WHERE c.id = ANY(ids) AND NOT EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = c.id)
                  AND NOT EXISTS (SELECT 1 FROM parley_bm25_pending p WHERE p.chunk_id = c.id);
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
        INSERT INTO parley_bm25_vectors (chunk_id, bm25)
            SELECT l.id, COALESCE(v.bm25, {EMPTY}) FROM lengths l LEFT JOIN vectors v ON v.id = l.id;
        -- (into the index's table while there is no index: the build takes them; once there is one, even one being
        -- built, beside it)
        IF to_regclass('ix_parley_bm25_chunks') IS NULL THEN
            INSERT INTO parley_bm25_chunks (chunk_id, bm25) SELECT chunk_id, bm25 FROM parley_bm25_vectors;
        ELSE
            INSERT INTO parley_bm25_pending (chunk_id, bm25) SELECT chunk_id, bm25 FROM parley_bm25_vectors;
        END IF;
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
                  WHERE EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = g.id)
                     OR EXISTS (SELECT 1 FROM parley_bm25_pending p WHERE p.chunk_id = g.id)) x
            WHERE id = 1;
        UPDATE parley_bm25_terms t SET chunks = t.chunks - n.n
            FROM (SELECT u.lexeme, count(*) AS n FROM gone g, unnest(g.tsv) u
                  WHERE EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = g.id)
                     OR EXISTS (SELECT 1 FROM parley_bm25_pending p WHERE p.chunk_id = g.id) GROUP BY u.lexeme) n
            WHERE t.lexeme = n.lexeme;
        -- (the waiting row first: a move under way holds it, and once it has moved, the next statement sees it)
        DELETE FROM parley_bm25_pending p USING gone g WHERE p.chunk_id = g.id;
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
# A batch of the chunks without weights among the next FILL_WINDOW ids: a statement's reads stay bounded however
# large the table (a start with the setting looks at every chunk once). Chunks locked by a writer are skipped: its
# statement's trigger writes them.
FILL = sa.text("""WITH batch AS (
    SELECT c.id FROM parley_vector_store_chunks c
    WHERE c.id > :after AND c.id <= :after + :window
          AND NOT EXISTS (SELECT 1 FROM parley_bm25_chunks b WHERE b.chunk_id = c.id)
          AND NOT EXISTS (SELECT 1 FROM parley_bm25_pending p WHERE p.chunk_id = c.id)
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
PENDING = sa.table("parley_bm25_pending", sa.column("chunk_id"), sa.column("bm25"))
# The oldest waiting weights into the index (rows another process is moving are skipped).
MOVE = sa.text("""WITH moved AS (
    DELETE FROM parley_bm25_pending WHERE chunk_id IN (
        SELECT chunk_id FROM parley_bm25_pending ORDER BY chunk_id LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING chunk_id, bm25)
INSERT INTO parley_bm25_chunks (chunk_id, bm25) SELECT chunk_id, bm25 FROM moved ON CONFLICT (chunk_id) DO NOTHING""")
COUNT_PENDING = sa.text("SELECT count(*) FROM parley_bm25_pending")


class SparseVec(UserDefinedType[Any]):
    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return f"sparsevec({DIMS})"
