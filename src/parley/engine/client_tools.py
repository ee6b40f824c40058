"""Client-side tools as Chat Completions functions, and the model's calls back as Responses items.

Function tools pass through.  A ``custom`` tool (freeform input, Codex's ``apply_patch``)
becomes a function with one string parameter ``input``; its call comes back as a
``custom_tool_call`` with that ``input``.  The tools of a ``namespace`` become functions named
``<namespace>__<tool>``; their calls come back as ``function_call`` items whose ``name`` is
the inner tool and whose ``namespace`` names the group, as Codex requires.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from parley.request import CreateResponse, CustomTool, FunctionTool, NamespaceTool

SEPARATOR = "__"


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The function name a backend sees for a (namespace, tool) pair."""
    if not namespace:
        return name
    return (re.sub(r"[^a-zA-Z0-9_-]", "_", namespace) + SEPARATOR + name)[:64]


@dataclass(frozen=True)
class ClientTool:
    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


def _custom_function(tool: CustomTool, chat_name: str) -> dict[str, Any]:
    about = tool.description or f"The {tool.name} tool."
    if tool.format is not None and tool.format.type == "grammar":
        about += f"\nThe input must match this {tool.format.syntax} grammar:\n{tool.format.definition}"
    return {"type": "function", "function": {
        "name": chat_name, "description": about,
        "parameters": {"type": "object", "properties": {"input": {"type": "string", "description": "The raw input."}},
                       "required": ["input"], "additionalProperties": False},
    }}


def _function(tool: FunctionTool, chat_name: str) -> dict[str, Any]:
    function: dict[str, Any] = {"name": chat_name,
                                "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


class ClientTools:
    """The client-side tools of one request, by the name the backend sees."""

    def __init__(self, request: CreateResponse) -> None:
        self.by_chat_name: dict[str, ClientTool] = {}
        self.chat: list[dict[str, Any]] = []
        for tool in request.tools:
            if isinstance(tool, NamespaceTool):
                for inner in tool.tools:
                    self._add(inner, tool.name)
            elif isinstance(tool, (FunctionTool, CustomTool)):
                self._add(tool, None)

    def _add(self, tool: FunctionTool | CustomTool, namespace: str | None) -> None:
        chat_name = chat_tool_name(namespace, tool.name)
        kind: Literal["function", "custom"] = "custom" if isinstance(tool, CustomTool) else "function"
        self.by_chat_name[chat_name] = ClientTool(kind, tool.name, namespace)
        self.chat.append(_custom_function(tool, chat_name) if isinstance(tool, CustomTool) else _function(tool, chat_name))


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call from the function arguments the model produced."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed["input"] if isinstance(parsed, dict) and isinstance(parsed.get("input"), str) else arguments
