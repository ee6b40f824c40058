"""Items a client sends back as input that Parley's own tools and the native client tools produced: server-side
calls (web search, MCP), native client calls and their outputs (shell, local_shell, apply_patch, computer), and
``item_reference``.  Each becomes the chat history the original turn had (:mod:`parley.engine.history`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Stored as the listable item's id (a column of 120 characters; OpenAI's ids are about 50), where
# PostgreSQL refuses a NUL character.
ItemId = Annotated[str, Field(max_length=120, pattern=r"^[^\x00]*$")]


def field_of(value: Any, key: str) -> Any:
    """A field of an item or part of either shape: a dict (as stored, or as a client sent it) or a typed model."""
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


class Lenient(BaseModel):
    """An input item or part: fields Parley does not use are ignored (clients replay whole output items)."""

    model_config = ConfigDict(extra="ignore")


class _ClientCall(Lenient):
    call_id: str = Field(min_length=1)
    id: ItemId | None = None
    status: str | None = None


class WebSearchCallItem(Lenient):
    """A replayed web search: the model's search and the sources it got (their page text is not in the item)."""

    type: Literal["web_search_call"]
    id: ItemId = Field(min_length=1)
    status: str | None = None
    action: dict[str, Any] = Field(default_factory=dict)


class ImageGenerationCallItem(Lenient):
    """A replayed image generation: its image (base64, which a later edit may take) and revised prompt."""

    type: Literal["image_generation_call"]
    id: ItemId = Field(min_length=1)
    status: str | None = None
    result: str | None = None
    revised_prompt: str | None = None


class FileSearchCallItem(Lenient):
    """A replayed file search: the model's queries, and the chunks found when the response included them."""

    type: Literal["file_search_call"]
    id: ItemId = Field(min_length=1)
    status: str | None = None
    queries: list[str] = Field(default_factory=list)
    results: list[dict[str, Any]] | None = None


class CodeInterpreterCallItem(Lenient):
    """A replayed code_interpreter call: its code, and its output when the response included it."""

    type: Literal["code_interpreter_call"]
    id: ItemId = Field(min_length=1)
    status: str | None = None
    code: str | None = None
    container_id: str | None = None
    outputs: list[dict[str, Any]] | None = None


class McpListToolsItem(Lenient):
    """A replayed listing: it also stands for that server's listing in this response, as with chaining."""

    type: Literal["mcp_list_tools"]
    id: ItemId | None = None
    server_label: str
    tools: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None


class McpCallItem(Lenient):
    type: Literal["mcp_call"]
    id: ItemId = Field(min_length=1)
    server_label: str
    name: str = Field(min_length=1)
    arguments: str = ""
    output: str | None = None
    error: Any = None
    status: str | None = None
    approval_request_id: str | None = None


class McpApprovalRequestItem(Lenient):
    """A replayed approval request; an ``mcp_approval_response`` in the same input answers it."""

    type: Literal["mcp_approval_request"]
    id: ItemId = Field(min_length=1)
    server_label: str
    name: str = Field(min_length=1)
    arguments: str = ""


class ShellCallItem(_ClientCall):
    type: Literal["shell_call"]
    action: dict[str, Any] = Field(default_factory=dict)


def shell_output_text(outputs: list[dict[str, Any]]) -> str:
    """What the model reads of a shell call's outputs (each command's outcome, stdout and stderr): the same
    whether the client ran the commands or Parley did."""
    parts = []
    for result in outputs:
        outcome = result.get("outcome") or {}
        ended = f"exit code {outcome.get('exit_code')}" if outcome.get("type") == "exit" else "timed out"
        parts.append(f"{ended}\nstdout:\n{result.get('stdout', '')}\nstderr:\n{result.get('stderr', '')}")
    return "\n\n".join(parts)


class ShellCallOutputItem(Lenient):
    type: Literal["shell_call_output"]
    call_id: str = Field(min_length=1)
    output: list[dict[str, Any]] = Field(default_factory=list)
    id: ItemId | None = None


class LocalShellCallItem(_ClientCall):
    type: Literal["local_shell_call"]
    action: dict[str, Any] = Field(default_factory=dict)


class LocalShellCallOutputItem(Lenient):
    """The output of a local_shell call; its ``id`` is the call's ``call_id``, as the protocol defines it."""

    type: Literal["local_shell_call_output"]
    id: ItemId = Field(min_length=1)
    output: str = ""

    @property
    def call_id(self) -> str:
        return self.id


class ApplyPatchCallItem(_ClientCall):
    type: Literal["apply_patch_call"]
    operation: dict[str, Any] = Field(default_factory=dict)


class ApplyPatchCallOutputItem(Lenient):
    type: Literal["apply_patch_call_output"]
    call_id: str = Field(min_length=1)
    status: Literal["completed", "failed"]
    output: str | None = None
    id: ItemId | None = None


class ComputerCallItem(_ClientCall):
    """A computer use call: one ``action`` (``computer_use_preview``) or a list of ``actions`` (``computer``)."""

    type: Literal["computer_call"]
    action: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None
    pending_safety_checks: list[dict[str, Any]] | None = None


NATIVE_CALLS = (ShellCallItem, LocalShellCallItem, ApplyPatchCallItem, ComputerCallItem)
NATIVE_OUTPUTS = (ShellCallOutputItem, LocalShellCallOutputItem, ApplyPatchCallOutputItem)


class ItemReference(Lenient):
    """An item of a stored response, named by its id; the engine puts the item itself in its place."""

    type: Literal["item_reference"] = "item_reference"
    id: ItemId = Field(min_length=1)


def replayed_call_id(item_id: str) -> str:
    """The chat tool call id a replayed server-side call item stands for (its own id, so it is stable)."""
    return f"call_{item_id}"

# Server-side calls Parley ran: replayed, each is answered where it ran (its stored call and result, or one
# rebuilt from the item).
class ProgramItem(Lenient):
    """A program the model wrote (programmatic tool calling), replayed: its code and its sealed fingerprint."""

    type: Literal["program"]
    id: ItemId
    call_id: str = Field(min_length=1)
    code: str
    fingerprint: str = Field(min_length=1)


class ProgramOutputItem(Lenient):
    """What a program gave back (its result, or what went wrong)."""

    type: Literal["program_output"]
    call_id: str = Field(min_length=1)
    result: str
    status: Literal["completed", "incomplete"] = "completed"
    id: ItemId | None = None


SERVER_CALLS = (WebSearchCallItem, FileSearchCallItem, CodeInterpreterCallItem, ImageGenerationCallItem)
