"""Input items to Chat Completions messages (pure).

A stored response keeps the exact chat messages its last backend call used, plus the
assistant's answer, so a chained turn starts from those messages rather than from a lossy
re-conversion of Responses items.  This module appends the new turn's items to them.

Chat backends need every tool message right after the assistant message that made the
call, while Responses clients (LangChain, for one) may send all ``function_call`` items
first and all ``function_call_output`` items after.  Outputs are therefore placed after
their call wherever it is: in this input or in the previous response.  An output whose
call exists nowhere is a 400 naming its ``call_id``.
"""

from __future__ import annotations

import json
from typing import Any

from parley.errors import InvalidRequest, UnsupportedParameter
from parley.tools.client import TOOL_SEARCH, chat_tool_name
from parley.tools.program_replay import PROGRAM, by_program
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionMessageToolCallParam

from parley.items import (
    CompactionItem,
    ComputerCallOutputItem,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputFile,
    InputImage,
    InputItem,
    MessageItem,
    Refusal,
    ToolSearchCallItem,
    ToolSearchOutputItem,
)
from parley.replayed_items import (
    NATIVE_CALLS,
    NATIVE_OUTPUTS,
    ApplyPatchCallItem,
    ApplyPatchCallOutputItem,
    ComputerCallItem,
    LocalShellCallItem,
    LocalShellCallOutputItem,
    McpApprovalRequestItem,
    McpCallItem,
    ProgramItem,
    ProgramOutputItem,
    ShellCallItem,
    ShellCallOutputItem,
    WebSearchCallItem,
    FileSearchCallItem,
    CodeInterpreterCallItem,
    ImageGenerationCallItem,
    SERVER_CALLS,
    replayed_call_id,
    shell_output_text,
)

Message = ChatCompletionMessageParam  # the openai SDK's TypedDicts: plain dicts at run time


def _text_of(parts: list[Any]) -> str:
    texts = []
    for part in parts:
        if isinstance(part, Refusal):
            texts.append(part.refusal)
        elif isinstance(part, InputFile):  # a document stands apart from the text around it
            texts.append(f"\n\n{part.text}\n\n")
        elif not isinstance(part, InputImage):
            texts.append(part.text)
    return "".join(texts).strip("\n") if any(isinstance(p, InputFile) for p in parts) else "".join(texts)


def _image_part(part: InputImage) -> dict[str, Any]:
    image_url: dict[str, Any] = {"url": part.url}
    if part.detail in ("low", "high"):
        image_url["detail"] = part.detail
    elif part.detail == "original":
        image_url["detail"] = "high"
    return {"type": "image_url", "image_url": image_url}


def message_to_chat(item: MessageItem) -> Message:
    """One Responses message as one chat message; ``developer`` becomes ``system``,
    which every Chat Completions backend understands."""
    role = "system" if item.role == "developer" else item.role
    if isinstance(item.content, str):
        return {"role": role, "content": item.content}
    if role != "assistant" and any(isinstance(p, InputImage) for p in item.content):
        parts = [
            _image_part(p) if isinstance(p, InputImage) else {"type": "text", "text": _text_of([p])}
            for p in item.content
        ]
        return {"role": role, "content": parts}
    return {"role": role, "content": _text_of(item.content)}


SCREENSHOT_NOTE = "Done; the screenshot after the actions follows."


def _screenshot_message(item: ComputerCallOutputItem) -> Message:
    """The screenshot a computer call's output holds, as the user message that follows its tool message."""
    return {"role": "user", "content": [{"type": "text", "text": f"Screenshot ({item.call_id}):"},
                                        _image_part(item.output)]}  # type: ignore[list-item]


def _tool_message(item: Any, where: str) -> Message:
    if isinstance(item, ComputerCallOutputItem):
        return {"role": "tool", "tool_call_id": item.call_id, "content": SCREENSHOT_NOTE}
    if isinstance(item, NATIVE_OUTPUTS):
        return {"role": "tool", "tool_call_id": item.call_id, "content": _native_output(item)}
    if isinstance(item, ProgramOutputItem):
        return {"role": "tool", "tool_call_id": item.call_id, "content": item.result}
    if isinstance(item, ToolSearchOutputItem):
        names = [str(tool.get("name")) for tool in item.tools]
        content = f"Loaded tools: {', '.join(names)}." if names else "No tools matched."
        return {"role": "tool", "tool_call_id": item.call_id, "content": content}
    if isinstance(item.output, str):
        content = item.output
    else:
        if any(isinstance(p, InputImage) for p in item.output):
            raise UnsupportedParameter(f"{where}.output", "Images in function call outputs are not supported.")
        content = _text_of(item.output)
    return {"role": "tool", "tool_call_id": item.call_id, "content": content}


def _call_ids(message: Message) -> list[str]:
    return [call["id"] for call in message.get("tool_calls") or []]


