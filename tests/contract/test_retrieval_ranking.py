"""The ranking paths of vector store search, through a real ``parley serve`` on SQLite (sqlite-vec's vec0 index,
FTS5 ranking inside the index), PostgreSQL and PostgreSQL with pgvector: a word in every chunk, a rare word, a
filter that removes most candidates (each half reads past the chunks the filter drops), an empty store, and a
search over stores of two embedding models."""

from __future__ import annotations

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ToolCall

WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris", "jade", "kelp",
         "lagoon", "meadow", "nebula", "orchid", "prairie", "quartz", "reef", "savanna", "tundra"]


@pytest.fixture(scope="module")
def server(scripted_server, retrieval_db_url):
    with ParleyProcess("--upstream", scripted_server.url, "--db", retrieval_db_url,
                       "--embedding-upstream", scripted_server.url) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def landscape(api):
    """A store of 120 small files (more than a search reads at first): every chunk says "landscape"; file i names
    the word WORDS[i % 20] and, for i below 20, a rare code; only file 7 is marked kept."""
    store = api.vector_stores.create(name="landscape")
    ids = []
    for i in range(120):
        text = f"A landscape note about the {WORDS[i % 20]} country, entry {i}."
        if i < 20:
            text += f" Code zx{i}q appears once."
        uploaded = api.files.create(file=(f"note{i}.txt", text.encode()), purpose="assistants")
        ids.append(uploaded.id)
    batch = api.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=ids,
                                                           poll_interval_ms=50)
    assert batch.file_counts.completed == 120
    api.vector_stores.files.update(file_id=ids[7], vector_store_id=store.id, attributes={"kept": True})
    for i in range(120):
        if i != 7:
            api.vector_stores.files.update(file_id=ids[i], vector_store_id=store.id, attributes={"kept": False})
    yield store.id


@pytest.mark.parametrize("ranker", ["hybrid", "vector", "keyword"])
def test_a_word_in_every_chunk_still_ranks_the_one_that_also_names_the_rare_word(api, landscape, ranker) -> None:
    page = api.vector_stores.search(landscape, query="landscape", max_num_results=12,
                                    ranking_options={"ranker": ranker})
    assert len(page.data) == 12 and all("landscape" in r.content[0].text for r in page.data)
    if ranker != "vector":
        rare = api.vector_stores.search(landscape, query="which note has code zx13q", max_num_results=3,
                                        ranking_options={"ranker": ranker})
        assert rare.data[0].filename == "note13.txt"


def test_a_word_no_chunk_holds_does_not_hide_the_words_every_chunk_holds(api, landscape) -> None:
    page = api.vector_stores.search(landscape, query="volcano landscape", max_num_results=3,
                                    ranking_options={"ranker": "keyword"})
    assert len(page.data) == 3 and all("landscape" in r.content[0].text for r in page.data)


@pytest.mark.parametrize("ranker", ["hybrid", "vector", "keyword"])
def test_a_filter_that_removes_most_candidates_still_finds_what_passes(api, landscape, ranker) -> None:
    page = api.vector_stores.search(landscape, query="landscape country entry", max_num_results=5,
                                    filters={"type": "eq", "key": "kept", "value": True},
                                    ranking_options={"ranker": ranker})
    assert [r.filename for r in page.data] == ["note7.txt"]


@pytest.mark.parametrize("ranker", ["hybrid", "vector", "keyword"])
def test_an_empty_store_finds_nothing(api, ranker) -> None:
    empty = api.vector_stores.create(name="empty")
    assert api.vector_stores.search(empty.id, query="anything at all", ranking_options={"ranker": ranker}).data == []


def test_file_search_over_stores_of_two_embedding_models(api, server, backend) -> None:
    local = api.vector_stores.create(name="local")
    upstream = api.vector_stores.create(name="upstream", extra_body={"embedding_model": "scripted-embed"})
    for store, name, text in ((local, "bread.txt", "Sourdough rises with wild yeast and a starter."),
                              (upstream, "orbit.txt", "The station orbits Earth every ninety minutes.")):
        done = api.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, text.encode()))
        assert done.status == "completed", done.last_error
    backend.push(Reply(tool_calls=[ToolCall("file_search", {"queries": ["sourdough starter yeast",
                                                                       "station orbits Earth"]})]),
                 Reply(text="Both."))
    response = api.responses.create(model="m", input="Tell me about bread and orbits.",
                                    include=["file_search_call.results"],
                                    tools=[{"type": "file_search", "vector_store_ids": [local.id, upstream.id]}])
    call = response.output[0]
    assert {r.filename for r in call.results} == {"bread.txt", "orbit.txt"}
    assert {r.vector_store_id for r in call.results} == {local.id, upstream.id}
    for store, name, query in ((local, "bread.txt", "wild yeast"), (upstream, "orbit.txt", "station orbit")):
        page = api.vector_stores.search(store.id, query=query, ranking_options={"ranker": "vector"})
        assert page.data[0].filename == name
