"""Hypothesis strategies for create-request bodies, near-valid, SDK-shaped and hostile, to fuzz Parley's edge.

Bodies mix the protocol's own parameter names with wrong types, nulls, unknown names,
malformed items and content parts, so most requests exercise validation and some reach
the model.  The property: no request ever gets a 5xx.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from parley.request import HONOURED, MOVED, NOT_YET

JSON_SCALARS = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=20)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
ITEM_TYPES = ["message", "function_call", "function_call_output", "reasoning", "mcp_approval_response",
              "item_reference", "computer_call", None]
PART_TYPES = ["input_text", "input_image", "output_text", "refusal", "input_file", "input_audio", None]
ROLES = ["user", "assistant", "system", "developer", "tool", "robot"]


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, JSON)


part = st.fixed_dictionaries({"type": st.sampled_from(PART_TYPES)}, optional={
    "text": _maybe(st.text(max_size=30)), "image_url": _maybe(st.sampled_from(
        ["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo=", "not a url"])),
    "detail": _maybe(st.sampled_from(["low", "high", "auto", "original"])), "annotations": JSON,
})
item = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(ITEM_TYPES), "role": st.sampled_from(ROLES),
    "content": st.one_of(st.text(max_size=30), st.lists(part, max_size=3), JSON),
    "call_id": _maybe(st.sampled_from(["call_1", "call_2", ""])), "name": _maybe(st.text(max_size=10)),
    "arguments": _maybe(st.sampled_from(["{}", '{"a": 1}', "not json"])), "output": _maybe(st.text(max_size=20)),
    "id": _maybe(st.text(max_size=12)), "status": _maybe(st.sampled_from(["completed", "in_progress"])),
    "approval_request_id": _maybe(st.text(max_size=10)), "approve": _maybe(st.booleans()),
})
tool = st.fixed_dictionaries({"type": _maybe(st.sampled_from(
    ["function", "mcp", "web_search", "web_search_preview", "file_search", "custom"]))}, optional={
    "name": _maybe(st.sampled_from(["get_weather", "bad name!", ""])), "parameters": JSON, "strict": JSON,
    "server_label": _maybe(st.text(max_size=10)), "server_url": _maybe(st.sampled_from(
        ["http://127.0.0.1:9/mcp", "ftp://x", ""])), "require_approval": JSON, "allowed_tools": JSON,
    "search_context_size": _maybe(st.sampled_from(["low", "medium", "high"])), "filters": JSON,
})
PARAMS = sorted(HONOURED | set(NOT_YET) | set(MOVED)) + ["bogus", "system"]
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model": _maybe(st.sampled_from(["m", ""])), "input": st.one_of(st.text(max_size=40), st.lists(item, max_size=4),
                                                                    JSON),
    "tools": st.one_of(st.lists(tool, max_size=3), JSON), "stream": st.just(False) | JSON,
    "tool_choice": _maybe(st.sampled_from(["auto", "none", "required"])),
    "text": _maybe(st.fixed_dictionaries({"format": _maybe(st.fixed_dictionaries({
        "type": st.sampled_from(["text", "json_object", "json_schema", "xml"])}, optional={
        "name": st.text(max_size=10), "schema": JSON}))})),
    "previous_response_id": _maybe(st.sampled_from(["resp_missing", "bad id!"])),
}
def _body(extra: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = {k: s for k, s in VALUES.items() if k in ("model", "input")}
    fixed = {**{k: st.just(v) for k, v in extra.items() if k not in required}, **required}
    optional = {k: s for k, s in VALUES.items() if k not in fixed}
    return st.fixed_dictionaries(fixed, optional=optional)


body = st.dictionaries(st.sampled_from(PARAMS), JSON, max_size=6).flatmap(_body)
ODD_BYTES = st.sampled_from([b'{"model":"m","input":"x","temperature":NaN}', b'{"model":"m","input":"x","top_p":Infinity}',
                             b'{"model":"m","input":"\\ud800"}', b"", b"null", b'{"model":"m","input":"x"}' * 2])
raw_body = st.one_of(body.map(lambda b: ("json", b)), st.binary(max_size=60).map(lambda b: ("bytes", b)),
                     JSON.map(lambda b: ("json", b)), ODD_BYTES.map(lambda b: ("bytes", b)))
GET_PATHS = st.sampled_from(["/v1/responses/resp_x", "/v1/responses/resp_x/input_items", "/v1/models",
                             "/v1/responses/%00", "/v1/responses/resp_x/input_items?limit=0",
                             "/v1/responses/resp_x/input_items?order=up&limit=abc", "/v1/nothing"])


# -- bodies in the SDK's own request shapes, and hostile mutations of them ------------------------------

HUGE = "x" * 100_000


def _jsonable(value: Any) -> Any:
    """What hypothesis builds from the SDK's TypedDicts, as JSON (its Iterables come as sets or tuples)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else 0.0
    return str(value)  # complex numbers, bytes, dates: a string where the shape wanted something else


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"type": value}
    return value


HOSTILE_VALUES = st.sampled_from([None, True, 0, -1, 2**63, 1.5e308, "", HUGE, [], {}, [[[]]], {"type": {}},
                                  {"type": ["message"]}, [None], _deep(70), _deep(300), "\u0000", "\ud7ff" * 10])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


def _replace(body: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(body, dict):
        return {**body, head: _replace(body[head], rest, new)}
    copy = list(body)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def sdk_body(draw: st.DrawFn) -> dict[str, Any]:
    """A body of the SDK's ``ResponseCreateParams`` shape; unsupported parameters are mostly left out, so
    most bodies get past the parameter names to the values."""
    from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

    body = _jsonable(draw(st.from_type(ResponseCreateParamsNonStreaming)))
    if draw(st.integers(0, 9)):
        body = {k: v for k, v in body.items() if k not in NOT_YET and k not in ("background", "top_logprobs")}
    body.setdefault("model", "m")
    if "input" not in body and draw(st.booleans()):
        body["input"] = draw(st.text(max_size=20))
    return body


@st.composite
def hostile_body(draw: st.DrawFn) -> dict[str, Any]:
    """An SDK-shaped or near-valid body with one value anywhere replaced by a hostile one: a wrong type, a
    huge string or number, nesting past any limit."""
    base = draw(st.one_of(sdk_body(), body))
    paths = _paths(base)
    path = draw(st.sampled_from(paths))
    mutated = _replace(base, path, draw(HOSTILE_VALUES)) if path else base
    return mutated if isinstance(mutated, dict) else {"model": "m", "input": mutated}


http_body = st.one_of(hostile_body().map(lambda b: ("json", b)), raw_body)
