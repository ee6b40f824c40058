"""PostgreSQL with pgvector and --bm25-index: the keyword half as BM25 over a sparsevec HNSW index
(parley.store.pg_bm25). Its scores are BM25's, computed here from the chunks' own lexemes; its counts follow chunks
that any statement inserts or deletes; chunks stored before it are filled in and the index built over them, by one
of two processes starting at once; an index a build cut off left invalid is built again; a start writes the weights
of chunks stored without them; chunks written once the index exists wait beside it, are searched exactly with it
and move into it; a chunk with more than 1,000 distinct lexemes keeps 1,000; without the setting, an index made
before is taken away."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
import sqlalchemy as sa

from parley.retrieval.embeddings import Embedders
from parley.retrieval.search import Query, Searcher
from parley.store import open_store, pg_bm25
from parley.store.pg_bm25_sql import B, K1, MAX_TERMS
from parley.store.vector_stores import SqlVectorStores, StoreInfo
from tests.conftest import _admin
from tests.store.rows import store_and_file

pytestmark = pytest.mark.anyio
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris", "jade", "kelp",
         "lagoon", "meadow", "nebula", "orchid", "prairie", "quartz", "reef", "savanna", "tundra"]


@pytest.fixture
def bm25_url(pgvector_url: str):
    """A database of this test's own on the pgvector server (the counts are the database's)."""
    name = f"parley_bm25_{secrets.token_hex(4)}"
    admin = pgvector_url.replace("postgresql+psycopg://", "postgresql://")

    asyncio.run(_admin(f'CREATE DATABASE "{name}"', admin))
    parts = urlsplit(admin)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin))


def _texts(n: int) -> list[str]:
    return [f"A note on the {WORDS[i % 20]} and the {WORDS[(i * 7) % 20]} {WORDS[(i * 7) % 20]}, entry {i}."
            + (" A long aside about the landscape." * (i % 3)) for i in range(n)]


async def _fill(store, store_id: str, file_id: str, texts: list[str]) -> None:
    def fill(conn: sa.Connection) -> None:
        store_and_file(conn, store_id, file_id)
        conn.execute(sa.text("INSERT INTO parley_vector_store_chunks (vector_store_id, file_id, seq, text, embedding) "
                             "SELECT :s, :f, x.seq, x.text, :e FROM unnest(CAST(:seqs AS integer[]), "
                             "CAST(:texts AS text[])) AS x(seq, text)"),
                     {"s": store_id, "f": file_id, "seqs": list(range(len(texts))), "texts": texts,
                      "e": np.zeros(4, "<f4").tobytes()})  # (one statement: its chunks share one average length)

    await store.run(fill)


async def _lexemes(store) -> dict[int, Counter]:
    rows = await store.read(lambda conn: conn.execute(sa.text(
        "SELECT c.id, u.lexeme, cardinality(u.positions) AS tf FROM parley_vector_store_chunks c, unnest(c.tsv) u"
    )).all())
    chunks: dict[int, Counter] = {}
    for row in rows:
        chunks.setdefault(row.id, Counter())[row.lexeme] = row.tf
    return chunks


async def _counts_agree(store) -> None:
    chunks = await _lexemes(store)
    held = dict((await store.read(lambda conn: conn.execute(sa.text(
        "SELECT lexeme, chunks FROM parley_bm25_terms WHERE chunks <> 0")).all())))
    assert held == dict(Counter(lexeme for terms in chunks.values() for lexeme in terms))
    total = await store.read(lambda conn: conn.execute(sa.text(
        "SELECT chunks, length FROM parley_bm25_totals")).one())
    count = await store.read(lambda conn: conn.execute(sa.text(
        "SELECT count(*) FROM parley_vector_store_chunks")).scalar())
    assert (total.chunks, total.length) == (count, sum(sum(terms.values()) for terms in chunks.values()))


async def _bm25(store, question: str) -> dict[int, float]:
    """Every chunk's BM25 score for ``question``, from its lexemes (the average length of the chunks now)."""
    chunks = await _lexemes(store)
    asked = await store.read(lambda conn: conn.execute(sa.text(
        "SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', :q))"), {"q": question}).scalars().all())
    n = len(chunks)
    average = sum(sum(t.values()) for t in chunks.values()) / n
    frequency = Counter(lexeme for terms in chunks.values() for lexeme in terms)
    scores = {}
    for chunk_id, terms in chunks.items():
        length = sum(terms.values())
        score = sum(math.log(1 + (n - frequency[w] + 0.5) / (frequency[w] + 0.5)) * terms[w] * (K1 + 1)
                    / (terms[w] + K1 * (1 - B + B * length / average)) for w in asked if w in terms)
        if score > 0:
            scores[chunk_id] = score
    return scores


