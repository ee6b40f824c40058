"""SQLite's vector half from embeddings held in memory (parley.store.embedding_matrices): the same chunks and
scores as sqlite-vec's index, kept in step with chunks that any connection inserts or deletes, within its byte
budget, and exact under a filter that removes most candidates. A search that finds no current matrix searches the
index and has the matrix read in the background: each test searches once, waits for that read to end
(``settled``), and checks what the next search finds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from parley.retrieval.search import Query, Searcher
from parley.store import embedding_matrices, open_store
from parley.store.embedding_matrices import EmbeddingMatrices
from parley.store.vector_stores import SqlVectorStores, StoreInfo
from tests.store.rows import fill_chunks, searchers, settled_search

pytestmark = pytest.mark.anyio
TOPICS = ["river", "glacier", "volcano", "desert", "forest", "harbour", "orchard", "canyon"]
MiB = 1024 * 1024


def _texts(n: int, tag: str = "") -> list[str]:
    return [f"A note{tag} about the {TOPICS[i % len(TOPICS)]} seen on walk {i}, with {TOPICS[(i * 3) % 8]}."
            for i in range(n)]


async def _searchers(store, budget: int = 64 * MiB) -> tuple[Searcher, Searcher]:
    """A searcher that holds matrices and one that reads sqlite-vec's index, on the same database."""
    return await searchers(store, matrices=EmbeddingMatrices(budget))


def _ranked(hits) -> list[tuple[int, float]]:
    return [(hit.chunk_id, hit.score) for hit in hits]


def _same(found, expected) -> None:
    """The same scores rank by rank, and each chunk found the same one with the same score, or one tied at the cut
    (the two compute the similarity in float32 in different orders)."""
    found, expected = _ranked(found), _ranked(expected)
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)
    scores = dict(expected)
    for chunk_id, score in found:
        assert abs(scores.get(chunk_id, -2.0) - score) < 1e-5 or abs(expected[-1][1] - score) < 1e-5


async def test_held_matrices_find_what_the_index_finds(sqlite) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(300))
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    for question in ("walks by the river", "a volcano in the desert", "harbour orchard"):
        query = Query([question], max_results=10, mode="vector")
        _same(await settled_search(held, info, query), await indexed.search(info, query))
    assert held.matrices.held_bytes > 0


async def test_chunks_written_by_another_connection_are_seen_and_deleted_ones_are_not(sqlite, tmp_path) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(40))
    held, _ = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    query = Query(["a glacier"], max_results=100, mode="vector")
    assert len(await settled_search(held, info, query)) == 40
    first = held.matrices._held[("vs_a", 256)]

    other = await open_store(f"sqlite:///{tmp_path / 'held.db'}")  # another engine, as another process would be
    try:
        await fill_chunks(other, "vs_a", "file_2", _texts(25, " (second)"))
        hits = await settled_search(held, info, query)
        assert len(hits) == 65 and sum("(second)" in hit.text for hit in hits) == 25
        grown = held.matrices._held[("vs_a", 256)]
        assert grown.version == (65, 0) and len(grown.ids) == 65 and grown.last > first.last

        await other.run(lambda conn: [conn.execute(sa.text(
            f"DELETE FROM {table} WHERE vector_store_id = 'vs_a' AND file_id = 'file_1'"))
            for table in ("parley_vector_store_chunks", "parley_vector_store_files")])
        hits = await settled_search(held, info, query)
        assert len(hits) == 25 and all("(second)" in hit.text for hit in hits)
        assert held.matrices._held[("vs_a", 256)].version == (65, 40)
        assert len(held.matrices._held[("vs_a", 256)].ids) == 25
    finally:
        await other.close()


async def test_a_filter_that_removes_most_candidates_gives_the_nearest_that_pass(sqlite) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(400), '{"kind": "common"}')
    await fill_chunks(sqlite, "vs_a", "file_2", ["Tax forms and receipts.", "Invoices of the year."], '{"kind": "rare"}')
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    query = Query(["walks by the river"], max_results=5, mode="vector",
                  filters={"type": "eq", "key": "kind", "value": "rare"})
    found = await settled_search(held, info, query)
    assert sorted(hit.text for hit in found) == ["Invoices of the year.", "Tax forms and receipts."]
    _same(found, await indexed.search(info, query))


async def test_a_store_past_the_budget_is_searched_through_the_index(sqlite, monkeypatch) -> None:
    await fill_chunks(sqlite, "vs_big", "file_1", _texts(200))
    await fill_chunks(sqlite, "vs_small", "file_1", _texts(20, " (small)"))
    held, indexed = await _searchers(sqlite, budget=100 * (256 * 4 + 8))
    both = [StoreInfo("vs_big", "", "local", None, False), StoreInfo("vs_small", "", "local", None, False)]
    query = Query(["a quiet orchard"], max_results=30, mode="vector")
    found = await settled_search(held, both, query)
    _same(found, await indexed.search(both, query))
    assert set(held.matrices._held) == {("vs_small", 256)}
    assert held.matrices.held_bytes <= held.matrices.budget
    assert set(held.matrices._refused) == {("vs_big", 256)}
    monkeypatch.setattr(embedding_matrices, "IDLE_S", 0.0)  # (a refusal past its time is let go of)
    await settled_search(held, both[1:], query)
    assert held.matrices._refused == {}


async def test_a_matrix_searched_recently_is_not_evicted_and_an_idle_one_is(sqlite, monkeypatch) -> None:
    await fill_chunks(sqlite, "vs_one", "file_1", _texts(60))
    await fill_chunks(sqlite, "vs_two", "file_1", _texts(60, " (two)"))
    held, _ = await _searchers(sqlite, budget=100 * (256 * 4 + 8))
    query = Query(["a canyon"], max_results=5, mode="vector")
    one, two = [StoreInfo("vs_one", "", "local", None, False)], [StoreInfo("vs_two", "", "local", None, False)]
    await settled_search(held, one, query)
    await settled_search(held, two, query)
    assert set(held.matrices._held) == {("vs_one", 256)}  # the first is in use: the second is not held
    monkeypatch.setattr(embedding_matrices, "IDLE_S", 0.0)
    hits = await settled_search(held, two, query)
    assert set(held.matrices._held) == {("vs_two", 256)} and all("(two)" in hit.text for hit in hits)


async def test_a_deleted_store_leaves_no_counts(sqlite) -> None:
    await fill_chunks(sqlite, "vs_gone", "file_1", _texts(5))
    stores = SqlVectorStores(sqlite)
    count = sa.text("SELECT count(*) FROM parley_vector_store_changes WHERE vector_store_id = 'vs_gone'")
    assert await sqlite.read(lambda conn: conn.execute(count).scalar_one()) == 1
    assert await stores.delete("vs_gone", "")
    assert await sqlite.read(lambda conn: conn.execute(count).scalar_one()) == 0
