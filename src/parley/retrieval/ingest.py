"""Ingestion of vector store files, in the background of every instance.

Each file added to a vector store is a row ``in_progress`` that no instance holds.  An instance's workers
claim such rows (or rows held by an instance whose heartbeat stopped), read the file, extract its text, chunk
and embed it, and store the chunks and ``completed`` in one transaction that applies only while the
instance still holds the row.  A file that cannot be read ends ``failed`` with ``last_error``.  Nothing stays
``in_progress`` forever: work of a dead instance is taken over once its heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from parley.errors import StoreUnavailable
from parley.extract import Limits, Unreadable, media_type
from parley.retrieval.embeddings import LOCAL, EmbeddingFailed, Embedders
from parley.retrieval.jobs import EMBED_BATCH, index_file, refusal
from parley.store.files import SqlFiles
from parley.store.ingestion_work import IngestionWork, Job
from parley.workers import JobError, WorkerFailed, WorkerPool

log = logging.getLogger("parley.ingest")


class Ingestor:
    """``concurrency`` workers claiming files to index; :meth:`wake` after adding work for a prompt start."""

    def __init__(self, work: IngestionWork, files: SqlFiles, embedders: Embedders, workers: WorkerPool, *,
                 instance: str, stale_s: float, limits: Limits, concurrency: int = 2,
                 poll_s: float | None = None) -> None:
        self.work = work
        self.files = files
        self.embedders = embedders
        self.workers = workers
        self.instance = instance
        self.stale_s = stale_s
        self.limits = limits
        self.poll_s = poll_s if poll_s is not None else max(0.5, stale_s / 3)
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[tuple[str, str]] = set()
        self._stranded: list[Job] = []  # claimed work whose outcome could not be written: handed back later

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"parley-ingest-{i}") for i in range(self.concurrency)]

    def wake(self) -> None:
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._release_stranded()
            try:
                job = await self.work.claim(self.instance, self.stale_s, frozenset(self._busy))
            except Exception:  # the database is away: try again later
                log.debug("could not claim ingestion work", exc_info=True)
                job = None
            if job is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass
                continue
            key = (job.vector_store_id, job.file_id)
            self._busy.add(key)
            try:
                await self.ingest(job)
            except StoreUnavailable:
                self._strand(job)
            except Exception:
                log.exception("ingesting %s into %s failed", job.file_id, job.vector_store_id)
                await self._fail(job, "server_error", "Parley could not index the file; see the server log.")
            finally:
                self._busy.discard(key)

    async def ingest(self, job: Job) -> None:
        record = await self.files.get(job.file_id, job.tenant)
        if record is None:
            await self._fail(job, "invalid_file", f"The file {job.file_id} no longer exists.")
            return
        data = bytearray()
        async for piece in self.files.content(record):
            data += piece
        local = job.embedding_model == LOCAL
        try:
            texts, vectors = await self.workers.run(index_file, bytes(data), media_type(record.filename),
                                                    job.chunking, self.limits, local, expected=(Unreadable,))
        except (JobError, WorkerFailed) as exc:  # (a vector store file's codes: only a refused type is unsupported)
            code, message = refusal(exc, record.filename)
            refused_type = isinstance(exc, JobError) and code == "unsupported_file"
            await self._fail(job, "unsupported_file" if refused_type else "invalid_file", message)
            return
        try:
            if not local:
                vectors = await self._embed(job.embedding_model, texts)
        except EmbeddingFailed as exc:
            await self._fail(job, "server_error", f"Embedding failed: {exc}.")
            return
        if not await self.work.complete(job, self.instance, texts, vectors):
            log.info("dropped the chunks of %s in %s: no longer this instance's work", job.file_id, job.vector_store_id)

    async def _embed(self, model: str, texts: list[str]) -> np.ndarray:
        embedder = self.embedders.get(model)
        parts = [await embedder.embed(texts[i:i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

    async def _fail(self, job: Job, code: str, message: str) -> None:
        try:
            await self.work.fail(job, self.instance, code, message)
        except StoreUnavailable:
            self._strand(job)
        except Exception:
            log.warning("could not mark %s failed; another instance will take it over", job.file_id)

    def _strand(self, job: Job) -> None:
        log.warning("the database went away while %s in %s was indexed; it is handed back once the database is "
                    "back", job.file_id, job.vector_store_id)
        self._stranded.append(job)

    async def _release_stranded(self) -> None:
        """Hand back the files whose result could not be written while the database was away, once it is back:
        they are claimed and indexed again (a live owner's rows are taken over by no one else)."""
        while self._stranded:
            try:
                await self.work.release_job(self._stranded[0], self.instance)
            except Exception:
                log.debug("could not hand back stranded ingestion work yet", exc_info=True)
                return
            log.info("handed back %s in %s, whose indexing met a database outage", self._stranded[0].file_id,
                     self._stranded[0].vector_store_id)
            self._stranded.pop(0)

    async def aclose(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        try:
            await self.work.release(self.instance)
        except Exception:
            log.warning("could not hand back this instance's ingestion work; it is taken over when stale")


