"""SQLite: the embeddings of the vector stores searched most recently, held in memory as one float32 matrix per
store, so that the vector half of a search is one matrix product (exact, and several times faster than
sqlite-vec's scan: 8.6 against 37 ms at 100,000 chunks, bench/README.md) instead of a read of the store's index.

Every process holds its own, bounded by ``budget`` bytes (``--vector-cache-mb``). A store whose matrix does not
fit, once what has not been searched for ``IDLE_S`` is let go, is searched through sqlite-vec's index as before.
(While a store's new chunks are added to its matrix, the matrix and its copy with them are both in memory for a
moment.)

A matrix is kept in step with the database by the counts of chunks inserted into and deleted from each store,
which triggers keep in ``parley_vector_store_changes`` whichever process writes them (migration 0021). A search
reads the store's counts first: the same counts, the matrix is current and is searched; else the index is, while
the matrix is brought up to date in the background: only inserts since, the chunks after the last one held are
read and added (chunk ids only grow); a delete since, the store is read again. Each read is one transaction, so
the counts and the rows it reads agree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

log = logging.getLogger("parley.store")
IDLE_S = 60.0  # a matrix not searched for this long gives way to one that needs the room
DROP_S = 600.0  # a matrix not searched for this long is let go at the next search of any store
FETCH = 2048  # rows fetched from the database at a time while a matrix is read

CHANGES = sa.text("SELECT inserted, deleted FROM parley_vector_store_changes WHERE vector_store_id = :s")
COUNT = sa.text("SELECT count(*) FROM parley_vector_store_chunks WHERE vector_store_id = :s AND id > :after")
ROWS = ("SELECT id, embedding FROM parley_vector_store_chunks WHERE vector_store_id = ? AND id > ? "
        "AND length(embedding) = ?")

Version = tuple[int, int]  # (chunks inserted, chunks deleted) in a store, as the triggers count them


@dataclass
class Matrix:
    """One store's embeddings of one size: ``vectors[i]`` (normalized) is chunk ``ids[i]``'s."""

    ids: np.ndarray
    vectors: np.ndarray
    version: Version
    last: int  # the highest chunk id read
    used: float  # (monotonic) when it was last searched

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.vectors.nbytes)

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """The cosine similarity of each chunk to ``vector`` (run off the event loop: numpy leaves the GIL)."""
        norm = float(np.linalg.norm(vector))
        return self.vectors @ (vector.astype(np.float32) / (norm or 1.0))


class EmbeddingMatrices:
    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes; 0 holds none
        self.enabled = False  # (set once the database is SQLite and has the change counts)
        self._held: dict[tuple[str, int], Matrix] = {}
        self._refused: dict[tuple[str, int], tuple[Version, float]] = {}  # too large at that version, since when
        self._loads: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._loading = asyncio.Lock()

    @property
    def held_bytes(self) -> int:
        return sum(matrix.nbytes for matrix in self._held.values())

    async def prepare(self, store: Any) -> None:
        if store.engine.dialect.name != "sqlite" or self.budget <= 0:
            return

        def counted(conn: sa.Connection) -> bool:
            return conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                        "name = 'parley_vector_store_changes'")).first() is not None

        self.enabled = await store.read(counted)

    async def held(self, store: Any, store_ids: list[str], dims: int) -> dict[str, Matrix]:
        """The matrices of ``dims``-dimension embeddings of those stores that are current (their counts read in one
        transaction). The others are searched through the index while they are read, or brought up to date, in the
        background: a search never waits for a store to be read (0.31-0.41 s at 100,000 chunks,
        bench/README.md)."""
        now = time.monotonic()
        for other in [k for k, m in self._held.items() if now - m.used > DROP_S and k[0] not in store_ids]:
            del self._held[other]
        for other in [k for k, (_, since) in self._refused.items() if now - since >= IDLE_S]:
            del self._refused[other]  # (a refusal counts for IDLE_S: the store's next search tries again)
        versions = await store.read(lambda conn: {store_id: _version(conn, store_id) for store_id in store_ids})
        current = {}
        for store_id, version in versions.items():
            key = (store_id, dims)
            held = self._held.get(key)
            if held is not None:
                held.used = now
                if held.version == version:
                    current[store_id] = held
                    continue
            refused = self._refused.get(key)
            if key not in self._loads and (refused is None or refused[0] != version):
                self._loads[key] = task = asyncio.create_task(self._load(store, key, version))
                task.add_done_callback(self._ended)
        return current

    def _ended(self, task: asyncio.Task[None]) -> None:
        for key in [key for key, load in self._loads.items() if load is task]:
            del self._loads[key]

    async def settled(self) -> None:
        """Once the reads in progress have ended."""
        while self._loads:
            await asyncio.wait(list(self._loads.values()))
            for task in [task for task in self._loads.values() if task.done()]:
                self._ended(task)

    async def _load(self, store: Any, key: tuple[str, int], version: Version) -> None:
        """Read the store's matrix (or only its chunks inserted since, where none was deleted) and hold it, where it
        fits."""
        store_id, dims = key
        async with self._loading:  # (one read at a time: with the budget, this bounds the memory reads take)
            held = self._held.get(key)
            room = self.budget - self.held_bytes + (held.nbytes if held is not None else 0)
            room += self._evictable(key, time.monotonic())
            try:
                read = await store.read(lambda conn: _read(conn, store_id, dims, held, room), bounded=False)
            except Exception:  # (the database gone or busy: the index serves, and the next search tries again)
                log.warning("vector store %s: its embeddings could not be read into memory", store_id, exc_info=True)
                return
            if read is None:
                self._refused[key] = (version, time.monotonic())
                return
            self._refused.pop(key, None)
            self._make_room(key, read.nbytes - (held.nbytes if held is not None else 0))
            self._held[key] = read

    def _evictable(self, key: tuple[str, int], now: float) -> int:
        return sum(m.nbytes for k, m in self._held.items() if k != key and now - m.used > IDLE_S)

    def _make_room(self, key: tuple[str, int], needed: int) -> None:
        """Let go of the matrices searched longest ago (and not within ``IDLE_S``) until ``needed`` more bytes fit."""
        now = time.monotonic()
        free = self.budget - self.held_bytes
        for other, held in sorted(self._held.items(), key=lambda item: item[1].used):
            if free >= needed:
                return
            if other != key and now - held.used > IDLE_S:
                free += held.nbytes
                del self._held[other]


def forget(conn: sa.Connection, store_id: str) -> None:
    """A deleted store's counts (its deletes have been counted; nothing will be searched in it again)."""
    conn.execute(sa.text("DELETE FROM parley_vector_store_changes WHERE vector_store_id = :s"), {"s": store_id})


