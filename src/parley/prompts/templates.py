"""A stored prompt's template applied to a create: its variables filled, its settings used where the request
sets none, its messages before the request's input.

A template holds a create's settings (``TEMPLATE_FIELDS``); ``{{name}}`` in its ``instructions`` and in the text
of its ``input`` messages is a variable.  A request's ``prompt: {id, version, variables}`` names the prompt (the
latest version without ``version``) and gives every variable: a string or an ``input_text`` fills text; an
``input_image`` or ``input_file`` becomes a part of its message (never of ``instructions``).  A variable the
template lacks, or one it has that the request leaves out, is a 400 naming it.  What the request sets itself
wins (``model``, ``tools``, ``instructions``, …), as at OpenAI; the response echoes ``prompt``.
"""

from __future__ import annotations

import re
from typing import Any

from openai.types.responses.response_prompt import Variables
from pydantic import TypeAdapter, ValidationError

from parley.errors import InvalidRequest
from parley.items import raw_items
from parley.prompts.store import SqlPrompts

TEMPLATE_FIELDS = ("model", "instructions", "input", "tools", "tool_choice", "text", "reasoning", "temperature",
                   "top_p", "max_output_tokens", "max_tool_calls", "parallel_tool_calls", "truncation", "include",
                   "metadata", "store")
VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
VARIABLE_VALUE: TypeAdapter[Any] = TypeAdapter(Variables)
MAX_FILLED = 32 * 1024 * 1024  # characters of text a filled prompt may hold (a variable used many times multiplies)


