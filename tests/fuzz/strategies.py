"""Hypothesis strategies for create-request bodies, near-valid and not, to fuzz Parley's edge.

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
