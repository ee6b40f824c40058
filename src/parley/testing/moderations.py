"""The scripted backend's moderations API (OpenAI's ``/v1/moderations``): text holding a word of ``FLAGGED``
is flagged as ``violence``; every request is recorded."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FLAGGED = ("forbidden", "attack")
CATEGORIES = ("harassment", "hate", "self-harm", "sexual", "violence")


class ScriptedModerations:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        return [Route("/v1/moderations", self._moderate, methods=["POST"])]

    async def _moderate(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        if body.get("model") == "broken-moderation":
            return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, status_code=500)
        given = body["input"] if isinstance(body["input"], list) else [body["input"]]
        text = " ".join(p if isinstance(p, str) else p.get("text", "") for p in given).lower()
        images = any(isinstance(p, dict) and p.get("type") == "image_url" for p in given)
        flagged = any(word in text for word in FLAGGED)
        kinds = ["text", "image"] if images else ["text"]
        result = {"flagged": flagged, "categories": {c: flagged and c == "violence" for c in CATEGORIES},
                  "category_scores": {c: (0.97 if flagged and c == "violence" else 0.01) for c in CATEGORIES},
                  "category_applied_input_types": {c: kinds for c in CATEGORIES}}
        return JSONResponse({"id": "modr-scripted", "model": body.get("model", ""), "results": [result]})
