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
        events.append(EVENT.validate_python(payload))
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
    return Response.model_validate(response.json())


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
        elif request.method in ("GET", "POST") and not path.endswith("/input_items"):
            validate = lambda body: Response.model_validate(json.loads(body))  # noqa: E731
        else:
            return response
        ValidatingTransport.seen += 1
        response.stream = _ValidatingStream(response.stream, validate)  # type: ignore[arg-type]
        return response
