"""Query rewriting and reranking by a retrieval model on the upstream (``--retrieval-model``,
``--rerank-candidates``), through a real ``parley serve`` and a scripted Chat backend that plays the model."""

from __future__ import annotations

import json
import re

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall

RANKER = "scripted-ranker"
DOCS = {
    "trails.txt": "Llamas carry packs on mountain trails, and llamas walk in long lines with their herders.",
    "fleece.txt": "Llama wool is shorn in spring and spun into warm yarn for llamas' owners.",
    "guard.txt": "Some farms keep llamas to guard sheep from foxes; llamas are alert animals.",
    "blanket.txt": "A blanket of llama wool keeps its warmth when wet.",
    "andes.txt": "Llamas were bred in the Andes long ago and llamas are still common there.",
}


def model(request: dict) -> Reply:
    """The retrieval model: a rewrite of questions about llamas, and ratings that put passages about wool first
    (a search that says "broken" gets an answer that rates nothing); the chat model: a file search, then an
    answer."""
    messages = request["messages"]
    if request["model"] != RANKER:
        if any(m["role"] == "tool" for m in messages):
            return Reply(text="Done.")
        return Reply(tool_calls=[ToolCall("file_search", json.dumps({"queries": ["llamas"]}))])
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You turn"):
        if "fail" in user:
            return Reply(status=500)
        return Reply(text='"llama fleece wool yarn"\nThat query finds it.')
    if "broken" in user:
        return Reply(text="I would rather not rate these.")
    return Reply(text="\n".join(f"{n}: {9 if 'wool' in passage else 2}"
                                for n, passage in re.findall(r"^\[(\d+)\] (.*)$", user, re.MULTILINE)))


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranked")
    with ScriptedBackend(model) as backend, \
            ParleyProcess("--upstream", backend.url, "--db", f"sqlite:///{folder / 'p.db'}",
                          "--retrieval-model", RANKER, "--rerank-candidates", "3") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        store = client.vector_stores.create(name="llamas")
        ids = [client.files.create(file=(name, text.encode()), purpose="assistants").id for name, text in DOCS.items()]
        batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=ids,
                                                                  poll_interval_ms=50)
        assert batch.file_counts.completed == len(DOCS)
        yield client, backend, store.id


def _asked(backend: ScriptedBackend) -> list[dict]:
    return [r for r in backend.requests if r["model"] == RANKER]


def test_rewrite_query_asks_the_retrieval_model_and_searches_its_query(ranked) -> None:
    client, backend, store = ranked
    page = client.vector_stores.search(store, query="What do people make from what llamas grow?", rewrite_query=True)
    assert page.search_query == ["llama fleece wool yarn"], "the first line, without its quotes"
    asked = _asked(backend)[-2]  # (the rewrite, then the reranking of its search)
    assert asked["messages"][-1]["content"] == "What do people make from what llamas grow?"
    assert asked["temperature"] == 0 and asked["max_tokens"] == 64


def test_a_failed_rewrite_searches_the_local_rewrite(ranked) -> None:
    client, _, store = ranked
    page = client.vector_stores.search(store, query="Why did the llamas fail to climb?", rewrite_query=True)
    assert page.search_query == ["llamas fail climb"]
    assert page.data, "the search itself goes on"


def test_the_first_candidates_are_rated_and_reordered_the_rest_follow_unrated(ranked) -> None:
    client, backend, store = ranked
    fused = client.vector_stores.search(store, query="llamas", max_num_results=5, ranking_options={"ranker": "hybrid"})
    asked_before = len(_asked(backend))
    reranked = client.vector_stores.search(store, query="llamas", max_num_results=5)
    assert len(_asked(backend)) == asked_before + 1
    prompt = _asked(backend)[-1]["messages"][-1]["content"]
    assert prompt.startswith("Search: llamas\n") and "[3] " in prompt and "[4] " not in prompt
    top = [hit.filename for hit in fused.data[:3]]
    wool = [name for name in top if "wool" in DOCS[name]]
    expected = wool + [name for name in top if name not in wool] + [hit.filename for hit in fused.data[3:]]
    assert [hit.filename for hit in reranked.data] == expected
    assert [hit.score for hit in reranked.data] == [0.9] * len(wool) + [0.2] * (3 - len(wool)) + [0.0] * 2


def test_the_threshold_applies_to_the_ratings(ranked) -> None:
    client, _, store = ranked
    page = client.vector_stores.search(store, query="llamas", max_num_results=5,
                                       ranking_options={"ranker": "auto", "score_threshold": 0.5})
    assert page.data and all(hit.score == 0.9 and "wool" in DOCS[hit.filename] for hit in page.data)


@pytest.mark.parametrize("ranker", ["none", "hybrid", "vector", "keyword"])
def test_other_rankers_are_not_reranked(ranked, ranker) -> None:
    client, backend, store = ranked
    asked_before = len(_asked(backend))
    page = client.vector_stores.search(store, query="llamas", ranking_options={"ranker": ranker})
    assert page.data and len(_asked(backend)) == asked_before


def test_an_answer_that_rates_nothing_keeps_the_fused_order(ranked) -> None:
    client, _, store = ranked
    fused = client.vector_stores.search(store, query="broken llamas", ranking_options={"ranker": "hybrid"})
    kept = client.vector_stores.search(store, query="broken llamas")
    assert [(h.filename, h.score) for h in kept.data] == [(h.filename, h.score) for h in fused.data]


def test_file_search_in_a_response_is_reranked(ranked) -> None:
    client, _, store = ranked
    response = client.responses.create(model="m", input="Tell me about llamas.",
                                       tools=[{"type": "file_search", "vector_store_ids": [store]}],
                                       include=["file_search_call.results"])
    call = next(item for item in response.output if item.type == "file_search_call")
    assert call.status == "completed" and call.results
    assert "wool" in call.results[0].text and call.results[0].score == 0.9
    assert response.output_text == "Done."


def test_reranking_without_a_model_or_with_one_nobody_serves_stops_serve(tmp_path) -> None:
    with ScriptedBackend(model) as backend:
        config = tmp_path / "parley.yaml"
        config.write_text(f"upstreams:\n  - name: only-m\n    url: {backend.url}\n    models: ['m']\n")
        for args, said in ((["--upstream", backend.url, "--rerank-candidates", "5"], "retrieval_model"),
                           (["--config", str(config), "--retrieval-model", RANKER], "--retrieval-model " + RANKER)):
            server = ParleyProcess(*args, "--db", f"sqlite:///{tmp_path / 'p.db'}")
            with pytest.raises(RuntimeError) as info:
                server.start()
            assert "exited with 2" in str(info.value) and said in str(info.value), info.value
