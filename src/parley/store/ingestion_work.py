"""The ingestion work of vector stores: each file added to a store is a row ``in_progress`` that an instance
claims through ``owner`` (or takes over from an instance whose heartbeat stopped), so work survives restarts
and is picked up by any instance; its chunks and ``completed`` land in one transaction only while the claim
holds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from parley.store.pgvector import PgVector
from parley.store.sqlite_vec_index import SqliteVec
from parley.store.sql import SqlStore
from parley.store.tables import instances
from parley.store.vector_stores import store_chunks, store_files, stores


MAX_ATTEMPTS = 3
WRITE_BATCH = 128  # chunks one statement writes: a file of thousands stays within the statement timeout
GAVE_UP = json.dumps({"code": "server_error", "message": f"Indexing this file was started {MAX_ATTEMPTS} times and "
                      "cut off each time (the server doing it stopped or lost its database); it is not tried again."})


@dataclass
class Job:
    """A claimed file to ingest."""

    vector_store_id: str
    file_id: str
    tenant: str
    chunking: dict[str, Any]
    embedding_model: str



class IngestionWork:
    def __init__(self, store: SqlStore, pgvector: PgVector, sqlite_vec: SqliteVec | None = None) -> None:
        self.store = store
        self.pgvector = pgvector
        self.sqlite_vec = sqlite_vec or SqliteVec()

    async def claim(self, instance: str, stale_s: float, skip: frozenset[tuple[str, str]] = frozenset()) -> Job | None:
        """Take one ``in_progress`` file that no live instance holds (never held, or held by an instance whose
        heartbeat stopped: ``kill -9``, a crash), for ``instance``.  Another instance's work is taken over only
        once this one has reached the database for ``stale_s`` (see :meth:`SqlStore.reachable_for`)."""
        alive = sa.select(instances.c.id).where(instances.c.heartbeat_at >= self.store._now - stale_s)
        free = sa.or_(store_files.c.owner.is_(None), store_files.c.owner.not_in(alive)) \
            if self.store.reachable_for(stale_s) else store_files.c.owner.is_(None)
        candidates = sa.select(store_files.c.vector_store_id, store_files.c.file_id, store_files.c.owner,
                               store_files.c.attempts).where(store_files.c.status == "in_progress", free).order_by(
            store_files.c.created_ns).limit(len(skip) + 8)

        def claim(conn: sa.Connection) -> Job | None:
            for row in conn.execute(candidates).all():
                if (row.vector_store_id, row.file_id) in skip:
                    continue
                held = store_files.c.owner.is_(None) if row.owner is None else store_files.c.owner == row.owner
                this = store_files.update().where(
                    store_files.c.vector_store_id == row.vector_store_id, store_files.c.file_id == row.file_id,
                    store_files.c.status == "in_progress", held, store_files.c.attempts == row.attempts)
                if row.attempts >= MAX_ATTEMPTS:  # every try so far was cut off: stop trying
                    conn.execute(this.values(status="failed", owner=None, last_error=GAVE_UP))
                    continue
                if not conn.execute(this.values(owner=instance, attempts=row.attempts + 1)).rowcount:
                    continue  # another instance was quicker
                job = conn.execute(sa.select(store_files.c.tenant, store_files.c.chunking, stores.c.embedding_model)
                                   .join(stores, stores.c.id == store_files.c.vector_store_id)
                                   .where(store_files.c.vector_store_id == row.vector_store_id,
                                          store_files.c.file_id == row.file_id)).first()
                if job is None:
                    continue
                return Job(row.vector_store_id, row.file_id, job.tenant, json.loads(job.chunking),
                           job.embedding_model)
            return None

        return await self.store.run(claim)

    def _held(self, job: Job, instance: str) -> Any:
        return sa.and_(store_files.c.vector_store_id == job.vector_store_id, store_files.c.file_id == job.file_id,
                       store_files.c.status == "in_progress", store_files.c.owner == instance)

    async def complete(self, job: Job, instance: str, texts: list[str], vectors: np.ndarray) -> bool:
        """Store the file's chunks and mark it completed, if this instance still holds it (a cancelled batch,
        a deleted file or a takeover after a stall leave nothing behind)."""
        rows = [{"vector_store_id": job.vector_store_id, "file_id": job.file_id, "seq": i, "text": text,
                 "embedding": vectors[i].astype("<f4").tobytes()} for i, text in enumerate(texts)]
        usage = sum(len(t.encode()) + vectors.shape[1] * 4 for t in texts) if texts else 0

        def complete(conn: sa.Connection) -> bool:
            if not conn.execute(store_files.update().where(self._held(job, instance))
                                .values(status="completed", owner=None, usage_bytes=usage)).rowcount:
                return False
            if rows and self.sqlite_vec.enabled:
                self.sqlite_vec.ensure(conn, int(vectors.shape[1]))  # (its trigger copies the rows in)
            for start in range(0, len(rows), WRITE_BATCH):
                batch = rows[start:start + WRITE_BATCH]
                if self.pgvector.enabled:  # (the first makes the size's index: a lock and a CREATE INDEX)
                    self.pgvector.insert(conn, batch, vectors[start:start + WRITE_BATCH])
                else:
                    conn.execute(store_chunks.insert(), batch)
            return True

        # One transaction: the file's row, at most two statements of the vector index, then statements of at most
        # WRITE_BATCH chunks, each within the statement timeout.
        return await self.store.run(complete, statements=3 + -(-len(rows) // WRITE_BATCH))

    async def fail(self, job: Job, instance: str, code: str, message: str) -> None:
        error = json.dumps({"code": code, "message": message[:1000]})
        await self.store.run(lambda conn: conn.execute(store_files.update().where(self._held(job, instance))
                                                       .values(status="failed", owner=None, last_error=error)))

    async def release_job(self, job: Job, instance: str) -> None:
        """Hand back one file this instance holds but could not finish writing (the database went away):
        any instance, this one included, claims it again."""
        await self.store.run(lambda conn: conn.execute(store_files.update().where(self._held(job, instance))
                                                       .values(owner=None)))

    async def release(self, instance: str) -> None:
        """Hand back what this instance holds (a clean shutdown): another instance takes it at once."""
        await self.store.run(lambda conn: conn.execute(store_files.update().where(
            store_files.c.owner == instance, store_files.c.status == "in_progress").values(owner=None)))
