"""Query rewriting and reranking by a Chat model on an upstream (``--retrieval-model``), as OpenAI's file search
describes them: ``rewrite_query`` asks the model for a search query in place of the question, and a search whose
ranker is ``auto`` or ``default-2024-11-15`` has its first ``--rerank-candidates`` fused candidates rated by the
model and reordered.

Rewriting: the model's first line, cut to ``MAX_QUERY`` characters; an empty answer or a failed call keeps the
local rewrite (:func:`parley.retrieval.search.rewrite`).  Reranking: the model sees the search and the candidates
numbered ``[1]``…, each cut to ``PASSAGE_CHARS`` characters, and answers a line ``n: rating`` (0 to 10) for each;
the candidates are ordered by rating (a tie, or a candidate it did not rate, keeps the fused order after the rated
ones) and a hit's score becomes its rating / 10 (0 for one not rated).  A failed call keeps the fused order and
scores, and says so in the log: rating improves a search, it never fails one.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from parley.errors import ParleyError
from parley.retrieval.search import Hit

log = logging.getLogger("parley.retrieval")
MAX_QUERY = 400
PASSAGE_CHARS = 1200
RATING = re.compile(r"^\W*(\d+)\W+(\d+(?:\.\d+)?)", re.MULTILINE)

REWRITE = ("You turn a user's question into a query for a search over their documents: the key terms and "
           "phrases, with a synonym where one helps. Answer with the query alone, on one line.")
RERANK = ("You rate how well passages answer a search. For each passage write one line: its number, a colon and "
          "a rating from 0 (unrelated) to 10 (answers it fully). Rate every passage and write nothing else.")


class ModelRanking:
    """The retrieval model, asked through the router."""

    def __init__(self, router: Any, model: str, candidates: int) -> None:
        self.router = router
        self.model = model
        self.candidates = candidates  # how many fused candidates a reranked search rates (0: none)

    async def rewrite(self, question: str, fallback: str) -> str:
        try:
            answer = await self.router.ask(self.model, [{"role": "system", "content": REWRITE},
                                                        {"role": "user", "content": question}], 64)
        except ParleyError as exc:
            log.warning("query rewriting by %s failed, the local rewrite searched instead: %s", self.model, exc.message)
            return fallback
        lines = [line.strip().strip('"').strip() for line in answer.splitlines() if line.strip().strip('"').strip()]
        return lines[0][:MAX_QUERY] if lines else fallback

    async def rerank(self, queries: list[str], hits: list[Hit]) -> list[Hit]:
        """``hits`` reordered by the model's ratings of the first ``candidates`` of them (the others follow, not
        rated)."""
        rated = hits[:self.candidates]
        if not rated:
            return hits
        passages = "\n\n".join(f"[{n}] {' '.join(hit.text.split())[:PASSAGE_CHARS]}" for n, hit in enumerate(rated, 1))
        prompt = f"Search: {' / '.join(queries)}\n\nPassages:\n\n{passages}"
        try:
            answer = await self.router.ask(self.model, [{"role": "system", "content": RERANK},
                                                        {"role": "user", "content": prompt}], 8 * len(rated) + 16)
        except ParleyError as exc:
            log.warning("reranking by %s failed, the fused order kept: %s", self.model, exc.message)
            return hits
        return reordered(hits, ratings(answer, len(rated)))


def ratings(answer: str, count: int) -> dict[int, float]:
    """Candidate index (from 0) -> rating in [0, 10], from the model's ``n: rating`` lines (the first one for each
    number; numbers out of range and ratings above 10 are not ratings)."""
    found: dict[int, float] = {}
    for number, rating in RATING.findall(answer):
        index, value = int(number) - 1, float(rating)
        if 0 <= index < count and value <= 10 and index not in found:
            found[index] = value
    return found


def reordered(hits: list[Hit], rated: dict[int, float]) -> list[Hit]:
    if not rated:
        log.warning("the reranking model rated no candidate: the fused order kept")
        return hits
    order = sorted(range(len(hits)), key=lambda i: (i not in rated, -rated.get(i, 0.0), i))
    out = []
    for i in order:
        hit = hits[i]
        hit.score = round(rated.get(i, 0.0) / 10, 6)
        out.append(hit)
    return out
