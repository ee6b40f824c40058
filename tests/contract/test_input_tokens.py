"""POST /v1/responses/input_tokens: the tokens a create would send, by the upstream's tokenizer or estimated."""

from __future__ import annotations

import json
import math

import openai
import pytest


def test_the_upstream_tokenizer_counts_what_a_create_would_send(client, backend) -> None:
    counted = client.responses.input_tokens.count(model="m", input="one two three")
    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 3 + 3)
    assert client.responses.input_tokens.count(model="m", input="one two three",
                                               instructions="be brief").input_tokens == 6 + 3 + 2
    first = client.responses.create(model="m", input="hello")
    requests = len(backend.requests)
    chained = client.responses.input_tokens.count(model="m", input="more", previous_response_id=first.id)
    assert chained.input_tokens == (3 + 1) + (3 + 3) + (3 + 1)  # hello, "You said: hello", more
    conversation = client.conversations.create(items=[{"role": "user", "content": "a b"}])
    assert client.responses.input_tokens.count(model="m", input="c", conversation=conversation.id).input_tokens == \
        (3 + 2) + (3 + 1)
    assert len(backend.requests) == requests  # counting asks the model nothing
    assert len(client.conversations.items.list(conversation.id).data) == 1  # and appends nothing


def test_without_a_tokenizer_the_count_is_the_documented_estimate(client, backend) -> None:
    backend.tokenize = False
    raw = client.responses.input_tokens.with_raw_response.count(model="m", input="x" * 400)
    assert raw.headers["x-parley-token-count"] == "estimate"
    sent = json.dumps([{"role": "user", "content": "x" * 400}])
    assert raw.parse().input_tokens == math.ceil((len(sent) + len("[]")) / 4)


def test_bad_counts_are_4xx(client) -> None:
    for arguments, param in (({"model": "m", "input": "x", "extra_body": {"stream": True}}, "stream"),
                             ({"model": "m", "input": "x", "previous_response_id": "resp_missing"},
                              "previous_response_id")):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.input_tokens.count(**arguments)
        assert info.value.body["param"] == param
