"""MCP approvals across turns: the client's ``mcp_approval_response`` items matched to the previous
response's ``mcp_approval_request`` items, each standing for a chat tool call left unanswered."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses.response_output_item import McpApprovalRequest

from parley.engine.history import place_tool_message, unanswered_calls
from parley.errors import InvalidRequest
from parley.items import McpApprovalResponseItem
from parley.replayed_items import McpApprovalRequestItem, replayed_call_id
from parley.request import CreateResponse
from parley.tools.approval import DENIED, NOT_APPROVED, ApprovedCall


def resolve_approvals(request: CreateResponse, previous_output: list[Any], call_ids: dict[str, str],
                      conversation: list[ChatCompletionMessageParam]) -> list[ApprovedCall]:
    """Match ``mcp_approval_response`` items to the previous response's approval requests.

    Each request stands for the chat tool call stored with it (``call_ids``), left unanswered; a denied or
    unanswered one is answered now with a tool message saying so, an approved one is returned to be run.
    """
    answers = {i.approval_request_id: i for i in request.input if isinstance(i, McpApprovalResponseItem)}
    requests: dict[str, Any] = {item.id: item for item in previous_output if isinstance(item, McpApprovalRequest)}
    replayed = {i.id: i for i in request.input if isinstance(i, McpApprovalRequestItem)}  # answered in this input
    requests.update(replayed)
    pending = {**call_ids, **{request_id: replayed_call_id(request_id) for request_id in replayed}}
    for request_id in answers:
        if request_id not in requests:
            raise InvalidRequest(f"No MCP approval request with id '{request_id}' in the previous response or "
                                 "the input.",
                                 param="input", code="invalid_value")
        if request_id not in pending:
            raise InvalidRequest(f"The approval request '{request_id}' was stored by an earlier version of Parley "
                                 "that did not keep its tool call; send the request again.", param="input")
    open_calls = {call["id"]: call for call in unanswered_calls(conversation)}
    approved: list[ApprovedCall] = []
    for request_id, item in requests.items():
        call = open_calls.get(pending.get(request_id, ""))
        if call is None:
            continue
        answer = answers.get(request_id)
        if answer is not None and answer.approve:
            approved.append(ApprovedCall(call["id"], call["function"]["arguments"], item.server_label, item.name,
                                         request_id))
        else:
            text = DENIED if answer is not None else NOT_APPROVED
            place_tool_message(conversation, {"role": "tool", "tool_call_id": call["id"], "content": text})
    return approved
