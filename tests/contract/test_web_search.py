"""Web search through each provider, against a loopback server speaking that provider's format."""

from __future__ import annotations

import re

import openai
import pytest

from parley.testing.strict import strict_client
from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.search_server import SearchTestServer
from tests.contract.helpers import stream_raw

QUESTION = "How many experts does the Llama 4 Maverick model have?"


def searching_model(request: dict) -> Reply:
    """Searches first; then answers from the tool result it was given, citing source [1]."""
    tool_results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
    if not tool_results:
        return Reply(tool_calls=[ToolCall("web_search", {"query": "Llama 4 Maverick experts"})])
    found = re.search(r"(\d+) experts", tool_results[-1])
    return Reply(text=f"Llama 4 Maverick has {found.group(1)} experts [1]." if found else "No idea.", chunk_size=5)


@pytest.fixture(scope="module")
def search():
    with SearchTestServer(api_key="search-key") as server:
        yield server


@pytest.fixture(scope="module")
def search_backend():
    with ScriptedBackend(searching_model) as backend:
        yield backend


@pytest.fixture(scope="module", params=["searxng", "tavily", "brave"])
def provider_server(request, search, search_backend, tmp_path_factory):
    spec = f"{request.param}:{search.url}"
    folder = tmp_path_factory.mktemp("ws")
    with ParleyProcess("--upstream", search_backend.url, "--db", f"sqlite:///{folder / 'p.db'}",
                       "--web-search", spec, "--tavily-api-key", "search-key", "--brave-api-key", "search-key") as p:
        yield request.param, p


@pytest.fixture
def ws_client(provider_server, search_backend, search):
    search_backend.reset(searching_model)
    search.requests.clear()
    _, server = provider_server
    with strict_client(server.base_url) as official:
        yield official


def test_seed_web_search_scenario(ws_client, provider_server, search) -> None:
    response = ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search"}], stream=False)
    assert len(response.output) > 1
    assert response.output[0].type == "web_search_call" and response.output[0].status == "completed"
    assert response.output[1].type == "message" and response.output[1].status == "completed"
    assert response.output[1].role == "assistant" and len(response.output[1].content) > 0
    assert "128" in response.output_text.lower()
    assert search.requests[-1]["provider"] == provider_server[0]
    action = response.output[0].action
    assert action.type == "search" and action.query == "Llama 4 Maverick experts"
    assert action.sources[0].url == "https://ai.meta.example/llama-4-maverick"


def test_citations_become_url_citation_annotations(ws_client, provider_server) -> None:
    _, server = provider_server
    events = stream_raw(server.base_url, {"model": "m", "input": QUESTION, "tools": [{"type": "web_search_preview"}]})
    final = check_stream(events)
    kinds = [e.type for e in events]
    for expected in ("response.web_search_call.in_progress", "response.web_search_call.searching",
                     "response.web_search_call.completed", "response.output_text.annotation.added"):
        assert expected in kinds, expected
    text = final.output[1].content[0]
    [annotation] = text.annotations
    assert annotation.type == "url_citation" and annotation.url == "https://ai.meta.example/llama-4-maverick"
    assert text.text[annotation.start_index:annotation.end_index] == "[1]"
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert added[0].annotation_index == 0 and kinds.index(added[0].type) < kinds.index("response.output_text.done")


def test_search_context_size_changes_results_and_text(ws_client, search_backend, provider_server) -> None:
    ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search", "search_context_size": "low"}])
    low = [m for m in search_backend.requests[-1]["messages"] if m["role"] == "tool"][-1]["content"]
    search_backend.reset(searching_model)
    ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search",
                                                                  "search_context_size": "high"}])
    high = [m for m in search_backend.requests[-1]["messages"] if m["role"] == "tool"][-1]["content"]
    assert low.count("URL: ") <= 3 and high.count("URL: ") >= low.count("URL: ")
    assert len(re.findall(r"^\[\d+\]", high, re.M)) == high.count("URL: ")


def test_allowed_domains_are_honoured(ws_client, search_backend) -> None:
    search_backend.reset(lambda r: Reply(tool_calls=[ToolCall("web_search", {"query": "degrees Celsius"})])
                         if not any(m["role"] == "tool" for m in r["messages"]) else Reply(text="ok"))
    response = ws_client.responses.create(model="m", input="temperatures", tools=[
        {"type": "web_search", "filters": {"allowed_domains": ["weather.example.org"]}}])
    urls = [s.url for s in response.output[0].action.sources]
    assert urls and all(u.startswith("https://weather.example.org/") for u in urls)


def test_forced_web_search_tool_choice(ws_client, search_backend) -> None:
    ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search"}],
                               tool_choice={"type": "web_search"})
    assert search_backend.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
    assert search_backend.requests[1]["tool_choice"] == "auto"


