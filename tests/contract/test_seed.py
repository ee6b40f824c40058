"""The seed file's scenarios (except web search and MCP), against a real ``parley serve``,
driven by the official ``openai`` client, with the scripted backend as the model."""

from __future__ import annotations

import json

import pytest

from parley.testing import Reply, ScriptedBackend, ToolCall, last_user_text
from parley.testing.grammar import check_stream
from tests.contract.helpers import create_raw, stream_raw

LLAMA_IMAGE = "https://upload.wikimedia.org/wikipedia/commons/f/f7/Llamas%2C_Vernagt-Stausee%2C_Italy.jpg"


def seed_model(request: dict) -> Reply:
    """A stand-in model that answers from what it was actually sent (so history matters)."""
    question = last_user_text(request).lower()
    if "all caps" in question:
        previous = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
        return Reply(text=previous[-1].upper() if previous else "NOTHING TO REPEAT")
    if "planet" in question and "previous response" in question:
        earlier = " ".join(m["content"] or "" for m in request["messages"] if m["role"] == "assistant")
        return Reply(text="It was Earth." if "Earth" in earlier else "I don't know.")
    if "planet" in question:
        return Reply(text="Humans live on Earth.")
    images = [p for m in request["messages"] if isinstance(m["content"], list)
              for p in m["content"] if p["type"] == "image_url"]
    if "country" in question:
        return Reply(text="Llamas come from Peru." if images else "Which animal?")
    if images:
        return Reply(text="That is a llama." if images[-1]["image_url"]["url"] == LLAMA_IMAGE else "Unknown.")
    return Reply(text="I am not sure.")


@pytest.fixture(params=["server", "library"])
def client(request, parley_server, backend, tmp_path):
    """The seed runs against a real ``parley serve`` and against ``parley.Client`` in process."""
    if request.param == "server":
        yield request.getfixturevalue("client")
        return
    import parley

    library = parley.Client(upstream=backend.url, db=f"sqlite:///{tmp_path / 'seed.db'}")
    yield library
    library.close()


@pytest.fixture
def seed(backend: ScriptedBackend) -> ScriptedBackend:
    backend.reset(seed_model)
    return backend


def test_non_streaming_basic(client, seed) -> None:
    response = client.responses.create(model="any-model", input="Which planet do humans live on?", stream=False)
    assert "earth" in response.output_text.lower()
    retrieved = client.responses.retrieve(response_id=response.id)
    assert retrieved.output_text == response.output_text
    assert retrieved.model_dump() == response.model_dump()
    following = client.responses.create(model="any-model", input="Repeat your previous response in all caps.",
                                        previous_response_id=response.id)
    assert "EARTH" in following.output_text
    roles = [m["role"] for m in seed.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]


def test_streaming_basic(client, seed, parley_server) -> None:
    seed.hold()  # the backend does not answer until released
    stream = client.responses.create(model="any-model", input="Which planet do humans live on?", stream=True)
    events = [next(iter(stream))]
    assert events[0].type == "response.created", "response.created must come before the backend answers"
    assert events[0].response.status == "in_progress"
    seed.release()
    events += list(stream)
    assert events[-1].type == "response.completed"
    assert events[-1].response.id == events[0].response.id
    assert "earth" in events[-1].response.output_text.lower()
    retrieved = client.responses.retrieve(response_id=events[0].response.id)
    assert retrieved.output_text == events[-1].response.output_text
    assert retrieved.model_dump() == events[-1].response.model_dump()


def test_streaming_incremental_content_and_grammar(seed, parley_server) -> None:
    seed.push(Reply(text="Humans live on the planet Earth, the third from the Sun.", chunk_size=3))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "Which planet do humans live on?"})
    final = check_stream(events)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 5
    assert "".join(deltas) == final.output_text == "Humans live on the planet Earth, the third from the Sun."
    assert events[0].response.output == []


def test_non_streaming_multi_turn(client, seed) -> None:
    previous_response_id = None
    for question, expected in [("Which planet do humans live on?", "earth"),
                               ("What is the name of the planet from your previous response?", "earth")]:
        response = client.responses.create(model="m", input=question, previous_response_id=previous_response_id,
                                           tools=None)
        previous_response_id = response.id
        assert expected in response.output_text.lower()


def test_custom_function_tool_and_output_round_trip(client, backend) -> None:
    tools = [{"type": "function", "name": "get_weather", "description": "Get the weather",
              "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                             "required": ["location"]}}]
    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"location": "San Francisco"})]),
                 Reply(text="It is sunny in San Francisco."))
    response = client.responses.create(model="m", input="What's the weather like in San Francisco?", tools=tools,
                                       stream=False)
    assert len(response.output) == 1
    call = response.output[0]
    assert (call.type, call.status, call.name) == ("function_call", "completed", "get_weather")
    assert json.loads(call.arguments) == {"location": "San Francisco"}
    sent_tools = backend.requests[0]["tools"]
    assert sent_tools[0]["function"]["name"] == "get_weather"
    follow = client.responses.create(
        model="m", previous_response_id=response.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": "20C", "sky": "clear"}'}],
    )
    assert follow.output_text == "It is sunny in San Francisco."
    messages = backend.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": '{"temp": "20C", "sky": "clear"}'}


def test_image_input(client, seed) -> None:
    response = client.responses.create(model="m", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Identify the type of animal in this image."},
        {"type": "input_image", "image_url": LLAMA_IMAGE},
    ]}])
    assert "llama" in response.output_text.lower()
    parts = seed.requests[-1]["messages"][0]["content"]
    assert {"type": "image_url", "image_url": {"url": LLAMA_IMAGE}} in parts


def test_multi_turn_with_image(client, seed) -> None:
    first = client.responses.create(model="m", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What type of animal is in this image?"},
        {"type": "input_image", "image_url": LLAMA_IMAGE},
    ]}])
    assert "llama" in first.output_text.lower()
    second = client.responses.create(model="m", input="What country do you find this animal primarily in?",
                                     previous_response_id=first.id)
    assert "peru" in second.output_text.lower()
    assert seed.requests[-1]["messages"][0]["content"][1]["type"] == "image_url"


def test_every_body_parses_with_the_sdk_types(seed, parley_server) -> None:
    response = create_raw(parley_server.base_url, {"model": "m", "input": "Which planet do humans live on?"})
    assert response.status == "completed" and response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
