"""Compaction: a conversation's earlier items replaced by a summary the model writes of them.

``POST /v1/responses/compact`` takes what a create takes for its history (``input``, ``previous_response_id``,
``instructions``) and answers, as OpenAI does, with every user message of that history followed by one
``compaction`` item.  The item's ``encrypted_content`` is the summary, encrypted with the server's key (the one
``reasoning.encrypted_content`` uses), so only this deployment reads it back; sent back as input, it becomes an
assistant message holding the summary, where the item stands.  A create with ``context_management``
(``[{"type": "compaction", "compact_threshold": N}]``) compacts its own history the same way before a model
call whose prompt would pass ``N`` tokens, and puts the ``compaction`` item in its output.

The summary is asked of the request's own model, with the history given as a transcript in one user message
(so no chat template has to accept tool calls without tools, or roles out of order).
"""

from __future__ import annotations

import time
from typing import Any

from parley.engine.history import summary_message
from parley.engine.usage import Usage
from parley.errors import BackendError, InvalidRequest
from parley.ids import new_id
from parley.items import CompactionItem, InputItem
from parley.reasoning import ReasoningCipher

PREFIX = "parley-compaction\n"  # inside the encryption: a reasoning token is not taken for a summary
INSTRUCTIONS = (
    "You compact conversations. Write a summary of the conversation below that lets an assistant carry on "
    "without it: the user's goals and requests, decisions made, facts learned, what tools were called and what "
    "they returned that still matters, and what is still open. Keep names, numbers and identifiers exactly. "
    "Write only the summary.")
TRANSCRIPT_LIMIT = 400_000  # characters of transcript sent to the model; the oldest go first beyond it
# The compact body's parameters: what a create takes for the history, and caching hints forwarded as a create's.
COMPACT_PARAMETERS = {"model", "input", "instructions", "previous_response_id", "prompt_cache_key",
                      "prompt_cache_retention", "service_tier", "safety_identifier", "user"}


def seal(cipher: ReasoningCipher | None, summary: str) -> dict[str, Any]:
    """A ``compaction`` item holding ``summary``."""
    if cipher is None:
        raise BackendError("This server has no key to encrypt a compaction with.")
    return {"type": "compaction", "id": new_id("cmp"), "encrypted_content": cipher.encrypt(PREFIX + summary)}


def summaries(cipher: ReasoningCipher | None, items: list[InputItem], where: str) -> dict[int, str]:
    """The summaries of the compaction items among ``items``, by position; one this server did not make (or
    that was altered) is a 400 naming it."""
    found = {}
    for i, item in enumerate(items):
        if isinstance(item, CompactionItem):
            text = cipher.decrypt(item.encrypted_content) if cipher else None
            if text is None or not text.startswith(PREFIX):
                raise InvalidRequest("This compaction item was not made by this server or was altered.",
                                     param=f"{where}[{i}].encrypted_content", code="invalid_encrypted_content")
            found[i] = text[len(PREFIX):]
    return found


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict):
            parts.append(part.get("text") or ("[image]" if part.get("type") == "image_url" else
                                              f"[{part.get('type', 'part')}]"))
    return "\n".join(parts)


def transcript(messages: list[dict[str, Any]]) -> str:
    """The conversation as text, one block per message, tool calls and results included."""
    blocks = []
    for message in messages:
        role = message.get("role")
        text = _text(message.get("content"))
        if role == "tool":
            blocks.append(f"[tool result {message.get('tool_call_id', '')}]\n{text}")
            continue
        if text:
            blocks.append(f"[{role}]\n{text}")
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            blocks.append(f"[{role} called {function.get('name')} ({call.get('id')})]\n{function.get('arguments')}")
    text = "\n\n".join(blocks)
    return text[-TRANSCRIPT_LIMIT:]


def user_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user messages of a chat as Responses message items (as ``/compact`` returns them)."""
    items = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "input_text", "text": content})
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "text":
                parts.append({"type": "input_text", "text": part.get("text", "")})
            elif part.get("type") == "image_url":
                parts.append({"type": "input_image", "image_url": part["image_url"]["url"],
                              "detail": part["image_url"].get("detail", "auto")})
        items.append({"type": "message", "id": new_id("msg"), "role": "user", "status": "completed",
                      "content": parts})
    return items


def compacted_chat(messages: list[dict[str, Any]], summary: str) -> list[dict[str, Any]]:
    """What a chat becomes after compaction: its user messages, then the summary."""
    kept = [m for m in messages if m.get("role") == "user" or m.get("role") in ("system", "developer")]
    return [*kept, summary_message(summary)]


async def summarize(backend: Any, key: str | None, base: dict[str, Any], messages: list[dict[str, Any]],
                    instructions: str | None) -> tuple[str, Usage]:
    """The model's summary of ``messages`` (and the usage of asking for it)."""
    prompt = transcript(messages)
    if instructions:
        prompt = f"[the assistant's instructions]\n{instructions}\n\n{prompt}"
    body = {**base, "messages": [{"role": "system", "content": INSTRUCTIONS},
                                 {"role": "user", "content": f"The conversation:\n\n{prompt}"}]}
    for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs"):
        body.pop(name, None)
    pieces: list[str] = []
    usage = Usage()
    async for chunk in backend.stream(body, key):
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                pieces.append(piece)
        if chunk.get("usage"):
            usage.add_chat_usage(chunk["usage"])
    summary = "".join(pieces).strip()
    if not summary:
        raise BackendError("The model wrote an empty summary.", code="backend_error")
    return summary, usage


def compacted_response(items: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
    return {"id": new_id("resp"), "object": "response.compaction", "created_at": int(time.time()),
            "output": items, "usage": usage.as_response_usage()}
