"""A SQLite database whose vector stores were filled before the vec0 index and the store-aware full-text index
existed: opening it with this version migrates the full-text index (rebuilt from the chunks) and copies the
embeddings into sqlite-vec's table, and both halves of a search find what they found before."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa
import sqlean
import sqlite_vec

from parley.retrieval.embeddings import Embedders
from parley.retrieval.search import Query, Searcher
from parley.store import open_store
from parley.store.migrations import MIGRATIONS, statements_for
from parley.store.vector_stores import SqlVectorStores, StoreInfo

pytestmark = pytest.mark.anyio
TEXTS = {"vs_old": ["Mount Etna erupts over Sicily and closes the airport.", "Sourdough needs a starter."],
         "vs_other": ["Etna appears here too, in another store."]}


async def old_database(path, legacy_index: bool = False) -> None:
    """The schema as the version before this one left it, with two stores' chunks; with ``legacy_index``, also the
    vec0 table of whole embeddings (and its triggers) that versions before the byte index kept."""
    embed = Embedders(None, None, 30).get("local")
    db = sqlean.connect(path)
    db.execute("CREATE TABLE parley_migrations (name VARCHAR(200) PRIMARY KEY, applied_at FLOAT NOT NULL)")
    for name, statements in MIGRATIONS[:-1]:
        for statement in statements_for(statements, "sqlite"):
            db.execute(statement)
        db.execute("INSERT INTO parley_migrations VALUES (?, ?)", (name, time.time()))
    if legacy_index:
        db.enable_load_extension(True)
        sqlite_vec.load(db)
        db.execute("CREATE VIRTUAL TABLE parley_vec_256 USING vec0(chunk_id INTEGER PRIMARY KEY, "
                   "store TEXT PARTITION KEY, embedding float[256] distance_metric=cosine)")
        db.execute("CREATE TRIGGER parley_vec_256_ai AFTER INSERT ON parley_vector_store_chunks WHEN "
                   "length(new.embedding) = 1024 BEGIN INSERT INTO parley_vec_256 (chunk_id, store, embedding) "
                   "VALUES (new.id, new.vector_store_id, new.embedding); END")
        db.execute("CREATE TRIGGER parley_vec_256_ad AFTER DELETE ON parley_vector_store_chunks WHEN "
                   "length(old.embedding) = 1024 BEGIN DELETE FROM parley_vec_256 WHERE chunk_id = old.id; END")
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


async def test_an_older_database_is_indexed_when_it_opens(tmp_path) -> None:
    path = tmp_path / "old.db"
    await old_database(path)

    store = await open_store(f"sqlite:///{path}")
    try:
        stores = SqlVectorStores(store)
        await stores.prepare()
        copied = await store.run(lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_vec_i8_256")).scalar())
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
            for statement in ("DROP TRIGGER parley_vec_i8_256_ai", "DROP TRIGGER parley_vec_i8_256_ad",
                              "DROP TABLE parley_vec_i8_256"):
                conn.execute(sa.text(statement))
            stores.sqlite_vec.ensure(conn, 8)

        await store.run(other_sizes_only)
        restarted = SqlVectorStores(store)
        await restarted.prepare()
        assert await store.run(lambda conn: conn.execute(sa.text(
            "SELECT count(*) FROM sqlite_master WHERE name = 'parley_vec_i8_256'")).scalar()) == 0
        searcher = Searcher(store, Embedders(None, None, 30), restarted.pgvector, restarted.sqlite_vec)
        hits = await searcher.search(info, Query(["Etna airport Sicily"], max_results=5, mode="vector"))
        assert hits[0].text == TEXTS["vs_old"][0] and {hit.vector_store_id for hit in hits} == {"vs_old"}
    finally:
        await store.close()


async def test_an_earlier_index_of_whole_embeddings_is_replaced_by_the_byte_index(tmp_path) -> None:
    path = tmp_path / "legacy.db"
    await old_database(path, legacy_index=True)
    store = await open_store(f"sqlite:///{path}")
    try:
        stores = SqlVectorStores(store)
        await stores.prepare()
        names = await store.run(lambda conn: set(conn.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE name LIKE 'parley_vec_%'")).scalars()))
        assert not {"parley_vec_256", "parley_vec_256_ai", "parley_vec_256_ad"} & names
        assert {"parley_vec_i8_256", "parley_vec_i8_256_ai", "parley_vec_i8_256_ad"} <= names
        copied = await store.run(lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_vec_i8_256")).scalar())
        assert copied == 3
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec)
        hits = await searcher.search([StoreInfo("vs_old", "", "local", None, False)],
                                     Query(["Etna airport Sicily"], max_results=5, mode="vector"))
        assert hits[0].text == TEXTS["vs_old"][0] and {hit.vector_store_id for hit in hits} == {"vs_old"}
        # a chunk deleted now leaves the byte index through its trigger (the dropped table's are gone with it)
        await store.run(lambda conn: conn.execute(sa.text(
            "DELETE FROM parley_vector_store_chunks WHERE vector_store_id = 'vs_other'")))
        left = await store.run(lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_vec_i8_256")).scalar())
        assert left == 2
    finally:
        await store.close()
