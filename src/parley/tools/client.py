"""Client-side tools (``function``, ``custom``, ``namespace``, ``tool_search``) as Chat Completions functions.

Function tools pass through.  A ``custom`` tool (freeform input, Codex's ``apply_patch``)
becomes a function with one string parameter ``input``; its call comes back as a
``custom_tool_call`` with that ``input``.  The tools of a ``namespace`` become functions named
``<namespace>__<tool>``; their calls come back as ``function_call`` items whose ``name`` is
the inner tool and whose ``namespace`` names the group, as Codex requires.

With a ``tool_search`` tool, tools marked ``defer_loading`` stay hidden from the model until a
search loads them.  The client runs the search (``execution: "client"``) or Parley does
(``"server"``): then the step leaves a ``tool_search_call`` and a ``tool_search_output`` item and
the matches are callable for the rest of the response.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal, Union

from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseToolSearchCall,
    ResponseToolSearchOutputItem,
)
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

from parley.errors import InvalidRequest
from parley.ids import new_id
from parley.items import ToolSearchOutputItem, type_of
from parley.replayed_items import field_of
from parley.tools.base import (
    AllowedCallers,
    BindContext,
    ProgramCallers,
    Binding,
    CallDone,
    ClientTool,
    ItemDone,
    Offered,
    Produced,
    ToolCall,
    ToolKind,
    ToolModel,
    completed,
    offered_directly,
)

SEPARATOR = "__"
TOOL_SEARCH = "tool_search"
NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionTool(ToolModel):
    type: Literal["function"]
    name: str = Field(pattern=NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None
    allowed_callers: ProgramCallers = None
    output_schema: dict[str, Any] | None = None

    def echo(self) -> dict[str, Any]:
        echoed = {"type": "function", "name": self.name, "description": self.description,
                  "parameters": self.parameters, "strict": self.strict}
        return echoed if self.allowed_callers is None else {**echoed, "allowed_callers": self.allowed_callers}

    def reference(self) -> dict[str, str]:
        return {"type": "function", "name": self.name}


class TextToolFormat(ToolModel):
    type: Literal["text"]


class GrammarToolFormat(ToolModel):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


class CustomTool(ToolModel):
    """A freeform tool: the model's call carries one ``input`` string (Codex's ``apply_patch``)."""

    type: Literal["custom"]
    name: str = Field(pattern=NAME)
    description: str | None = None
    format: TextToolFormat | GrammarToolFormat | None = None
    defer_loading: bool | None = None
    allowed_callers: ProgramCallers = None

    def reference(self) -> dict[str, str]:
        return {"type": "custom", "name": self.name}


def _namespaced_kind(value: Any) -> str:
    kind = field_of(value, "type")
    return "Custom" if kind == "custom" else "Function"


class NamespaceTool(ToolModel):
    """A named group of function and custom tools; calls name the inner tool and the namespace."""

    type: Literal["namespace"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_.:-]{1,64}$")
    description: str | None = None
    defer_loading: bool | None = None
    allowed_callers: AllowedCallers = None
    tools: list[Annotated[Union[Annotated[FunctionTool, Tag("Function")], Annotated[CustomTool, Tag("Custom")]],
                          Discriminator(_namespaced_kind)]]


class ToolSearchTool(ToolModel):
    """Deferred tool discovery: tools with ``defer_loading`` stay hidden until a search loads them."""

    type: Literal["tool_search"]
    description: str | None = None
    execution: Literal["server", "client"] = "server"
    parameters: dict[str, Any] | None = None


class ToolChoiceFunction(ToolModel):
    type: Literal["function"]
    name: str


class ToolChoiceCustom(ToolModel):
    type: Literal["custom"]
    name: str


LoadableTool = Annotated[
    Union[Annotated[FunctionTool, Tag("Function")], Annotated[CustomTool, Tag("Custom")],
          Annotated[NamespaceTool, Tag("Namespace")]],
    Discriminator(lambda v: {"custom": "Custom", "namespace": "Namespace"}.get(field_of(v, "type"), "Function")),
]
_LOADABLE: TypeAdapter[Any] = TypeAdapter(LoadableTool)


def chat_tool_name(namespace: str | None, name: str) -> str:
    """The function name a backend sees for a (namespace, tool) pair."""
    if not namespace:
        return name
    return (re.sub(r"[^a-zA-Z0-9_-]", "_", namespace) + SEPARATOR + name)[:64]


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call from the function arguments the model produced."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed["input"] if isinstance(parsed, dict) and isinstance(parsed.get("input"), str) else arguments


# Other client tool kinds (parley.tools.native) add the items their calls become, by tool kind and item type.
CALL_OPENERS: dict[str, Callable[[ClientTool, str], Any]] = {}
# A closer gets the item, the call's whole arguments, its output index and the tool it calls.
CALL_CLOSERS: dict[str, Callable[[Any, str, int, ClientTool], tuple[Any, list[Any]]]] = {}


def client_call_item(tool: ClientTool, call_id: str) -> Any:
    """The item a call of a client tool becomes, when it is not a ``function_call``."""
    if tool.kind in CALL_OPENERS:
        return CALL_OPENERS[tool.kind](tool, call_id)
    if tool.kind == "custom":
        return ResponseCustomToolCall(id=new_id("ctc"), type="custom_tool_call", call_id=call_id, name=tool.name,
                                      input="", namespace=tool.namespace)
    if tool.kind == "tool_search":
        return ResponseToolSearchCall(id=new_id("tsc"), type="tool_search_call", call_id=call_id, arguments={},
                                      execution="client", status="in_progress")
    return None


def close_client_call(item: Any, arguments: str, index: int, tool: ClientTool) -> tuple[Any, list[Any]]:
    """The finished item of a client call that is not a ``function_call`` (a custom call's input, a client
    tool_search's arguments…, from the complete arguments) and its closing events."""
    if item.type in CALL_CLOSERS:
        return CALL_CLOSERS[item.type](item, arguments, index, tool)
    if isinstance(item, ResponseToolSearchCall):
        try:
            parsed: Any = json.loads(arguments or "{}")
        except ValueError:
            parsed = arguments
        item = item.model_copy(update={"arguments": parsed, "status": "completed"})
        return item, [ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                                  output_index=index, sequence_number=0)]
    item = item.model_copy(update={"input": custom_input(arguments)})
    return item, [
        ResponseCustomToolCallInputDeltaEvent(type="response.custom_tool_call_input.delta", item_id=item.id or "",
                                              output_index=index, delta=item.input, sequence_number=0),
        ResponseCustomToolCallInputDoneEvent(type="response.custom_tool_call_input.done", item_id=item.id or "",
                                             output_index=index, input=item.input, sequence_number=0),
        ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(), output_index=index,
                                    sequence_number=0),
    ]