def place_tool_message(messages: list[Message], tool_message: Message) -> bool:
    """Put a tool message after its call's assistant message and the tool messages already there."""
    call_id = tool_message["tool_call_id"]
    for i in range(len(messages) - 1, -1, -1):
        if call_id in _call_ids(messages[i]):
            j = i + 1
            while j < len(messages) and messages[j].get("role") == "tool":
                if messages[j].get("tool_call_id") == call_id:
                    raise InvalidRequest(
                        f"Duplicate function call output for call_id '{call_id}'.", param="input", code="invalid_value"
                    )
                j += 1
            messages.insert(j, tool_message)
            return True
    return False


ReplayedCall = FunctionCallItem | CustomToolCallItem | ToolSearchCallItem | WebSearchCallItem | FileSearchCallItem | \
    CodeInterpreterCallItem | ImageGenerationCallItem | McpCallItem | McpApprovalRequestItem | ShellCallItem | \
    LocalShellCallItem | ApplyPatchCallItem | ProgramItem


def _native_arguments(item: ShellCallItem | LocalShellCallItem | ApplyPatchCallItem | ComputerCallItem) -> dict[str, Any]:
    """The function arguments a native call was made with (see parley.tools.native and parley.tools.computer)."""
    if isinstance(item, ComputerCallItem):
        return {"action": item.action} if item.action is not None else {"actions": item.actions or []}
    if isinstance(item, ApplyPatchCallItem):
        return {k: v for k, v in item.operation.items() if k in ("type", "path", "diff")}
    if isinstance(item, LocalShellCallItem):
        return {k: v for k, v in item.action.items() if k != "type" and v not in (None, {})}
    return {k: v for k, v in item.action.items() if v is not None}


def _native_output(item: ShellCallOutputItem | LocalShellCallOutputItem | ApplyPatchCallOutputItem) -> str:
    if isinstance(item, LocalShellCallOutputItem):
        return item.output
    if isinstance(item, ApplyPatchCallOutputItem):
        return f"{item.status}: {item.output}" if item.output else item.status
    return shell_output_text(item.output)


def _call_of(item: ReplayedCall) -> tuple[str, str, str]:
    """(call id, function name, arguments) of a replayed call, as the backend saw it."""
    if isinstance(item, ToolSearchCallItem):
        arguments = item.arguments if isinstance(item.arguments, str) else json.dumps(item.arguments or {})
        return item.call_id or "", TOOL_SEARCH, arguments
    if isinstance(item, CustomToolCallItem):
        return item.call_id, chat_tool_name(item.namespace, item.name), json.dumps({"input": item.input})
    if isinstance(item, ProgramItem):
        return item.call_id, PROGRAM, json.dumps({"code": item.code})
    if isinstance(item, WebSearchCallItem):
        return replayed_call_id(item.id), "web_search", json.dumps({"query": item.action.get("query", "")})
    if isinstance(item, FileSearchCallItem):
        return replayed_call_id(item.id), "file_search", json.dumps({"queries": item.queries})
    if isinstance(item, CodeInterpreterCallItem):
        return replayed_call_id(item.id), "code_interpreter", json.dumps({"code": item.code or ""})
    if isinstance(item, ImageGenerationCallItem):
        return replayed_call_id(item.id), "image_generation", json.dumps({"prompt": item.revised_prompt or ""})
    if isinstance(item, NATIVE_CALLS):
        return item.call_id, item.type.removesuffix("_call"), json.dumps(_native_arguments(item))
    if isinstance(item, (McpCallItem, McpApprovalRequestItem)):
        return replayed_call_id(item.approval_request_id or item.id) if isinstance(item, McpCallItem) \
            else replayed_call_id(item.id), item.name, item.arguments
    return item.call_id, chat_tool_name(item.namespace, item.name), item.arguments


def _server_result(item: WebSearchCallItem | FileSearchCallItem | CodeInterpreterCallItem | ImageGenerationCallItem |
                   McpCallItem) -> Message:
    """The tool message a replayed server-side call was answered with (a web search's: its source URLs; a file
    search's: the chunks, when the item holds them)."""
    if isinstance(item, FileSearchCallItem):
        found = [r for r in item.results or [] if isinstance(r, dict)]
        content = "\n\n".join(f"[{n}] {r.get('filename', '')}\n{r.get('text', '')}" for n, r in enumerate(found, 1)) \
            or ("No results." if item.results is not None else "The results are not in the replayed item.")
    elif isinstance(item, CodeInterpreterCallItem):
        logs = [o.get("logs", "") for o in item.outputs or [] if isinstance(o, dict) and o.get("type") == "logs"]
        content = "\n".join(logs) if item.outputs is not None else "The output is not in the replayed item."
    elif isinstance(item, ImageGenerationCallItem):
        content = "The image was made and shown to the user." if item.result else "The image generation failed."
    elif isinstance(item, WebSearchCallItem):
        sources = [s.get("url") for s in item.action.get("sources") or [] if isinstance(s, dict)]
        content = "\n".join(f"[{n}] {url}" for n, url in enumerate(sources, 1)) or "No results."
    elif item.error is None:
        content = item.output or ""
    else:
        parts = item.error.get("content", []) if isinstance(item.error, dict) else []
        content = "Error: " + ("".join(p.get("text", "") for p in parts if isinstance(p, dict)) or str(item.error))
    return {"role": "tool", "tool_call_id": _call_of(item)[0], "content": content}