async def test_the_keyword_half_is_bm25_and_its_counts_follow_inserts_and_deletes(bm25_url) -> None:
    store = await open_store(bm25_url)
    try:
        stores = SqlVectorStores(store, bm25_index=True)
        await stores.prepare()
        assert stores.pgvector.enabled and stores.bm25.enabled
        await stores.bm25.fill(store)
        assert stores.bm25.ready
        await _fill(store, "vs_a", "file_1", _texts(60))
        await _counts_agree(store)
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec, bm25=stores.bm25)
        info = [StoreInfo("vs_a", "", "local", None, False)]
        for question in ("glacier harbor", "the kelp landscape", "quartz"):
            hits = await searcher.search(info, Query([question], max_results=8, mode="keyword"))
            expected = sorted((await _bm25(store, question)).items(), key=lambda kv: -kv[1])[:8]
            # (every chunk written at once: all hold the weights of today's average length)
            assert [round(h.score, 4) for h in hits] == pytest.approx(
                [round(s / (1 + s), 4) for _, s in expected], abs=2e-4)
            assert {h.chunk_id for h in hits} <= {c for c, s in (await _bm25(store, question)).items()
                                                  if s >= expected[-1][1] - 1e-4}
        await store.run(lambda conn: conn.execute(sa.text(
            "DELETE FROM parley_vector_store_chunks WHERE id IN (SELECT id FROM parley_vector_store_chunks "
            "ORDER BY id LIMIT 25)")))
        await _counts_agree(store)
        assert await searcher.search(info, Query(["volcano"], max_results=5, mode="keyword")) == []
    finally:
        await store.close()


async def test_chunks_stored_before_are_filled_in(bm25_url) -> None:
    store = await open_store(bm25_url)
    try:
        stores = SqlVectorStores(store)
        await stores.pgvector.prepare(store)
        await _fill(store, "vs_b", "file_1", _texts(30))  # (no trigger yet)
        wide = " ".join(f"w{i:04d}x" for i in range(MAX_TERMS + 200))
        await _fill(store, "vs_b", "file_2", [wide])
        await stores.bm25.prepare(store, stores.pgvector.enabled, True)
        assert not stores.bm25.ready
        await stores.bm25.fill(store)
        assert stores.bm25.ready
        await _counts_agree(store)
        nonzero = await store.read(lambda conn: conn.execute(sa.text(
            "SELECT b.bm25::text FROM parley_bm25_chunks b JOIN parley_vector_store_chunks c ON c.id = b.chunk_id "
            "WHERE c.file_id = 'file_2'")).scalar())
        assert nonzero.count(":") == MAX_TERMS
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec, bm25=stores.bm25)
        hits = await searcher.search([StoreInfo("vs_b", "", "local", None, False)],
                                     Query(["nebula"], max_results=50, mode="keyword"))
        assert hits and all("nebula" in hit.text for hit in hits)
        assert len(hits) == sum("nebula" in text for text in _texts(30))
    finally:
        await store.close()


