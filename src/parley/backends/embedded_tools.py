"""Tool calling for the embedded model, which has no native tool API.

llama.cpp runs the model from its chat template alone, so Parley does what chat servers do for
such models: the tools go into the system prompt with the convention Hermes-style models were
trained on (a ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block), earlier calls
and their results are written back the same way, and the model's text is parsed as it streams:
text outside a block streams as content, each complete block becomes a Chat ``tool_calls`` delta.
A forced ``tool_choice`` (``required`` or one named function) constrains the sampling with a
grammar made from the tools' JSON schemas, so the answer is a valid call by construction.

Everything here is pure: messages in, messages out; text in, chunks out.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"

INSTRUCTIONS = (
    "You may call functions to help with the user's request. The functions are described below as JSON.\n"
    "To call one, answer with one block per call, exactly like this:\n"
    f'{OPEN}\n{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}\n{CLOSE}\n'
    "A function's result comes back in a <tool_response> block. Answer in plain text when no call is needed.\n"
    "Functions:\n"
)


def _text(content: Any) -> str:
    """Chat content as one string (the model's template concatenates strings only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _call_block(call: dict[str, Any]) -> str:
    function = call.get("function", {})
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = function.get("arguments")
    return f"{OPEN}\n{json.dumps({'name': function.get('name'), 'arguments': arguments})}\n{CLOSE}"


def tool_prompt(tools: list[dict[str, Any]]) -> str:
    described = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                  "parameters": t["function"].get("parameters") or {"type": "object"}}
                 for t in tools if t.get("type") == "function"]
    return INSTRUCTIONS + "\n".join(json.dumps(d) for d in described)


def render_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Chat messages as the template takes them: string contents, the tools in the system message, calls and
    results written as blocks."""
    rendered: list[dict[str, str]] = []
    for message in messages:
        role = message["role"]
        text = _text(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            text = "\n".join([text] * bool(text) + [_call_block(c) for c in message["tool_calls"]])
        elif role == "tool":
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        elif role == "developer":
            role = "system"
        if rendered and role == "system" and rendered[-1]["role"] == "system":
            rendered[-1]["content"] += "\n\n" + text  # the template shows one system message
            continue
        rendered.append({"role": role, "content": text})
    if tools:
        prompt = tool_prompt(tools)
        if rendered and rendered[0]["role"] == "system":
            rendered[0]["content"] += "\n\n" + prompt
        else:
            rendered.insert(0, {"role": "system", "content": prompt})
    return rendered


def forced_call_schema(tools: list[dict[str, Any]], tool_choice: Any, exact: bool = True) -> dict[str, Any] | None:
    """The JSON schema every answer must match when ``tool_choice`` forces a call; None when it does not.

    With ``exact``, the arguments follow each tool's own schema (its ``$defs`` moved to the root, where its
    ``#/$defs/...`` references then resolve); without, they are any JSON object (for schemas a grammar
    cannot express).
    """
    functions = [t["function"] for t in tools if t.get("type") == "function"]
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        functions = [f for f in functions if f["name"] == tool_choice["function"]["name"]]
    elif tool_choice != "required":
        return None
    shared: dict[str, Any] = {}
    options = []
    for function in functions:
        arguments: dict[str, Any] = {"type": "object"}
        if exact and function.get("parameters"):
            arguments = dict(function["parameters"])
            local = arguments.pop("$defs", None) or {}
            if any(name in shared and shared[name] != schema for name, schema in local.items()):
                arguments = {"type": "object"}  # two tools define one name differently: loosen this one
            else:
                shared.update(local)
        options.append({"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": arguments},
                        "required": ["name", "arguments"]})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "$defs": shared} if shared else schema


def _call_chunk(index: int, name: str, arguments: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": [{
        "index": index, "id": f"call_{secrets.token_hex(12)}", "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)}}]}, "finish_reason": None}]}


def _text_chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def _parse_call(block: str) -> tuple[str, Any] | None:
    try:
        call = json.loads(block)
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return (call["name"], arguments) if isinstance(arguments, dict) else None


@dataclass
class ToolCallParser:
    """Turns the model's streamed text into Chat chunks: content outside blocks, a tool call per block.

    Text that could still become the start of a block is held back until it cannot; a block that is not a
    valid call is given back as text, so nothing the model wrote is lost.
    """

    calls: int = 0
    _pending: str = ""
    _in_block: bool = False
    _block: list[str] = field(default_factory=list)

    def feed(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._pending += text
        while self._pending:
            if self._in_block:
                end = self._pending.find(CLOSE)
                if end < 0:
                    keep = _partial_suffix(self._pending, CLOSE)
                    self._block.append(self._pending[:len(self._pending) - keep])
                    self._pending = self._pending[len(self._pending) - keep:]
                    break
                self._block.append(self._pending[:end])
                self._pending = self._pending[end + len(CLOSE):]
                self._in_block = False
                out += self._close_block()
                continue
            start = self._pending.find(OPEN)
            if start < 0:
                keep = _partial_suffix(self._pending, OPEN)
                emit, self._pending = self._pending[:len(self._pending) - keep], self._pending[len(self._pending) - keep:]
                if emit:
                    out.append(_text_chunk(emit))
                break
            if start:
                out.append(_text_chunk(self._pending[:start]))
            self._pending = self._pending[start + len(OPEN):]
            self._in_block, self._block = True, []
        return out

    def _close_block(self, closed: bool = True) -> list[dict[str, Any]]:
        raw = "".join(self._block)
        return self._call_or_text(raw, OPEN + raw + (CLOSE if closed else ""))

    def _call_or_text(self, raw: str, text: str) -> list[dict[str, Any]]:
        """The call ``raw`` holds, or ``text`` given back as content when it holds none."""
        parsed = _parse_call(raw.strip())
        if parsed is None:
            return [_text_chunk(text)]
        self.calls += 1
        return [_call_chunk(self.calls - 1, *parsed)]

    def finish(self) -> list[dict[str, Any]]:
        """What is left at the end of the generation (an unclosed block is parsed if it is a whole call)."""
        if self._in_block:
            self._block.append(self._pending)
            self._pending, self._in_block = "", False
            return self._close_block(closed=False)
        rest, self._pending = self._pending, ""
        return [_text_chunk(rest)] if rest else []

    def parse_whole(self, text: str) -> list[dict[str, Any]]:
        """A forced call: the whole answer is one call's JSON (the grammar made sure of it)."""
        return self._call_or_text(text, text)


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
