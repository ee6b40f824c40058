"""The shapes of Chat Completions chunks that the backends and :mod:`parley.engine.translate` rely on.

A backend that sends something else (``choices`` that are not an array, ``content`` that is not a string,
``usage`` that is not counts, a tool call that is not an object) has broken the protocol: each check raises
a ``backend_protocol_error``, never a server error.
"""

from __future__ import annotations

from typing import Any

from parley.errors import BackendError


def malformed(what: str) -> BackendError:
    return BackendError(f"The model backend sent {what}.", code="backend_protocol_error")


def chunk_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed(f"'{name}' that is not an array")
    return value


def chunk_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise malformed(f"'{name}' that is not a string")
    return value


def tool_call_shape(call: Any) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("index", 0), int) or \
            not isinstance(call.get("id") or "", str) or not isinstance(call.get("function") or {}, dict):
        raise malformed("a tool call not in the Chat Completions shape")
    function = call.get("function") or {}
    for key in ("name", "arguments"):
        if function.get(key) is not None:
            chunk_text(function[key], f"function.{key}")
    return call


def usage_shape(usage: Any) -> dict[str, Any]:
    def counts(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(v, int) or v is None for k, v in value.items()
                                               if k.endswith("_tokens"))
    if not counts(usage) or not all(counts(usage.get(k) or {}) for k in ("prompt_tokens_details",
                                                                        "completion_tokens_details")):
        raise malformed("'usage' not in the Chat Completions shape")
    return usage
