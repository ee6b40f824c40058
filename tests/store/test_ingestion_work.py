"""Ingestion work in the store: a file whose indexing keeps being cut off is tried a bounded number of times,
and work handed back by a live owner is claimed again."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from parley.retrieval.chunking import parse_strategy
from parley.store.ingestion_work import MAX_ATTEMPTS, IngestionWork
from parley.store.vector_stores import Entry, SqlVectorStores, store_files

pytestmark = pytest.mark.anyio


async def test_a_file_cut_off_every_time_fails_after_its_last_try(store) -> None:
    stores = SqlVectorStores(store)
    work = IngestionWork(store, stores.pgvector)
    created = await stores.create("t-attempts", name="s", description=None, metadata={}, expires_after=None,
                                  embedding_model="local", entries=[])
    await stores.add_file(created["id"], "t-attempts", Entry("file-attempts", "a.txt", None, parse_strategy(None)))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = await work.claim(f"instance-{attempt}", stale_s=30)
        assert job is not None and job.file_id == "file-attempts", f"try {attempt} found nothing to claim"
        await work.release_job(job, f"instance-{attempt}")  # cut off: handed back unfinished
    assert await work.claim("instance-last", stale_s=30) is None
    row = await store.run(lambda conn: conn.execute(sa.select(store_files).where(
        store_files.c.vector_store_id == created["id"])).one())
    assert (row.status, row.owner, row.attempts) == ("failed", None, MAX_ATTEMPTS)
    assert json.loads(row.last_error)["code"] == "server_error"
    assert f"started {MAX_ATTEMPTS} times" in json.loads(row.last_error)["message"]


async def test_a_large_file_is_written_in_statements_of_bounded_size(store) -> None:
    """Each statement of a file's chunks stays within the statement timeout however large the file: one
    statement for thousands of chunks into a large vector index was taken for a database outage."""
    import numpy as np

    from parley.store.ingestion_work import WRITE_BATCH
    from parley.store.vector_stores import store_chunks

    stores = SqlVectorStores(store)
    await stores.prepare()
    work = IngestionWork(store, stores.pgvector, stores.sqlite_vec)
    created = await stores.create("t-large", name="s", description=None, metadata={}, expires_after=None,
                                  embedding_model="local", entries=[])
    await stores.add_file(created["id"], "t-large", Entry("file-large", "big.txt", None, parse_strategy(None)))
    job = await work.claim("instance-large", stale_s=30)
    assert job is not None
    count = 2 * WRITE_BATCH + 44
    texts = [f"chunk number {i}" for i in range(count)]
    vectors = np.random.default_rng(0).standard_normal((count, 8)).astype(np.float32)
    sizes: list[int] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PARLEY_VECTOR_STORE_CHUNKS"):
            sizes.append(len(parameters) if executemany else 1)

    engine = getattr(store.engine, "sync_engine", store.engine)
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert await work.complete(job, "instance-large", texts, vectors)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert sum(sizes) == count and max(sizes) <= WRITE_BATCH, sizes
    stored = await store.run(lambda conn: conn.execute(sa.select(store_chunks.c.seq, store_chunks.c.text).where(
        store_chunks.c.file_id == "file-large").order_by(store_chunks.c.seq)).all())
    assert [(row.seq, row.text) for row in stored] == list(enumerate(texts))


async def test_a_search_writes_a_stores_last_use_only_once_it_is_a_minute_old(store) -> None:
    from parley.store.vector_stores import TOUCH_S, stores as store_rows

    vector_stores = SqlVectorStores(store)
    made = await vector_stores.create("t-touch", name="s", description=None, metadata={}, expires_after=None,
                                      embedding_model="local", entries=[])

    def last_active(conn: sa.Connection) -> int:
        return conn.execute(sa.select(store_rows.c.last_active_at).where(store_rows.c.id == made["id"])).scalar_one()

    info = await vector_stores.info(made["id"], "t-touch")
    await store.run(lambda conn: conn.execute(store_rows.update().where(store_rows.c.id == made["id"]).values(
        last_active_at=info.last_active_at - 1)))  # a second old: not written again
    await vector_stores.touch([await vector_stores.info(made["id"], "t-touch")])
    assert await store.run(last_active) == info.last_active_at - 1
    await store.run(lambda conn: conn.execute(store_rows.update().where(store_rows.c.id == made["id"]).values(
        last_active_at=info.last_active_at - TOUCH_S)))  # a minute old: written
    await vector_stores.touch([await vector_stores.info(made["id"], "t-touch")])
    assert await store.run(last_active) >= info.last_active_at
