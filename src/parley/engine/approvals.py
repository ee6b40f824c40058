"""MCP approvals across turns: the client's ``mcp_approval_response`` items matched to the previous
response's ``mcp_approval_request`` items, each standing for a chat tool call left unanswered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parley.engine.history import place_tool_message, unanswered_calls
from parley.errors import InvalidRequest
from parley.items import McpApprovalResponseItem
from parley.request import CreateResponse
from parley.tools.mcp_tools import DENIED, NOT_APPROVED


@dataclass
class ApprovedCall:
    call_id: str
    name: str
    arguments: str
    server_label: str
    approval_request_id: str



def resolve_approvals(request: CreateResponse, previous_output: list[dict[str, Any]],
                       conversation: list[dict[str, Any]]) -> list[ApprovedCall]:
    """Match ``mcp_approval_response`` items to the previous response's approval requests.

    Each request stands for a chat tool call left unanswered; a denied or unanswered one is
    answered now with a tool message saying so, an approved one is returned to be run.
    """
    answers = {i.approval_request_id: i for i in request.input if isinstance(i, McpApprovalResponseItem)}
    requests = {item["id"]: item for item in previous_output if item.get("type") == "mcp_approval_request"}
    for request_id in answers:
        if request_id not in requests:
            raise InvalidRequest(f"No MCP approval request with id '{request_id}' in the previous response.",
                                 param="input", code="invalid_value")
    approved: list[ApprovedCall] = []
    open_calls = unanswered_calls(conversation)
    for request_id, item in requests.items():
        call = next((c for c in open_calls if c["function"]["name"].split("__")[-1] == item["name"]
                     and c["function"]["arguments"] == item["arguments"]), None)
        if call is None:
            continue
        open_calls.remove(call)
        answer = answers.get(request_id)
        if answer is not None and answer.approve:
            approved.append(ApprovedCall(call["id"], item["name"], item["arguments"], item["server_label"],
                                         request_id))
        else:
            text = DENIED if answer is not None else NOT_APPROVED
            place_tool_message(conversation, {"role": "tool", "tool_call_id": call["id"], "content": text})
    return approved
