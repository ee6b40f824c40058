"""sqlite-vec's ``vec0`` index on SQLite: each chunk's embedding also in a ``vec0`` table per embedding size,
partitioned by vector store, so that the vector half of a search is sqlite-vec's k-nearest scan of one store's
vectors instead of a cosine distance computed row by row through the chunks table.

A table ``parley_vec_<dims>`` is made the first time embeddings of that size are stored, filled with the chunks
of that size already there, with triggers on the chunks table that keep it in step from then on (a chunk
inserted or deleted is inserted or deleted there, whichever process or version writes it).  A database that has
no such table yet (made before this index) gets them at start-up.  The scan is exact: it returns what the
row-by-row distance did; a size with no table yet is searched row by row.
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
        """Enable the index on SQLite: the tables that exist; in a database that has none yet, one for each
        size of the embeddings already stored (reading every chunk once, that first time only)."""
        if store.engine.dialect.name != "sqlite":
            return

        def setup(conn: sa.Connection) -> list[int]:
            self._tables.update(_sizes(conn))
            if not self._tables:
                for n in conn.execute(sa.text(
                        "SELECT DISTINCT length(embedding) FROM parley_vector_store_chunks")).scalars():
                    if n:
                        self.ensure(conn, int(n) // 4)
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
            f"store TEXT PARTITION KEY, embedding float[{int(dims)}] distance_metric=cosine)"))
        conn.execute(sa.text(  # (another process may have made and filled it since this one looked)
            f"INSERT INTO {table} (chunk_id, store, embedding) SELECT c.id, c.vector_store_id, c.embedding "
            f"FROM parley_vector_store_chunks c WHERE length(c.embedding) = {dims * 4} AND "
            f"NOT EXISTS (SELECT 1 FROM {table} v WHERE v.chunk_id = c.id)"))
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
        first; ``None`` for a size that has no table (no chunk of it was stored by a version with this index)."""
        dims = int(vector.shape[0])
        query = sa.text(f"SELECT chunk_id, distance FROM {_table(dims)} WHERE embedding MATCH :v AND k = :k "
                        f"AND store = :s")
        blob = vector.astype("<f4").tobytes()

        def run(conn: sa.Connection) -> list[tuple[int, float]] | None:
            if dims not in self._tables:
                if dims not in _sizes(conn):
                    return None
                self._tables.add(dims)  # (made by another process)
            found = [(row.chunk_id, 1.0 - float(row.distance)) for store_id in store_ids
                     for row in conn.execute(query, {"v": blob, "k": min(k, MAX_K), "s": store_id})]
            return sorted(found, key=lambda hit: -hit[1])

        return run


def _sizes(conn: sa.Connection) -> set[int]:
    """The embedding sizes that have a table."""
    names = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB "
                                 "'parley_vec_[0-9]*'")).scalars()
    return {int(name.rsplit("_", 1)[1]) for name in names if name.rsplit("_", 1)[1].isdigit()}
