"""Input items: parsing the ``input`` array into typed items, and their stored form.

Parsing is lenient where clients replay earlier output (ids, statuses, annotations,
logprobs and nulls are accepted) and strict about what Parley cannot honour: an item
type it does not handle yet is a 400 naming ``input[i].type``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, Discriminator, Field, PrivateAttr, Tag, ValidationError,
                      field_validator, model_validator)

from parley.errors import InvalidRequest, UnsupportedParameter
from parley.validation import validation_error
from parley.ids import new_id


from parley.replayed_items import (
    ApplyPatchCallItem,
    ApplyPatchCallOutputItem,
    ItemId,
    ItemReference,
    Lenient as _Lenient,
    LocalShellCallItem,
    LocalShellCallOutputItem,
    McpApprovalRequestItem,
    McpCallItem,
    McpListToolsItem,
    ProgramItem,
    ProgramOutputItem,
    ShellCallItem,
    ShellCallOutputItem,
    WebSearchCallItem,
    FileSearchCallItem,
    CodeInterpreterCallItem,
    ComputerCallItem,
    ImageGenerationCallItem,
    field_of,
)


class InputText(_Lenient):
    type: Literal["input_text"]
    text: str


IMAGE_URL_SCHEMES = ("https://", "http://", "data:")


class InputImage(_Lenient):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"
    _data_url: str = PrivateAttr("")  # an uploaded image (file_id), read by the engine for chat backends

    @property
    def url(self) -> str:
        """What a chat backend gets: the image URL, or the uploaded file as a data URL."""
        return self.image_url or self._data_url

    @field_validator("image_url")
    @classmethod
    def _fetchable(cls, url: str | None) -> str | None:
        # Backends fetch image URLs themselves (vLLM does): no file:, ftp: or other scheme reaches them.
        if url is not None and not url[:8].lower().startswith(IMAGE_URL_SCHEMES):
            raise ValueError("an image URL must be https://, http:// or a data: URL")
        return url


class ComputerScreenshot(InputImage):
    """A ``computer_call_output``'s screenshot: an image by URL or uploaded ``file_id``, as ``input_image``."""

    type: Literal["computer_screenshot"]  # type: ignore[assignment]


class ComputerCallOutputItem(_Lenient):
    """The client's answer to a computer call: the screenshot after its actions."""

    type: Literal["computer_call_output"]
    call_id: str = Field(min_length=1)
    output: ComputerScreenshot
    acknowledged_safety_checks: list[dict[str, Any]] | None = None
    id: ItemId | None = None
    status: str | None = None

    @model_validator(mode="after")
    def _has_image(self) -> ComputerCallOutputItem:
        if not self.output.image_url and not self.output.file_id:
            raise ValueError("a computer_screenshot needs image_url or file_id")
        return self


class InputFile(_Lenient):
    """A document sent inline (``file_data``) or by URL (``file_url``); the engine reads its text before the
    model runs (:mod:`parley.files`), and chat backends get that text."""

    type: Literal["input_file"]
    file_data: str | None = None
    file_url: str | None = None
    file_id: str | None = Field(None, max_length=80)
    filename: str | None = Field(None, max_length=512)
    _extracted: str = PrivateAttr("")

    @model_validator(mode="after")
    def _one_source(self) -> InputFile:
        if [self.file_data, self.file_url, self.file_id].count(None) != 2:
            raise ValueError("an input_file needs one of file_data, file_url or file_id")
        if self.file_url is not None and not self.file_url[:8].lower().startswith(("https://", "http://")):
            raise ValueError("a file_url must be https:// or http://")
        return self

    @property
    def text(self) -> str:
        """What the model reads: the file's name, then its text."""
        return f"[file: {self.filename or 'attached file'}]\n{self._extracted}"


class OutputText(_Lenient):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class Refusal(_Lenient):
    type: Literal["refusal"]
    refusal: str


def _part_kind(value: Any) -> str | None:
    kind = field_of(value, "type")
    return PART_TAGS.get(kind) if isinstance(kind, str) else None


PART_TAGS = {"input_text": "InputText", "input_image": "InputImage", "output_text": "OutputText",
             "refusal": "Refusal", "input_file": "InputFile"}
# Tagged by ``type`` so that a bad field is reported for its own part kind (capitalised tags stay out of the
# parameter paths in errors).
ContentPart = Annotated[Union[Annotated[InputText, Tag("InputText")], Annotated[InputImage, Tag("InputImage")],
                              Annotated[OutputText, Tag("OutputText")], Annotated[Refusal, Tag("Refusal")],
                              Annotated[InputFile, Tag("InputFile")]],
                        Discriminator(_part_kind)]
CONTENT_PARTS = {"input_text": InputText, "input_image": InputImage, "output_text": OutputText, "refusal": Refusal,
                 "input_file": InputFile}


class MessageItem(_Lenient):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: ItemId | None = None
    status: str | None = None


class FunctionCallItem(_Lenient):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: ItemId | None = None
    status: str | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None  # {"type": "program", "caller_id": …} for a program's call


