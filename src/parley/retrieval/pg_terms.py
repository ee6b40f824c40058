"""PostgreSQL: which words of a keyword query are rare enough to find candidates by, from the planner's own
statistics of the chunks' ``tsvector`` column (``pg_stats.most_common_elems``: the lexemes that are in more than a
small share of the chunks, with that share; ANALYZE keeps them, and autovacuum runs it as the table grows).

A query's chunks are found by its rarer lexemes (:func:`parley.retrieval.terms.choose`) and then ranked by every
word of the query, each weighted by its inverse document frequency; the ranking reads at most ``MAX_CANDIDATES`` of
the rows they match, for a query whose rarest word is in a large share of a large table. Without statistics (a
table never analyzed) every word finds candidates.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from parley.retrieval.terms import REFRESH_S, choose

MAX_CANDIDATES = 50_000  # the matching chunks one keyword search ranks at most
STATS = sa.text("SELECT most_common_elems::text::text[] AS elems, most_common_elem_freqs AS freqs, "
                "(SELECT reltuples FROM pg_class WHERE oid = to_regclass('parley_vector_store_chunks')) AS total "
                "FROM pg_stats WHERE tablename = 'parley_vector_store_chunks' AND attname = 'tsv'")
LEXEMES = sa.text("SELECT lexeme FROM unnest(to_tsvector('english', :text))")


class TermStats:
    def __init__(self) -> None:
        self._shares: dict[str, float] = {}
        self._total = 0.0
        self._read_at = float("-inf")

    def shares(self, conn: sa.Connection) -> tuple[dict[str, float], float]:
        """The share of chunks each common lexeme is in, and the chunks in the table, as the planner estimates
        them (read again after ``REFRESH_S``)."""
        if time.monotonic() - self._read_at > REFRESH_S:
            row = conn.execute(STATS).first()
            self._shares = dict(zip(row.elems, row.freqs)) if row is not None and row.elems else {}
            self._total = max(0.0, float(row.total or 0)) if row is not None else 0.0
            self._read_at = time.monotonic()
        return self._shares, self._total

    def weighed(self, conn: sa.Connection, text: str) -> tuple[list[str], dict[str, float]]:
        """The lexemes of ``text`` (English stemming, as the index has them) that candidates are found by, and
        each lexeme's weight in the ranking: its inverse document frequency, ``ln(1 + 1 / share)`` (a lexeme
        the statistics do not list is taken to be in half as many chunks as the rarest one they list)."""
        lexemes = list(dict.fromkeys(lexeme for lexeme in conn.execute(LEXEMES, {"text": text}).scalars() if lexeme))
        shares, total = self.shares(conn)
        return choose(lexemes, shares, total)


def any_of(lexemes: list[str]) -> Any:
    """A ``tsquery`` matching any of ``lexemes`` (already stemmed: the ``simple`` configuration keeps them)."""
    query = sa.func.plainto_tsquery("simple", lexemes[0])
    for lexeme in lexemes[1:]:
        query = query.op("||")(sa.func.plainto_tsquery("simple", lexeme))
    return query


def weighted_rank(tsv: Any, weights: dict[str, float]) -> Any:
    """Each lexeme's ``ts_rank`` (normalized by the log of the chunk's length) times its weight, summed."""
    terms = [sa.func.ts_rank(tsv, sa.func.plainto_tsquery("simple", lexeme), 1) * weight
             for lexeme, weight in weights.items()]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