def test_agents_style_nulls_are_accepted(ws_client) -> None:
    response = ws_client.responses.create(model="m", input=QUESTION, tools=[
        {"type": "web_search", "filters": None, "user_location": None, "search_context_size": None}])
    assert response.output[0].type == "web_search_call"


def test_without_a_provider_web_search_is_a_400(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", tools=[{"type": "web_search"}])
    assert info.value.code == "web_search_not_configured" and "--web-search" in info.value.message


def test_cached_only_web_search_searches_what_live_searches_found(client, backend, ws_client, search_backend,
                                                                  search, provider_server) -> None:
    # Codex sends {"type": "web_search", "external_web_access": false} by default: cached results only, which
    # are what this tenant's live searches found before; the provider is never asked.
    cached = {"type": "web_search", "external_web_access": False}
    backend.push(Reply(text="nothing kept"))
    response = client.responses.create(model="m", input="x", tools=[cached])  # a server without a provider
    assert response.status == "completed" and response.tools[0].external_web_access is False
    offered = backend.requests[-1]["tools"][0]["function"]
    assert offered["name"] == "web_search" and "no live web access" in offered["description"]

    ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search"}])  # live: kept
    before = len(search.requests)
    response = ws_client.responses.create(model="m", input=QUESTION, tools=[cached],
                                          tool_choice={"type": "web_search"},
                                          include=["web_search_call.action.sources"])
    assert len(search.requests) == before  # the provider was not asked
    call = response.output[0]
    assert call.type == "web_search_call" and call.status == "completed"
    assert call.action.queries == ["Llama 4 Maverick experts"]
    assert call.action.sources[0].url == "https://ai.meta.example/llama-4-maverick"
    assert "128" in response.output_text

    search_backend.reset(lambda r: Reply(tool_calls=[ToolCall("web_search", {"query": "penguin migration"})])
                         if not any(m["role"] == "tool" for m in r["messages"])
                         else Reply(text=[m for m in r["messages"] if m["role"] == "tool"][-1]["content"]))
    response = ws_client.responses.create(model="m", input="penguins?", tools=[cached])
    assert response.output[0].action.sources == [] and response.output_text == "No results."
    assert len(search.requests) == before


def test_a_web_search_call_replayed_as_input_gives_the_history_chaining_gives(ws_client, search_backend) -> None:
    first = ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search"}])
    search_backend.reset(lambda r: Reply(text="ok"))
    ws_client.responses.create(model="m", input="Thanks.", previous_response_id=first.id)
    chained = search_backend.requests[-1]["messages"]
    ws_client.responses.create(model="m", input=[{"role": "user", "content": QUESTION},
                                                 *[i.model_dump(exclude_none=True) for i in first.output],
                                                 {"role": "user", "content": "Thanks."}])
    assert search_backend.requests[-1]["messages"] == chained  # the stored call and its results, exactly


def test_a_web_search_call_from_elsewhere_keeps_its_query_and_sources(ws_client, search_backend) -> None:
    first = ws_client.responses.create(model="m", input=QUESTION, tools=[{"type": "web_search"}], store=False)
    search_backend.reset(lambda r: Reply(text="ok"))
    ws_client.responses.create(model="m", input=[{"role": "user", "content": QUESTION},
                                                 *[i.model_dump(exclude_none=True) for i in first.output],
                                                 {"role": "user", "content": "Thanks."}])
    messages = search_backend.requests[-1]["messages"]
    call = messages[1]["tool_calls"][0]
    assert call["function"] == {"name": "web_search", "arguments": '{"query": "Llama 4 Maverick experts"}'}
    sources = [f"[{n}] {s.url}" for n, s in enumerate(first.output[0].action.sources, 1)]
    assert sources[0] == "[1] https://ai.meta.example/llama-4-maverick"
    assert messages[2] == {"role": "tool", "tool_call_id": call["id"], "content": "\n".join(sources)}
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]


def test_the_user_location_reaches_brave_as_a_country_and_every_model_as_words(ws_client, provider_server, search,
                                                                              search_backend) -> None:
    location = {"type": "approximate", "city": "Lyon", "country": "fr", "timezone": "Europe/Paris"}
    response = ws_client.responses.create(model="m", input=QUESTION,
                                          tools=[{"type": "web_search", "user_location": location}])
    assert response.output[0].status == "completed"
    assert response.tools[0].user_location.city == "Lyon"
    about = search_backend.requests[0]["tools"][0]["function"]["description"]
    assert "The user is in Lyon, FR, Europe/Paris" in about
    sent = search.requests[-1]
    if provider_server[0] == "brave":
        assert sent["params"]["country"] == "FR"
    else:
        assert "country" not in sent["params"] and "country" not in (sent["body"] or {})
    with pytest.raises(openai.BadRequestError) as info:
        ws_client.responses.create(model="m", input="x", tools=[
            {"type": "web_search", "user_location": {"type": "approximate", "country": "France"}}])
    assert info.value.body["param"] == "tools[0].user_location.country"