class CustomToolCallItem(_Lenient):
    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str
    id: ItemId | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None


class CustomToolCallOutputItem(_Lenient):
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]
    id: ItemId | None = None
    caller: dict[str, Any] | None = None


class FunctionCallOutputItem(_Lenient):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]
    id: ItemId | None = None
    status: str | None = None
    caller: dict[str, Any] | None = None


class ReasoningItem(_Lenient):
    """Replayed reasoning: kept in ``input_items``, and sent back to upstreams that take reasoning
    (``replay_reasoning``) as the next assistant message's ``reasoning_content``."""

    type: Literal["reasoning"]
    id: ItemId | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None

    @property
    def text(self) -> str:
        """Its reasoning text (or, without one, its summary)."""
        parts = [p.get("text", "") for p in self.content or [] if isinstance(p, dict)] or \
            [p.get("text", "") for p in self.summary if isinstance(p, dict)]
        return "".join(str(t) for t in parts)


class CompactionItem(_Lenient):
    """What ``POST /v1/responses/compact`` (or a response's ``context_management``) made of a conversation's
    earlier items: a summary, encrypted with the server's key; it stands for them in the chat."""

    type: Literal["compaction"]
    encrypted_content: str = Field(min_length=1)
    id: ItemId | None = None
    created_by: str | None = None


class ToolSearchCallItem(_Lenient):
    type: Literal["tool_search_call"]
    arguments: Any = None
    call_id: str | None = None
    execution: Literal["server", "client"] = "client"
    id: ItemId | None = None
    status: str | None = None


class ToolSearchOutputItem(_Lenient):
    """Tools a search loaded (the client's answer, or a replay): they become callable."""

    type: Literal["tool_search_output"]
    tools: list[dict[str, Any]]
    call_id: str | None = None
    execution: Literal["server", "client"] = "client"
    id: ItemId | None = None
    status: str | None = None


class McpApprovalResponseItem(_Lenient):
    """The client's answer to an ``mcp_approval_request`` of the previous response."""

    type: Literal["mcp_approval_response"]
    approval_request_id: str = Field(min_length=1)
    approve: bool
    reason: str | None = None
    id: ItemId | None = None


InputItem = Union[MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem, McpApprovalResponseItem,
                  CustomToolCallItem, CustomToolCallOutputItem, ToolSearchCallItem, ToolSearchOutputItem,
                  WebSearchCallItem, FileSearchCallItem, CodeInterpreterCallItem, McpListToolsItem, McpCallItem, McpApprovalRequestItem,
                  ItemReference,
                  ShellCallItem, ShellCallOutputItem, LocalShellCallItem, LocalShellCallOutputItem, ApplyPatchCallItem,
                  ApplyPatchCallOutputItem, ComputerCallItem, ComputerCallOutputItem, ImageGenerationCallItem,
                  CompactionItem, ProgramItem, ProgramOutputItem]
ITEM_TYPES: dict[str, type[BaseModel]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ReasoningItem,
    "mcp_approval_response": McpApprovalResponseItem,
    "custom_tool_call": CustomToolCallItem,
    "custom_tool_call_output": CustomToolCallOutputItem,
    "tool_search_call": ToolSearchCallItem,
    "tool_search_output": ToolSearchOutputItem,
    "web_search_call": WebSearchCallItem,
    "file_search_call": FileSearchCallItem,
    "code_interpreter_call": CodeInterpreterCallItem,
    "mcp_list_tools": McpListToolsItem,
    "mcp_call": McpCallItem,
    "mcp_approval_request": McpApprovalRequestItem,
    "item_reference": ItemReference,
    "shell_call": ShellCallItem,
    "shell_call_output": ShellCallOutputItem,
    "local_shell_call": LocalShellCallItem,
    "local_shell_call_output": LocalShellCallOutputItem,
    "apply_patch_call": ApplyPatchCallItem,
    "apply_patch_call_output": ApplyPatchCallOutputItem,
    "computer_call": ComputerCallItem,
    "computer_call_output": ComputerCallOutputItem,
    "image_generation_call": ImageGenerationCallItem,
    "compaction": CompactionItem,
    "program": ProgramItem,
    "program_output": ProgramOutputItem,
}


def type_of(value: Any, where: str) -> str | None:
    """The ``type`` of an object in a request (``None`` when it has none); a ``type`` that is not a
    string is a 400 naming it."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind is not None and not isinstance(kind, str):
        raise InvalidRequest(f"'{where}.type' must be a string.", param=f"{where}.type", code="invalid_type")
    return kind


def _check_parts(raw: Any, where: str) -> None:
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return
    for j, part in enumerate(content):
        kind = type_of(part, f"{where}.content[{j}]")
        if kind not in CONTENT_PARTS:
            raise UnsupportedParameter(f"{where}.content[{j}].type", f"Content part type '{kind}' is not supported.")
        if kind == "input_image" and [part.get("image_url"), part.get("file_id")].count(None) != 1:
            raise InvalidRequest("An input_image needs one of 'image_url' (http(s) or data URL) or 'file_id'.",
                                 param=f"{where}.content[{j}].image_url")


def raw_items(raw: Any) -> list[Any]:
    """``input`` as it was sent, as a list of items (a string is one user message; none, no items), for code
    that adds items to a request's before it is parsed."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise InvalidRequest("'input' must be a string or an array of items.", param="input", code="invalid_type")
    return list(raw)