def _version(conn: sa.Connection, store_id: str) -> Version:
    row = conn.execute(CHANGES, {"s": store_id}).first()
    return (int(row.inserted), int(row.deleted)) if row is not None else (0, 0)


def _read(conn: sa.Connection, store_id: str, dims: int, base: Matrix | None, room: int) -> Matrix | None:
    """One transaction's work: the store's matrix (``base`` and the chunks after its last one where none was deleted
    since, else every chunk), or ``None`` when it would take more than ``room`` bytes."""
    version = _version(conn, store_id)
    if base is not None and base.version[1] != version[1]:
        base = None  # (a delete since: read again from the start)
    after = base.last if base is not None else 0
    count = int(conn.execute(COUNT, {"s": store_id, "after": after}).scalar_one())
    held = base.nbytes if base is not None else 0
    if held + count * (dims * 4 + 8) > room:
        return None
    ids = np.empty(count, dtype=np.int64)
    vectors = np.empty((count, dims), dtype=np.float32)
    n = 0
    cursor = conn.connection.driver_connection.cursor()  # (the driver's own rows: faster than SQLAlchemy's)
    try:
        cursor.execute(ROWS, (store_id, after, dims * 4))
        while (rows := cursor.fetchmany(FETCH)) and n < count:  # (within one transaction, no more than counted)
            rows = rows[:count - n]
            ids[n:n + len(rows)] = [row[0] for row in rows]
            vectors[n:n + len(rows)] = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(
                len(rows), dims)
            n += len(rows)
    finally:
        cursor.close()
    ids, vectors = ids[:n], vectors[:n]
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]  # (no temporary as large as the matrix)
    vectors /= np.where(norms > 0, norms, 1.0)
    last = int(ids.max()) if n else after
    if base is not None:
        ids, vectors = np.concatenate([base.ids, ids]), np.concatenate([base.vectors, vectors])
    return Matrix(ids, vectors, version, last, time.monotonic())
