"""Property: the vector store, search, file_search and conversation endpoints answer any JSON body with a
status below 500, every error in OpenAI's shape (on SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEYS = ["name", "file_ids", "chunking_strategy", "metadata", "expires_after", "query", "filters", "max_num_results",
        "ranking_options", "rewrite_query", "items", "file_id", "attributes", "type", "key", "value", "static",
        "ranker", "score_threshold", "hybrid_search", "files", "anchor", "days", "role", "content", "id",
        "embedding_model", "max_chunk_size_tokens", "chunk_overlap_tokens", "embedding_weight", "text_weight"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**20), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(["", "x", "auto", "static", "eq", "and", "in", "vs_x", "file-x", "user", "\x00"]))
# Inside options and filters, the keys they are read by: a fuzzer that never names 'ranker' never reaches it.
OPTION_KEYS = ["ranker", "score_threshold", "hybrid_search", "embedding_weight", "text_weight", "type", "key",
               "value", "filters", "static", "max_chunk_size_tokens", "chunk_overlap_tokens", "anchor", "days"]
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(OPTION_KEYS), inner, max_size=4)),
                      max_leaves=12)
bodies = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
filters = st.recursive(values, lambda inner: st.dictionaries(st.sampled_from(["type", "key", "value", "filters"]),
                                                             st.one_of(inner, st.lists(inner, max_size=3)),
                                                             max_size=4), max_leaves=10)
rankings = st.dictionaries(st.sampled_from(["ranker", "score_threshold", "hybrid_search"]), values, max_size=3)
search_options = st.fixed_dictionaries({}, optional={"filters": filters, "ranking_options": st.one_of(rankings, values),
                                                     "max_num_results": values})


@pytest.fixture(scope="module")
def http(parley_server):
    with httpx.Client(base_url=parley_server.base_url, timeout=60) as client:
        store = client.post("/vector_stores", json={"name": "fuzz"}).json()["id"]
        upload = client.post("/files", files={"file": ("a.txt", b"alpha beta")}, data={"purpose": "assistants"})
        conversation = client.post("/conversations", json={}).json()["id"]
        yield client, store, upload.json()["id"], conversation
    assert httpx.get(f"{parley_server.url}/health").json() == {"status": "ok", "store": "ok"}


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, target=st.integers(0, 9), tool=search_options)
def test_no_body_gets_a_5xx(http, backend, body, target, tool) -> None:
    client, store, file_id, conversation = http
    paths = ["/vector_stores", f"/vector_stores/{store}", f"/vector_stores/{store}/files",
             f"/vector_stores/{store}/search", f"/vector_stores/{store}/file_batches",
             f"/vector_stores/{store}/files/{file_id}", "/conversations", f"/conversations/{conversation}",
             f"/conversations/{conversation}/items", f"/vector_stores/{store}/search"]
    # Each example: a body for one endpoint, and the search options both as a search and as a file_search tool.
    requests = [(paths[target], body), (f"/vector_stores/{store}/search", {"query": "alpha", **tool}),
                ("/responses", {"model": "m", "input": "x",
                                "tools": [{"type": "file_search", "vector_store_ids": [store], **tool}]})]
    for path, sent in requests:
        response = client.post(path, json=sent)
        assert response.status_code < 500, (path, sent, response.text[:500])
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
