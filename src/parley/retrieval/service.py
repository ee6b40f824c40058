"""Retrieval as the server runs it: the vector stores, their ingestion and their search, for the HTTP routes
and the ``file_search`` tool alike."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from parley.errors import InvalidRequest, NotFound
from parley.extract import Limits
from parley.retrieval.embeddings import Embedders
from parley.retrieval.ingest import Ingestor
from parley.retrieval.model_ranking import ModelRanking
from parley.retrieval.search import Hit, Mode, Query, Searcher, rewrite
from parley.store.embedding_matrices import EmbeddingMatrices
from parley.store.fts_postings import HeldPostings
from parley.store.files import SqlFiles
from parley.store.sql import SqlStore
from parley.store.ingestion_work import IngestionWork
from parley.store.vector_stores import SqlVectorStores, StoreInfo
from parley.workers import WorkerPool

# OpenAI's rankers (each is the hybrid search here), and Parley's own: either half alone.
RANKERS: dict[str, Mode] = {"auto": "hybrid", "default-2024-11-15": "hybrid", "none": "hybrid",
                            "hybrid": "hybrid", "vector": "vector", "keyword": "keyword"}
RERANKED = ("auto", "default-2024-11-15")  # the rankers under which a retrieval model reranks (where there is one)


def parse_ranking(raw: Any, param: str = "ranking_options") -> dict[str, Any]:
    """``ranking_options`` as :class:`Query` fields: ``ranker``, ``score_threshold`` and ``hybrid_search``
    weights."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - {"ranker", "score_threshold", "hybrid_search"}:
        raise InvalidRequest(f"'{param}' takes ranker, score_threshold and hybrid_search.", param=param)
    out: dict[str, Any] = {}
    ranker = raw.get("ranker")
    if ranker is not None:
        if not isinstance(ranker, str) or ranker not in RANKERS:
            raise InvalidRequest(f"'{param}.ranker' must be one of {', '.join(RANKERS)}.", param=f"{param}.ranker")
        out["mode"] = RANKERS[ranker]
        out["rerank"] = ranker in RERANKED
    threshold = raw.get("score_threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InvalidRequest(f"'{param}.score_threshold' must be a number from 0 to 1.",
                                 param=f"{param}.score_threshold")
        out["score_threshold"] = float(threshold)
    weights = raw.get("hybrid_search")
    if weights is not None:
        keys = ("embedding_weight", "text_weight")
        if not isinstance(weights, dict) or set(weights) != set(keys) or not all(
                isinstance(weights[k], (int, float)) and not isinstance(weights[k], bool) and weights[k] >= 0
                for k in keys) or not any(weights[k] > 0 for k in keys):
            raise InvalidRequest(f"'{param}.hybrid_search' needs embedding_weight and text_weight: numbers of at "
                                 "least 0, not both 0.", param=f"{param}.hybrid_search")
        out.update(embedding_weight=float(weights["embedding_weight"]), text_weight=float(weights["text_weight"]))
    return out


class Retrieval:
    def __init__(self, store: SqlStore, files: SqlFiles, embedders: Embedders, workers: WorkerPool, *,
                 instance: str, stale_s: float, limits: Limits, concurrency: int,
                 ranking: ModelRanking | None = None, held_vectors_bytes: int = 0, held_postings_bytes: int = 0,
                 bm25_index: bool = False) -> None:
        self.files = files
        self.ranking = ranking  # --retrieval-model: query rewriting, and reranking with --rerank-candidates
        self.embedders = embedders
        self.vector_stores = SqlVectorStores(store, bm25_index)
        self.searcher = Searcher(store, embedders, self.vector_stores.pgvector, self.vector_stores.sqlite_vec,
                                 EmbeddingMatrices(held_vectors_bytes), self.vector_stores.bm25,
                                 HeldPostings(held_postings_bytes))
        self._filling: asyncio.Task[None] | None = None
        self.ingestor = Ingestor(IngestionWork(store, self.vector_stores.pgvector, self.vector_stores.sqlite_vec),
                                 files, embedders, workers,
                                 instance=instance, stale_s=stale_s, limits=limits, concurrency=concurrency)

    async def start(self) -> None:
        await self.vector_stores.prepare()
        await self.searcher.matrices.prepare(self.vector_stores.store)
        await self.searcher.postings.prepare(self.vector_stores.store)
        # (chunks stored before the BM25 index: written in the background, the keyword half ranks as before meanwhile)
        self._filling = asyncio.create_task(self.vector_stores.bm25.run(self.vector_stores.store))
        self.ingestor.start()

    async def stores(self, store_ids: list[str], tenant: str, param: str) -> list[StoreInfo]:
        """The tenant's vector stores by id: a 404 naming any other, a 400 for an expired one."""
        infos = []
        for i, store_id in enumerate(store_ids):
            info = await self.vector_stores.info(store_id, tenant)
            if info is None:
                raise NotFound(f"Vector store with id '{store_id}' not found.", param=f"{param}[{i}]")
            if info.expired:
                raise InvalidRequest(f"Vector store '{store_id}' has expired.", param=f"{param}[{i}]",
                                     code="vector_store_expired")
            infos.append(info)
        return infos

    async def search(self, stores: list[StoreInfo], query: Query) -> list[Hit]:
        ranking = self.ranking
        if ranking is not None and ranking.candidates and query.rerank and query.mode == "hybrid":
            fused = await self.searcher.search(stores, replace(
                query, max_results=max(query.max_results, ranking.candidates), score_threshold=0.0))
            reranked = await ranking.rerank(query.queries, fused)
            hits = [hit for hit in reranked if hit.score >= query.score_threshold][:query.max_results]
        else:
            hits = await self.searcher.search(stores, query)
        await self.vector_stores.touch(stores)
        return hits

    async def rewrite(self, queries: list[str]) -> list[str]:
        """``rewrite_query``: each query as the retrieval model rewrites it, or without punctuation and common
        words where there is none."""
        local = [rewrite(q) for q in queries]
        if self.ranking is None:
            return local
        ranking = self.ranking
        return list(await asyncio.gather(*(ranking.rewrite(q, fallback) for q, fallback in zip(queries, local))))

    async def aclose(self) -> None:
        if self._filling is not None:
            self._filling.cancel()
            await asyncio.gather(self._filling, return_exceptions=True)
        await self.ingestor.aclose()
        await self.embedders.aclose()
