"""SQLite's keyword half ranked in memory (parley.store.fts_postings, parley.retrieval.bm25): the same chunks and
the same scores as FTS5's own ranking of the same query, for a word in every chunk, a rare word, a word in no chunk,
a word FTS5 splits into a phrase, a stemmed and an accented word, past the bound on candidates, in one store of two,
under a filter that removes most candidates, and in an empty store; kept in step with chunks that another
connection inserts or deletes (also when a deleted store's counts are gone); and FTS5 ranks whatever does not fit
the budget. A search that finds the lengths not current is ranked by FTS5 and has them read in the background:
each test searches once, waits for that read (``settled``), and checks what the next search finds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from parley.retrieval import terms
from parley.retrieval.search import Query, Searcher
from parley.store import fts_postings, open_store
from parley.store.embedding_matrices import forget
from parley.store.fts_postings import HeldPostings
from parley.store.vector_stores import StoreInfo
from tests.store.rows import fill_chunks, searchers, settled_search, store_and_file

pytestmark = pytest.mark.anyio
PLACES = ["river", "glacier", "volcano", "desert", "forest", "harbour", "orchard", "canyon"]
MiB = 1024 * 1024
QUESTIONS = [
    "notes",  # in every chunk
    "the glacier walk",  # common words and a less common one
    "volcanoes walking",  # stemmed as the index stems them
    "kilimanjaro glacier",  # a word in no chunk beside one in many
    "format_spec of the orchard",  # FTS5 splits format_spec: a phrase of two tokens
    "café harbour",  # an accent the index drops
    "zzz qqq",  # nothing
]


def _texts(n: int, tag: str = "") -> list[str]:
    texts = []
    for i in range(n):
        place, other = PLACES[i % len(PLACES)], PLACES[(i * 3 + i // 8) % len(PLACES)]
        extra = " The format_spec rule applies." if i % 11 == 0 else (" Format and spec differ." if i % 7 == 0 else "")
        extra += " A cafe by the harbour." if i % 13 == 0 else ""
        texts.append(f"Notes{tag} about the {place} seen on walk {i}, with {other} and {place} again.{extra}")
    return texts


async def _searchers(store, budget: int = 16 * MiB) -> tuple[Searcher, Searcher]:
    """A searcher that ranks in memory and one that has FTS5 rank, on the same database."""
    return await searchers(store, postings=HeldPostings(budget))


def _same(found, expected) -> None:
    """The same scores rank by rank, and each chunk found with the score FTS5 gave it, or tied with the last one
    (chunks tied in score may come in either order, so a cut through a tie may keep either)."""
    found = [(hit.chunk_id, hit.score) for hit in found] if found and not isinstance(found[0], tuple) else found
    expected = [(hit.chunk_id, hit.score) for hit in expected] if expected and not isinstance(expected[0], tuple) \
        else expected
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], rel=1e-9, abs=1e-12)
    scores = dict(expected)
    for chunk_id, score in found:
        assert scores.get(chunk_id, -1.0) == pytest.approx(score, rel=1e-9, abs=1e-12) or \
            expected[-1][1] == pytest.approx(score, rel=1e-9, abs=1e-12)


async def _both(held: Searcher, indexed: Searcher, stores: list[StoreInfo], query: Query):
    """The keyword half's own ranking (unrounded scores) by each searcher, once the lengths are held."""
    ids = [info.id for info in stores]
    await held._keyword(ids, query.queries[0], query.filters, 40)
    await held.postings.settled()
    return (await held._keyword(ids, query.queries[0], query.filters, 40),
            await indexed._keyword(ids, query.queries[0], query.filters, 40))


async def _held_ranking_is_used(searcher: Searcher, stores: list[StoreInfo], question: str) -> None:
    """The in-memory ranking answers (rather than FTS5): it ranks through ``HeldPostings.ranked``."""
    calls = []
    ranked = searcher.postings.ranked

    async def counted(store, rank):
        found = await ranked(store, rank)
        calls.append(found is not None)
        return found

    searcher.postings.ranked = counted
    try:
        await searcher.search(stores, Query([question], max_results=5, mode="keyword"))
    finally:
        searcher.postings.ranked = ranked
    assert calls == [True]


