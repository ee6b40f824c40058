"""A create request's parameters as a Chat Completions request body (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

from parley.request import CreateResponse, JsonSchemaFormat


def _response_format(request: CreateResponse) -> dict[str, Any] | None:
    fmt = request.text.format
    if isinstance(fmt, JsonSchemaFormat):
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": schema}
    if fmt.type == "json_object":
        return {"type": "json_object"}
    return None


def chat_request(
    request: CreateResponse,
    messages: list[ChatCompletionMessageParam],
    *,
    model: str,
    max_tokens_param: str = "max_tokens",
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = "auto",
    forward: Sequence[str] = (),
) -> dict[str, Any]:
    """The body of one streamed ``POST /chat/completions``; ``tools`` are the functions offered to the model
    and ``tool_choice`` the Chat Completions choice among them."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.wants_logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    for penalty in ("presence_penalty", "frequency_penalty"):
        if getattr(request, penalty) is not None:
            body[penalty] = getattr(request, penalty)
    if request.max_output_tokens is not None:
        body[max_tokens_param] = request.max_output_tokens
    if tools and request.tool_choice != "none":
        body["tools"] = tools
        body["tool_choice"] = tool_choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    response_format = _response_format(request)
    if response_format:
        body["response_format"] = response_format
    if request.reasoning and request.reasoning.effort:
        body["reasoning_effort"] = request.reasoning.effort
    if request.text.verbosity:
        body["verbosity"] = request.text.verbosity
    end_user = request.safety_identifier or request.user
    if end_user:
        body["user"] = end_user
    for name in forward:  # what this upstream takes under the Responses name (UpstreamConfig.forward_params)
        value = getattr(request, name)
        if value is not None:
            body[name] = value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value
    return body
