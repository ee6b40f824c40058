"""A deterministic stand-in model for the conformance scenarios of ``parley verify``.

Used as the scripted backend's responder, it answers the seed's questions the way a
capable model would, from what it was actually sent: it repeats its previous answer only
if the history reached it, names the animal only if the image reached it, and calls the
tools it was offered (``get_weather``, ``web_search``, MCP's ``get_boiling_point``, ``code_interpreter``,
``computer``), then
answers from their results.
"""

from __future__ import annotations

import re
from typing import Any

from parley.testing.scripted import Reply, ToolCall, last_user_text


def _offered(request: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in request.get("tools") or []}


def _images(request: dict[str, Any]) -> list[str]:
    return [part["image_url"]["url"] for m in request["messages"] if isinstance(m.get("content"), list)
            for part in m["content"] if part.get("type") == "image_url"]


def _answer_from_tool(request: dict[str, Any], result: str) -> Reply:
    calls = [c["function"]["name"] for m in request["messages"] for c in m.get("tool_calls") or []]
    if calls and calls[-1] == "code_interpreter":
        return Reply(text=f"The sum is {result.strip().splitlines()[0]}.")
    if calls and calls[-1] == "image_generation":
        return Reply(text="Here is the picture.")
    if "experts" in result:
        found = re.search(r"(\d+) experts", result)
        return Reply(text=f"Llama 4 Maverick has {found.group(1) if found else 'an unknown number of'} experts [1].")
    if re.fullmatch(r"-?\d+", result.strip()):
        return Reply(text=f"The boiling point of polyjuice is {result.strip()} degrees Celsius.")
    return Reply(text=f"The weather report says: {result}")


def conformance_responder(request: dict[str, Any]) -> Reply:
    messages = request["messages"]
    if messages and messages[-1]["role"] == "tool":
        return _answer_from_tool(request, messages[-1]["content"] or "")
    last = messages[-1] if messages else {}
    if isinstance(last.get("content"), list) and str(last["content"][0].get("text", "")).startswith("Screenshot ("):
        return Reply(text="The screenshot shows the search box with llamas typed in it.")
    question = last_user_text(request).lower()
    offered = _offered(request)
    if "wait_for_signal" in offered and "signal" in question:
        return Reply(tool_calls=[ToolCall("wait_for_signal", {})])
    if "image_generation" in offered and "draw" in question:
        return Reply(tool_calls=[ToolCall("image_generation", {"prompt": question, "edit": "same llama" in question})])
    if "computer" in offered and "click" in question:
        return Reply(tool_calls=[ToolCall("computer", {"actions": [
            {"type": "click", "button": "left", "x": 320, "y": 40}, {"type": "type", "text": "llamas"}]})])
    if "weather" in question and "get_weather" in offered:
        city = "San Francisco" if "san francisco" in question else "Paris"
        return Reply(tool_calls=[ToolCall("get_weather", {"location": city})])
    if "boiling point" in question and "get_boiling_point" in offered:
        return Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice", "celcius": True})])
    if "code_interpreter" in offered and "python" in question:
        return Reply(tool_calls=[ToolCall("code_interpreter", {"code": "print(sum(range(10**6)))"})])
    if "shell" in offered and "files" in question:
        return Reply(tool_calls=[ToolCall("shell", {"commands": ["ls"]})])
    if "apply_patch" in offered and "create" in question:
        return Reply(tool_calls=[ToolCall("apply_patch", {"type": "create_file", "path": "hello.txt",
                                                           "diff": "+Hello"})])
    if "[file:" in question:  # answers from the document it was given
        return Reply(text="The file says: " + question.split("]", 1)[1].strip())
    if "web_search" in offered:
        return Reply(tool_calls=[ToolCall("web_search", {"query": re.sub(r"[?]", "", question)})])
    if "all caps" in question:
        previous = [m["content"] for m in messages if m["role"] == "assistant" and m.get("content")]
        return Reply(text=previous[-1].upper() if previous else "I HAVE NOTHING TO REPEAT.")
    if "previous response" in question:
        earlier = " ".join(m["content"] or "" for m in messages if m["role"] == "assistant")
        return Reply(text="The planet was Earth." if "Earth" in earlier else "I do not remember.")
    if "planet" in question:
        return Reply(text="Humans live on Earth, the third planet from the Sun.", chunk_size=3)
    if "where llamas live" in question:
        return Reply(text="Llamas live mostly in Peru.")
    if "country" in question:
        return Reply(text="Llamas live mostly in Peru." if _images(request) else "Which animal do you mean?")
    if _images(request):
        return Reply(text="This image shows a llama.")
    return Reply(text=f"You said: {last_user_text(request)}")


__all__ = ["conformance_responder"]
