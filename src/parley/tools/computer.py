"""Computer use (``computer`` and ``computer_use_preview``): the client runs the actions, as OpenAI's API has it.

Parley offers chat backends one function, ``computer``, whose arguments are the protocol's actions (a list of
them for ``computer``; one, as ``action``, for ``computer_use_preview``, whose display and environment the
description gives), and turns a call into a ``computer_call`` item with those actions and no pending safety
checks, unless the operator asks for them (``--computer-confirm``: a regular expression searched in each action's
JSON; a call with an action it matches carries a ``sensitive_action`` check, which the client acknowledges in the
call's ``computer_call_output`` before the response goes on).  The client's ``computer_call_output`` (a
screenshot, by URL or uploaded ``file_id``) comes back as the call's tool message and, after it, a user message
holding the screenshot as an image (chat tool messages carry text only) — see :mod:`parley.engine.history`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from openai.types.responses import ResponseComputerToolCall, ResponseOutputItemDoneEvent
from openai.types.responses.computer_action import ComputerAction
from pydantic import Field, TypeAdapter, ValidationError

from parley.errors import InvalidRequest
from parley.ids import new_id
from parley.items import ComputerCallOutputItem
from parley.replayed_items import ComputerCallItem, field_of
from parley.tools.base import BindContext, Binding, ClientTool, Offered, SingleToolKind, ToolModel, arguments_of
from parley.tools.client import CALL_CLOSERS, CALL_OPENERS

log = logging.getLogger("parley.computer")
FUNCTION_NAME = "computer"


@functools.cache
def _action_adapter() -> TypeAdapter[Any]:
    """The protocol's action union (built on first use: it is a twentieth of the server's start)."""
    return TypeAdapter(ComputerAction)


_POINT = {"x": {"type": "integer"}, "y": {"type": "integer"}}
_KEYS = {"keys": {"type": "array", "items": {"type": "string"}, "description": "Modifier keys held down."}}


def _action(kind: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": {"type": {"type": "string", "enum": [kind]}, **properties},
            "required": ["type", *required]}


ACTION_SCHEMA = {"anyOf": [
    _action("click", {"button": {"type": "string", "enum": ["left", "right", "wheel", "back", "forward"]},
                      **_POINT, **_KEYS}, ["button", "x", "y"]),
    _action("double_click", {**_POINT, **_KEYS}, ["x", "y"]),
    _action("drag", {"path": {"type": "array", "items": {"type": "object", "properties": _POINT,
                                                         "required": ["x", "y"]}}, **_KEYS}, ["path"]),
    _action("keypress", {"keys": {"type": "array", "items": {"type": "string"}}}, ["keys"]),
    _action("move", {**_POINT, **_KEYS}, ["x", "y"]),
    _action("screenshot", {}, []),
    _action("scroll", {**_POINT, "scroll_x": {"type": "integer"}, "scroll_y": {"type": "integer"}, **_KEYS},
            ["x", "y", "scroll_x", "scroll_y"]),
    _action("type", {"text": {"type": "string"}}, ["text"]),
    _action("wait", {}, []),
]}


class ComputerTool(ToolModel):
    type: Literal["computer"]


class ComputerUsePreviewTool(ToolModel):
    type: Literal["computer_use_preview"]
    display_width: int = Field(gt=0, le=10_000)
    display_height: int = Field(gt=0, le=10_000)
    environment: Literal["windows", "mac", "linux", "ubuntu", "browser"]


class ToolChoiceComputer(ToolModel):
    type: Literal["computer", "computer_use_preview", "computer_use"]


def _function(tool: ComputerTool | ComputerUsePreviewTool) -> dict[str, Any]:
    if isinstance(tool, ComputerUsePreviewTool):
        about = (f"Act on the user's computer ({tool.environment}, a {tool.display_width}x{tool.display_height} "
                 "display): one action per call; a screenshot of the result comes back.")
        parameters = {"type": "object", "properties": {"action": ACTION_SCHEMA}, "required": ["action"]}
    else:
        about = ("Act on the user's computer: the actions run in order, then a screenshot of the result comes "
                 "back. Start with a screenshot action to see the screen.")
        parameters = {"type": "object", "properties": {"actions": {"type": "array", "items": ACTION_SCHEMA,
                                                                   "minItems": 1}}, "required": ["actions"]}
    return {"type": "function", "function": {"name": FUNCTION_NAME, "description": about, "parameters": parameters}}


def _valid(actions: list[Any]) -> list[dict[str, Any]]:
    """The model's actions that are actions of the protocol (a malformed one is left out and logged), or a
    screenshot when none is, so that the client's answer lets the model try again."""
    kept = []
    for action in actions:
        try:
            kept.append(_action_adapter().validate_python(action).model_dump(exclude_none=True))
        except ValidationError:
            log.warning("a computer call's action is not one of the protocol's; left out: %.200r", action)
    return kept or [{"type": "screenshot"}]