def _custom_function(tool: CustomTool, chat_name: str) -> Any:
    about = tool.description or f"The {tool.name} tool."
    if tool.format is not None and tool.format.type == "grammar":
        about += f"\nThe input must match this {tool.format.syntax} grammar:\n{tool.format.definition}"
    return {"type": "function", "function": {
        "name": chat_name, "description": about,
        "parameters": {"type": "object", "properties": {"input": {"type": "string", "description": "The raw input."}},
                       "required": ["input"], "additionalProperties": False},
    }}


def _function(tool: FunctionTool, chat_name: str) -> Any:
    function: dict[str, Any] = {"name": chat_name,
                                "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def tool_search_function(tool: ToolSearchTool) -> Any:
    parameters = tool.parameters or {"type": "object", "properties": {"query": {
        "type": "string", "description": "Words describing the tools you need."}}, "required": ["query"]}
    return {"type": "function", "function": {
        "name": TOOL_SEARCH, "parameters": parameters,
        "description": tool.description or "Search for more tools; the ones found become callable."}}


class ClientTools(Binding):
    """The client-side tools of one response, by the name the backend sees.

    ``loaded`` holds the tool definitions of earlier ``tool_search_output`` items: those tools are
    callable from the start."""

    def __init__(self, tools: list[Any], loaded: list[dict[str, Any]] | None = None) -> None:
        self._offered: dict[str, Offered] = {}  # chat name -> the function and the item its call becomes
        self._sources: dict[str, dict[str, Any]] = {}  # chat name -> the Responses tool definition
        self.deferred: set[str] = set()
        self.search = next((t for t in tools if isinstance(t, ToolSearchTool)), None)
        for tool in tools:
            self._register(tool, defer=self.search is not None)
        for raw in loaded or []:
            try:
                self._register(_LOADABLE.validate_python(raw), defer=False)
            except ValidationError:
                continue  # a tool kind this path cannot load (e.g. hosted); the model simply lacks it
        if self.search is not None:
            runner = ClientTool("tool_search", TOOL_SEARCH) if self.search.execution == "client" else None
            self._offered[TOOL_SEARCH] = Offered(tool_search_function(self.search), runner, {"type": "tool_search"})

    def _register(self, tool: Any, defer: bool) -> None:
        if isinstance(tool, NamespaceTool):
            for inner in tool.tools:
                self._add(inner, tool.name, defer and bool(tool.defer_loading or inner.defer_loading),
                          {**tool.model_dump(exclude_none=True), "tools": [inner.model_dump(exclude_none=True)]})
        elif isinstance(tool, (FunctionTool, CustomTool)) and offered_directly(tool):
            self._add(tool, None, defer and bool(tool.defer_loading), tool.model_dump(exclude_none=True))

    def _add(self, tool: FunctionTool | CustomTool, namespace: str | None, deferred: bool,
             source: dict[str, Any]) -> None:
        chat_name = chat_tool_name(namespace, tool.name)
        custom = isinstance(tool, CustomTool)
        function = _custom_function(tool, chat_name) if custom else _function(tool, chat_name)  # type: ignore
        kind = "custom" if custom else "function"
        self._offered[chat_name] = Offered(function, ClientTool(kind, tool.name, namespace),
                                           {"type": kind, "name": tool.name})
        self._sources[chat_name] = source
        if deferred:
            self.deferred.add(chat_name)
        else:
            self.deferred.discard(chat_name)

    def offered(self) -> list[Offered]:
        """The functions offered now (deferred tools left out)."""
        return [offer for name, offer in self._offered.items() if name not in self.deferred]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": choice.name}}  # type: ignore[attr-defined]

    def find(self, query: str, limit: int = 8) -> list[dict[str, Any]]:
        """Load the deferred tools whose name or description shares a word with ``query``; their definitions."""
        words = set(re.findall(r"[a-z0-9]+", query.lower()))
        scored = []
        for name in self.deferred:
            text = json.dumps(self._offered[name].function["function"].get("description", "")) + " " + name
            score = len(words & set(re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))))
            if score:
                scored.append((-score, name))
        found = [name for _, name in sorted(scored)[:limit]]
        self.deferred.difference_update(found)
        return [self._sources[name] for name in found]

    # -- a tool search Parley runs ----------------------------------------------------------

    def start(self, call: ToolCall, approved: bool) -> Awaitable[Any]:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {"query": call.arguments}
        query = " ".join(str(v) for v in arguments.values()) if isinstance(arguments, dict) else str(arguments)
        return completed((arguments, self.find(query)))

    async def emit(self, call: ToolCall, run: Awaitable[Any] | None, index: int) -> AsyncIterator[Produced]:
        assert run is not None
        arguments, found = await run
        search = ResponseToolSearchCall(id=new_id("tsc"), type="tool_search_call", call_id=call.call_id,
                                        arguments=arguments, execution="server", status="completed")
        output = ResponseToolSearchOutputItem.model_validate({
            "id": new_id("tso"), "type": "tool_search_output", "call_id": call.call_id, "execution": "server",
            "status": "completed", "tools": found})
        for item, at in ((search, index), (output, index + 1)):
            yield ResponseOutputItemAddedEvent(type="response.output_item.added",
                                               item=item.model_copy(update={"status": "in_progress"}),
                                               output_index=at, sequence_number=0)
            yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=at,
                                              sequence_number=0)
        names = [tool.get("name") for tool in found]
        text = f"Loaded tools: {', '.join(str(n) for n in names)}." if names else "No tools matched."
        yield ItemDone(search)
        yield CallDone(output, {"role": "tool", "tool_call_id": call.call_id, "content": text})


