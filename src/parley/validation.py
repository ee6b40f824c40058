"""Pydantic validation errors as OpenAI's 400s, naming the parameter's path (``input[2].content[0].text``).

One mapping for every part of a request (the body in :mod:`parley.request`, its items in
:mod:`parley.items`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from parley.errors import InvalidRequest, UnknownParameter


class StrictModel(BaseModel):
    """A request part whose unknown fields are errors (each a 400 naming the field)."""

    model_config = ConfigDict(extra="forbid")


# pydantic's names for the plain-type branches of a union (``str | Model``), which are not fields.
_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none", "bytes"}


def _param_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in str(part) or str(part)[:1].isupper() or str(part) in _BRANCHES or \
                str(part).startswith(("literal", "function-", "union")):
            continue  # pydantic's names for union branches (model names, literal[...]), not fields
        else:
            out += ("." if out else "") + str(part)
    return out


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    """The first pydantic error as OpenAI's 400 with ``param`` set to the field's path.  Of the errors about
    the same field (one per branch of a union), the one that went deepest names what is wrong."""
    errors = exc.errors()
    field = errors[0]["loc"][:1]
    err = max((e for e in errors if e["loc"][:1] == field), key=lambda e: len(e["loc"]))
    param = _param_name(tuple(err["loc"]))
    if prefix:
        param = prefix + (param if param.startswith("[") else "." + param if param else "")
    if err["type"] == "extra_forbidden":
        return UnknownParameter(param)
    if err["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    message = err["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"Invalid value for '{param}': {message}.", param=param, code="invalid_value")
