"""Imported by the file workers' forkserver alone (:class:`parley.workers.WorkerPool`'s ``preload``): it loads
the tokenizer and the ``local`` embedding table once, so every job's process is forked with them ready instead
of reading them again (a quarter of a second each time)."""

from parley.retrieval.chunking import tokenizer
from parley.retrieval.embeddings import _wordllama

tokenizer()
_wordllama()
