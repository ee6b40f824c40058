"""The tool kinds Parley knows, by ``type``, and a request's tools bound to one response.

:data:`REGISTRY` holds the built-in kinds (client-side tools, ``mcp``, ``web_search``, ``file_search``); a kind from
outside the package is added with ``REGISTRY.register(kind)``.  Request parsing asks it to validate
``tools`` and ``tool_choice``; the engine asks it to admit and bind them, and runs the calls through the
:class:`Toolset` it returns, never naming a kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from parley.errors import InvalidRequest, UnsupportedParameter
from parley.items import type_of
from parley.tools import client, code_interpreter, computer, file_search, image_generation, mcp_tools, native, \
    programs, web_search
from parley.tools.approval import ApprovedCall
from parley.tools.base import (
    BindContext,
    Binding,
    CallDone,
    Citation,
    ClientTool,
    Event,
    ItemDone,
    Produced,
    ToolCall,
    ToolEnv,
    ToolKind,
    ToolModel,
)
from parley.validation import validation_error

Mode = Literal["auto", "none", "required"]
_MODE: TypeAdapter[Mode] = TypeAdapter(Mode)


class ToolChoiceAllowed(ToolModel):
    """``tool_choice: {"type": "allowed_tools"}``: only these of the request's tools are offered this turn
    (the others stay in ``tools``, for later turns); ``mode`` is the choice among them on the first step."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, str]] = Field(min_length=1)