async def test_the_ranking_in_memory_is_fts5s_ranking(sqlite) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(300))
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    for question in QUESTIONS:
        query = Query([question], max_results=20, mode="keyword")
        found = await settled_search(held, info, query)
        _same(found, await indexed.search(info, query))
        assert bool(found) == (question != "zzz qqq")
        _same(*await _both(held, indexed, info, query))
    await _held_ranking_is_used(held, info, "the glacier walk")
    phrase = await held.search(info, Query(["format_spec"], max_results=50, mode="keyword"))
    assert phrase and all("format_spec" in hit.text for hit in phrase)
    accented = await held.search(info, Query(["café"], max_results=50, mode="keyword"))
    assert accented and all("cafe" in hit.text for hit in accented)
    assert held.postings.held_bytes > 0


async def test_past_the_bound_on_candidates_the_rarer_words_find_them_as_in_fts5(sqlite, monkeypatch) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(200))
    monkeypatch.setattr(terms, "CANDIDATE_ROWS", 10)
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    for question in ("notes glacier format_spec", "walk river café", "notes kilimanjaro"):
        query = Query([question], max_results=10, mode="keyword")
        _same(await settled_search(held, info, query), await indexed.search(info, query))
        _same(*await _both(held, indexed, info, query))


async def test_one_store_of_two_a_filter_and_an_empty_store(sqlite) -> None:
    await fill_chunks(sqlite, "vs_big", "file_1", _texts(240), '{"kind": "common"}')
    await fill_chunks(sqlite, "vs_big", "file_2", ["Tax forms for the glacier.", "A glacier invoice."], '{"kind": "rare"}')
    await fill_chunks(sqlite, "vs_small", "file_1", _texts(30, " (small)"))
    await sqlite.run(lambda conn: store_and_file(conn, "vs_empty", "file_1"))
    held, indexed = await _searchers(sqlite)
    small = [StoreInfo("vs_small", "", "local", None, False)]
    query = Query(["glacier walk"], max_results=50, mode="keyword")
    found = await settled_search(held, small, query)
    assert len(found) > 0 and {hit.vector_store_id for hit in found} == {"vs_small"}
    _same(found, await indexed.search(small, query))
    big = [StoreInfo("vs_big", "", "local", None, False)]
    rare = Query(["glacier walk"], max_results=5, mode="keyword",
                 filters={"type": "eq", "key": "kind", "value": "rare"})
    found = await settled_search(held, big, rare)
    assert sorted(hit.text for hit in found) == ["A glacier invoice.", "Tax forms for the glacier."]
    _same(found, await indexed.search(big, rare))
    empty = [StoreInfo("vs_empty", "", "local", None, False)]
    assert await settled_search(held, empty, query) == []
    await _held_ranking_is_used(held, empty, "glacier walk")


async def test_chunks_another_connection_writes_and_deletes_are_seen(sqlite, tmp_path, monkeypatch) -> None:
    """Chunks added are tokenized and added to the postings held (none is read again); a delete has them read."""
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(40))
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    query = Query(["glacier notes format_spec"], max_results=100, mode="keyword")
    assert len(await settled_search(held, info, query)) == 40
    reads = []
    read_postings = fts_postings.read_postings
    monkeypatch.setattr(fts_postings, "read_postings", lambda conn, tokens: reads.append(tokens) or read_postings(
        conn, tokens))
    other = await open_store(f"sqlite:///{tmp_path / 'held.db'}")  # another engine, as another process would be
    try:
        await fill_chunks(other, "vs_a", "file_2", _texts(25, " (second)"))
        hits = await settled_search(held, info, query)
        assert len(hits) == 65 and sum("(second)" in hit.text for hit in hits) == 25
        _same(hits, await indexed.search(info, query))
        _same(*await _both(held, indexed, info, query))
        assert reads == []
        await _held_ranking_is_used(held, info, query.queries[0])

        await other.run(lambda conn: [conn.execute(sa.text(
            f"DELETE FROM {table} WHERE vector_store_id = 'vs_a' AND file_id = 'file_1'"))
            for table in ("parley_vector_store_chunks", "parley_vector_store_files")])
        hits = await settled_search(held, info, query)
        assert len(hits) == 25 and all("(second)" in hit.text for hit in hits)
        _same(hits, await indexed.search(info, query))
        assert reads
    finally:
        await other.close()


