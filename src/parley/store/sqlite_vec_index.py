"""sqlite-vec's ``vec0`` index on SQLite: each chunk's embedding also in a ``vec0`` table per embedding size,
partitioned by vector store, so that the vector half of a search is sqlite-vec's k-nearest scan of one store's
vectors instead of a cosine distance computed row by row through the chunks table.

A table ``parley_vec_<dims>`` is made the first time embeddings of that size are stored, with triggers on the
chunks table that keep it in step (a chunk inserted or deleted is inserted or deleted there); chunks stored
before it existed are copied in at start-up.  The scan is exact: it returns what the row-by-row distance did.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import sqlalchemy as sa

log = logging.getLogger("parley.store")
MAX_K = 4096  # sqlite-vec's largest k


def _table(dims: int) -> str:
    return f"parley_vec_{int(dims)}"


class SqliteVec:
    def __init__(self) -> None:
        self.enabled = False
        self._tables: set[int] = set()

    async def prepare(self, store: Any) -> None:
        """Enable the index on SQLite: the tables of the sizes already stored, filled with their chunks."""
        if store.engine.dialect.name != "sqlite":
            return

        def setup(conn: sa.Connection) -> list[int]:
            sizes = [int(n) // 4 for n in conn.execute(sa.text(
                "SELECT DISTINCT length(embedding) FROM parley_vector_store_chunks")).scalars() if n]
            for dims in sizes:
                self.ensure(conn, dims)
                conn.execute(sa.text(
                    f"INSERT INTO {_table(dims)} (chunk_id, store, embedding) SELECT c.id, c.vector_store_id, "
                    f"c.embedding FROM parley_vector_store_chunks c WHERE length(c.embedding) = {dims * 4} AND "
                    f"NOT EXISTS (SELECT 1 FROM {_table(dims)} v WHERE v.chunk_id = c.id)"))
            return sizes

        sizes = await store.run(setup)
        self.enabled = True
        if sizes:
            log.info("sqlite-vec: vector search uses vec0 tables for %s dimensions", sizes)

    def ensure(self, conn: sa.Connection, dims: int) -> None:
        """The table (and its triggers) for embeddings of ``dims`` dimensions."""
        if dims in self._tables:
            return
        table = _table(dims)
        conn.execute(sa.text(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0(chunk_id INTEGER PRIMARY KEY, "
            f"store TEXT PARTITION KEY, embedding float[{int(dims)}] distance_metric=cosine)"))
        conn.execute(sa.text(
            f"CREATE TRIGGER IF NOT EXISTS {table}_ai AFTER INSERT ON parley_vector_store_chunks "
            f"WHEN length(new.embedding) = {dims * 4} BEGIN INSERT INTO {table} (chunk_id, store, embedding) "
            f"VALUES (new.id, new.vector_store_id, new.embedding); END"))
        conn.execute(sa.text(
            f"CREATE TRIGGER IF NOT EXISTS {table}_ad AFTER DELETE ON parley_vector_store_chunks "
            f"WHEN length(old.embedding) = {dims * 4} BEGIN DELETE FROM {table} WHERE chunk_id = old.id; END"))
        self._tables.add(dims)

    def nearest(self, store_ids: list[str], vector: np.ndarray, k: int) -> Any:
        """A transaction's work: (chunk id, cosine similarity) of the ``k`` nearest chunks of each store, best
        first (none for a size no chunk has)."""
        dims = int(vector.shape[0])
        query = sa.text(f"SELECT chunk_id, distance FROM {_table(dims)} WHERE embedding MATCH :v AND k = :k "
                        f"AND store = :s")
        blob = vector.astype("<f4").tobytes()

        def run(conn: sa.Connection) -> list[tuple[int, float]]:
            if dims not in self._tables and conn.execute(sa.text(
                    "SELECT 1 FROM sqlite_master WHERE name = :t"), {"t": _table(dims)}).first() is None:
                return []  # no chunk has embeddings of this size
            found = [(row.chunk_id, 1.0 - float(row.distance)) for store_id in store_ids
                     for row in conn.execute(query, {"v": blob, "k": min(k, MAX_K), "s": store_id})]
            return sorted(found, key=lambda hit: -hit[1])

        return run