class ClientKind(ToolKind):
    models = {"function": FunctionTool, "custom": CustomTool, "namespace": NamespaceTool,
              "tool_search": ToolSearchTool}
    choices = {"function": ToolChoiceFunction, "custom": ToolChoiceCustom}

    def precheck(self, raw: dict[str, Any], where: str) -> None:
        if raw.get("type") == "namespace" and isinstance(raw.get("tools"), list):
            for j, inner in enumerate(raw["tools"]):
                type_of(inner, f"{where}.tools[{j}]")

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        if sum(isinstance(t, ToolSearchTool) for t in tools) > 1:
            raise InvalidRequest("Give at most one tool_search tool.", param="tools")
        if isinstance(choice, ToolChoiceCustom) and choice.name not in {t.name for t in tools
                                                                         if isinstance(t, CustomTool)}:
            raise InvalidRequest(f"Tool choice '{choice.name}' is not a custom tool in 'tools'.", param="tool_choice")
        if isinstance(choice, ToolChoiceFunction) and choice.name not in {t.name for t in tools
                                                                           if isinstance(t, FunctionTool)}:
            raise InvalidRequest(f"Tool choice '{choice.name}' is not one of the tools in 'tools'.",
                                 param="tool_choice", code="invalid_value")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        replayed = [item.tools for item in context.input if isinstance(item, ToolSearchOutputItem)]
        earlier = [[tool.model_dump(exclude_none=True) for tool in item.tools] for item in context.previous_output
                   if isinstance(item, ResponseToolSearchOutputItem)]
        loaded = [tool for group in earlier + replayed for tool in group]
        return ClientTools(tools, loaded) if tools or loaded else None


KIND = ClientKind()
