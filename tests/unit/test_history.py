"""Input items to chat messages: placement of tool outputs, roles, images, instructions."""

from __future__ import annotations

import pytest

from parley.engine.history import build_messages, with_instructions
from parley.errors import InvalidRequest
from parley.items import parse_input


def build(prior: list[dict], raw: list[dict] | str) -> list[dict]:
    return build_messages(prior, parse_input(raw))


def call(call_id: str, name: str = "f") -> dict:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}


def output(call_id: str, text: str = "ok") -> dict:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def test_string_input_is_one_user_message() -> None:
    assert build([], "hi") == [{"role": "user", "content": "hi"}]


def test_developer_becomes_system_and_parts_are_joined() -> None:
    messages = build([], [{"role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
                          {"role": "user", "content": [{"type": "input_text", "text": "a"},
                                                       {"type": "input_text", "text": "b"}]}])
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ab"}]


def test_images_become_image_url_parts() -> None:
    messages = build([], [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
    ]}])
    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]


def test_all_calls_first_then_all_outputs_are_reordered_after_their_calls() -> None:
    messages = build([], [{"role": "user", "content": "go"}, call("c1"), call("c2"),
                          {"role": "user", "content": "and then?"}, output("c2", "two"), output("c1", "one")])
    roles = [(m["role"], m.get("tool_call_id")) for m in messages]
    assert roles == [("user", None), ("assistant", None), ("tool", "c2"), ("tool", "c1"), ("user", None)]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]


def test_output_for_a_call_of_the_previous_response_is_placed_after_it() -> None:
    prior = [{"role": "user", "content": "weather?"},
             {"role": "assistant", "content": None,
              "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}]
    messages = build(prior, [output("c9", "sunny"), {"role": "user", "content": "thanks"}])
    assert messages[2] == {"role": "tool", "tool_call_id": "c9", "content": "sunny"}
    assert messages[3] == {"role": "user", "content": "thanks"}
    assert prior[1].get("tool_calls")[0]["id"] == "c9" and len(prior) == 2  # prior is not mutated


def test_output_whose_call_exists_nowhere_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as info:
        build([], [{"role": "user", "content": "x"}, output("call_missing")])
    assert "call_missing" in info.value.message
    assert info.value.param == "input"


def test_replayed_assistant_output_with_ids_and_statuses_is_accepted() -> None:
    messages = build([], [
        {"role": "user", "content": "hi"},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]},
        {**call("c1"), "id": "fc_1", "status": "completed"},
        output("c1"),
    ])
    assert messages[1] == {"role": "assistant", "content": "Hello!",
                           "tool_calls": [{"id": "c1", "type": "function",
                                           "function": {"name": "f", "arguments": "{}"}}]}
    assert messages[2]["role"] == "tool"


def test_instructions_come_first_and_only_for_this_call() -> None:
    conversation = [{"role": "user", "content": "hi"}]
    assert with_instructions("Speak French.", conversation) == [
        {"role": "system", "content": "Speak French."}, {"role": "user", "content": "hi"}]
    assert with_instructions(None, conversation) == conversation