def parse_input(raw: Any) -> list[InputItem]:
    """Parse ``input`` (a string or a list of items) into typed items."""
    if isinstance(raw, str):
        return [MessageItem(role="user", content=raw)]
    return [parse_item(entry, f"input[{i}]") for i, entry in enumerate(raw_items(raw))]


def parse_item(entry: Any, where: str) -> InputItem:
    """One input item (also an item that an ``item_reference`` named, as it was stored)."""
    if not isinstance(entry, dict):
        raise InvalidRequest(f"'{where}' must be an object.", param=where, code="invalid_type")
    kind = type_of(entry, where) or ("message" if "role" in entry else "item_reference" if set(entry) == {"id"}
                                     else None)
    model = ITEM_TYPES.get(kind or "")
    if model is None:
        raise UnsupportedParameter(f"{where}.type", f"Input item type '{kind}' is not supported by Parley yet.")
    if kind == "message":
        _check_parts(entry, where)
    try:
        return model.model_validate({k: v for k, v in entry.items() if v is not None})  # type: ignore[return-value]
    except ValidationError as exc:
        raise validation_error(exc, prefix=where) from None


def _parts_resource(item: MessageItem) -> list[dict[str, Any]]:
    if isinstance(item.content, str):
        kind = "output_text" if item.role == "assistant" else "input_text"
        part: dict[str, Any] = {"type": kind, "text": item.content}
        if kind == "output_text":
            part["annotations"] = []
        return [part]
    return [p.model_dump(exclude_none=True) for p in item.content]


def item_resource(item: InputItem) -> dict[str, Any]:
    """The stored, listable form of an input item (as ``input_items`` returns it), with an id."""
    if isinstance(item, MessageItem):
        return {
            "type": "message",
            "id": item.id or new_id("msg"),
            "role": item.role,
            "content": _parts_resource(item),
            "status": item.status or "completed",
        }
    data = item.model_dump(exclude_none=True)
    if isinstance(item, FunctionCallItem):
        data.setdefault("id", new_id("fc"))
        data.setdefault("status", "completed")
    elif isinstance(item, FunctionCallOutputItem):
        data.setdefault("id", new_id("fco"))
        data.setdefault("status", "completed")
    elif isinstance(item, McpApprovalResponseItem):
        data.setdefault("id", new_id("mcpa"))
    elif isinstance(item, CustomToolCallItem):
        data.setdefault("id", new_id("ctc"))
    elif isinstance(item, CustomToolCallOutputItem):
        data.setdefault("id", new_id("ctco"))
    elif isinstance(item, ToolSearchCallItem):
        data.setdefault("id", new_id("tsc"))
    elif isinstance(item, ToolSearchOutputItem):
        data.setdefault("id", new_id("tso"))
    elif isinstance(item, McpListToolsItem):
        data.setdefault("id", new_id("mcpl"))
    elif isinstance(item, CompactionItem):
        data.setdefault("id", new_id("cmp"))
    elif isinstance(item, ProgramOutputItem):
        data.setdefault("id", new_id("progo"))
    else:
        data.setdefault("id", new_id("rs" if isinstance(item, ReasoningItem) else "item"))
    return data


def image_urls(items: list[InputItem]) -> list[tuple[str, str]]:
    """``(param, url)`` of every http(s) image URL in ``items``: the addresses a backend would fetch."""
    found = []
    for i, item in enumerate(items):
        where = "content" if isinstance(item, MessageItem) else "output"  # a function or custom tool's output
        parts = getattr(item, where, None)
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            if isinstance(part, InputImage) and part.image_url and part.image_url[:5].lower() != "data:":
                found.append((f"input[{i}].{where}[{j}].image_url", part.image_url))
    return found


def uploaded_images(items: list[InputItem]) -> list[tuple[str, InputImage]]:
    """``(param, part)`` of every ``input_image`` part and computer screenshot given by ``file_id``."""
    parts = [(f"input[{i}].content[{j}]", part) for i, item in enumerate(items) if isinstance(item, MessageItem)
             and isinstance(item.content, list) for j, part in enumerate(item.content)
             if isinstance(part, InputImage) and part.file_id is not None]
    return parts + [(f"input[{i}].output", item.output) for i, item in enumerate(items)
                    if isinstance(item, ComputerCallOutputItem) and item.output.file_id is not None]


def input_files(items: list[InputItem]) -> list[tuple[str, InputFile]]:
    """``(param, part)`` of every ``input_file`` part of the messages in ``items``."""
    return [(f"input[{i}].content[{j}]", part) for i, item in enumerate(items) if isinstance(item, MessageItem)
            and isinstance(item.content, list) for j, part in enumerate(item.content) if isinstance(part, InputFile)]