def _texts(template: dict[str, Any]) -> list[str]:
    texts = [template["instructions"]] if isinstance(template.get("instructions"), str) else []
    for message in template.get("input") or [] if isinstance(template.get("input"), list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return texts


def variables_of(template: dict[str, Any]) -> list[str]:
    return sorted({name for text in _texts(template) for name in VARIABLE.findall(text)})


def check_template(template: Any, param: str = "") -> dict[str, Any]:
    """A prompt's template as saved: only create settings, and valid as a create (a 400 naming what is not)."""
    from parley.request import parse_create

    if not isinstance(template, dict):
        raise InvalidRequest("A prompt version is a JSON object of create settings.", param=param or None)
    for name in template:
        if name not in TEMPLATE_FIELDS:
            raise InvalidRequest(f"'{name}' is not a setting a prompt keeps: {', '.join(TEMPLATE_FIELDS)}.",
                                 param=name, code="unknown_parameter")
    if "input" in template and not isinstance(template["input"], list):
        raise InvalidRequest("A prompt's 'input' is a list of messages.", param="input")
    trial = fill(template, {name: "x" for name in variables_of(template)}, "variables")
    parse_create({"model": "m", **trial, "input": trial.get("input") or "x"})
    return template


def _text_size(value: Any) -> int:
    value = _part(value)
    return len(value) if isinstance(value, str) else 0


def _part(value: Any) -> dict[str, Any] | str:
    return value["text"] if isinstance(value, dict) and value.get("type") == "input_text" else value


def _filled(text: str, values: dict[str, Any], where: str, parts_allowed: bool) -> str | list[dict[str, Any]]:
    pieces: list[Any] = []
    last = 0
    for match in VARIABLE.finditer(text):
        pieces.append(text[last:match.start()])
        value = _part(values[match.group(1)])
        if not isinstance(value, str) and not parts_allowed:
            raise InvalidRequest(f"Variable '{match.group(1)}' is an {value['type']}, which cannot go into "
                                 "instructions or an assistant message: give text.",
                                 param=f"{where}.{match.group(1)}")
        pieces.append(value)
        last = match.end()
    pieces.append(text[last:])
    if all(isinstance(p, str) for p in pieces):
        return "".join(pieces)
    joined: list[Any] = []  # neighbouring text as one part
    for piece in pieces:
        if isinstance(piece, str) and joined and isinstance(joined[-1], str):
            joined[-1] += piece
        else:
            joined.append(piece)
    return [{"type": "input_text", "text": p} if isinstance(p, str) else p for p in joined if p != ""]


def fill(template: dict[str, Any], values: dict[str, Any], where: str) -> dict[str, Any]:
    """The template with its variables' values in place."""
    filled = dict(template)
    if isinstance(template.get("instructions"), str):
        filled["instructions"] = _filled(template["instructions"], values, where, False)
    messages = []
    for message in template.get("input") or []:
        if not isinstance(message, dict):
            messages.append(message)
            continue
        user = message.get("role", "user") == "user"
        content = message.get("content")
        if isinstance(content, str):
            content = _filled(content, values, where, user)
        elif isinstance(content, list):
            parts = []
            for part in content:
                text = part.get("text") if isinstance(part, dict) and part.get("type") == "input_text" else None
                if text is None:
                    parts.append(part)
                    continue
                done = _filled(text, values, where, user)
                parts += [{**part, "text": done}] if isinstance(done, str) else done
            content = parts
        messages.append({**message, "content": content})
    if "input" in template:
        filled["input"] = messages
    return filled


def _reference(raw: Any) -> tuple[str, int | None, dict[str, Any]]:
    if not isinstance(raw, dict) or set(raw) - {"id", "version", "variables"}:
        raise InvalidRequest("'prompt' is an object with id, and optionally version and variables.", param="prompt")
    prompt_id, version, values = raw.get("id"), raw.get("version"), raw.get("variables") or {}
    if not isinstance(prompt_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", prompt_id):
        raise InvalidRequest("'prompt.id' must be a prompt's id.", param="prompt.id")
    if version is not None and not (isinstance(version, str) and version.isdigit() and 0 < int(version) < 2**31):
        raise InvalidRequest("'prompt.version' is a version number, as a string (\"2\").", param="prompt.version")
    if not isinstance(values, dict):
        raise InvalidRequest("'prompt.variables' maps names to values.", param="prompt.variables")
    checked = {}
    for name, value in values.items():
        if isinstance(value, dict) and value.get("type") == "input_image":
            value = {"detail": "auto", **value}  # (as the Response echoes it: the SDK's type requires one)
        try:
            VARIABLE_VALUE.validate_python(value)
        except ValidationError:
            raise InvalidRequest("A variable's value is a string, or an input_text, input_image or input_file part.",
                                 param=f"prompt.variables.{name}") from None
        checked[name] = value
    return prompt_id, int(version) if version is not None else None, checked


async def apply(body: Any, prompts: SqlPrompts | None, tenant: str) -> Any:
    """``body`` with its ``prompt`` applied (unchanged without one)."""
    if not isinstance(body, dict) or body.get("prompt") is None:
        return body
    if prompts is None:
        raise InvalidRequest("This server keeps no prompts.", param="prompt")
    prompt_id, version, values = _reference(body["prompt"])
    found = await prompts.get(prompt_id, tenant, version, param="prompt.id")
    for name in values:
        if name not in found.variables:
            raise InvalidRequest(f"Prompt '{prompt_id}' version {found.version} has no variable '{name}'.",
                                 param=f"prompt.variables.{name}")
    for name in found.variables:
        if name not in values:
            raise InvalidRequest(f"Prompt '{prompt_id}' needs variable '{name}'.", param=f"prompt.variables.{name}",
                                 code="missing_required_parameter")
    filled_size = sum(len(text) + sum(_text_size(values[m.group(1)]) - len(m.group(0))
                                      for m in VARIABLE.finditer(text)) for text in _texts(found.template))
    if filled_size > MAX_FILLED:
        raise InvalidRequest(f"Prompt '{prompt_id}' filled with these variables would hold {filled_size} characters of "
                             f"text; at most {MAX_FILLED}.", param="prompt.variables", code="prompt_too_large")
    template = fill(found.template, values, "prompt.variables")
    merged = {**{k: v for k, v in template.items() if k != "input"},
              **{k: v for k, v in body.items() if v is not None}}
    merged["input"] = list(template.get("input") or []) + raw_items(body.get("input"))
    merged["prompt"] = {"id": prompt_id, "version": str(found.version), "variables": values}
    return merged
