"""Validation of ``POST /v1/responses`` bodies.

The parameter names follow the SDK's ``ResponseCreateParams``.  Every name falls in one
of three sets: honoured (validated below), known to the protocol but not honoured yet
(400 ``unsupported_parameter`` naming it), or unknown (400 ``unknown_parameter``).
A JSON ``null`` counts as absent, as older SDKs send explicit nulls.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from parley.errors import InvalidRequest, PermissionDenied, UnknownParameter, UnsupportedParameter
from parley.validation import StrictModel, validation_error
from parley.items import InputItem, parse_input
from parley.moderation import ModerationConfig
from parley.settings import FORWARDED_ONLY
from parley.tools.base import ToolModel
from parley.tools.registry import REGISTRY

HONOURED = {
    "model", "input", "instructions", "previous_response_id", "store", "stream", "stream_options",
    "metadata", "temperature", "top_p", "presence_penalty", "frequency_penalty", "max_output_tokens", "text", "tools", "tool_choice",
    "parallel_tool_calls", "max_tool_calls", "user", "safety_identifier", "reasoning", "include",
    "truncation", "service_tier", "prompt_cache_key", "prompt_cache_retention", "top_logprobs", "background",
    "client_metadata",  # Codex's client description: informational, as at OpenAI
    "conversation", "context_management", "moderation",
    "prompt_cache_options", "image",  # sent on to upstreams configured to take them (--upstream-forward)
    "access_programs", "background_options",
    "prompt",  # applied at the edge (parley.prompts.templates.apply); echoed
}
# Known to the protocol; Parley refuses them by name until it honours them (none at present: the request fields
# Parley serves in part refuse what they cannot do where they are read, each with its reason).
NOT_YET: dict[str, str] = {}
# Chat Completions names that moved elsewhere in the Responses API (OpenAI's own hints).
MOVED = {
    "response_format": "In the Responses API, this parameter has moved to 'text.format'.",
    "reasoning_effort": "In the Responses API, this parameter has moved to 'reasoning.effort'.",
    "max_tokens": "In the Responses API, use 'max_output_tokens'.",
    "max_completion_tokens": "In the Responses API, use 'max_output_tokens'.",
    "messages": "In the Responses API, use 'input'.",
    "functions": "In the Responses API, use 'tools'.",
}
# Deepest nesting of arrays and objects a request body may have (the body itself is level 1): room for
# JSON schemas about 30 levels deep, where OpenAI's structured outputs stop at 10.
MAX_JSON_DEPTH = 64
SUPPORTED_INCLUDES: set[str] = {"web_search_call.action.sources",  # sources are always included
                                 "message.output_text.logprobs",
                                 "reasoning.encrypted_content",
                                 "file_search_call.results",
                                 "code_interpreter_call.outputs",
                                 # input items keep their image URLs whole, so these are always included
                                 "message.input_image.image_url",
                                 "computer_call_output.output.image_url"}


class JsonSchemaFormat(StrictModel):
    type: Literal["json_schema"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class PlainFormat(StrictModel):
    type: Literal["text", "json_object"]


class TextConfig(StrictModel):
    format: JsonSchemaFormat | PlainFormat = Field(default_factory=lambda: PlainFormat(type="text"))
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(StrictModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ContextManagement(StrictModel):
    """Server-side compaction: the history is compacted before a model call whose prompt would pass
    ``compact_threshold`` tokens (default: 80% of the model's context window)."""

    type: Literal["compaction"]
    compact_threshold: int | None = Field(None, ge=1000)


class PromptCacheOptions(StrictModel):
    comparison_response_id: str | None = Field(None, max_length=120)
    mode: Literal["implicit", "explicit"] | None = None
    prewarm: bool | None = None
    ttl: Literal["30m", "12h"] | None = None


class ImageOptions(StrictModel):
    context_compression: Literal["auto", "enabled", "disabled"] | None = None


class AccessPrograms(StrictModel):
    """OpenAI's domain access programs.  Parley grants the standard one (what every request gets) and no
    Daybreak access: asking for it is a 403, as OpenAI answers requests that lack the authorization."""

    cyber: Literal["standard", "daybreak_blue", "daybreak_red"]


class BackgroundOptions(StrictModel):
    """Parley runs a background response as soon as an instance is free: the ``soonest`` window.  The deferred,
    discounted windows (``2h``, ``8h``) and ``continuation_id`` (a prioritization hint for them) are OpenAI's
    billing tiers, which Parley does not have: each is a 400 naming it."""

    UNSUPPORTED: ClassVar[dict[str, str]] = {
        "continuation_id": "Parley has no deferred background tiers for continuation_id to prioritize within."}
    completion_window: Literal["soonest", "2h", "8h"] = "soonest"

    @field_validator("completion_window")
    @classmethod
    def _soonest(cls, window: str) -> str:
        if window != "soonest":
            raise ValueError("Parley runs background responses as soon as it can: only 'soonest' is supported "
                             "(the 2h and 8h windows are OpenAI's discounted tiers)")
        return window


class PromptReference(StrictModel):
    """The stored prompt a create was made from (its version resolved), as the Response echoes it."""

    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


class StreamOptions(StrictModel):
    include_obfuscation: bool | None = None


class CreateResponse(BaseModel):
    """A validated create request; ``input`` is already parsed into typed items."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: str = Field(min_length=1)
    input: list[InputItem]
    instructions: str | None = None
    previous_response_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    store: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)  # Open Responses; sent to the upstream as is
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    max_output_tokens: int | None = Field(None, ge=1)
    text: TextConfig = Field(default_factory=TextConfig)
    tools: list[ToolModel] = Field(default_factory=list)  # each parsed by its kind (parley.tools.registry)
    tool_choice: Literal["auto", "none", "required"] | ToolModel = "auto"
    parallel_tool_calls: bool = True
    max_tool_calls: int | None = Field(None, ge=1)
    user: str | None = None
    safety_identifier: str | None = Field(None, max_length=64)
    reasoning: ReasoningConfig | None = None
    include: list[str] = Field(default_factory=list)
    truncation: Literal["disabled", "auto"] = "disabled"
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    background: bool = False
    client_metadata: dict[str, Any] | None = None
    conversation: str | None = Field(None, max_length=80)  # the id; {"id": ...} is unwrapped by parse_create
    context_management: list[ContextManagement] | None = Field(None, max_length=1)
    moderation: ModerationConfig | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    access_programs: AccessPrograms | None = None
    background_options: BackgroundOptions | None = None
    prompt: PromptReference | None = None
    image: ImageOptions | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is None:
            return None
        if len(metadata) > 16:
            raise ValueError("metadata may hold at most 16 pairs")
        for key, value in metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return metadata

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.top_logprobs) or "message.output_text.logprobs" in self.include

    @property
    def wants_reasoning_summary(self) -> bool:
        return bool(self.reasoning and (self.reasoning.summary or self.reasoning.generate_summary))

    @field_validator("include")
    @classmethod
    def _includes(cls, include: list[str]) -> list[str]:
        for value in include:
            if value not in SUPPORTED_INCLUDES:
                raise ValueError(f"include value '{value}' is not supported by Parley yet")
        return include


def _drop_nulls(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _check_names(body: dict[str, Any]) -> None:
    for name in body:
        if name in HONOURED:
            continue
        if name in NOT_YET:
            raise UnsupportedParameter(name, NOT_YET[name])
        if name in MOVED:
            raise UnsupportedParameter(name, MOVED[name])
        raise UnknownParameter(name)


def check_depth(body: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """A 400 when ``body`` nests arrays and objects more than ``limit`` levels deep: checked before anything
    reads the body, as deep nesting breaks recursive code (validation, error messages, serializers; orjson
    writes at most 254 levels) far from where it came in."""
    stack: list[tuple[Any, int, str]] = [(body, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            if isinstance(child, (dict, list)):
                where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
                if depth + 1 > limit:
                    where = where if len(where) <= 200 else where[:200] + "…"
                    raise InvalidRequest(f"The request nests arrays and objects more than {limit} levels deep "
                                         f"(at '{where}').", param=where, code="nesting_too_deep")
                stack.append((child, depth + 1, where))


def parse_create(body: Any, max_input_items: int = 5000) -> CreateResponse:
    """Validate a create body; raises :class:`InvalidRequest` naming the offending parameter."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    if isinstance(body.get("input"), list) and len(body["input"]) > max_input_items:
        raise InvalidRequest(f"'input' holds {len(body['input'])} items; at most {max_input_items} are accepted.",
                             param="input", code="too_many_items")
    check_depth(body)
    body = _drop_nulls(body)
    _check_names(body)
    if "model" not in body:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if body.get("background") is True and body.get("store") is False:
        raise InvalidRequest("A background response is stored: 'background' needs 'store' true (or left out).",
                             param="background", code="invalid_value")
    if isinstance(body.get("conversation"), dict):
        if set(body["conversation"]) != {"id"}:
            raise InvalidRequest("'conversation' is an id or an object with only 'id'.", param="conversation")
        body["conversation"] = body["conversation"]["id"]
    if "conversation" in body and "previous_response_id" in body:
        raise InvalidRequest("Mutually exclusive parameters: give one of 'previous_response_id' or 'conversation'.",
                             param="conversation", code="mutually_exclusive_parameters")
    if "input" not in body and "previous_response_id" not in body:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    body["input"] = parse_input(body.get("input", []))
    if "tools" in body:
        body["tools"] = REGISTRY.parse_tools(body["tools"])
    if "tool_choice" in body:
        body["tool_choice"] = REGISTRY.parse_choice(body["tool_choice"])
    options = body.get("background_options")
    if isinstance(options, dict):
        if options.get("continuation_id") is not None:
            raise UnsupportedParameter("background_options.continuation_id",
                                       BackgroundOptions.UNSUPPORTED["continuation_id"])
        if body.get("background") is not True:
            raise InvalidRequest("'background_options' applies to background responses: set 'background' true.",
                                 param="background_options")
    programs = body.get("access_programs")
    if isinstance(programs, dict) and programs.get("cyber") in ("daybreak_blue", "daybreak_red"):
        raise PermissionDenied(f"This server grants no Daybreak access: access_programs.cyber "
                               f"'{programs['cyber']}' is not available (only 'standard').",
                               param="access_programs.cyber")
    try:
        request = CreateResponse.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    REGISTRY.check(request.tools, request.tool_choice)
    return request


def check_served(request: CreateResponse, forwarded: list[str], *, moderated: bool) -> None:
    """The 400s for what this server cannot serve for ``request``: a parameter its upstream does not take
    (``forwarded``: what it was configured to take), ``moderation`` without a moderations endpoint."""
    for name in FORWARDED_ONLY:
        if getattr(request, name) is not None and name not in forwarded:
            raise InvalidRequest(f"'{name}' is sent on to the upstream as it is, and this model's upstream is not "
                                 f"configured to take it (--upstream-forward {name}, or forward_params in --config).",
                                 param=name, code="unsupported_parameter")
    if request.moderation is not None and not moderated:
        raise InvalidRequest("'moderation' needs a moderations endpoint: start Parley with --moderation-upstream "
                             "(an OpenAI-compatible base URL serving /moderations) or --moderation-guard-model (a "
                             "guard model such as Llama Guard 3 on an upstream).", param="moderation",
                             code="moderation_not_configured")
