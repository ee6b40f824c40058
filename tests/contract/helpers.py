"""Strict parsing of what a Responses endpoint sends, with the SDK's own pydantic types."""

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


def stream_raw(base_url: str, body: dict[str, Any]) -> list[Any]:
    with httpx.stream("POST", f"{base_url}/responses", json={**body, "stream": True}, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse(response.read().decode())


def create_raw(base_url: str, body: dict[str, Any]) -> Response:
    response = httpx.post(f"{base_url}/responses", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return Response.model_validate(response.json())
