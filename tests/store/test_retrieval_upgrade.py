"""A SQLite database whose vector stores were filled before the vec0 index and the store-aware full-text index
existed: opening it with this version migrates the full-text index (rebuilt from the chunks) and copies the
embeddings into sqlite-vec's table, and both halves of a search find what they found before."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa
import sqlean

from parley.retrieval.embeddings import Embedders
from parley.retrieval.search import Query, Searcher
from parley.store import open_store
from parley.store.migrations import MIGRATIONS, statements_for
from parley.store.vector_stores import SqlVectorStores, StoreInfo

pytestmark = pytest.mark.anyio
TEXTS = {"vs_old": ["Mount Etna erupts over Sicily and closes the airport.", "Sourdough needs a starter."],
         "vs_other": ["Etna appears here too, in another store."]}


async def test_an_older_database_is_indexed_when_it_opens(tmp_path) -> None:
    path = tmp_path / "old.db"
    embed = Embedders(None, None, 30).get("local")
    db = sqlean.connect(path)
    db.execute("CREATE TABLE parley_migrations (name VARCHAR(200) PRIMARY KEY, applied_at FLOAT NOT NULL)")
    for name, statements in MIGRATIONS[:-1]:  # the schema as the version before this one left it
        for statement in statements_for(statements, "sqlite"):
            db.execute(statement)
        db.execute("INSERT INTO parley_migrations VALUES (?, ?)", (name, time.time()))
    for store_id, texts in TEXTS.items():
        db.execute("INSERT INTO parley_vector_stores (id, tenant, created_at, created_ns, last_active_at, "
                   "embedding_model) VALUES (?, '', 0, 0, 0, 'local')", (store_id,))
        db.execute("INSERT INTO parley_vector_store_files (vector_store_id, file_id, tenant, filename, created_at, "
                   "created_ns, status, chunking, usage_bytes) VALUES (?, 'file_1', '', 'notes.txt', 0, 0, 'completed', "
                   "'{}', 0)", (store_id,))
        vectors = await embed.embed(texts)
        for seq, (text, vector) in enumerate(zip(texts, vectors)):
            db.execute("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, embedding) "
                       "VALUES (?, 'file_1', ?, ?, ?)", (store_id, seq, text, np.asarray(vector, "<f4").tobytes()))
    db.commit()
    db.close()

    store = await open_store(f"sqlite:///{path}")
    try:
        stores = SqlVectorStores(store)
        await stores.prepare()
        copied = await store.run(lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_vec_256")).scalar())
        assert copied == 3
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec)
        info = [StoreInfo("vs_old", "", "local", None, False)]
        for mode in ("keyword", "vector", "hybrid"):
            hits = await searcher.search(info, Query(["Etna airport Sicily"], max_results=5, mode=mode))
            assert hits[0].text == TEXTS["vs_old"][0], mode
            assert {hit.vector_store_id for hit in hits} == {"vs_old"}, "another store's chunk is never found"

        # A database whose index has tables of other sizes only (this size's chunks written by a version
        # without the index): the next start makes no table for it, and its search reads row by row.
        def other_sizes_only(conn: sa.Connection) -> None:
            for statement in ("DROP TRIGGER parley_vec_256_ai", "DROP TRIGGER parley_vec_256_ad",
                              "DROP TABLE parley_vec_256"):
                conn.execute(sa.text(statement))
            stores.sqlite_vec.ensure(conn, 8)

        await store.run(other_sizes_only)
        restarted = SqlVectorStores(store)
        await restarted.prepare()
        assert await store.run(lambda conn: conn.execute(sa.text(
            "SELECT count(*) FROM sqlite_master WHERE name = 'parley_vec_256'")).scalar()) == 0
        searcher = Searcher(store, Embedders(None, None, 30), restarted.pgvector, restarted.sqlite_vec)
        hits = await searcher.search(info, Query(["Etna airport Sicily"], max_results=5, mode="vector"))
        assert hits[0].text == TEXTS["vs_old"][0] and {hit.vector_store_id for hit in hits} == {"vs_old"}
    finally:
        await store.close()
