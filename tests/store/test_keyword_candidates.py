"""The keyword half past its row bound, on SQLite and PostgreSQL: a query word that no chunk holds never leaves the
search with nothing when its other words are common (PostgreSQL's statistics cannot tell such a word from a rare
one; SQLite counts it as in no chunk). The bound is lowered to one row so that a small table is past it."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from parley.retrieval import terms
from parley.retrieval.embeddings import Embedders
from parley.retrieval.search import Query, Searcher
from parley.store.vector_stores import SqlVectorStores, StoreInfo
from tests.store.rows import store_and_file

pytestmark = pytest.mark.anyio
TEXTS = [f"A landscape note about the hills, entry {i}." for i in range(30)] + ["A landscape of glaciers and ice."]


async def test_a_word_in_no_chunk_beside_common_words_still_finds_them(store, monkeypatch) -> None:
    stores = SqlVectorStores(store)
    await stores.prepare()
    vectors = await Embedders(None, None, 30).get("local").embed(TEXTS)

    def fill(conn: sa.Connection) -> None:
        store_and_file(conn, "vs_kw", "file_1")
        for seq, (text, vector) in enumerate(zip(TEXTS, vectors)):
            conn.execute(sa.text("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, "
                                 "embedding) VALUES ('vs_kw', 'file_1', :seq, :text, :embedding)"),
                         {"seq": seq, "text": text, "embedding": np.asarray(vector, "<f4").tobytes()})

    await store.run(fill)
    if store.engine.dialect.name == "postgresql":
        await store.run(lambda conn: conn.execute(sa.text("ANALYZE parley_vector_store_chunks")))
    monkeypatch.setattr(terms, "CANDIDATE_ROWS", 1)
    searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec)
    info = [StoreInfo("vs_kw", "", "local", None, False)]
    hits = await searcher.search(info, Query(["volcano landscape"], max_results=5, mode="keyword"))
    assert len(hits) == 5 and all("landscape" in hit.text for hit in hits)
    rare = await searcher.search(info, Query(["volcano glaciers landscape"], max_results=5, mode="keyword"))
    assert rare[0].text == TEXTS[-1]


async def test_a_keyword_search_finds_only_its_own_stores_chunks_whatever_their_share(store) -> None:
    """SQLite keeps a store that holds most chunks to after FTS5's ranking (no store condition in the match): a
    search of the large store and one of the small store each find only their own chunks."""
    stores = SqlVectorStores(store)
    await stores.prepare()
    texts = {"vs_big": [f"River delta sediment, survey {i}." for i in range(12)],
             "vs_small": ["River delta sediment in the small store.", "A small river delta."]}
    vectors = await Embedders(None, None, 30).get("local").embed([t for group in texts.values() for t in group])

    def fill(conn: sa.Connection) -> None:
        at = 0
        for store_id, group in texts.items():
            store_and_file(conn, store_id, "file_1")
            for seq, text in enumerate(group):
                conn.execute(sa.text("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, "
                                     "embedding) VALUES (:s, 'file_1', :seq, :text, :embedding)"),
                             {"s": store_id, "seq": seq, "text": text,
                              "embedding": np.asarray(vectors[at], "<f4").tobytes()})
                at += 1

    await store.run(fill)
    searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec)
    for store_id, group in texts.items():
        info = [StoreInfo(store_id, "", "local", None, False)]
        hits = await searcher.search(info, Query(["river delta"], max_results=20, mode="keyword"))
        assert sorted(hit.text for hit in hits) == sorted(group)
        assert {hit.vector_store_id for hit in hits} == {store_id}