class Registry:
    def __init__(self) -> None:
        self.kinds: list[ToolKind] = []
        self._tools: dict[str, ToolKind] = {}
        self._choices: dict[str, ToolKind] = {}

    def register(self, kind: ToolKind) -> ToolKind:
        taken = (set(kind.models) & set(self._tools)) | (set(kind.choices) & set(self._choices))
        if taken:
            raise ValueError(f"tool types already registered: {sorted(taken)}")
        self.kinds.append(kind)
        self._tools.update(dict.fromkeys(kind.models, kind))
        self._choices.update(dict.fromkeys(kind.choices, kind))
        return kind

    def unregister(self, kind: ToolKind) -> None:
        self.kinds.remove(kind)
        self._tools = {t: k for t, k in self._tools.items() if k is not kind}
        self._choices = {t: k for t, k in self._choices.items() if k is not kind}

    # -- parsing (no I/O) ----------------------------------------------------------------

    def parse_tools(self, raw: Any) -> list[ToolModel]:
        """A request's ``tools``, each validated by its kind's model; a 400 names the first bad one."""
        if not isinstance(raw, list):
            raise InvalidRequest("Invalid value for 'tools': Input should be a valid list.", param="tools")
        return [self._parse_tool(tool, f"tools[{i}]") for i, tool in enumerate(raw)]

    def _parse_tool(self, raw: Any, where: str) -> ToolModel:
        if not isinstance(raw, dict):
            raise InvalidRequest(f"Invalid value for '{where}': Input should be an object.", param=where)
        tool_type = type_of(raw, where)
        if tool_type is None:
            raise InvalidRequest(f"Missing required parameter: '{where}.type'.", param=f"{where}.type",
                                 code="missing_required_parameter")
        kind = self._tools.get(tool_type)
        if kind is None:
            raise UnsupportedParameter(f"{where}.type", f"Tool type '{tool_type}' is not supported by Parley yet.")
        model = kind.models[tool_type]
        for name, why in model.UNSUPPORTED.items():
            if raw.get(name) is not None:
                raise UnsupportedParameter(f"{where}.{name}", why)
        kind.precheck(raw, where)
        try:
            return model.model_validate({k: v for k, v in raw.items() if v is not None})
        except ValidationError as exc:
            raise validation_error(exc, where) from None

    def parse_choice(self, raw: Any) -> str | ToolModel:
        if not isinstance(raw, dict):
            try:
                return _MODE.validate_python(raw)
            except ValidationError:
                raise InvalidRequest("Invalid value for 'tool_choice': use 'auto', 'none', 'required' or an "
                                     "object naming a tool.", param="tool_choice") from None
        choice_type = type_of(raw, "tool_choice")
        if choice_type == "allowed_tools":
            try:
                return ToolChoiceAllowed.model_validate(raw)
            except ValidationError as exc:
                raise validation_error(exc, "tool_choice") from None
        kind = self._choices.get(choice_type or "")
        if kind is None:
            known = ", ".join(sorted(self._choices))
            raise InvalidRequest(f"Unsupported tool_choice type '{choice_type}': Parley accepts 'auto', 'none', "
                                 f"'required' or an object of type allowed_tools, {known}.", param="tool_choice.type")
        try:
            return kind.choices[choice_type or ""].model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc, "tool_choice") from None

    def check(self, tools: list[ToolModel], choice: str | ToolModel) -> None:
        """Checks across the tools of each kind, and of ``tool_choice`` against them."""
        for kind in self.kinds:
            kind.check(self._of(kind, tools), choice if self._owns(kind, choice) else None)  # type: ignore[arg-type]
            kind.check_request(tools)
        if choice == "required" and not tools:
            raise InvalidRequest("tool_choice 'required' needs at least one tool.", param="tool_choice")
        if isinstance(choice, ToolChoiceAllowed):
            choice.tools = [self._canonical(entry, f"tool_choice.tools[{i}]") for i, entry in enumerate(choice.tools)]
            for i, entry in enumerate(choice.tools):
                if not any(_names(entry, tool.reference()) for tool in tools):
                    raise InvalidRequest(f"tool_choice.tools[{i}] names no tool of the request.",
                                         param=f"tool_choice.tools[{i}]")

    def _canonical(self, entry: dict[str, str], where: str) -> dict[str, str]:
        kind = self._tools.get(entry.get("type", ""))
        if kind is None:
            raise InvalidRequest(f"'{where}.type' names no tool type Parley serves.", param=f"{where}.type")
        return {**entry, "type": kind.models[entry["type"]].canonical_type(entry["type"])}

    def _placed(self, kind: ToolKind, tools: list[ToolModel]) -> list[tuple[str, ToolModel]]:
        """The request's tools of ``kind``, each with its place (``tools[i]``)."""
        return [(f"tools[{i}]", t) for i, t in enumerate(tools) if self._tools.get(t.type) is kind]  # type: ignore

    def _of(self, kind: ToolKind, tools: list[ToolModel]) -> list[ToolModel]:
        return [tool for _, tool in self._placed(kind, tools)]

    def _owns(self, kind: ToolKind, choice: str | ToolModel) -> bool:
        """Whether ``choice`` is a tool choice of ``kind``."""
        return isinstance(choice, ToolModel) and self._choices.get(choice.type) is kind  # type: ignore[attr-defined]

    # -- serving -------------------------------------------------------------------------

    def check_turn(self, previous_output: list[Any], items: list[Any]) -> None:
        for kind in self.kinds:
            kind.check_turn(previous_output, items)

    async def admit(self, tools: list[ToolModel], env: ToolEnv, tenant: str = "") -> None:
        for kind in self.kinds:
            placed = self._placed(kind, tools)
            if placed:
                await kind.admit(placed, env, tenant)

    def bind(self, tools: list[ToolModel], choice: str | ToolModel, context: BindContext) -> Toolset:
        bindings: list[Binding] = []
        owner: Binding | None = None
        context.request_tools = list(tools)
        for kind in self.kinds:
            binding = kind.bind(self._of(kind, tools), context)
            if binding is None:
                continue
            bindings.append(binding)
            if self._owns(kind, choice):
                owner = binding
        return Toolset(bindings, choice, owner)


def _names(entry: dict[str, str], reference: dict[str, str]) -> bool:
    """Whether an ``allowed_tools`` entry names what ``reference`` describes: the same type, and the same
    value for every other key both give (an entry {"type": "mcp", "server_label": "x"} names all of x's tools)."""
    return bool(reference) and entry.get("type") == reference.get("type") and \
        all(reference[key] == value for key, value in entry.items() if key in reference)


