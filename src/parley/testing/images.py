"""The scripted backend's images API: OpenAI's ``/v1/images/generations`` (JSON) and ``/v1/images/edits``
(multipart), answered with a small real PNG whose colour comes from the prompt, streamed as
``image_generation.*`` / ``image_edit.*`` events when ``stream`` is set.  Every request is recorded (an
edit's images by name, type and size); a prompt containing ``refuse`` is a 400, as a moderation refusal is."""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def picture_of(prompt: str, shade: int = 0) -> str:
    """The base64 PNG answered for ``prompt`` (``shade`` > 0: a partial image, darker)."""
    crc = zlib.crc32(prompt.encode())
    rgb = tuple(max(0, ((crc >> s) & 0xFF) - 40 * shade) for s in (0, 8, 16))
    return base64.b64encode(png(4, 4, rgb)).decode()  # type: ignore[arg-type]


class ScriptedImages:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        return [Route("/v1/images/generations", self._generate, methods=["POST"]),
                Route("/v1/images/edits", self._edit, methods=["POST"])]

    async def _generate(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"endpoint": "generations", **body})
        return self._answer(body, "image_generation")

    async def _edit(self, request: Request) -> Response:
        form = await request.form()
        body: dict[str, Any] = {"endpoint": "edits", "images": []}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                entry = {"name": value.filename, "type": value.content_type, "bytes": len(data),
                         "b64": base64.b64encode(data).decode()}
                if key == "mask":
                    body["mask"] = entry
                else:
                    body["images"].append(entry)
            else:
                body[key] = json.loads(value) if key in ("stream", "partial_images", "n") else value
        self.requests.append(body)
        return self._answer(body, "image_edit")

    def _answer(self, body: dict[str, Any], kind: str) -> Response:
        prompt = str(body.get("prompt", ""))
        if "refuse" in prompt:
            return JSONResponse({"error": {"message": "Your request was rejected by the safety system.",
                                           "type": "image_generation_user_error", "code": "moderation_blocked"}},
                                status_code=400)
        about = {"background": body.get("background") or "opaque", "output_format": body.get("output_format") or "png",
                 "quality": body.get("quality") or "medium", "size": body.get("size") or "1024x1024"}
        revised = f"A picture of {prompt}"
        if not body.get("stream"):
            return JSONResponse({"created": int(time.time()), "data": [{"b64_json": picture_of(prompt),
                                                                        "revised_prompt": revised}], **about})
        return StreamingResponse(self._stream(prompt, revised, int(body.get("partial_images") or 0), kind, about),
                                 media_type="text/event-stream")

    async def _stream(self, prompt: str, revised: str, partials: int, kind: str,
                      about: dict[str, Any]) -> AsyncIterator[bytes]:
        for index in range(partials):
            event = {"type": f"{kind}.partial_image", "b64_json": picture_of(prompt, partials - index),
                     "partial_image_index": index, "created_at": int(time.time()), **about}
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                 "input_tokens_details": {"image_tokens": 0, "text_tokens": 1}}
        done = {"type": f"{kind}.completed", "b64_json": picture_of(prompt), "created_at": int(time.time()),
                "usage": usage, "revised_prompt": revised, **about}
        yield f"event: {done['type']}\ndata: {json.dumps(done)}\n\n".encode()
