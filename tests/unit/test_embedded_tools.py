"""Tool calling for the embedded model: the prompt it sees and the parser of what it writes."""

from __future__ import annotations

import json

import pytest

from parley.backends.embedded_tools import ToolCallParser, forced_call_schema, render_messages

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "add", "description": "Add", "parameters": {"type": "object"}}}]


def _fold(chunks: list[dict]) -> tuple[str, list[tuple[str, dict]]]:
    text, calls = "", []
    for chunk in chunks:
        delta = chunk["choices"][0]["delta"]
        text += delta.get("content", "")
        calls += [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in delta.get("tool_calls", [])]
    return text, calls


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 100])
def test_blocks_become_calls_whatever_the_chunking(size: int) -> None:
    written = ('Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
               '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call> Done <tool')
    parser = ToolCallParser()
    chunks = [c for i in range(0, len(written), size) for c in parser.feed(written[i:i + size])] + parser.finish()
    text, calls = _fold(chunks)
    assert text == "Let me check. Done <tool"  # a tag's start that never became a tag is text after all
    assert calls == [("get_weather", {"city": "Paris"}), ("add", {"a": 1})]
    indexes = [c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in chunks
               if "tool_calls" in c["choices"][0]["delta"]]
    assert indexes == [0, 1] and parser.calls == 2


def test_a_block_that_is_not_a_call_is_given_back_as_text() -> None:
    parser = ToolCallParser()
    text, calls = _fold(parser.feed("<tool_call>not json</tool_call>ok") + parser.finish())
    assert text == "<tool_call>not json</tool_call>ok" and calls == [] and parser.calls == 0


def test_an_unclosed_block_at_the_end_is_a_call_when_it_is_whole() -> None:
    parser = ToolCallParser()
    _, calls = _fold(parser.feed('<tool_call>{"name": "add", "arguments": {"a": 2}}') + parser.finish())
    assert calls == [("add", {"a": 2})]


def test_a_forced_answer_is_parsed_whole() -> None:
    _, calls = _fold(ToolCallParser().parse_whole(' {"name": "add", "arguments": {"a": 1, "b": 2}}'))
    assert calls == [("add", {"a": 1, "b": 2})]


def test_messages_are_rendered_for_the_template() -> None:
    rendered = render_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Snow"},
    ], TOOLS)
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert all(isinstance(m["content"], str) for m in rendered)
    system = rendered[0]["content"]
    assert system.startswith("Be brief.\n\nUse tools.") and '"name": "get_weather"' in system
    assert json.loads(rendered[2]["content"].split("\n")[1]) == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert rendered[3]["content"] == "<tool_response>\nSnow\n</tool_response>"
    assert "<tool_call>" not in render_messages([{"role": "user", "content": "hi"}], None)[0]["content"]


def test_forced_choices_become_schemas() -> None:
    assert forced_call_schema(TOOLS, "auto") is None
    required = forced_call_schema(TOOLS, "required")
    assert [o["properties"]["name"]["const"] for o in required["anyOf"]] == ["get_weather", "add"]
    named = forced_call_schema(TOOLS, {"type": "function", "function": {"name": "add"}})
    assert named["properties"]["name"] == {"const": "add"} and named["required"] == ["name", "arguments"]


def test_a_tools_defs_move_to_the_root_where_its_references_resolve() -> None:
    from parley.backends.embedded import _grammar

    tool = {"type": "function", "function": {"name": "book", "parameters": {
        "type": "object", "properties": {"when": {"$ref": "#/$defs/Slot"}}, "$defs": {"Slot": {"type": "integer"}}}}}
    schema = forced_call_schema([tool], "required")
    assert schema["$defs"] == {"Slot": {"type": "integer"}} and "$defs" not in schema["properties"]["arguments"]
    assert _grammar(schema) is not None
    weird = {"type": "function", "function": {"name": "w", "parameters": {
        "type": "object", "properties": {"x": {"type": "no-such-type"}}}}}
    assert _grammar(forced_call_schema([weird], "required")) is None
    loose = forced_call_schema([weird], "required", exact=False)
    assert loose["properties"]["arguments"] == {"type": "object"} and _grammar(loose) is not None