async def test_a_deleted_store_replaced_by_as_many_chunks_is_not_taken_for_the_same(sqlite) -> None:
    """The per-store counts of a deleted store go (``forget``): the totals this ranking keeps do not come back."""
    await fill_chunks(sqlite, "vs_old", "file_1", _texts(30))
    held, indexed = await _searchers(sqlite)
    old, new = [StoreInfo("vs_old", "", "local", None, False)], [StoreInfo("vs_new", "", "local", None, False)]
    query = Query(["glacier notes"], max_results=100, mode="keyword")
    assert len(await settled_search(held, old, query)) == 30
    await sqlite.run(lambda conn: (conn.execute(sa.text(
        "DELETE FROM parley_vector_store_chunks WHERE vector_store_id = 'vs_old'")), forget(conn, "vs_old")))
    await fill_chunks(sqlite, "vs_new", "file_1", _texts(30, " (new)"))
    hits = await settled_search(held, new, query)
    assert len(hits) == 30 and all("(new)" in hit.text for hit in hits)
    _same(hits, await indexed.search(new, query))


async def test_what_does_not_fit_the_budget_is_ranked_by_fts5(sqlite) -> None:
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(500))
    info = [StoreInfo("vs_a", "", "local", None, False)]
    query = Query(["glacier notes walk"], max_results=10, mode="keyword")
    tiny, indexed = await _searchers(sqlite, budget=64)  # (not even the lengths)
    _same(await settled_search(tiny, info, query), await indexed.search(info, query))
    assert tiny.postings.held_bytes == 0
    some, _ = await _searchers(sqlite, budget=8 * 520)  # (the lengths, and no word's postings)
    _same(await settled_search(some, info, query), await indexed.search(info, query))
    assert some.postings.held_bytes == 8 * 501


async def test_a_common_words_postings_are_read_in_the_background(sqlite, monkeypatch) -> None:
    """A search does not read a common word's postings itself (a microsecond per occurrence): FTS5 ranks it, and
    the postings are read in the background for the searches after it."""
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(300))
    monkeypatch.setattr(fts_postings, "INLINE_CHUNKS", 50)
    held, indexed = await _searchers(sqlite)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    query = Query(["glacier walk"], max_results=10, mode="keyword")
    await held.search(info, query)
    await held.postings.settled()  # (the lengths)
    assert held.postings.held_bytes == 8 * 301
    _same(await held.search(info, query), await indexed.search(info, query))  # (FTS5's, and the postings wanted)
    await held.postings.settled()
    assert held.postings.held_bytes > 8 * 301
    _same(await held.search(info, query), await indexed.search(info, query))
    await _held_ranking_is_used(held, info, "glacier walk")


async def test_a_budget_too_small_for_the_words_searched_keeps_what_it_holds(sqlite, monkeypatch) -> None:
    """Large postings do not push each other out (each costs a second or more to read at a million chunks): the
    word that would not fit beside those held (by FTS5's count of its chunks) is refused without being read, FTS5
    ranks its searches, and the word held is not read again."""
    await fill_chunks(sqlite, "vs_a", "file_1", _texts(300))
    monkeypatch.setattr(fts_postings, "SMALL_BYTES", 100)
    reads = []
    read_postings = fts_postings.read_postings
    monkeypatch.setattr(fts_postings, "read_postings", lambda conn, tokens: reads.append(tokens) or read_postings(
        conn, tokens))
    held, indexed = await _searchers(sqlite, budget=8 * 301 + 3000)  # (the lengths, and one word in every chunk)
    info = [StoreInfo("vs_a", "", "local", None, False)]
    notes, walk = (Query([word], max_results=10, mode="keyword") for word in ("notes", "walk"))
    _same(await settled_search(held, info, notes), await indexed.search(info, notes))
    for _ in range(2):
        _same(await settled_search(held, info, walk), await indexed.search(info, walk))
        _same(await held.search(info, notes), await indexed.search(info, notes))
    assert reads == [("note",)]
    await _held_ranking_is_used(held, info, "notes")
