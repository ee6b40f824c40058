"""The tools and tool choices a ``POST /v1/responses`` body may carry, as strict pydantic models.

Each tool kind is its own model, and ``ToolSpec`` picks one by ``type`` so that a bad field is
reported for its own kind.  :mod:`parley.request` validates the rest of the body.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class StrictModel(BaseModel):
    """A request part whose unknown fields are errors (each a 400 naming the field)."""

    model_config = ConfigDict(extra="forbid")


class FunctionTool(StrictModel):
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    # Chat backends get every tool up front, so deferred loading has nothing to defer.
    defer_loading: bool | None = None
    allowed_callers: list[Literal["direct"]] | None = None
    output_schema: dict[str, Any] | None = None


class TextToolFormat(StrictModel):
    type: Literal["text"]


class GrammarToolFormat(StrictModel):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


class CustomTool(StrictModel):
    """A freeform tool: the model's call carries one ``input`` string (Codex's ``apply_patch``)."""

    type: Literal["custom"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    format: TextToolFormat | GrammarToolFormat | None = None
    defer_loading: bool | None = None
    allowed_callers: list[Literal["direct"]] | None = None


class ToolSearchTool(StrictModel):
    """Deferred tool discovery: tools with ``defer_loading`` stay hidden until a search loads them."""

    type: Literal["tool_search"]
    description: str | None = None
    execution: Literal["server", "client"] = "server"
    parameters: dict[str, Any] | None = None


def _namespaced_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "Custom" if kind == "custom" else "Function"


class NamespaceTool(StrictModel):
    """A named group of function and custom tools; calls name the inner tool and the namespace."""

    type: Literal["namespace"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_.:-]{1,64}$")
    description: str | None = None
    defer_loading: bool | None = None
    tools: list[Annotated[Union[Annotated[FunctionTool, Tag("Function")], Annotated[CustomTool, Tag("Custom")]],
                          Discriminator(_namespaced_kind)]]


class ToolNames(StrictModel):
    tool_names: list[str] = Field(default_factory=list)
    read_only: bool | None = None


class ApprovalFilter(StrictModel):
    always: ToolNames | None = None
    never: ToolNames | None = None


class McpTool(StrictModel):
    """A remote MCP server whose tools Parley lists and calls itself."""

    type: Literal["mcp"]
    server_label: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    server_url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] | None = None
    authorization: str | None = None
    server_description: str | None = None
    allowed_tools: list[str] | ToolNames | None = None
    require_approval: Literal["always", "never"] | ApprovalFilter = "always"

    def allows(self, name: str) -> bool:
        if self.allowed_tools is None:
            return True
        names = self.allowed_tools if isinstance(self.allowed_tools, list) else self.allowed_tools.tool_names
        return name in names

    def needs_approval(self, name: str) -> bool:
        policy = self.require_approval
        if isinstance(policy, str):
            return policy == "always"
        if policy.never and name in policy.never.tool_names:
            return False
        if policy.always and name in policy.always.tool_names:
            return True
        return True  # OpenAI's default: a tool neither filter names needs approval

    def connection_headers(self) -> dict[str, str]:
        headers = dict(self.headers or {})
        if self.authorization:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers

    def echo(self) -> dict[str, Any]:
        """The tool as the Response echoes it: credentials never leave in a response or the store."""
        data = self.model_dump(exclude_none=True)
        if self.headers:
            data["headers"] = {name: "<redacted>" for name in self.headers}
        if self.authorization:
            data["authorization"] = "<redacted>"
        return data


WEB_SEARCH_TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")


class SearchFilters(StrictModel):
    allowed_domains: list[str] | None = None


class WebSearchTool(StrictModel):
    """Web search run by Parley through the configured provider."""

    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]
    search_context_size: Literal["low", "medium", "high"] = "medium"
    filters: SearchFilters | None = None
    # False asks for cached results only, never the live web. Parley keeps no cache of the web, so such a
    # tool is accepted (Codex sends it by default) and never reaches the live web: the model is not offered it.
    external_web_access: bool | None = None
    search_content_types: list[Literal["text"]] | None = None

    @property
    def live(self) -> bool:
        return self.external_web_access is not False

    @property
    def allowed_domains(self) -> list[str]:
        return list(self.filters.allowed_domains or []) if self.filters else []


class ToolChoiceHosted(StrictModel):
    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]


class ToolChoiceFunction(StrictModel):
    type: Literal["function"]
    name: str


class ToolChoiceCustom(StrictModel):
    type: Literal["custom"]
    name: str


class ToolChoiceMcp(StrictModel):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


TOOL_TAGS = {"mcp": "Mcp", "custom": "Custom", "namespace": "Namespace", "tool_search": "ToolSearch"}


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return "Function"  # which then reports the bad type
    return "WebSearch" if kind in WEB_SEARCH_TYPES else TOOL_TAGS.get(kind, "Function")


# Tagged by ``type`` so a bad field is reported for its own tool kind (tags are capitalised,
# which keeps them out of the parameter paths in errors).
ToolSpec = Annotated[
    Union[Annotated[FunctionTool, Tag("Function")], Annotated[McpTool, Tag("Mcp")],
          Annotated[WebSearchTool, Tag("WebSearch")], Annotated[CustomTool, Tag("Custom")],
          Annotated[NamespaceTool, Tag("Namespace")], Annotated[ToolSearchTool, Tag("ToolSearch")]],
    Discriminator(_tool_kind),
]
