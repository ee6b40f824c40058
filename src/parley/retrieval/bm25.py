"""SQLite's keyword half ranked in memory, over the postings and lengths of :mod:`parley.store.fts_postings`: the
same candidates and the same scores as FTS5's ranking of the same query (``Searcher._fts_ranked``), computed with
numpy instead of by FTS5 for each candidate.

FTS5's ``bm25()``, as ``bm25(parley_vector_store_fts, 1.0, 0.0)`` weighs the columns: for each phrase of the
match, ``idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length / average length))``, where ``f`` is the phrase's count
in the chunk's text, ``idf = ln((N - n + 0.5) / (n + 0.5))`` (``1e-6`` where that is not positive) for ``n`` of the
``N`` chunks holding it, and a chunk's length counts every column's tokens. The match holds each word once and,
where the rarer words (:func:`parley.retrieval.terms.choose`) are fewer than all, each rarer word a second time;
its candidates are the chunks that hold one of the rarer words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from parley.retrieval.terms import choose
from parley.store.fts_postings import View

K1, B = 1.2, 0.75


@dataclass
class Ranking:
    """A keyword search's candidates in its stores and their scores, unordered."""

    ids: np.ndarray
    scores: np.ndarray

    def best(self, n: int) -> list[tuple[int, float]]:
        """The ``n`` best (chunk id, score), best first (ties by chunk id)."""
        ids, scores = self.ids, self.scores
        if n < len(ids):
            top = np.argpartition(-scores, n - 1)[:n]
            ids, scores = ids[top], scores[top]
        order = np.lexsort((ids, -scores))
        return list(zip(ids[order].tolist(), scores[order].tolist()))


def ranked(view: View, words: list[str], store_ids: list[str],
           counted: Callable[[list[str]], dict[str, int]]) -> Ranking:
    """The chunks of ``store_ids`` that the keyword query ``words`` finds, scored as FTS5 scores them (``counted``:
    how many chunks hold each of the words whose postings are not held, as FTS5 counted them recently)."""
    lengths = view.lengths
    postings = view.postings(words, counted)
    if not lengths.rows or not words:
        return Ranking(np.empty(0, np.int64), np.empty(0))
    finding, _ = choose(words, {word: len(postings[word][0]) / lengths.rows for word in words}, lengths.rows)
    phrases = words + finding if len(finding) < len(words) else words
    candidates = np.unique(np.concatenate([postings[word][0] for word in finding])).astype(np.int64)
    numbers = [lengths.numbers[store_id] for store_id in store_ids if store_id in lengths.numbers]
    candidates = candidates[np.isin(lengths.stores[candidates], numbers)]
    average = lengths.total / lengths.rows
    scores = np.zeros(len(lengths.tokens), dtype=np.float64)
    for phrase in phrases:
        chunks, counts = postings[phrase]
        n = len(chunks)
        idf = math.log((lengths.rows - n + 0.5) / (n + 0.5))
        idf = idf if idf > 0 else 1e-6
        # (in place, two arrays of the postings' size: a word in most of a million chunks made five)
        denominator = lengths.tokens[chunks].astype(np.float64)
        denominator *= K1 * B / average
        denominator += K1 * (1 - B)
        denominator += counts
        term = counts.astype(np.float64)
        term *= idf * (K1 + 1)
        term /= denominator
        scores[chunks] += term
    return Ranking(candidates, scores[candidates])