class Toolset:
    """Every binding of one response: what the model is offered, and the running of its calls."""

    def __init__(self, bindings: list[Binding], choice: str | ToolModel = "auto", owner: Binding | None = None
                 ) -> None:
        self.bindings = bindings
        self.choice = choice
        self._owner_of_choice = owner
        self._by_name: dict[str, Binding] = {}
        self._client: dict[str, ClientTool] = {}

    def sets_up(self) -> bool:
        """Whether a binding does work before the first model call (:meth:`Binding.setup`)."""
        return any(type(binding).setup is not Binding.setup for binding in self.bindings)

    async def setup(self, first_index: int) -> AsyncIterator[Event | ItemDone]:
        index = first_index
        for binding in self.bindings:
            async for produced in binding.setup(index):
                index += isinstance(produced, ItemDone)
                yield produced

    def _offered(self) -> list[tuple[Binding, Any]]:
        return [(binding, offer) for binding in self.bindings for offer in binding.offered()]

    def chat_tools(self) -> list[dict[str, Any]]:
        """The functions offered to the model now: the client's first, then Parley's own (with ``tool_choice:
        allowed_tools``, only those it names)."""
        offered = self._offered()
        self._client = {offer.name: offer.client for _, offer in offered if offer.client is not None}
        if isinstance(self.choice, ToolChoiceAllowed):
            offered = [(b, offer) for b, offer in offered if any(_names(e, offer.source) for e in self.choice.tools)]
        self._by_name = {offer.name: binding for binding, offer in offered if offer.client is None}
        return [dict(offer.function) for _, offer in offered if offer.client is not None] + \
               [dict(offer.function) for _, offer in offered if offer.client is None]

    def server_names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def client_tools(self) -> dict[str, ClientTool]:
        """The client's functions by name, as the last :meth:`chat_tools` found them (the item each call becomes)."""
        return self._client

    def tool_choice(self, first: bool) -> Any:
        """The Chat Completions ``tool_choice``: a forced choice applies to the first step only, or the loop
        would never end."""
        if isinstance(self.choice, str):
            return self.choice if first or self.choice == "none" else "auto"
        if not first:
            return "auto"
        if isinstance(self.choice, ToolChoiceAllowed):
            return self.choice.mode
        return self._owner_of_choice.forced(self.choice) if self._owner_of_choice else "required"

    def approved(self, calls: list[ApprovedCall]) -> list[ToolCall]:
        """Approved calls of an earlier turn under the function that runs them now; a call no binding takes
        any more (its server left the request) is left out."""
        out = []
        for call in calls:
            for binding in self.bindings:
                function = binding.function_for(call.server_label, call.name)
                if function is not None:
                    self._by_name.setdefault(function, binding)
                    out.append(ToolCall(call.call_id, function, call.arguments, call.approval_request_id))
                    break
        return out

    def resumed(self) -> list[ToolCall]:
        """The calls of earlier turns the bindings go on with now (see :meth:`Binding.resumed`)."""
        out = []
        for binding in self.bindings:
            for call in binding.resumed():
                self._by_name.setdefault(call.name, binding)
                out.append(call)
        return out

    def cite(self, text: str) -> list[Citation]:
        return [citation for binding in self.bindings for citation in binding.cite(text)]

    def citing(self) -> Callable[[str], list[Citation]] | None:
        """:meth:`cite`, where a binding has given the model sources it may cite; else ``None`` (an answer's
        text then needs no look for citations)."""
        return self.cite if any(binding.cites() for binding in self.bindings) else None

    async def execute(self, calls: list[ToolCall], first_index: int, approved_ids: set[str]
                      ) -> AsyncIterator[Produced]:
        """Starts every call, then streams each one's events and items in the order of the calls."""
        owners = [self._by_name[call.name] for call in calls]
        started = time.perf_counter()
        runs = [owner.start(call, call.call_id in approved_ids) for owner, call in zip(owners, calls)]
        ended: dict[int, float] = {}  # when each call's run finished (its items may come out later, in order)
        for position, run in enumerate(runs):
            if isinstance(run, asyncio.Future) and not run.done():
                run.add_done_callback(lambda _, position=position: ended.setdefault(position, time.perf_counter()))
        index = first_index
        try:
            for position, (owner, call, run) in enumerate(zip(owners, calls, runs)):
                async for produced in owner.emit(call, run, index):
                    index += isinstance(produced, (ItemDone, CallDone))
                    if isinstance(produced, CallDone):
                        produced = replace(produced, started=started,
                                           ended=ended.get(position) or time.perf_counter())
                    yield produced
        finally:
            for run in runs:
                if hasattr(run, "cancel"):
                    run.cancel()  # type: ignore[union-attr]

    async def aclose(self) -> None:
        for binding in self.bindings:
            await binding.aclose()


REGISTRY = Registry()
for _kind in (client.KIND, native.KIND, computer.KIND, mcp_tools.KIND, web_search.KIND, file_search.KIND,
              code_interpreter.KIND, image_generation.KIND, programs.KIND):
    REGISTRY.register(_kind)
