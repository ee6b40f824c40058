"""Embedding models: ``local`` (WordLlama's 256-dimension static token embeddings, shipped inside the
``wordllama`` wheel: nothing is downloaded, and it embeds thousands of chunks per CPU second) and any model an
OpenAI-compatible ``/v1/embeddings`` serves (``--embedding-upstream``: vLLM, Ollama, OpenAI).

Vectors are L2-normalized float32, so cosine distance orders them; a vector store keeps the model it was made
with, and its chunks and queries are always embedded by that model.
"""

from __future__ import annotations

import asyncio
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np

from parley.errors import InvalidRequest

LOCAL = "local"
UPSTREAM_BATCH = 64


class EmbeddingFailed(Exception):
    """The embedding model could not embed (an upstream that failed or answered nonsense)."""


class Embedder(Protocol):
    name: str

    async def embed(self, texts: list[str]) -> np.ndarray: ...


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@lru_cache(maxsize=1)
def _wordllama() -> Any:
    import wordllama
    from safetensors import safe_open
    from wordllama.inference import WordLlamaInference

    from parley.retrieval.chunking import tokenizer

    weights = Path(wordllama.__file__).parent / "weights" / "l2_supercat_256.safetensors"
    with safe_open(str(weights), framework="np", device="cpu") as f:
        table = f.get_tensor("embedding.weight")
    return WordLlamaInference(table, tokenizer())


def embed_local(texts: list[str]) -> np.ndarray:
    """``texts`` embedded by the ``local`` model, in this thread."""
    return normalized(_wordllama().embed(texts, norm=False))


class LocalEmbedder:
    """WordLlama in this process, on a worker thread (one at a time: the tokenizer and numpy release the GIL)."""

    name = LOCAL

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def embed_now(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return embed_local(texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_now, texts)


class UpstreamEmbedder:
    """A model behind an OpenAI-compatible ``/v1/embeddings``."""

    def __init__(self, name: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.client = client

    async def embed(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), UPSTREAM_BATCH):
            rows += await self._batch(texts[start:start + UPSTREAM_BATCH])
        return normalized(np.array(rows, dtype=np.float32)) if rows else np.zeros((0, 0), np.float32)

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self.client.post("embeddings", json={"model": self.name, "input": texts})
        except httpx.HTTPError as exc:
            raise EmbeddingFailed(f"the embedding upstream is unreachable: {exc.__class__.__name__}") from None
        if response.status_code >= 400:
            raise EmbeddingFailed(f"the embedding upstream answered HTTP {response.status_code}: "
                                  f"{response.text[:200]}")
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (ValueError, KeyError, TypeError):
            raise EmbeddingFailed("the embedding upstream sent no embeddings") from None
        if len(vectors) != len(texts) or len({len(v) for v in vectors}) > 1:
            raise EmbeddingFailed("the embedding upstream sent a wrong number or shape of embeddings")
        return vectors


class Embedders:
    """The embedding models this server offers: ``local``, and the upstream's models by name."""

    def __init__(self, upstream: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.local = LocalEmbedder()
        self._client = None
        if upstream:
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            self._client = httpx.AsyncClient(base_url=upstream.rstrip("/") + "/", headers=headers, timeout=timeout)

    def check(self, model: str, param: str = "embedding_model") -> None:
        if model != LOCAL and self._client is None:
            raise InvalidRequest(f"The embedding model '{model}' needs --embedding-upstream; this server embeds "
                                 "with 'local' only.", param=param)

    def get(self, model: str) -> Embedder:
        if model == LOCAL:
            return self.local
        self.check(model)
        assert self._client is not None
        return UpstreamEmbedder(model, self._client)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
