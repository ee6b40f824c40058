"""The in-process library client: the openai interface, no port, real streaming."""

from __future__ import annotations

import pytest

import parley
from parley.testing import Reply
from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer


@pytest.fixture
def library_client(backend, tmp_path):
    client = parley.Client(upstream=backend.url, db=f"sqlite:///{tmp_path / 'lib.db'}")
    yield client
    client.close()


def test_basic_retrieve_and_chain(library_client, backend) -> None:
    response = library_client.responses.create(model="m", input="Which planet?")
    assert response.output_text == "You said: Which planet?"
    assert library_client.responses.retrieve(response.id).output_text == response.output_text
    follow = library_client.responses.create(model="m", input="again", previous_response_id=response.id)
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "assistant", "user"]
    assert follow.status == "completed"


def test_streaming_is_real_the_first_event_arrives_before_the_model_answers(library_client, backend) -> None:
    backend.hold()
    stream = library_client.responses.create(model="m", input="stream me", stream=True)
    iterator = iter(stream)
    assert next(iterator).type == "response.created"
    assert next(iterator).type == "response.in_progress"
    backend.release()
    events = [e for e in iterator]
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "You said: stream me"


def test_stream_helper_and_grammar(library_client, backend) -> None:
    backend.push(Reply(text="Hello from the library", chunk_size=3))
    with library_client.responses.stream(model="m", input="hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_stream(events)
    assert final.output_text == "Hello from the library"


def test_errors_keep_their_types(library_client) -> None:
    import openai

    with pytest.raises(openai.NotFoundError):
        library_client.responses.retrieve("resp_nothing")
    with pytest.raises(openai.BadRequestError):
        library_client.responses.create(model="m", input="x", extra_body={"bogus": 1})


def test_mcp_401_raises_an_authentication_error(library_client, backend) -> None:
    import openai

    with MCPTestServer("sse", auth_token="tok") as server:
        with pytest.raises(openai.AuthenticationError) as info:
            library_client.responses.create(model="m", input="x", tools=[
                {"type": "mcp", "server_label": "s", "server_url": server.url, "require_approval": "never"}])
    assert "401" in info.value.message


@pytest.mark.anyio
async def test_async_client_streams(backend, tmp_path) -> None:
    client = parley.AsyncClient(upstream=backend.url, db=f"sqlite:///{tmp_path / 'alib.db'}")
    try:
        backend.hold()
        stream = await client.responses.create(model="m", input="async", stream=True)
        iterator = stream.__aiter__()
        assert (await iterator.__anext__()).type == "response.created"
        backend.release()
        events = [e async for e in iterator]
        assert events[-1].response.output_text == "You said: async"
        assert (await client.responses.retrieve(events[-1].response.id)).status == "completed"
    finally:
        backend.release()
        await client.close()


def test_seed_mcp_and_web_search_scenarios_in_process(backend, tmp_path) -> None:
    """The seed's server-side tool scenarios through parley.Client, via the verify scenarios' model."""
    from parley.testing.conformance import conformance_responder
    from parley.testing.search_server import SearchTestServer

    backend.reset(conformance_responder)
    with SearchTestServer() as search:
        client = parley.Client(upstream=backend.url, db=f"sqlite:///{tmp_path / 'tools.db'}",
                               web_search=f"searxng:{search.url}")
        try:
            searched = client.responses.create(model="m", tools=[{"type": "web_search"}],
                                               input="How many experts does the Llama 4 Maverick model have?")
            assert searched.output[0].type == "web_search_call" and searched.output[0].status == "completed"
            assert searched.output[1].type == "message" and "128" in searched.output_text
            with MCPTestServer("sse") as server:
                tools = [{"type": "mcp", "server_label": "localmcp", "server_url": server.url,
                          "require_approval": "never"}]
                answered = client.responses.create(model="m", input="What is the boiling point of polyjuice?",
                                                   tools=tools)
            listing, call, message = answered.output
            assert {t.name for t in listing.tools} == {"get_boiling_point", "greet_everyone"}
            assert call.error is None and "-100" in call.output
            assert "boiling point" in message.content[0].text.lower()
        finally:
            client.close()


def test_a_waiting_stream_holds_no_event_it_has_sent(library_client, backend) -> None:
    """A slow stream's memory: while it waits for the model's next chunk, the server (in this process) holds none
    of the events it has already written, nor their copies of the item and part (the text relay takes the later
    chunks, so the first chunk's events would otherwise stay for the whole stream)."""
    import gc

    from openai.types.responses import (
        ResponseContentPartAddedEvent,
        ResponseOutputItemAddedEvent,
        ResponseTextDeltaEvent,
    )

    backend.push(Reply(text="abcdefghij", chunk_size=2, pause_after=4))  # the role's chunk, then 3 of text
    sent = (ResponseOutputItemAddedEvent, ResponseContentPartAddedEvent, ResponseTextDeltaEvent)
    with library_client.responses.with_streaming_response.create(model="m", input="hi", stream=True) as raw:
        lines = raw.iter_lines()  # raw frames: the client makes no event objects of its own
        deltas = 0
        while deltas < 3:  # three deltas written: the server waits for the fourth chunk
            deltas += '"type":"response.output_text.delta"' in next(lines)
        gc.collect()
        held = [type(o).__name__ for o in gc.get_objects() if isinstance(o, sent)]
        backend.resume()
        rest = list(lines)
    assert held == []
    assert any('"type":"response.completed"' in line for line in rest)
