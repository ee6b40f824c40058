"""pgvector on PostgreSQL, when the server has it: each chunk's embedding also in a ``vector`` column, with an
HNSW index (cosine) per embedding size, so the vector half of a search is an index scan instead of reading
every embedding.

Enabled at start-up when the ``vector`` extension is available and Parley may create it; otherwise search
reads the embeddings (``bytea``) and compares them in numpy.  Chunks stored before pgvector was there get
their ``vec`` filled in at start-up.  The index is partial (``vector_dims(vec) = n``), since a database holds
stores of different embedding models; a query names the same expression so that the planner uses it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.types import UserDefinedType

log = logging.getLogger("parley.store")
MAX_INDEXED_DIMS = 2000  # HNSW on the vector type indexes at most 2,000 dimensions
BACKFILL_BATCH = 500
# A batch of chunks in one statement (a statement's triggers run once for it: parley.store.pg_bm25).
INSERT = sa.text("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, embedding, vec) "
                 "SELECT x.s, x.f, x.seq, x.t, x.e, CAST(x.v AS vector) FROM unnest(CAST(:stores AS text[]), "
                 "CAST(:files AS text[]), CAST(:seqs AS integer[]), CAST(:texts AS text[]), CAST(:embeddings AS bytea[]), "
                 "CAST(:vecs AS text[])) AS x(s, f, seq, t, e, v)")
VEC = sa.literal_column("parley_vector_store_chunks.vec")


class Vector(UserDefinedType[Any]):
    cache_ok = True

    def __init__(self, dims: int) -> None:
        self.dims = dims

    def get_col_spec(self, **_kw: Any) -> str:
        return f"vector({self.dims})"


def vector_text(vector: np.ndarray) -> str:
    """A vector in pgvector's text form."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PgVector:
    def __init__(self) -> None:
        self.enabled = False
        self.iterative_scan = False  # pgvector 0.8: keep scanning the index until enough rows pass the filters
        self._indexed: set[int] = set()

    async def prepare(self, store: Any) -> None:
        if not store.is_postgres:
            return

        def setup(conn: sa.Connection) -> str | None:
            if conn.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is None:
                log.warning("PostgreSQL without pgvector: the vector half of file search reads every embedding of "
                            "the stores it searches (about 0.9 s at 100,000 chunks on 2 cores); install pgvector "
                            "on the database server for stores past about 10,000 chunks")
                return None
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226538)"))  # instances starting together
            try:
                with conn.begin_nested():
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
                    conn.execute(sa.text("ALTER TABLE parley_vector_store_chunks ADD COLUMN IF NOT EXISTS vec vector"))
            except sa.exc.DBAPIError as exc:  # no privilege to create the extension: search scans instead
                log.warning("pgvector is available but could not be enabled (%s); vector search scans", exc)
                return None
            return conn.execute(sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()

        version = await store.run(setup)
        if version is None:
            return
        self.enabled = True
        self.iterative_scan = tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)
        log.info("pgvector %s: vector search uses HNSW indexes", version)
        await self._backfill(store)

    async def _backfill(self, store: Any) -> None:
        select = sa.text("SELECT id, embedding FROM parley_vector_store_chunks WHERE vec IS NULL LIMIT :n")
        update = sa.text("UPDATE parley_vector_store_chunks SET vec = CAST(:vec AS vector) WHERE id = :cid")
        while rows := await store.run(lambda conn: conn.execute(select, {"n": BACKFILL_BATCH}).all()):
            vectors = [np.frombuffer(bytes(row.embedding), dtype="<f4") for row in rows]
            params = [{"cid": row.id, "vec": vector_text(v)} for row, v in zip(rows, vectors)]

            def fill(conn: sa.Connection, params: list[dict[str, Any]] = params, dims: int = len(vectors[0])) -> None:
                conn.execute(update, params)
                self.ensure_index(conn, dims)

            await store.run(fill)

    def ensure_index(self, conn: sa.Connection, dims: int) -> None:
        """The HNSW index for embeddings of ``dims`` dimensions, created the first time they are stored."""
        if dims in self._indexed or dims > MAX_INDEXED_DIMS:
            return
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7226539)"))
        conn.execute(sa.text(
            f"CREATE INDEX IF NOT EXISTS ix_parley_vector_store_chunks_hnsw_{dims} ON parley_vector_store_chunks "
            f"USING hnsw ((vec::vector({dims})) vector_cosine_ops) WHERE vector_dims(vec) = {dims}"))
        self._indexed.add(dims)

    def insert(self, conn: sa.Connection, rows: list[dict[str, Any]], vectors: np.ndarray) -> None:
        self.ensure_index(conn, int(vectors.shape[1]))
        conn.execute(INSERT, {"stores": [row["vector_store_id"] for row in rows], "files": [row["file_id"] for row in rows],
                              "seqs": [row["seq"] for row in rows], "texts": [row["text"] for row in rows],
                              "embeddings": [row["embedding"] for row in rows],
                              "vecs": [vector_text(vectors[i]) for i in range(len(rows))]})

    def nearest(self, joined: sa.Select[Any], scope: Any, vector: np.ndarray, pool: int) -> Any:
        """A transaction's work: (chunk id, cosine similarity) of the ``pool`` nearest chunks within ``scope``."""
        dims = int(vector.shape[0])
        distance = sa.cast(VEC, Vector(dims)).op("<=>")(sa.cast(sa.literal(vector_text(vector)), Vector(dims)))
        query = joined.add_columns(distance.label("d")).where(
            scope, sa.text(f"vector_dims(parley_vector_store_chunks.vec) = {dims}")).order_by("d").limit(pool)

        def run(conn: sa.Connection) -> list[tuple[int, float]]:
            conn.execute(sa.text(f"SET LOCAL hnsw.ef_search = {min(1000, max(40, pool))}"))
            if self.iterative_scan:
                conn.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            return [(row.id, 1.0 - float(row.d)) for row in conn.execute(query).all()]

        return run
