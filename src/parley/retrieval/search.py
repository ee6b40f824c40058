"""Search over vector stores: vector similarity and full-text, fused by reciprocal rank fusion (the default,
``hybrid``), or either alone.

Both halves are filtered by the stores and the attribute filter: on SQLite, the store's embeddings held in memory
(:mod:`parley.store.embedding_matrices`) or, until they are, sqlite-vec's ``vec0`` index
(:mod:`parley.store.sqlite_vec_index`), and FTS5's ``bm25`` over the chunks that hold one of the query's rarer
words (:mod:`parley.retrieval.terms`), computed from the index's postings held in memory
(:mod:`parley.retrieval.bm25`) or, until they are, ranked inside the index; on PostgreSQL the
``tsvector`` index, its candidates found by the query's rarer words (:mod:`parley.retrieval.pg_terms`) and
ranked by ``ts_rank`` (normalized by the log of the chunk's length), and pgvector's HNSW index where the server
has pgvector (else the filtered chunks' embeddings compared in numpy).  Each store's chunks are compared only
with a query embedded by that store's own model.

Scores are in [0, 1]: the cosine similarity (vector), ``s / (1 + s)`` of the BM25 score (keyword), or the fused
reciprocal-rank score divided by the best one possible (hybrid: 1.0 is first in every list).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from parley.retrieval.bm25 import Ranking
from parley.retrieval.bm25 import ranked as ranked_in_memory
from parley.retrieval.embeddings import Embedders
from parley.retrieval.filters import to_sql
from parley.retrieval.pg_terms import MAX_CANDIDATES, TermStats, any_of, weighted_rank
from parley.retrieval.terms import FtsTermStats, any_word, choose
from parley.store.embedding_matrices import EmbeddingMatrices, Matrix
from parley.store.fts_postings import HeldPostings, View
from parley.store.pg_bm25 import PgBm25
from parley.store.pgvector import PgVector
from parley.store.sqlite_vec_index import SqliteVec
from parley.store.sql import SqlStore
from parley.store.vector_stores import StoreInfo, store_chunks, store_files

# Reciprocal rank fusion's constant and the halves' default weights, chosen on bench/retrieval's labelled set
# (held-out halves agree; bench/README.md): a smaller k trusts the first ranks more, and the keyword half is
# the stronger one with the local embedding model.
RRF_K = 10
EMBEDDING_WEIGHT, TEXT_WEIGHT = 0.5, 1.0
MAX_KEYWORDS = 64
MAX_FTS_READ = 20_000  # chunks ranked inside FTS5 before a filtered keyword search joins every match instead
STORE_AFTER_SHARE = 0.5  # SQLite: searched stores holding this share of all chunks are kept after FTS5's ranking
Mode = Literal["hybrid", "vector", "keyword"]
WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be by can could did do does for from had has have how i in is it its me my of on or our "
    "should so that the their them there these they this to was we were what when where which who whom why will "
    "with would you your about into than then please tell find show give".split())


@dataclass
class Hit:
    chunk_id: int
    vector_store_id: str
    file_id: str
    filename: str
    attributes: dict[str, Any]
    text: str
    score: float


@dataclass
class Query:
    """What to search for and how."""

    queries: list[str]
    max_results: int = 10
    mode: Mode = "hybrid"
    score_threshold: float = 0.0
    filters: dict[str, Any] | None = None
    embedding_weight: float = EMBEDDING_WEIGHT
    text_weight: float = TEXT_WEIGHT
    rerank: bool = True  # the ranker lets the server rerank (``auto``): done where it has a retrieval model


def rewrite(query: str) -> str:
    """A query rewritten for search: its words without punctuation and common function words."""
    words = [w for w in WORD.findall(query) if w.lower() not in STOPWORDS]
    return " ".join(words) or query.strip()


def keywords(query: str) -> list[str]:
    """The words a keyword search looks for: without common function words (they match most chunks, which
    costs time and ranks nothing), at most ``MAX_KEYWORDS``, the longest first."""
    words = [w for w in dict.fromkeys(w.lower() for w in WORD.findall(query)) if w not in STOPWORDS]
    return sorted(words, key=len, reverse=True)[:MAX_KEYWORDS]


class Searcher:
    def __init__(self, store: SqlStore, embedders: Embedders, pgvector: PgVector,
                 sqlite_vec: SqliteVec | None = None, matrices: EmbeddingMatrices | None = None,
                 bm25: PgBm25 | None = None, postings: HeldPostings | None = None) -> None:
        self.store = store
        self.pgvector = pgvector
        self.sqlite_vec = sqlite_vec or SqliteVec()
        self.matrices = matrices or EmbeddingMatrices(0)
        self.bm25 = bm25 or PgBm25()
        self.postings = postings or HeldPostings(0)
        self.term_stats = TermStats()  # PostgreSQL: which query words find the keyword half's candidates
        self.fts_terms = FtsTermStats()  # SQLite: the same
        self.embedders = embedders
        self.dialect = store.engine.dialect.name

    def _scope(self, store_ids: list[str], filters: dict[str, Any] | None) -> Any:
        return sa.and_(store_chunks.c.vector_store_id.in_(store_ids), self._file_scope(filters))

    def _file_scope(self, filters: dict[str, Any] | None) -> Any:
        """The chunks of completed files that pass ``filters``."""
        condition = store_files.c.status == "completed"
        if filters is not None:
            condition = sa.and_(condition, to_sql(filters, store_files.c.attributes, self.dialect))
        return condition

    async def _passing(self, ids: list[int], filters: dict[str, Any] | None,
                       stores: list[str] | None = None) -> set[int]:
        """Which of these chunks pass the file scope and, given ``stores``, are in one of them (else they were found
        in the right stores already): looked up by id (a condition on the store would lead SQLite to read the
        store's whole index instead)."""
        query = self._joined(store_chunks.c.id, store_chunks.c.vector_store_id).where(
            self._file_scope(filters), store_chunks.c.id.in_(ids))
        rows = await self.store.read(lambda conn: conn.execute(query).all())
        return {row.id for row in rows if stores is None or row.vector_store_id in stores}

    def _joined(self, *columns: Any) -> sa.Select[Any]:
        return sa.select(*columns).select_from(store_chunks.join(store_files, sa.and_(
            store_files.c.vector_store_id == store_chunks.c.vector_store_id,
            store_files.c.file_id == store_chunks.c.file_id)))

    async def _vector(self, store_ids: list[str], vector: np.ndarray, filters: Any,
                      pool: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first: from the matrices held in memory of the stores that have one
        (SQLite), and from the database for the rest."""
        if self.dialect != "sqlite" or not self.matrices.enabled:
            return await self._stored_nearest(store_ids, vector, filters, pool)
        held = await self.matrices.held(self.store, store_ids, int(vector.shape[0]))
        found = await self._held_nearest(held, vector, filters, pool) if held else []
        rest = [store_id for store_id in store_ids if store_id not in held]
        if not rest:
            return found
        return sorted(found + await self._stored_nearest(rest, vector, filters, pool), key=lambda hit: -hit[1])[:pool]

    async def _held_nearest(self, held: dict[str, Matrix], vector: np.ndarray, filters: dict[str, Any] | None,
                            pool: int) -> list[tuple[int, float]]:
        """The ``pool`` nearest chunks passing ``filters`` in stores whose matrices are held: the nearest ``2 * pool``,
        kept where they pass (a file still being indexed, a filter); when too few pass, the nearest of every chunk
        that passes (read from the index of chunk ids, without their embeddings)."""
        matrices = list(held.values())

        def compared() -> tuple[list[np.ndarray], list[tuple[int, float]]]:
            similarities = [matrix.similarities(vector) for matrix in matrices]
            return similarities, _best(matrices, similarities, 2 * pool)

        similarities, nearest = await asyncio.to_thread(compared)
        passing = await self._passing([chunk_id for chunk_id, _ in nearest], filters)
        kept = [hit for hit in nearest if hit[0] in passing][:pool]
        if len(kept) == pool or len(nearest) == sum(len(m.ids) for m in matrices):
            return kept
        query = self._joined(store_chunks.c.id).where(self._scope(list(held), filters))
        allowed = np.fromiter(await self.store.read(lambda conn: conn.execute(query).scalars().all()), dtype=np.int64)

        def among_allowed() -> list[tuple[int, float]]:
            for matrix, similarity in zip(matrices, similarities):
                similarity[~np.isin(matrix.ids, allowed)] = -np.inf
            return [hit for hit in _best(matrices, similarities, pool) if hit[1] > -np.inf]

        return await asyncio.to_thread(among_allowed)

    async def _stored_nearest(self, store_ids: list[str], vector: np.ndarray, filters: Any,
                              pool: int) -> list[tuple[int, float]]:
        """(chunk id, cosine similarity), best first, searched in the database."""
        if self.dialect == "sqlite" and self.sqlite_vec.enabled:
            found = await self._indexed_nearest(store_ids, vector, filters, pool)
            if found is not None:
                return found
        scope = self._scope(store_ids, filters)
        if self.dialect == "sqlite":  # (a filter that the index's nearest chunks do not pass: every chunk read)
            distance = sa.func.vec_distance_cosine(store_chunks.c.embedding, sa.literal(vector.astype("<f4").tobytes()))
            query = self._joined(store_chunks.c.id, distance.label("d")).where(scope).order_by("d").limit(pool)
            rows = await self.store.read(lambda conn: conn.execute(query).all())
            return [(row.id, 1.0 - float(row.d)) for row in rows]
        if self.pgvector.enabled:
            return await self.store.read(self.pgvector.nearest(self._joined(store_chunks.c.id), scope, vector, pool))
        query = self._joined(store_chunks.c.id, store_chunks.c.embedding).where(scope)
        rows = await self.store.read(lambda conn: conn.execute(query).all())
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(bytes(r.embedding) for r in rows), dtype="<f4").reshape(len(rows), -1)
        similarity = matrix @ vector.astype(np.float32)
        best = np.argsort(-similarity)[:pool]
        return [(rows[i].id, float(similarity[i])) for i in best]

    async def _indexed_nearest(self, store_ids: list[str], vector: np.ndarray, filters: dict[str, Any] | None,
                               pool: int) -> list[tuple[int, float]] | None:
        """The ``pool`` nearest chunks passing ``filters`` through sqlite-vec's index: the nearest ``2 * pool`` of each
        store, kept where they pass (a file still being indexed, a filter); ``None`` when too few pass and the
        stores hold more than were read, or when the embeddings' size has no index."""
        k = 2 * pool
        nearest = await self.store.read(self.sqlite_vec.nearest(store_ids, vector, k))
        if nearest is None:  # (a size with no index yet: read row by row)
            return None
        if not nearest:
            return []
        passing = await self._passing([chunk_id for chunk_id, _ in nearest], filters)
        kept = [hit for hit in nearest if hit[0] in passing][:pool]
        if len(kept) < pool and len(nearest) >= k:
            return None
        return kept

    async def _keyword(self, store_ids: list[str], query_text: str, filters: Any, pool: int) -> list[tuple[int, float]]:
        """(chunk id, BM25-like score > 0), best first."""
        words = keywords(query_text)
        if not words:
            return []
        if self.dialect == "sqlite":
            ranked = await self._fts_ranked(store_ids, words, filters, pool)
            if ranked is not None:
                return ranked
        scope = self._scope(store_ids, filters)
        if self.bm25.searchable:  # (PostgreSQL with pgvector, every chunk's weights written)
            return await self.store.read(self.bm25.ranked(self._joined(store_chunks.c.id), scope, words, pool,
                                                          self.pgvector.iterative_scan))
        if self.dialect == "sqlite":
            match = any_word(words)
            fts = sa.table("parley_vector_store_fts", sa.column("rowid"))
            score = sa.func.bm25(sa.literal_column("parley_vector_store_fts"))
            query = self._joined(store_chunks.c.id, score.label("s")).join(
                fts, fts.c.rowid == store_chunks.c.id).where(
                scope, sa.literal_column("parley_vector_store_fts").op("MATCH")(match)).order_by("s").limit(pool)
            rows = await self.store.read(lambda conn: conn.execute(query).all())
            return [(row.id, -float(row.s)) for row in rows]
        tsv = sa.literal_column("parley_vector_store_chunks.tsv")

        def ranked(conn: sa.Connection) -> list[Any]:
            finding, weights = self.term_stats.weighed(conn, " ".join(words))
            rarest = sorted(weights, key=lambda lexeme: -weights[lexeme])
            while finding:
                matching = self._joined(store_chunks.c.id, tsv.label("tsv")).where(
                    scope, tsv.op("@@")(any_of(finding))).limit(MAX_CANDIDATES).subquery("candidates")
                rank = weighted_rank(matching.c.tsv, weights)
                rows = conn.execute(sa.select(matching.c.id, rank.label("s")).order_by(sa.desc("s")).limit(pool)).all()
                # The statistics cannot tell a word in no chunk from a rare one: when the words chosen find nothing,
                # the next rarest joins them.
                widened = [lexeme for lexeme in rarest if lexeme not in finding][:1]
                if rows or not widened:
                    return rows
                finding = finding + widened
            return []

        return [(row.id, float(row.s)) for row in await self.store.read(ranked)]

    async def _fts_ranked(self, store_ids: list[str], words: list[str], filters: dict[str, Any] | None,
                          pool: int) -> list[tuple[int, float]] | None:
        """SQLite: the best ``pool`` chunks passing ``filters`` ranked inside FTS5 (the stores' chunks that hold one
        of the rarer words, by BM25 over every word), reading more when a filter or a file still being indexed
        leaves too few; ``None`` past ``MAX_FTS_READ`` of them (the caller joins every match instead).

        The rarer words (:func:`parley.retrieval.terms.choose`) are a second condition of the match, so FTS5 ranks
        only the chunks holding one of them; BM25 counts those words twice, which weighs them up as rare words.
        Where the postings held in memory are current, the same ranking is computed from them instead
        (:mod:`parley.retrieval.bm25`)."""
        def chosen(conn: sa.Connection) -> tuple[list[str], float]:
            return choose(words, *self.fts_terms.shares(conn, words))[0], self.fts_terms.store_share(conn, store_ids)

        if self.postings.enabled:  # (ranked in memory where the postings held are current and fit)
            def rank(view: View) -> Ranking:
                def counted(missing: list[str]) -> dict[str, int]:  # (FTS5's counts, cached for a minute)
                    shares, total = self.fts_terms.shares(view.conn, missing)
                    return {word: round(shares.get(word, 0.0) * total) for word in missing}

                return ranked_in_memory(view, words, store_ids, counted)

            ranking = await self.postings.ranked(self.store, rank)
            if ranking is not None:
                async def held(limit: int) -> list[tuple[int, float]]:
                    return ranking.best(limit)

                return await self._first_passing(held, filters, pool, None)
        finding, share = await self.store.read(chosen)
        # Stores that hold most of the chunks are kept to after the ranking: matching their id too made FTS5 read
        # every chunk of theirs (62 against 28 ms at 100,000 chunks, bench/README.md), and the scores are the same
        # (the store's column weighs 0).
        after = share >= STORE_AFTER_SHARE
        match = ("" if after else f"vector_store_id : ({any_word(store_ids)}) AND ") + f"text : ({any_word(words)})"
        if len(finding) < len(words):
            match += f" AND text : ({any_word(finding)})"
        ranked_sql = sa.text("SELECT rowid AS id, bm25(parley_vector_store_fts, 1.0, 0.0) AS s FROM "
                             "parley_vector_store_fts WHERE parley_vector_store_fts MATCH :m ORDER BY s LIMIT :n")

        async def indexed(limit: int) -> list[tuple[int, float]]:
            rows = await self.store.read(lambda conn: conn.execute(ranked_sql, {"m": match, "n": limit}).all())
            return [(row.id, -float(row.s)) for row in rows]

        return await self._first_passing(indexed, filters, pool, store_ids if after else None)

    async def _first_passing(self, best: Callable[[int], Awaitable[list[tuple[int, float]]]],
                             filters: dict[str, Any] | None, pool: int,
                             stores: list[str] | None) -> list[tuple[int, float]] | None:
        """The first ``pool`` of a keyword ranking (``best(n)``: its ``n`` best) that pass ``filters`` (and, given
        ``stores``, are in one of them), reading more of it where a filter or a file still being indexed leaves too
        few; ``None`` past ``MAX_FTS_READ`` of them."""
        limit = 2 * pool
        while limit <= MAX_FTS_READ:
            found = await best(limit)
            if not found:
                return []
            passing = await self._passing([chunk_id for chunk_id, _ in found], filters, stores)
            kept = [hit for hit in found if hit[0] in passing][:pool]
            if len(kept) == pool or len(found) < limit:
                return kept
            limit *= 8
        return None

    async def search(self, stores: list[StoreInfo], query: Query) -> list[Hit]:
        pool = max(4 * query.max_results, 40)
        by_model: dict[str, list[str]] = defaultdict(list)
        for info in stores:
            by_model[info.embedding_model].append(info.id)
        all_ids = [info.id for info in stores]
        scored: dict[int, float] = defaultdict(float)
        lists = 0
        for text in query.queries:
            # The halves side by side (each its own connection on PostgreSQL; SQLite's one thread takes turns).
            merged, found = await asyncio.gather(
                self._vector_half(by_model, text, query, pool),
                self._keyword(all_ids, text, query.filters, pool) if query.mode != "vector" and query.text_weight > 0
                else _nothing())
            if query.mode == "vector":
                for chunk_id, similarity in merged:
                    scored[chunk_id] = max(scored[chunk_id], max(0.0, min(1.0, similarity)))
            elif query.mode == "keyword":
                for chunk_id, bm25 in found:
                    scored[chunk_id] = max(scored[chunk_id], bm25 / (1.0 + bm25))
            else:
                lists += 1
                for rank, (chunk_id, _) in enumerate(merged):
                    scored[chunk_id] += query.embedding_weight / (RRF_K + rank + 1)
                for rank, (chunk_id, _) in enumerate(found):
                    scored[chunk_id] += query.text_weight / (RRF_K + rank + 1)
        if query.mode == "hybrid" and lists:
            best = lists * (query.embedding_weight + query.text_weight) / (RRF_K + 1)
            scored = defaultdict(float, {k: v / best for k, v in scored.items()})
        ranked = sorted(((s, c) for c, s in scored.items() if s >= query.score_threshold), key=lambda p: -p[0])
        return await self.hits(ranked[:query.max_results])

    async def _vector_half(self, by_model: dict[str, list[str]], text: str, query: Query,
                           pool: int) -> list[tuple[int, float]]:
        """The vector half over every store, each store's chunks compared with ``text`` embedded by its model."""
        if query.mode == "keyword" or query.embedding_weight <= 0:
            return []
        lists = []
        for model, ids in by_model.items():
            vector = (await self.embedders.get(model).embed([text]))[0]
            lists.append(await self._vector(ids, vector, query.filters, pool))
        return sorted((hit for found in lists for hit in found), key=lambda h: -h[1])

    async def hits(self, ranked: list[tuple[float, int]]) -> list[Hit]:
        if not ranked:
            return []
        ids = [chunk_id for _, chunk_id in ranked]
        query = self._joined(store_chunks.c.id, store_chunks.c.vector_store_id, store_chunks.c.file_id,
                             store_chunks.c.text, store_files.c.filename, store_files.c.attributes) \
            .where(store_chunks.c.id.in_(ids))
        rows = {row.id: row for row in await self.store.read(lambda conn: conn.execute(query).all())}
        return [Hit(chunk_id, rows[chunk_id].vector_store_id, rows[chunk_id].file_id, rows[chunk_id].filename,
                    json.loads(rows[chunk_id].attributes) if rows[chunk_id].attributes else {},
                    rows[chunk_id].text, round(score, 6)) for score, chunk_id in ranked if chunk_id in rows]


def _best(matrices: list[Matrix], similarities: list[np.ndarray], k: int) -> list[tuple[int, float]]:
    """(chunk id, similarity) of the ``k`` most similar chunks of these matrices, best first."""
    found: list[tuple[int, float]] = []
    for matrix, similarity in zip(matrices, similarities):
        top = np.argpartition(-similarity, k - 1)[:k] if k < len(similarity) else np.arange(len(similarity))
        found += zip(matrix.ids[top].tolist(), similarity[top].tolist())
    return sorted(found, key=lambda hit: -hit[1])[:k]


async def _nothing() -> list[tuple[int, float]]:
    return []
