"""The embedded model, for real: ``parley serve`` with no options answers through llama-cpp-python."""

from __future__ import annotations

import json

import openai
import pytest

from parley.testing import ParleyProcess
from parley.testing.grammar import check_stream
from tests.contract.helpers import stream_raw


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    with ParleyProcess(env={"PARLEY_DATA_DIR": str(data_dir)}) as server:
        yield server, data_dir


def test_plain_serve_answers_with_the_embedded_model(embedded_server) -> None:
    server, data_dir = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        response = client.responses.create(model="smollm2-135m-instruct", input="Which planet do humans live on?",
                                           temperature=0)
        assert "earth" in response.output_text.lower()
        assert response.usage.output_tokens > 0 and response.usage.input_tokens > 0
        assert (data_dir / "parley.db").exists()  # the documented default store
        follow = client.responses.create(model="smollm2-135m-instruct", input="Say it again.",
                                         previous_response_id=response.id, max_output_tokens=40, temperature=0)
        assert follow.status in ("completed", "incomplete") and follow.output_text


def test_embedded_streams_and_lists_its_model(embedded_server) -> None:
    server, _ = embedded_server
    events = stream_raw(server.base_url, {"model": "any-name", "input": "Name one colour.", "max_output_tokens": 20})
    check_stream(events)
    assert sum(e.type == "response.output_text.delta" for e in events) > 1
    with openai.OpenAI(base_url=server.base_url, api_key="unused") as client:
        assert "smollm2-135m-instruct" in [m.id for m in client.models.list()]


WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
ADD = {"type": "function", "name": "add", "description": "Add two numbers",
       "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                      "required": ["a", "b"]}}


@pytest.mark.parametrize("stream", [False, True])
def test_embedded_calls_a_forced_tool_and_reads_its_result(embedded_server, stream) -> None:
    server, _ = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        body = {"model": "smollm2-135m-instruct", "input": "What is the weather in Paris?", "tools": [WEATHER, ADD],
                "tool_choice": "required", "temperature": 0}
        response = check_stream(stream_raw(server.base_url, body)) if stream else client.responses.create(**body)
        calls = [item for item in response.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name in ("get_weather", "add")
        arguments = json.loads(calls[0].arguments)  # sampled under the tool's schema: valid by construction
        assert set(arguments) == ({"city"} if calls[0].name == "get_weather" else {"a", "b"})
        answer = client.responses.create(model="smollm2-135m-instruct", previous_response_id=response.id,
                                         input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                                 "output": "Sunny, 24 degrees."}],
                                         tools=[WEATHER, ADD], max_output_tokens=40, temperature=0)
        assert answer.status in ("completed", "incomplete") and answer.output_text


def test_embedded_named_tool_choice_calls_that_tool(embedded_server) -> None:
    server, _ = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        response = client.responses.create(model="smollm2-135m-instruct", input="Add 2 and 3.", tools=[WEATHER, ADD],
                                           tool_choice={"type": "function", "name": "add"}, temperature=0)
        call = next(item for item in response.output if item.type == "function_call")
        assert call.name == "add" and set(json.loads(call.arguments)) == {"a", "b"}


def test_embedded_schemas_beyond_its_grammar(embedded_server) -> None:
    server, _ = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        odd = {"type": "object", "properties": {"city": {"type": "no-such-type"}}}
        # A forced call keeps its shape (a call to the named tool with a JSON object) when its schema cannot be
        # turned into a grammar; a text.format schema that cannot is a 400 naming it.
        response = client.responses.create(model="smollm2-135m-instruct", input="Weather in Oslo?", temperature=0,
                                           tools=[{**WEATHER, "parameters": odd}], tool_choice="required")
        call = next(item for item in response.output if item.type == "function_call")
        assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="smollm2-135m-instruct", input="x", text={"format": {
                "type": "json_schema", "name": "odd", "schema": odd}})
        assert info.value.body["param"] == "text.format.schema"


def test_embedded_refuses_images_by_name(embedded_server) -> None:
    server, _ = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", input=[{"role": "user", "content": [
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])
        assert info.value.body["param"] == "input"


def test_embedded_counts_input_tokens_with_its_own_tokenizer(embedded_server) -> None:
    server, _ = embedded_server
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        short = client.responses.input_tokens.with_raw_response.count(model="smollm2-135m-instruct", input="Hi")
        assert short.headers["x-parley-token-count"] == "tokenizer"
        longer = client.responses.input_tokens.count(model="smollm2-135m-instruct", input="Hi " * 50)
        answered = client.responses.create(model="smollm2-135m-instruct", input="Hi " * 50, max_output_tokens=16)
    assert 0 < short.parse().input_tokens < longer.input_tokens
    assert longer.input_tokens == answered.usage.input_tokens  # what the model was sent, token for token