def _open(tool: ClientTool, call_id: str) -> ResponseComputerToolCall:
    return ResponseComputerToolCall(id=new_id("cu"), type="computer_call", call_id=call_id, status="in_progress",
                                    pending_safety_checks=[])


@dataclass(frozen=True)
class ComputerClient(ClientTool):
    """The computer function, with the operator's pattern of actions that need the client's acknowledgement."""

    confirm: re.Pattern[str] | None = None


def safety_checks(actions: list[dict[str, Any]], confirm: re.Pattern[str] | None) -> list[dict[str, str]]:
    """The pending safety checks of a call with these actions: one when an action matches ``confirm``."""
    hits = [a for a in actions if confirm is not None and confirm.search(json.dumps(a, separators=(",", ":")))]
    if not hits:
        return []
    return [{"id": new_id("cu_sc"), "code": "sensitive_action",
             "message": f"The operator asks for confirmation before this {hits[0]['type']} action; acknowledge "
                        "the check in the call's computer_call_output to go on."}]


def _close(item: ResponseComputerToolCall, arguments: str, index: int, tool: ClientTool) -> tuple[Any, list[Any]]:
    args = arguments_of(arguments)
    if "action" in args:  # computer_use_preview: one action
        shape: dict[str, Any] = {"action": _valid([args["action"]])[0]}
        actions = [shape["action"]]
    else:
        shape = {"actions": _valid(args.get("actions") if isinstance(args.get("actions"), list) else [])}
        actions = shape["actions"]
    checks = safety_checks(actions, tool.confirm if isinstance(tool, ComputerClient) else None)
    item = item.model_validate({**item.model_dump(exclude_none=True), **shape, "status": "completed",
                                "pending_safety_checks": checks})
    return item, [ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                              output_index=index, sequence_number=0)]


CALL_OPENERS[FUNCTION_NAME] = _open
CALL_CLOSERS["computer_call"] = _close


class ComputerTools(Binding):
    def __init__(self, tool: ComputerTool | ComputerUsePreviewTool, confirm: re.Pattern[str] | None) -> None:
        self.tool = tool
        self.confirm = confirm

    def offered(self) -> list[Offered]:
        return [Offered(_function(self.tool), ComputerClient(FUNCTION_NAME, FUNCTION_NAME, confirm=self.confirm),
                        {"type": self.tool.type})]  # type: ignore[arg-type]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION_NAME}}


class ComputerKind(SingleToolKind):
    label = "computer"
    models = {"computer": ComputerTool, "computer_use_preview": ComputerUsePreviewTool}
    choices = dict.fromkeys(("computer", "computer_use_preview", "computer_use"), ToolChoiceComputer)

    def check_turn(self, previous_output: list[Any], items: list[Any]) -> None:
        """Each computer call's pending safety checks acknowledged in the output that answers it (a 400 naming
        the output's ``acknowledged_safety_checks`` where one is not)."""
        pending = {item.call_id: item.pending_safety_checks for item in previous_output
                   if isinstance(item, ResponseComputerToolCall) and item.pending_safety_checks}
        pending.update({item.call_id: item.pending_safety_checks for item in items
                        if isinstance(item, ComputerCallItem) and item.pending_safety_checks})
        for i, item in enumerate(items):
            if not isinstance(item, ComputerCallOutputItem) or item.call_id not in pending:
                continue
            given = {str(check.get("id")) for check in item.acknowledged_safety_checks or []}
            for check in pending[item.call_id]:
                check_id = str(field_of(check, "id"))
                if check_id not in given:
                    raise InvalidRequest(f"The computer call {item.call_id} has a pending safety check "
                                         f"({check_id}) that this output does not acknowledge.",
                                         param=f"input[{i}].acknowledged_safety_checks",
                                         code="safety_check_not_acknowledged")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        return ComputerTools(tools[0], context.env.computer_confirm) if tools else None


KIND = ComputerKind()
