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