INDEX_STATE = sa.text("SELECT i.indisvalid, am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                      "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'ix_parley_bm25_chunks'")


async def test_one_process_builds_the_index_a_cut_off_build_is_redone_and_a_start_writes_what_is_missing(
        bm25_url, monkeypatch) -> None:
    monkeypatch.setattr(pg_bm25, "BUILD_WAIT_S", 0.05)  # (the process that does not build looks again soon)
    monkeypatch.setattr(pg_bm25, "FILL_BATCH", 7)  # (several batches, and windows, over the chunks stored before)
    monkeypatch.setattr(pg_bm25, "INDEXED_BATCH", 3)
    monkeypatch.setattr(pg_bm25, "FILL_WINDOW", 10)
    first, second = await open_store(bm25_url), await open_store(bm25_url)
    try:
        stores = [SqlVectorStores(first, bm25_index=True), SqlVectorStores(second, bm25_index=True)]
        await stores[0].pgvector.prepare(first)
        await _fill(first, "vs_d", "file_1", _texts(40))  # (before the setting: no weights, no index)
        await stores[0].prepare()
        await stores[1].prepare()
        assert await first.read(lambda conn: conn.execute(INDEX_STATE).all()) == []
        await asyncio.gather(stores[0].bm25.fill(first), stores[1].bm25.fill(second))
        assert stores[0].bm25.ready and stores[1].bm25.ready
        assert await first.read(lambda conn: conn.execute(INDEX_STATE).all()) == [(True, "hnsw")]
        await _counts_agree(first)

        # A build cut off (the process stopped) leaves the index invalid: the next start takes it away and builds
        # it again, over the chunks written meanwhile too.
        await first.run(lambda conn: conn.execute(sa.text(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_parley_bm25_chunks'::regclass")))
        await _fill(first, "vs_d", "file_2", _texts(5))
        again = SqlVectorStores(first, bm25_index=True)
        await again.prepare()
        await again.bm25.fill(first)
        assert again.bm25.ready
        assert await first.read(lambda conn: conn.execute(INDEX_STATE).all()) == [(True, "hnsw")]
        await _counts_agree(first)
        # A start finds every chunk written (the totals count them) and reads the index at once; one whose chunks
        # were stored without their weights writes them first.
        await first.run(lambda conn: conn.execute(sa.text(
            "ALTER TABLE parley_vector_store_chunks DISABLE TRIGGER parley_bm25_ai")))
        await _fill(first, "vs_d", "file_3", _texts(4))
        await first.run(lambda conn: conn.execute(sa.text(
            "ALTER TABLE parley_vector_store_chunks ENABLE TRIGGER parley_bm25_ai")))
        restarted = SqlVectorStores(first, bm25_index=True)
        await restarted.prepare()
        await restarted.bm25.fill(first)
        assert restarted.bm25.ready
        await _counts_agree(first)
        searcher = Searcher(first, Embedders(None, None, 30), again.pgvector, again.sqlite_vec, bm25=again.bm25)
        hits = await searcher.search([StoreInfo("vs_d", "", "local", None, False)],
                                     Query(["nebula"], max_results=50, mode="keyword"))
        assert len(hits) == sum("nebula" in text for text in _texts(40) + _texts(5) + _texts(4))
    finally:
        await first.close()
        await second.close()


async def _rows(store) -> tuple[int, int]:
    """(weights in the index's table, weights waiting beside it)."""
    return tuple(await store.read(lambda conn: conn.execute(sa.text(
        "SELECT (SELECT count(*) FROM parley_bm25_chunks), (SELECT count(*) FROM parley_bm25_pending)")).one()))


async def test_chunks_written_once_the_index_exists_wait_beside_it_are_found_and_move_into_it(
        bm25_url, monkeypatch) -> None:
    """A write of chunks does not wait for the index's graph: their weights wait beside it, are searched exactly with
    it, and are moved into it in the background; a deleted waiting chunk leaves both; while more wait than the bound,
    the keyword half ranks as it does without the index."""
    store = await open_store(bm25_url)
    try:
        stores = SqlVectorStores(store, bm25_index=True)
        await stores.prepare()
        texts = _texts(50)
        await _fill(store, "vs_e", "file_1", texts[:20])  # (before the build: into the index's table)
        await stores.bm25.fill(store)
        assert stores.bm25.ready and await _rows(store) == (20, 0)
        await _fill(store, "vs_e", "file_2", texts[20:])
        assert await _rows(store) == (20, 30)
        await _counts_agree(store)
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec, bm25=stores.bm25)
        info = [StoreInfo("vs_e", "", "local", None, False)]

        async def nebula() -> list:
            return await searcher.search(info, Query(["nebula"], max_results=50, mode="keyword"))

        before = await nebula()
        assert len(before) == sum("nebula" in text for text in texts)
        assert {h.chunk_id for h in before} & set(await store.read(lambda conn: conn.execute(sa.text(
            "SELECT chunk_id FROM parley_bm25_pending")).scalars().all()))  # (found among the waiting ones too)

        await store.run(lambda conn: conn.execute(sa.text(
            "DELETE FROM parley_vector_store_chunks WHERE id IN (SELECT id FROM parley_vector_store_chunks "
            "ORDER BY id DESC LIMIT 5)")))
        assert await _rows(store) == (20, 25)
        await _counts_agree(store)
        monkeypatch.setattr(pg_bm25, "MOVE_BATCH", 10)
        assert [await stores.bm25.move_pending(store) for _ in range(4)] == [10, 10, 5, 0]
        assert await _rows(store) == (45, 0) and await stores.bm25.count_pending(store) == 0
        await _counts_agree(store)
        after = await nebula()  # (the same chunks, less the deleted ones, now read from the index)
        kept = set(await store.read(lambda conn: conn.execute(sa.text(
            "SELECT id FROM parley_vector_store_chunks")).scalars().all()))
        assert {h.chunk_id for h in after} == {h.chunk_id for h in before} & kept
        assert len(after) == sum("nebula" in text for text in texts[:45])

        monkeypatch.setattr(pg_bm25, "PENDING_SEARCH_MAX", 3)
        await _fill(store, "vs_e", "file_3", _texts(4))
        assert await stores.bm25.count_pending(store) == 4 and not stores.bm25.searchable
        assert len(await nebula()) == sum("nebula" in text for text in texts[:45] + _texts(4))
        await stores.bm25.move_pending(store)
        assert await stores.bm25.count_pending(store) == 0 and stores.bm25.searchable

        monkeypatch.setattr(pg_bm25, "MOVE_IDLE_S", 0.01)  # (the background move, as a server runs it)
        await _fill(store, "vs_e", "file_4", _texts(3))
        mover = asyncio.create_task(stores.bm25.run(store))
        try:
            while (await _rows(store))[1]:
                await asyncio.sleep(0.01)
        finally:
            mover.cancel()
            await asyncio.gather(mover, return_exceptions=True)
        assert await _rows(store) == (52, 0)
        await _counts_agree(store)
    finally:
        await store.close()


async def test_a_search_reads_every_waiting_weight_where_the_best_are_another_stores(bm25_url, monkeypatch) -> None:
    monkeypatch.setattr(pg_bm25, "WAITING_READ", 1)  # (the first read: as many waiting weights as the search keeps)
    store = await open_store(bm25_url)
    try:
        stores = SqlVectorStores(store, bm25_index=True)
        await stores.prepare()
        await stores.bm25.fill(store)
        texts = _texts(40)
        await _fill(store, "vs_g", "file_1", texts)
        await _fill(store, "vs_h", "file_2", ["nebula nebula nebula nebula"] * 400)  # (better scores, another store)
        assert await _rows(store) == (0, 440)
        searcher = Searcher(store, Embedders(None, None, 30), stores.pgvector, stores.sqlite_vec, bm25=stores.bm25)
        hits = await searcher.search([StoreInfo("vs_g", "", "local", None, False)],
                                     Query(["nebula"], max_results=50, mode="keyword"))
        assert len(hits) == sum("nebula" in text for text in texts) > 0
        assert all(hit.vector_store_id == "vs_g" and "nebula" in hit.text for hit in hits)
    finally:
        await store.close()


async def test_without_the_setting_an_index_made_before_is_taken_away(bm25_url) -> None:
    store = await open_store(bm25_url)
    try:
        await SqlVectorStores(store, bm25_index=True).prepare()
        count = sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'parley_bm25_%'")
        assert await store.read(lambda conn: conn.execute(count).scalar()) == 2
        stores = SqlVectorStores(store)
        await stores.prepare()
        assert not stores.bm25.enabled
        assert await store.read(lambda conn: conn.execute(count).scalar()) == 0
        assert await store.read(lambda conn: conn.execute(sa.text(
            "SELECT to_regclass('parley_bm25_chunks')")).scalar()) is None
        await _fill(store, "vs_c", "file_1", _texts(3))  # (chunks are written as before)
    finally:
        await store.close()
