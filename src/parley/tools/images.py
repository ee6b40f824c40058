"""The operator's images endpoint (``--images-upstream``): OpenAI's ``/v1/images/generations`` and ``/edits``,
called through the ``openai`` SDK, streamed when partial images are asked for."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import openai

# The image_generation tool's fields that the images API takes as they are (the rest: action, the mask and
# partial_images, which Parley handles itself).
FORWARDED = ("background", "complexity", "frame_count", "frame_duration_ms", "model", "moderation",
             "output_compression", "output_format", "quality", "size", "svg")
MAX_IMAGE_BYTES = 50 * 1024 * 1024  # an input image or mask (OpenAI's images API takes up to 50 MB)


class ImagesFailed(Exception):
    """The images endpoint refused or could not be reached; the message says which."""


@dataclass
class Picture:
    """An image the endpoint made: base64, with what it reports of it."""

    b64: str
    revised_prompt: str | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None


@dataclass
class Partial:
    b64: str
    index: int


Upload = tuple[str, bytes, str]  # (file name, bytes, media type), as the SDK uploads a file


class ImagesEndpoint:
    def __init__(self, base_url: str, api_key: str | None, model: str | None, timeout: float) -> None:
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0,
                                         timeout=timeout)
        self.model = model

    async def make(self, prompt: str, params: dict[str, Any], images: list[Upload], mask: Upload | None,
                   partial_images: int, partials: asyncio.Queue[Partial] | None = None) -> Picture:
        """Generate (no ``images``) or edit; partial images, when asked for, go to ``partials`` as they come."""
        params = {k: v for k, v in params.items() if v is not None}
        if self.model and "model" not in params:
            params["model"] = self.model
        if images:
            if mask is not None:
                params["mask"] = mask
            call = self.client.images.edit
            params["image"] = images if len(images) > 1 else images[0]
        else:
            params.pop("input_fidelity", None)
            call = self.client.images.generate
        try:
            if partial_images:
                return await self._streamed(call, prompt, params, partial_images, partials)
            answer = await call(prompt=prompt, **params)
        except openai.APIStatusError as exc:
            raise ImagesFailed(f"the images endpoint answered HTTP {exc.status_code}: {_message(exc)}") from None
        except openai.APIError as exc:
            raise ImagesFailed(f"the images endpoint could not be reached: {exc.__class__.__name__}") from None
        if not answer.data or not answer.data[0].b64_json:
            raise ImagesFailed("the images endpoint sent no image (b64_json)")
        first = answer.data[0]
        return Picture(first.b64_json, first.revised_prompt, answer.background, answer.output_format,  # type: ignore
                       answer.quality, answer.size)

    async def _streamed(self, call: Any, prompt: str, params: dict[str, Any], partial_images: int,
                        partials: asyncio.Queue[Partial] | None) -> Picture:
        stream = await call(prompt=prompt, stream=True, partial_images=partial_images, **params)
        async with stream:
            async for event in stream:
                if event.type.endswith(".partial_image"):
                    if partials is not None:
                        partials.put_nowait(Partial(event.b64_json, event.partial_image_index))
                elif event.type.endswith(".completed"):
                    return Picture(event.b64_json, getattr(event, "revised_prompt", None), event.background,
                                   event.output_format, event.quality, event.size)
        raise ImagesFailed("the images endpoint's stream ended without an image")

    async def aclose(self) -> None:
        await self.client.close()


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    return str(error.get("message") or exc.message)[:500]
