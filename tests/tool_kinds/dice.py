"""A throwaway server-side tool kind, defined outside the package: a toy ``programmatic_tool_calling`` whose only
program is a roll of dice.  The model is offered ``roll_dice(times)``, Parley rolls (a loaded die, so tests know the
result) and each call becomes a ``code_interpreter_call`` item whose logs hold the rolls.  It takes over a tool
type the protocol knows from Parley's own kind (every type the SDK knows has one), so the Response object that
echoes it stays valid for strict clients; :func:`unregister` gives the type back.
``parley serve --plugins tests.tool_kinds.dice`` calls :func:`register`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from openai.types.responses import ResponseCodeInterpreterToolCall, ResponseOutputItemAddedEvent, \
    ResponseOutputItemDoneEvent
from parley.errors import InvalidRequest
from parley.ids import new_id
from parley.tools.base import BindContext, Binding, CallDone, Offered, Produced, ToolCall, ToolKind, ToolModel, \
    completed
from parley.tools.registry import REGISTRY

FUNCTION = "roll_dice"


SIDES = 6
TOOL = {"type": "programmatic_tool_calling"}


class DiceTool(ToolModel):
    type: Literal["programmatic_tool_calling"]
    sides: Literal[4, 6, 20] | None = None  # the plugin's own field (a strict client keeps unknown fields)


class DiceBinding(Binding):
    def __init__(self, sides: int) -> None:
        self.sides = sides

    def offered(self) -> list[Offered]:
        return [Offered({"type": "function", "function": {
            "name": FUNCTION, "description": f"Roll a {self.sides}-sided die.",
            "parameters": {"type": "object", "properties": {"times": {"type": "integer"}}}}})]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION}}

    def start(self, call: ToolCall, approved: bool) -> Any:
        times = json.loads(call.arguments or "{}").get("times", 1)
        return completed([(i * 7) % self.sides + 1 for i in range(1, times + 1)])  # a loaded die: tests know it

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        rolls = await run
        item = ResponseCodeInterpreterToolCall(
            id=new_id("ci"), type="code_interpreter_call", status="completed", container_id="dice",
            code=f"roll_d{self.sides}({len(rolls)})", outputs=[{"type": "logs", "logs": json.dumps(rolls)}])
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", output_index=index, sequence_number=0,
                                           item=item.model_copy(update={"status": "in_progress", "outputs": []}))
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item, output_index=index,
                                          sequence_number=0)
        yield CallDone(item, {"role": "tool", "tool_call_id": call.call_id, "content": f"Rolled: {rolls}"})


class DiceKind(ToolKind):
    models = {"programmatic_tool_calling": DiceTool}

    def check(self, tools: list[Any], choice: ToolModel | None) -> None:
        if len(tools) > 1:
            raise InvalidRequest("Give at most one programmatic_tool_calling tool.", param="tools")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        return DiceBinding(SIDES) if tools else None


KIND = DiceKind()


REPLACED: list[ToolKind] = []  # the kinds that held the type before this one


def register() -> None:
    """What ``--plugins`` calls once the module is imported."""
    if KIND not in REGISTRY.kinds:
        REPLACED[:] = [kind for kind in REGISTRY.kinds if set(kind.models) & set(KIND.models)]
        for kind in REPLACED:
            REGISTRY.unregister(kind)
        REGISTRY.register(KIND)


def unregister() -> None:
    if KIND in REGISTRY.kinds:
        REGISTRY.unregister(KIND)
        for kind in REPLACED:
            REGISTRY.register(kind)
        REPLACED.clear()

