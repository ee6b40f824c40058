"""The file work that runs in worker processes (:mod:`parley.workers`): an ``input_file``'s text, and a vector
store file's chunks (with the ``local`` model, their embeddings too).  Each function here is what one worker
process does, start to end; the server sees only its result or :class:`~parley.extract.Unreadable`."""

from __future__ import annotations

from typing import Any

import numpy as np

from parley.extract import Limits, extract_text
from parley.retrieval.chunking import chunk, token_offsets
from parley.retrieval.embeddings import embed_local
from parley.workers import JobError, WorkerFailed

EMBED_BATCH = 256


def read_file(data: bytes, kind: str | None, limits: Limits) -> str:
    """The file's text, refused past ``limits.max_tokens`` tokens."""
    text = extract_text(data, kind, limits)
    token_offsets(text, limits.max_tokens)
    return text


def index_file(data: bytes, kind: str | None, strategy: dict[str, Any], limits: Limits,
               embed: bool) -> tuple[list[str], np.ndarray | None]:
    """The file's chunks, and with ``embed`` their ``local`` embeddings."""
    texts = chunk(extract_text(data, kind, limits), strategy, limits.max_tokens)
    if not embed:
        return texts, None
    parts = [embed_local(texts[i:i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    return texts, np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def refusal(exc: JobError | WorkerFailed, name: str) -> tuple[str, str]:
    """Why a worker gave no text for the file ``name``: it refused the file (its ``Unreadable``) or ran past
    its bounds or died.  The error code (``unsupported_file`` or ``file_too_large``) and a message naming it."""
    if isinstance(exc, JobError):
        code, reason = exc.job_args
        return code, f"'{name}' {reason}"
    code = "file_too_large" if exc.code in ("worker_memory", "worker_cpu") else "unsupported_file"
    return code, f"'{name}' could not be read: {exc.message} (--file-worker-memory-mb, --file-worker-cpu-s)."
