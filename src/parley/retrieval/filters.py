"""Attribute filters (OpenAI's comparison and compound filters) checked and turned into SQL over a vector
store file's ``attributes`` (JSON text): ``json_extract`` on SQLite, ``jsonb`` operators on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from parley.errors import InvalidRequest

COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
COMPOUNDS = {"and", "or"}
MAX_KEYS, MAX_KEY, MAX_STRING = 16, 64, 512
# A filter's bounds, checked before any SQL is built: how deep compounds nest, and how many values its
# comparisons hold together (each value of an 'in' list counts).  Past them the query planners of both
# databases do work in proportion to what one request sent.
MAX_DEPTH, MAX_VALUES = 8, 256


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def check_attributes(attributes: Any, param: str = "attributes") -> dict[str, Any] | None:
    """Attributes as OpenAI allows them: up to 16 keys of at most 64 characters, each a string (at most 512
    characters), a number or a boolean."""
    if attributes is None:
        return None
    if not isinstance(attributes, dict) or len(attributes) > MAX_KEYS:
        raise InvalidRequest(f"'{param}' must be an object of at most {MAX_KEYS} keys.", param=param)
    for key, value in attributes.items():
        if not 0 < len(key) <= MAX_KEY or '"' in key or "\\" in key or "\x00" in key:
            raise InvalidRequest(f"'{param}' keys must be 1 to {MAX_KEY} characters, without quotes, "
                                 "backslashes or NUL.", param=param)
        if not _scalar(value) or (isinstance(value, str) and (len(value) > MAX_STRING or "\x00" in value)):
            raise InvalidRequest(f"'{param}.{key}' must be a string of at most {MAX_STRING} characters, a number "
                                 "or a boolean.", param=f"{param}.{key}")
    return attributes


def check_filter(raw: Any, param: str = "filters") -> dict[str, Any]:
    """The filter, checked throughout: a comparison ``{type, key, value}`` or ``{type: and|or, filters}``, at
    most ``MAX_DEPTH`` compounds deep, its comparisons holding at most ``MAX_VALUES`` values together."""
    budget = [MAX_VALUES]
    return _checked(raw, param, 1, budget)


def _checked(raw: Any, param: str, depth: int, budget: list[int]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'{param}' must be a comparison or compound filter object.", param=param)
    kind = raw.get("type")
    kind = kind if isinstance(kind, str) else None  # a list or object names no filter type
    if kind in COMPOUNDS:
        if set(raw) != {"type", "filters"} or not isinstance(raw["filters"], list) or not raw["filters"]:
            raise InvalidRequest(f"'{param}' ({kind}) needs a non-empty 'filters' list and nothing else.",
                                 param=param)
        if depth >= MAX_DEPTH:
            raise InvalidRequest(f"'{param}' nests compound filters more than {MAX_DEPTH} deep.", param=param,
                                 code="filter_too_complex")
        return {"type": kind, "filters": [_checked(f, f"{param}.filters[{i}]", depth + 1, budget)
                                          for i, f in enumerate(raw["filters"])]}
    if kind not in COMPARISONS:
        raise InvalidRequest(f"'{param}.type' must be one of {', '.join(sorted(COMPARISONS | COMPOUNDS))}.",
                             param=f"{param}.type")
    if set(raw) != {"type", "key", "value"} or not isinstance(raw["key"], str) or not raw["key"]:
        raise InvalidRequest(f"'{param}' ({kind}) needs exactly 'key' (a string) and 'value'.", param=param)
    value = raw["value"]
    budget[0] -= len(value) if isinstance(value, list) else 1
    if budget[0] < 0:
        raise InvalidRequest(f"The filter holds more than {MAX_VALUES} values in its comparisons.", param=param,
                             code="filter_too_complex")
    if len(raw["key"]) > MAX_KEY or "\x00" in raw["key"]:
        raise InvalidRequest(f"'{param}.key' must be at most {MAX_KEY} characters, without NUL.",
                             param=f"{param}.key")
    if any(isinstance(v, str) and (len(v) > MAX_STRING or "\x00" in v) for v in (value if isinstance(value, list)
                                                                                 else [value])):
        raise InvalidRequest(f"'{param}.value' strings must be at most {MAX_STRING} characters, without NUL.",
                             param=f"{param}.value")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(_scalar(v) and not isinstance(v, bool) for v in value):
            raise InvalidRequest(f"'{param}.value' must be a non-empty list of strings or numbers for '{kind}'.",
                                 param=f"{param}.value")
    elif not _scalar(value):
        raise InvalidRequest(f"'{param}.value' must be a string, a number or a boolean.", param=f"{param}.value")
    elif kind in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise InvalidRequest(f"'{param}.value' cannot be a boolean for '{kind}'.", param=f"{param}.value")
    if '"' in raw["key"] or "\\" in raw["key"]:
        raise InvalidRequest(f"'{param}.key' cannot hold quotes or backslashes.", param=f"{param}.key")
    return {"type": kind, "key": raw["key"], "value": value}


def to_sql(spec: dict[str, Any], attributes: Any, dialect: str) -> Any:
    """The filter as a SQL condition on the ``attributes`` column."""
    if spec["type"] in COMPOUNDS:
        parts = [to_sql(f, attributes, dialect) for f in spec["filters"]]
        return sa.and_(*parts) if spec["type"] == "and" else sa.or_(*parts)
    key, value, kind = spec["key"], spec["value"], spec["type"]
    if dialect == "postgresql":
        field = sa.cast(attributes, JSONB).op("->")(sa.literal(key))

        def bound(v: Any) -> Any:
            return sa.cast(sa.literal(json.dumps(v)), JSONB)
    else:
        field = sa.func.json_extract(attributes, sa.literal(f'$."{key}"'))

        def bound(v: Any) -> Any:
            return sa.literal(int(v) if isinstance(v, bool) else v)
    if kind in ("in", "nin"):
        condition = field.in_([bound(v) for v in value])
        return sa.and_(field.is_not(None), sa.not_(condition)) if kind == "nin" else condition
    operators = {"eq": "__eq__", "ne": "__ne__", "gt": "__gt__", "gte": "__ge__", "lt": "__lt__", "lte": "__le__"}
    return getattr(field, operators[kind])(bound(value))
