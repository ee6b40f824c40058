"""kill -9 of the instance indexing a file: another instance takes the work over once the first one's
heartbeat is stale, and the file ends completed; nothing stays in_progress."""

from __future__ import annotations

import asyncio
import random
import time

import openai
import sqlalchemy as sa

from parley.store.sql import open_store
from parley.store.vector_stores import store_files
from parley.testing import ParleyProcess


def _row(db_url: str, store_id: str) -> tuple[str, str | None]:
    async def read() -> tuple[str, str | None]:
        store = await open_store(db_url)
        try:
            row = await store.run(lambda conn: conn.execute(
                sa.select(store_files.c.status, store_files.c.owner)
                .where(store_files.c.vector_store_id == store_id)).one())
            return row.status, row.owner
        finally:
            await store.close()

    return asyncio.run(read())


def _big_text() -> bytes:
    rng = random.Random(9)
    words = [f"{rng.choice('bcdfgklmnprstvz')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{i % 97}" for i in range(5000)]
    return " ".join(rng.choice(words) for _ in range(150_000)).encode()  # about 1 MB: a second or more of indexing


def test_kill_9_mid_ingestion_is_taken_over_and_completes(backend, db_url) -> None:
    args = ("--upstream", backend.url, "--db", db_url, "--instance-stale-s", "2")
    with ParleyProcess(*args) as first:
        with openai.OpenAI(base_url=first.base_url, api_key="x", max_retries=0, timeout=60) as client:
            uploaded = client.files.create(file=("big.txt", _big_text()), purpose="assistants")
            store = client.vector_stores.create(name="big", file_ids=[uploaded.id])
        deadline = time.monotonic() + 30
        while _row(db_url, store.id)[1] is None:  # until the first instance holds the work
            assert time.monotonic() < deadline, "the first instance never claimed the file"
            time.sleep(0.05)
        first.process.kill()  # SIGKILL: its work is neither finished nor handed back
        first.process.wait()
    status, owner = _row(db_url, store.id)
    assert status == "in_progress" and owner is not None, "the file was indexed before the kill; nothing to take over"
    with ParleyProcess(*args) as second:
        with openai.OpenAI(base_url=second.base_url, api_key="x", max_retries=0, timeout=60) as client:
            deadline = time.monotonic() + 90
            while (done := client.vector_stores.files.retrieve(file_id=uploaded.id,
                                                               vector_store_id=store.id)).status == "in_progress":
                assert time.monotonic() < deadline, "the abandoned ingestion was never taken over"
                time.sleep(0.2)
            assert done.status == "completed", done.last_error
            assert client.vector_stores.retrieve(store.id).file_counts.completed == 1
            chunks = list(client.vector_stores.files.content(file_id=uploaded.id, vector_store_id=store.id))
            assert len(chunks) > 500
    assert _row(db_url, store.id) == ("completed", None)
