"""The kept web search results on each database: per tenant, ranked by the query's words, replaced per URL,
forgotten by the retention sweep."""

from __future__ import annotations

import time

import pytest

from parley.tools.web_cache import SqlWebCache
from parley.tools.web_search import SearchResult


@pytest.mark.anyio
async def test_kept_results_are_searched_per_tenant_and_swept(store) -> None:
    cache = SqlWebCache(store)
    await cache.remember("t1", [
        SearchResult("Llama 4 Maverick", "https://ai.example/maverick", "Maverick has 128 experts."),
        SearchResult("Llama 4 Scout", "https://ai.example/scout", "Scout has 16 experts and a long context."),
        SearchResult("Penguins", "https://birds.example/penguins", "Penguins do not fly."),
        SearchResult("Too long", "https://x.example/" + "a" * 2000, "Maverick experts"),  # not kept
    ])
    await cache.remember("t2", [SearchResult("Other tenant", "https://t2.example/", "Maverick experts secret")])

    found = await cache.search("t1", "How many experts does Maverick have?", 5)
    assert [url for _, url, _ in found] == ["https://ai.example/maverick", "https://ai.example/scout"]
    assert await cache.search("t1", "the of and", 5) == []  # no words to look for
    assert [url for _, url, _ in await cache.search("t2", "maverick", 5)] == ["https://t2.example/"]
    assert await cache.search("t3", "maverick", 5) == []
    assert await cache.search("t1", "100%_match", 5) == []  # LIKE's wildcards are the query's own characters

    await cache.remember("t1", [SearchResult("Maverick, again", "https://ai.example/maverick", "Updated.")])
    found = await cache.search("t1", "maverick", 5)
    assert found[0] == ("Maverick, again", "https://ai.example/maverick", "Updated.")

    assert await cache.sweep(time.time() - 3600) == 0  # nothing that old
    assert await cache.sweep(time.time() + 1) == 4
    assert await cache.search("t1", "maverick", 5) == []
