"""What Parley's web search has found, kept per tenant, for searches that must not reach the live web.

Every result a live ``web_search`` gets from the provider (its title, URL and text) is kept here under the
response's tenant, newest first; a ``web_search`` tool with ``external_web_access: false`` searches only this
cache.  Entries older than the retention period go with the stored responses (the runtime's sweep).  The
search is bounded: at most ``CANDIDATES`` of the tenant's newest entries that contain the query's rarest-looking
words (the longest, at most ``MAX_KEYWORDS``) are scored, by how many of those words each holds.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from parley.retrieval.search import keywords
from parley.store.sql import SqlStore
from parley.store.tables import metadata

CANDIDATES = 200
MAX_TEXT = 4000  # characters kept of a result's text (the most a search context size gives the model is 2,000)
MAX_URL = 1000  # a longer URL is not kept (it is part of the key)

web_cache = sa.Table(
    "parley_web_cache", metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("url", sa.String(MAX_URL), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("fetched_at", sa.Float, nullable=False),
)


class SqlWebCache:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def remember(self, tenant: str, results: list[Any]) -> None:
        """Keep ``results`` (each with ``title``, ``url``, ``content``), replacing what was kept for a URL."""
        if not results:
            return
        now = time.time()
        rows = {r.url: {"tenant": tenant, "url": r.url, "title": r.title[:1000], "content": r.content[:MAX_TEXT],
                        "fetched_at": now} for r in results if len(r.url) <= MAX_URL}
        if not rows:
            return

        def write(conn: sa.Connection) -> None:
            conn.execute(web_cache.delete().where(web_cache.c.tenant == tenant, web_cache.c.url.in_(list(rows))))
            conn.execute(web_cache.insert(), list(rows.values()))

        await self.store.run(write)

    async def search(self, tenant: str, query: str, count: int) -> list[tuple[str, str, str]]:
        """The ``count`` kept results that best match ``query``: (title, url, content)."""
        words = keywords(query)
        if not words:
            return []
        text = sa.func.lower(web_cache.c.title + " " + web_cache.c.content)
        matches = sa.or_(*(text.contains(word, autoescape=True) for word in words))
        select = (sa.select(web_cache.c.title, web_cache.c.url, web_cache.c.content)
                  .where(web_cache.c.tenant == tenant, matches)
                  .order_by(web_cache.c.fetched_at.desc()).limit(CANDIDATES))
        rows = await self.store.run(lambda conn: conn.execute(select).all())

        def score(row: Any) -> int:
            haystack = f"{row.title} {row.content}".lower()
            return sum(word in haystack for word in words)

        ranked = sorted(rows, key=score, reverse=True)  # stable: among equals, the newest first
        return [(row.title, row.url, row.content) for row in ranked[:count]]

    async def sweep(self, before: float) -> int:
        """Forget what was fetched before ``before`` (epoch seconds); the number of entries forgotten."""
        result = await self.store.run(lambda conn: conn.execute(web_cache.delete().where(
            web_cache.c.fetched_at < before)))
        return result.rowcount or 0
