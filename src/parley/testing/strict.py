"""Strict parsing of what a Responses endpoint sends, with the SDK's own pydantic types.

The ``openai`` client parses leniently; tests and ``parley verify`` validate strictly here.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

EVENT = TypeAdapter(ResponseStreamEvent)

# The Response object's fields the Open Responses specification requires (its ResponseResource schema), each
# with the JSON types it allows; the openai SDK's types leave several of them optional.
_NUMBER, _NULL = (int, float), type(None)
OPEN_RESPONSES_REQUIRED: dict[str, tuple[type, ...]] = {
    "id": (str,), "object": (str,), "created_at": (int,), "completed_at": (int, _NULL), "status": (str,),
    "incomplete_details": (dict, _NULL), "model": (str,), "previous_response_id": (str, _NULL),
    "instructions": (str, list, _NULL), "output": (list,), "error": (dict, _NULL), "tools": (list,),
    "tool_choice": (str, dict), "truncation": (str,), "parallel_tool_calls": (bool,), "text": (dict,),
    "top_p": _NUMBER, "presence_penalty": _NUMBER, "frequency_penalty": _NUMBER, "top_logprobs": (int,),
    "temperature": _NUMBER, "reasoning": (dict, _NULL), "user": (str, _NULL), "usage": (dict, _NULL),
    "max_output_tokens": (int, _NULL), "max_tool_calls": (int, _NULL), "store": (bool,), "background": (bool,),
    "service_tier": (str,), "metadata": (dict,), "safety_identifier": (str, _NULL), "prompt_cache_key": (str, _NULL),
}


def check_open_responses(body: dict[str, Any]) -> None:
    """Every field the Open Responses specification requires of a Response object, with an allowed type."""
    for name, types in OPEN_RESPONSES_REQUIRED.items():
        assert name in body, f"the Response object lacks '{name}', which Open Responses requires"
        value = body[name]
        allowed = not (isinstance(value, bool) and bool not in types) and isinstance(value, types)
        assert allowed, f"Response '{name}' is {value!r}, not of the type Open Responses requires"
    assert body["object"] == "response"


def validate_response(payload: dict[str, Any]) -> Response:
    """A Response body checked against the Open Responses requirements and the SDK's types."""
    check_open_responses(payload)
    return Response.model_validate(payload)


def validate_compacted(payload: dict[str, Any]) -> None:
    """A ``/responses/compact`` answer: the SDK's ``CompactedResponse`` envelope and usage, user messages with
    input parts (the SDK types output messages as the assistant's only, so those are checked here), and
    ``compaction`` items."""
    from openai.types.responses import ResponseCompactionItem, ResponseUsage

    assert payload["object"] == "response.compaction" and isinstance(payload["created_at"], int)
    assert isinstance(payload["id"], str) and payload["id"]
    ResponseUsage.model_validate(payload["usage"])
    for item in payload["output"]:
        if item["type"] == "compaction":
            ResponseCompactionItem.model_validate(item)
            continue
        assert item["type"] == "message" and item["role"] == "user" and item["id"], item
        assert all(part["type"] in ("input_text", "input_image", "input_file") for part in item["content"]), item


def _validate_event(payload: dict[str, Any]) -> Any:
    if isinstance(payload.get("response"), dict):
        check_open_responses(payload["response"])
    return EVENT.validate_python(payload)


def parse_sse(text: str) -> list[Any]:
    """Every frame validated as a ``ResponseStreamEvent``; the ``event:`` line must match ``type``."""
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        names = [line[7:] for line in lines if line.startswith("event: ")]
        data = [line[6:] for line in lines if line.startswith("data: ")]
        assert len(data) == 1, f"expected one data line per frame: {frame!r}"
        payload = json.loads(data[0])
        assert names == [payload["type"]], f"event line {names} does not match type {payload['type']}"
        events.append(_validate_event(payload))
    return events


def stream_raw(base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[Any]:
    """POST a streamed create and return its events, each validated strictly."""
    with httpx.stream("POST", f"{base_url}/responses", json={**body, "stream": True}, headers=headers,
                      timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse(response.read().decode())


def create_raw(base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """POST a create and return the body validated strictly as a ``Response``."""
    response = httpx.post(f"{base_url}/responses", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return validate_response(response.json())


class _ValidatingStream(httpx.SyncByteStream):
    """Passes a body through and, once it is read whole, validates it with the SDK's types."""

    def __init__(self, stream: httpx.SyncByteStream, validate: Any) -> None:
        self._stream = stream
        self._validate = validate
        self._chunks: list[bytes] = []

    def __iter__(self):
        for chunk in self._stream:
            self._chunks.append(chunk)
            yield chunk
        self._validate(b"".join(self._chunks))

    def close(self) -> None:
        self._stream.close()


class ValidatingTransport(httpx.HTTPTransport):
    """An httpx transport for the ``openai`` client under test: every Response body and SSE event
    coming back from ``/responses`` is validated strictly (the SDK itself parses leniently)."""

    seen = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if "/responses" not in request.url.path or response.status_code != 200:
            return response
        kind = response.headers.get("content-type", "")
        path = request.url.path
        if kind.startswith("text/event-stream"):
            validate = lambda body: parse_sse(body.decode())  # noqa: E731
        elif path.endswith("/compact"):
            validate = lambda body: validate_compacted(json.loads(body))  # noqa: E731
        elif request.method in ("GET", "POST") and not path.endswith(("/input_items", "/input_tokens")):
            validate = lambda body: validate_response(json.loads(body))  # noqa: E731
        else:
            return response
        ValidatingTransport.seen += 1
        response.stream = _ValidatingStream(response.stream, validate)  # type: ignore[arg-type]
        return response


def strict_client(base_url: str, api_key: str = "x") -> Any:
    """The official ``openai`` client for ``base_url`` whose every Response body and event is validated strictly
    (:class:`ValidatingTransport`); use it as a context manager."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                         http_client=httpx.Client(transport=ValidatingTransport(), timeout=60))
