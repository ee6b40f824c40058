"""Rows the store tests write directly: a vector store, a completed file in it, and its chunks."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from parley.retrieval.embeddings import Embedders
from parley.retrieval.search import Query, Searcher
from parley.store.vector_stores import SqlVectorStores, StoreInfo


def store_and_file(conn: sa.Connection, store_id: str, file_id: str, attributes: str = "{}") -> None:
    """The vector store ``store_id`` (unless it exists) and its completed file ``file_id``."""
    conn.execute(sa.text("INSERT INTO parley_vector_stores (id, tenant, created_at, created_ns, last_active_at, "
                         "embedding_model) VALUES (:s, '', 0, 0, 0, 'local') ON CONFLICT DO NOTHING"), {"s": store_id})
    conn.execute(sa.text("INSERT INTO parley_vector_store_files (vector_store_id, file_id, tenant, filename, "
                         "created_at, created_ns, status, chunking, usage_bytes, attributes) VALUES (:s, :f, '', "
                         "'notes.txt', 0, 0, 'completed', '{}', 0, :a)"), {"s": store_id, "f": file_id, "a": attributes})


async def fill_chunks(store, store_id: str, file_id: str, texts: list[str], attributes: str = "{}") -> None:
    """The store and its completed file (:func:`store_and_file`) holding a chunk of each text, embedded by the local
    model."""
    vectors = await Embedders(None, None, 30).get("local").embed(texts)

    def fill(conn: sa.Connection) -> None:
        store_and_file(conn, store_id, file_id, attributes)
        conn.execute(sa.text("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, embedding) "
                             "VALUES (:s, :f, :seq, :text, :embedding)"),
                     [{"s": store_id, "f": file_id, "seq": seq, "text": text,
                       "embedding": np.asarray(vector, "<f4").tobytes()}
                      for seq, (text, vector) in enumerate(zip(texts, vectors))])

    await store.run(fill)


async def searchers(store, **held) -> tuple[Searcher, Searcher]:
    """A searcher given what it holds in memory (``matrices=``, ``postings=``: each prepared here, and enabled) and
    one that holds nothing, on the same database."""
    stores = SqlVectorStores(store)
    await stores.prepare()
    for kept in held.values():
        await kept.prepare(store)
        assert kept.enabled
    embedders = Embedders(None, None, 30)
    return (Searcher(store, embedders, stores.pgvector, stores.sqlite_vec, **held),
            Searcher(store, embedders, stores.pgvector, stores.sqlite_vec))


async def settled_search(searcher: Searcher, stores: list[StoreInfo], query: Query):
    """A search once what the first one had read into memory (matrices, postings), or brought up to date, is held."""
    await searcher.search(stores, query)
    await searcher.matrices.settled()
    await searcher.postings.settled()
    return await searcher.search(stores, query)
