"""The file_search tool through a real parley serve: the model's queries run server-side in the tool loop,
``file_search_call`` items with their queries (and results when included), the stream's events, and
citations as ``file_citation`` annotations; on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import openai
import pytest

from parley.testing.strict import strict_client
from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.grammar import check_stream
from tests.contract.helpers import stream_raw

ETNA = ("Mount Etna is an active stratovolcano on the east coast of Sicily. Its eruption in 2021 sent an ash "
        "column twelve kilometres high.")
BREAD = "Sourdough bread rises with wild yeast. Bakers feed the starter with flour and water daily."


def searching_model(request: dict) -> Reply:
    """Searches the files first; then answers from the numbered result that mentions the ash column."""
    results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
    if not results:
        return Reply(tool_calls=[ToolCall("file_search", {"queries": ["Etna ash column height"]})])
    found = re.search(r"\[(\d+)\] volcano\.md\n.*?ash column (\w+) kilometres", results[-1], re.S)
    if not found:
        return Reply(text="I found nothing.")
    return Reply(text=f"The ash column rose {found.group(2)} kilometres [{found.group(1)}].", chunk_size=4)


@pytest.fixture(scope="module")
def fs_backend():
    with ScriptedBackend(searching_model) as backend:
        yield backend


@pytest.fixture(scope="module")
def fs_server(fs_backend, retrieval_db_url):
    with ParleyProcess("--upstream", fs_backend.url, "--db", retrieval_db_url) as server:
        yield server


@pytest.fixture(scope="module")
def fs_client(fs_server):
    with strict_client(fs_server.base_url) as official:
        yield official


@pytest.fixture(scope="module")
def store_id(fs_client):
    store = fs_client.vector_stores.create(name="kb")
    for name, text in (("volcano.md", ETNA), ("bread.txt", BREAD)):
        done = fs_client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, text.encode()))
        assert done.status == "completed"
    yield store.id
    fs_client.vector_stores.delete(store.id)


def test_a_file_search_response_cites_the_file(fs_client, store_id, fs_backend) -> None:
    fs_backend.reset(searching_model)
    response = fs_client.responses.create(model="m", input="How high was Etna's ash column?",
                                          tools=[{"type": "file_search", "vector_store_ids": [store_id]}])
    call, message = response.output[0], response.output[1]
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.queries == ["Etna ash column height"] and call.results is None
    assert response.output_text == "The ash column rose twelve kilometres [1]."
    [annotation] = message.content[0].annotations
    assert annotation.type == "file_citation" and annotation.filename == "volcano.md"
    assert annotation.index == response.output_text.index("[1]")
    volcano = [f for f in fs_client.vector_stores.files.list(store_id).data if annotation.file_id == f.id]
    assert volcano, "the citation names the store's file"
    stored = fs_client.responses.retrieve(response.id)
    assert stored.output[1].content[0].annotations[0].file_id == annotation.file_id
    sent = fs_backend.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "file_search"
    assert "[1] volcano.md" in [m for m in sent["messages"] if m["role"] == "tool"][0]["content"]


def test_results_are_included_on_request_and_the_stream_has_the_events(fs_server, fs_client, store_id,
                                                                      fs_backend) -> None:
    fs_backend.reset(searching_model)
    events = stream_raw(fs_server.base_url, {
        "model": "m", "input": "How high was Etna's ash column?", "include": ["file_search_call.results"],
        "tools": [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 2}]})
    final = check_stream(events)
    kinds = [e.type for e in events]
    for expected in ("response.file_search_call.in_progress", "response.file_search_call.searching",
                     "response.file_search_call.completed", "response.output_text.annotation.added"):
        assert expected in kinds, expected
    call = final.output[0]
    assert call.type == "file_search_call" and 1 <= len(call.results) <= 2
    assert call.results[0].filename == "volcano.md" and "twelve" in call.results[0].text
    assert 0 < call.results[0].score <= 1
    assert call.results[0].model_extra["vector_store_id"] == store_id  # Open Responses requires it
    # the tool as echoed: the values in force where the request left them out
    assert final.tools[0].max_num_results == 2
    assert final.tools[0].ranking_options.model_dump(exclude_none=True) == {
        "ranker": "auto", "score_threshold": 0.0, "hybrid_search": {"embedding_weight": 0.5, "text_weight": 1.0}}
    streamed = fs_client.responses.create(model="m", input="Etna?", stream=True, tools=[
        {"type": "file_search", "vector_store_ids": [store_id]}], tool_choice={"type": "file_search"})
    done = [e for e in streamed if e.type == "response.completed"][0]
    assert done.response.output[0].type == "file_search_call"
    assert done.response.tools[0].max_num_results == 10
    assert fs_backend.requests[-2]["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}


def test_filters_in_the_tool_narrow_the_search(fs_client, store_id, fs_backend) -> None:
    fs_backend.reset(searching_model)
    bread = next(f for f in fs_client.vector_stores.files.list(store_id).data
                 if fs_client.files.retrieve(f.id).filename == "bread.txt")
    fs_client.vector_stores.files.update(file_id=bread.id, vector_store_id=store_id, attributes={"topic": "food"})
    response = fs_client.responses.create(
        model="m", input="ash?", include=["file_search_call.results"],
        tools=[{"type": "file_search", "vector_store_ids": [store_id],
                "filters": {"type": "eq", "key": "topic", "value": "food"}}])
    assert [r.filename for r in response.output[0].results] == ["bread.txt"]
    assert response.output_text == "I found nothing."


def test_bad_file_search_tools_are_4xx(fs_client, store_id) -> None:
    cases = [({"type": "file_search", "vector_store_ids": ["vs_nope"]}, openai.NotFoundError,
              "tools[0].vector_store_ids[0]"),
             ({"type": "file_search", "vector_store_ids": []}, openai.BadRequestError, "tools[0].vector_store_ids"),
             ({"type": "file_search", "vector_store_ids": [store_id], "filters": {"type": "eq"}},
              openai.BadRequestError, None),
             ({"type": "file_search", "vector_store_ids": [store_id], "ranking_options": {"ranker": []}},
              openai.BadRequestError, None),
             ({"type": "file_search", "vector_store_ids": [store_id], "filters": {"type": {}, "filters": []}},
              openai.BadRequestError, None),
             ({"type": "file_search", "vector_store_ids": [store_id], "max_num_results": 0},
              openai.BadRequestError, "tools[0].max_num_results")]
    for tool, error, param in cases:
        with pytest.raises(error) as info:
            fs_client.responses.create(model="m", input="x", tools=[tool])
        if param is not None:
            assert info.value.body["param"] == param, info.value.body