def _append_call(messages: list[Message], item: ReplayedCall, new_from: int, stored: Any = None) -> None:
    """A replayed call under the name the backend saw (``stored``: the original chat call, when known); calls in
    a row share one assistant message."""
    call_id, name, arguments = _call_of(item)
    if stored is not None:
        call_id, name, arguments = stored["id"], stored["function"]["name"], stored["function"]["arguments"]
    if isinstance(item, McpCallItem) and any(call_id in _call_ids(m) for m in messages[new_from:]):
        return  # the call an approval request in this input already stands for, run after its approval
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    last = messages[-1] if len(messages) > new_from else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)  # one assistant message per run of calls
        return
    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def summary_message(summary: str) -> Message:
    """The chat message a compaction item stands for: the summary of what it replaced."""
    return {"role": "assistant", "content": f"{SUMMARY_HEADER}\n\n{summary}"}


SUMMARY_HEADER = "Summary of the earlier part of this conversation (its messages were compacted into it):"


def build_messages(prior: list[Message], items: list[InputItem], reasoning: dict[int, str] | None = None,
                   known: dict[str, tuple[Any, Message]] | None = None,
                   summaries: dict[int, str] | None = None) -> list[Message]:
    """The conversation (without instructions) after appending ``items`` to ``prior``.

    ``reasoning`` maps the positions of replayed reasoning items to their decrypted text; each
    text goes to the next assistant message as ``reasoning_content``.  ``known`` holds, by item id, the chat
    call and tool message that replayed server-side items (web search, MCP calls) had in the stored response
    that made them: the history is then exactly the original turn's.  ``summaries`` maps the positions of
    compaction items to their decrypted summaries, each an assistant message where the item stands.
    """
    messages = [dict(m) for m in prior]
    new_from = len(messages)
    outputs: list[tuple[int, Any]] = []  # the output items, placed after their calls
    results: list[Message] = []  # tool messages of replayed server-side calls
    pending_reasoning: str | None = None
    for i, item in enumerate(items):
        if isinstance(item, CompactionItem):
            messages.append(summary_message((summaries or {})[i]))
            continue
        if reasoning and i in reasoning:
            pending_reasoning = reasoning[i]
            continue
        before = len(messages)
        if by_program(item):
            continue  # a program's tool call or its output: the program's, never the chat's
        if isinstance(item, MessageItem):
            messages.append(message_to_chat(item))
        elif isinstance(item, (FunctionCallItem, CustomToolCallItem, McpApprovalRequestItem, ProgramItem,
                               *NATIVE_CALLS)) or \
                (isinstance(item, ToolSearchCallItem) and item.call_id):
            _append_call(messages, item, new_from)  # type: ignore[arg-type]
        elif isinstance(item, (*SERVER_CALLS, McpCallItem)):
            # answered where it ran
            call, answer = (known or {}).get(item.id) or (None, None)
            _append_call(messages, item, new_from, call)
            results.append(answer or _server_result(item))
        elif isinstance(item, (FunctionCallOutputItem, CustomToolCallOutputItem, ComputerCallOutputItem,
                               ProgramOutputItem, *NATIVE_OUTPUTS)) or \
                (isinstance(item, ToolSearchOutputItem) and item.call_id):
            outputs.append((i, item))  # type: ignore[arg-type]
        if pending_reasoning is not None and messages and messages[-1]["role"] == "assistant" and \
                (len(messages) > before or isinstance(item, (FunctionCallItem, CustomToolCallItem))):
            messages[-1]["reasoning_content"] = pending_reasoning
            pending_reasoning = None
    for result in results:
        place_tool_message(messages, result)
    for i, item in outputs:
        if not place_tool_message(messages, _tool_message(item, f"input[{i}]")):
            raise InvalidRequest(
                f"No tool call found for function call output with call_id {item.call_id}.", param="input", code=None
            )
    _place_screenshots(messages, [item for _, item in outputs if isinstance(item, ComputerCallOutputItem)])
    return messages


def _place_screenshots(messages: list[Message], answers: list[ComputerCallOutputItem]) -> None:
    """Each computer call's screenshot as a user message after the tool messages of its call's step (and the
    screenshots placed before it)."""
    screenshots: list[Message] = []
    for item in answers:
        j = next(n for n, m in enumerate(messages) if m.get("tool_call_id") == item.call_id)
        while j < len(messages) and (messages[j].get("role") == "tool" or
                                     any(messages[j] is shot for shot in screenshots)):
            j += 1
        screenshots.append(_screenshot_message(item))
        messages.insert(j, screenshots[-1])


def unanswered_calls(messages: list[Message]) -> list[ChatCompletionMessageToolCallParam]:
    """Tool calls of assistant messages that no tool message answers yet, in order."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    return [call for m in messages for call in m.get("tool_calls") or [] if call["id"] not in answered]


def with_instructions(instructions: str | None, conversation: list[Message]) -> list[Message]:
    """The messages of one backend call: this turn's instructions first (they are not carried over)."""
    if not instructions:
        return conversation
    return [{"role": "system", "content": instructions}, *conversation]

