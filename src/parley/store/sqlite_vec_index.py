"""sqlite-vec's ``vec0`` index on SQLite: each chunk's embedding also in a ``vec0`` table per embedding size,
normalized and quantized to one signed byte per dimension, partitioned by vector store. The vector half of a search
is sqlite-vec's scan of a store's bytes for the k nearest (a quarter of the bytes of whole embeddings to read and
compare), ranked and scored by their exact cosine similarity, read from the chunks table by id. On the benchmark's
100,000 chunks these k are the exact k nearest (bench/README.md).

A table ``parley_vec_i8_<dims>`` is made the first time embeddings of that size are stored, filled with the
chunks of that size already there, with triggers on the chunks table that keep it in step from then on (a chunk
inserted or deleted is inserted or deleted there, whichever process or version writes it). A database that has no
such table yet gets them at start-up, and the tables of whole embeddings an earlier version kept
(``parley_vec_<dims>``) are dropped then (an earlier version still running finds none and searches row by row; one
started again makes its own again, which this version drops at its next start). A size with no table (none made
yet) is searched row by row.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import sqlalchemy as sa

log = logging.getLogger("parley.store")
MAX_K = 4096  # sqlite-vec's largest k
FILL_BATCH = 1000  # chunks copied into a new table per statement
QUANTIZED = "vec_quantize_int8(vec_normalize({}), 'unit')"
CANDIDATES = "SELECT chunk_id FROM {table} WHERE embedding MATCH " + QUANTIZED.format(":v") + \
    " AND k = :k AND store = :s"
EXACT = sa.text("SELECT id, vec_distance_cosine(embedding, :v) AS distance FROM parley_vector_store_chunks "
                "WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True))


def _table(dims: int) -> str:
    return f"parley_vec_i8_{int(dims)}"


class SqliteVec:
    def __init__(self) -> None:
        self.enabled = False
        self._tables: set[int] = set()

    async def prepare(self, store: Any) -> None:
        """Enable the index on SQLite: the tables that exist; in a database that has none yet, one for each
        size of the embeddings already stored (reading every chunk once, that first time only), and an earlier
        version's tables of whole embeddings dropped."""
        if store.engine.dialect.name != "sqlite":
            return

        def setup(conn: sa.Connection) -> list[int]:
            self._tables.update(_sizes(conn, "parley_vec_i8_"))
            if not self._tables:
                for n in conn.execute(sa.text(
                        "SELECT DISTINCT length(embedding) FROM parley_vector_store_chunks")).scalars():
                    if n:
                        self.ensure(conn, int(n) // 4)
            for dims in _sizes(conn, "parley_vec_"):
                for statement in (f"DROP TRIGGER IF EXISTS parley_vec_{dims}_ai",
                                  f"DROP TRIGGER IF EXISTS parley_vec_{dims}_ad", f"DROP TABLE parley_vec_{dims}"):
                    conn.execute(sa.text(statement))
            return sorted(self._tables)

        sizes = await store.run(setup)
        self.enabled = True
        if sizes:
            log.info("sqlite-vec: vector search uses vec0 tables for %s dimensions", sizes)

    def ensure(self, conn: sa.Connection, dims: int) -> None:
        """The table (and its triggers) for embeddings of ``dims`` dimensions, filled with the chunks of that size
        already stored when it is made."""
        if dims in self._tables:
            return
        table = _table(dims)
        conn.execute(sa.text(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0(chunk_id INTEGER PRIMARY KEY, "
            f"store TEXT PARTITION KEY, embedding int8[{int(dims)}])"))
        # The chunks of this size stored already, a batch at a time (INSERT … SELECT would lose the subtype that
        # marks the quantized vector as bytes); another process may have made and filled it since.
        unindexed = sa.text(
            f"SELECT c.id, c.vector_store_id, c.embedding FROM parley_vector_store_chunks c WHERE c.id > :after AND "
            f"length(c.embedding) = {dims * 4} AND NOT EXISTS (SELECT 1 FROM {table} v WHERE v.chunk_id = c.id) "
            f"ORDER BY c.id LIMIT {FILL_BATCH}")
        insert = sa.text(f"INSERT INTO {table} (chunk_id, store, embedding) VALUES (:i, :s, {QUANTIZED.format(':e')})")
        after = 0
        while rows := conn.execute(unindexed, {"after": after}).all():
            conn.execute(insert, [{"i": row.id, "s": row.vector_store_id, "e": row.embedding} for row in rows])
            after = rows[-1].id
        conn.execute(sa.text(
            f"CREATE TRIGGER IF NOT EXISTS {table}_ai AFTER INSERT ON parley_vector_store_chunks "
            f"WHEN length(new.embedding) = {dims * 4} BEGIN INSERT INTO {table} (chunk_id, store, embedding) "
            f"VALUES (new.id, new.vector_store_id, {QUANTIZED.format('new.embedding')}); END"))
        conn.execute(sa.text(
            f"CREATE TRIGGER IF NOT EXISTS {table}_ad AFTER DELETE ON parley_vector_store_chunks "
            f"WHEN length(old.embedding) = {dims * 4} BEGIN DELETE FROM {table} WHERE chunk_id = old.id; END"))
        self._tables.add(dims)

    def nearest(self, store_ids: list[str], vector: np.ndarray, k: int) -> Any:
        """A transaction's work: (chunk id, cosine similarity) of the ``k`` nearest chunks of each store, best
        first; ``None`` for a size that has no table."""
        dims = int(vector.shape[0])
        query = sa.text(CANDIDATES.format(table=_table(dims)))
        blob = vector.astype("<f4").tobytes()

        def run(conn: sa.Connection) -> list[tuple[int, float]] | None:
            if dims not in self._tables:
                if dims not in _sizes(conn, "parley_vec_i8_"):
                    return None
                self._tables.add(dims)  # (made by another process)
            found = []
            for store_id in store_ids:
                ids = conn.execute(query, {"v": blob, "k": min(k, MAX_K), "s": store_id}).scalars().all()
                if ids:
                    exact = conn.execute(EXACT, {"v": blob, "ids": list(ids)}).all()
                    found += [(row.id, 1.0 - float(row.distance)) for row in exact]
            return sorted(found, key=lambda hit: -hit[1])

        return run


def _sizes(conn: sa.Connection, prefix: str) -> set[int]:
    """The embedding sizes that have a table named ``prefix<dims>``."""
    names = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB :g"),
                         {"g": prefix + "[0-9]*"}).scalars()
    return {int(name[len(prefix):]) for name in names if name[len(prefix):].isdigit()}
