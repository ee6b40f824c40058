"""Which words of a keyword query find its candidates, on either database: a word in most chunks adds nothing to
the candidates but the time to rank them all, while it still counts in the ranking. The words are taken rarest first
while their estimated chunks together stay within ``CANDIDATE_ROWS``, so the chunks ranked stay about as many as
the table grows (the rarest word that is in any chunk always finds candidates, however common). PostgreSQL reads
the shares from the planner's statistics (:mod:`parley.retrieval.pg_terms`), SQLite counts them in FTS5
(:class:`FtsTermStats`).
"""

from __future__ import annotations

import math
import time

import sqlalchemy as sa

CANDIDATE_ROWS = 20_000  # the estimated chunks the words that find candidates may match together
REFRESH_S = 60.0  # statistics older than this are read again
MAX_CACHED_WORDS = 20_000
COUNT_CHUNKS = sa.text("SELECT count(*) FROM parley_vector_store_chunks")
COUNT_WORD = sa.text("SELECT count(*) FROM parley_vector_store_fts WHERE parley_vector_store_fts MATCH :m")
COUNT_STORE = sa.text("SELECT count(*) FROM parley_vector_store_chunks WHERE vector_store_id = :s")


def any_word(words: list[str]) -> str:
    """An FTS5 expression matching any of ``words``, each quoted as a phrase."""
    return " OR ".join('"' + word.replace('"', "") + '"' for word in words)


def choose(words: list[str], shares: dict[str, float], total: float) -> tuple[list[str], dict[str, float]]:
    """The words (of those given) that find a query's candidates, rarest first, and each one's ranking weight (its
    inverse document frequency, ``ln(1 + 1 / share)``), from each word's share of the ``total`` chunks; a word
    ``shares`` does not list is taken to be in half the share of the rarest one it lists (PostgreSQL's statistics
    list only the common ones). A word in no chunk finds nothing and is passed over; while the words' estimated
    chunks stay within ``CANDIDATE_ROWS`` every word finds candidates (a small store is not pruned at all)."""
    if not words:
        return [], {}
    floor = min(shares.values(), default=0.01) / 2
    share = {word: shares.get(word, floor) for word in words}
    rarest = sorted((word for word in words if share[word] > 0), key=lambda word: share[word])
    finding: list[str] = []
    rows = 0.0
    for word in rarest:
        rows += share[word] * total
        if finding and rows > CANDIDATE_ROWS:
            break
        finding.append(word)
    return finding or words, {word: math.log(1 + 1 / max(share[word], 1e-9)) for word in words}


class FtsTermStats:
    """SQLite: how many chunks hold each word (FTS5's own count of the one-word match, so stemmed as the index
    stems it) and how many chunks there are, each read again after ``REFRESH_S``."""

    def __init__(self) -> None:
        self._words: dict[str, tuple[float, int]] = {}  # word -> (read at, chunks holding it)
        self._stores: dict[str, tuple[float, int]] = {}  # vector store -> (read at, its chunks)
        self._total: tuple[float, int] = (float("-inf"), 0)

    def store_share(self, conn: sa.Connection, store_ids: list[str]) -> float:
        """The share of all chunks that these stores hold."""
        total = self._chunks(conn)
        held = sum(self._counted(conn, self._stores, store_id, COUNT_STORE, {"s": store_id}) for store_id in store_ids)
        return held / total if total else 1.0

    def shares(self, conn: sa.Connection, words: list[str]) -> tuple[dict[str, float], float]:
        total = self._chunks(conn)
        counts = {}  # (this call's own, so that another search clearing the cache meanwhile takes nothing from it)
        for word in words:
            counts[word] = self._counted(conn, self._words, word, COUNT_WORD, {"m": f"text : {any_word([word])}"})
        if not total:
            return {}, 0.0
        return {word: count / total for word, count in counts.items()}, float(total)

    def _chunks(self, conn: sa.Connection) -> int:
        """How many chunks there are (read again after ``REFRESH_S``)."""
        now = time.monotonic()
        if now - self._total[0] > REFRESH_S:
            self._total = (now, int(conn.execute(COUNT_CHUNKS).scalar() or 0))
        return self._total[1]

    @staticmethod
    def _counted(conn: sa.Connection, cache: dict[str, tuple[float, int]], key: str, count: sa.TextClause,
                 parameters: dict[str, str]) -> int:
        """``key``'s count (the ``count`` statement's answer) as ``cache`` holds it, read again after ``REFRESH_S``
        (the cache is emptied past ``MAX_CACHED_WORDS`` keys)."""
        now = time.monotonic()
        if len(cache) > MAX_CACHED_WORDS:
            cache.clear()
        read_at, n = cache.get(key, (float("-inf"), 0))
        if now - read_at > REFRESH_S:
            n = int(conn.execute(count, parameters).scalar() or 0)
            cache[key] = (now, n)
        return n
