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

from pydantic import TypeAdapter, ValidationError

from parley.request import CreateResponse
from parley.tool_specs import CustomTool, FunctionTool, NamespaceTool, ToolSearchTool, ToolSpec

SEPARATOR = "__"
TOOL_SEARCH = "tool_search"
_TOOL_SPEC: TypeAdapter[Any] = TypeAdapter(ToolSpec)


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The function name a backend sees for a (namespace, tool) pair."""
    if not namespace:
        return name
    return (re.sub(r"[^a-zA-Z0-9_-]", "_", namespace) + SEPARATOR + name)[:64]


@dataclass(frozen=True)
class ClientTool:
    kind: Literal["function", "custom", "tool_search"]
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


def tool_search_function(tool: ToolSearchTool) -> dict[str, Any]:
    parameters = tool.parameters or {"type": "object", "properties": {"query": {
        "type": "string", "description": "Words describing the tools you need."}}, "required": ["query"]}
    return {"type": "function", "function": {
        "name": TOOL_SEARCH, "parameters": parameters,
        "description": tool.description or "Search for more tools; the ones found become callable."}}


class ClientTools:
    """The client-side tools of one request, by the name the backend sees.

    With a ``tool_search`` tool in the request, tools marked ``defer_loading`` stay hidden from the
    model until a search loads them (here, or in an earlier turn: ``loaded`` holds the tool
    definitions of earlier ``tool_search_output`` items).
    """

    def __init__(self, request: CreateResponse, loaded: list[dict[str, Any]] | None = None) -> None:
        self.by_chat_name: dict[str, ClientTool] = {}
        self._definitions: dict[str, dict[str, Any]] = {}  # chat name -> chat function
        self._sources: dict[str, dict[str, Any]] = {}  # chat name -> the Responses tool definition
        self.deferred: set[str] = set()
        self.search = next((t for t in request.tools if isinstance(t, ToolSearchTool)), None)
        for tool in request.tools:
            self._register(tool, defer=self.search is not None)
        for raw in loaded or []:
            try:
                self._register(_TOOL_SPEC.validate_python(raw), defer=False)
            except ValidationError:
                continue  # a tool kind this path cannot load (e.g. hosted); the model simply lacks it
        if self.search is not None and self.search.execution == "client":
            self.by_chat_name[TOOL_SEARCH] = ClientTool("tool_search", TOOL_SEARCH)
            self._definitions[TOOL_SEARCH] = tool_search_function(self.search)

    def _register(self, tool: Any, defer: bool) -> None:
        if isinstance(tool, NamespaceTool):
            for inner in tool.tools:
                self._add(inner, tool.name, defer and bool(tool.defer_loading or inner.defer_loading),
                          {**tool.model_dump(exclude_none=True), "tools": [inner.model_dump(exclude_none=True)]})
        elif isinstance(tool, (FunctionTool, CustomTool)):
            self._add(tool, None, defer and bool(tool.defer_loading), tool.model_dump(exclude_none=True))

    def _add(self, tool: FunctionTool | CustomTool, namespace: str | None, deferred: bool,
             source: dict[str, Any]) -> None:
        chat_name = chat_tool_name(namespace, tool.name)
        kind: Literal["function", "custom"] = "custom" if isinstance(tool, CustomTool) else "function"
        self.by_chat_name[chat_name] = ClientTool(kind, tool.name, namespace)
        self._definitions[chat_name] = (_custom_function(tool, chat_name) if isinstance(tool, CustomTool)
                                        else _function(tool, chat_name))
        self._sources[chat_name] = source
        if deferred:
            self.deferred.add(chat_name)
        else:
            self.deferred.discard(chat_name)

    @property
    def chat(self) -> list[dict[str, Any]]:
        """The functions the backend is offered now (deferred tools left out)."""
        return [d for name, d in self._definitions.items() if name not in self.deferred]

    def find(self, query: str, limit: int = 8) -> list[dict[str, Any]]:
        """Load the deferred tools whose name or description shares a word with ``query``; their definitions."""
        words = set(re.findall(r"[a-z0-9]+", query.lower()))
        scored = []
        for name in self.deferred:
            text = json.dumps(self._definitions[name]["function"].get("description", "")) + " " + name
            score = len(words & set(re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))))
            if score:
                scored.append((-score, name))
        found = [name for _, name in sorted(scored)[:limit]]
        self.deferred.difference_update(found)
        return [self._sources[name] for name in found]


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call from the function arguments the model produced."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed["input"] if isinstance(parsed, dict) and isinstance(parsed.get("input"), str) else arguments
