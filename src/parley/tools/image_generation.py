"""The ``image_generation`` tool, run by Parley through the operator's images endpoint (:mod:`parley.tools.images`).

The model sees one function, ``image_generation(prompt)`` (with ``edit`` when the tool's ``action`` is
``auto``: whether to change the latest image rather than make a new one).  A call becomes an
``image_generation_call`` item with the image as base64 ``result`` and the endpoint's ``revised_prompt``, with
``response.image_generation_call.in_progress`` / ``generating`` / ``partial_image`` / ``completed`` events.  An
edit sends the images of this turn's user messages, or else the latest image generated in the conversation
(this response, the replayed items, the previous response), with the tool's ``input_image_mask``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.responses import (
    ResponseImageGenCallCompletedEvent,
    ResponseImageGenCallGeneratingEvent,
    ResponseImageGenCallInProgressEvent,
    ResponseImageGenCallPartialImageEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
)
from openai.types.responses.response_output_item import ImageGenerationCall
from pydantic import Field, model_validator

from parley.errors import InvalidRequest, ParleyError
from parley.files import IMAGE_TYPES, decode_file_data, fetch
from parley.ids import new_id
from parley.items import InputImage, MessageItem
from parley.replayed_items import ImageGenerationCallItem
from parley.tools.base import BindContext, Binding, CallDone, Offered, Produced, SingleToolKind, ToolCall, ToolEnv, \
    ToolModel, arguments_of
from parley.tools.images import FORWARDED, MAX_IMAGE_BYTES, ImagesEndpoint, ImagesFailed, Partial, Picture, Upload

log = logging.getLogger("parley.image_generation")
FUNCTION_NAME = "image_generation"
MAX_EDIT_IMAGES = 16


class ImageMask(ToolModel):
    image_url: str | None = None
    file_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,80}$")

    @model_validator(mode="after")
    def _one(self) -> ImageMask:
        if (self.image_url is None) == (self.file_id is None):
            raise ValueError("give the mask as image_url or file_id")
        return self


class ImageGenerationTool(ToolModel):
    type: Literal["image_generation"]
    action: Literal["generate", "edit", "auto"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    complexity: Literal["low", "medium", "high"] | None = None
    frame_count: int | None = Field(None, ge=1)
    frame_duration_ms: int | None = Field(None, ge=10)
    input_fidelity: Literal["high", "low"] | None = None
    input_image_mask: ImageMask | None = None
    model: str | None = Field(None, min_length=1, max_length=200)
    moderation: Literal["auto", "low"] | None = None
    output_compression: int | None = Field(None, ge=0, le=100)
    output_format: Literal["png", "webp", "jpeg", "gif", "svg"] | None = None
    partial_images: int | None = Field(None, ge=0, le=3)
    quality: Literal["low", "medium", "high", "xhigh", "max", "auto"] | None = None
    size: str | None = Field(None, pattern=r"^(auto|\d{2,5}x\d{2,5})$")
    svg: dict[str, Any] | None = None


class ToolChoiceImageGeneration(ToolModel):
    type: Literal["image_generation"]


@dataclass
class _Run:
    task: asyncio.Task[Picture]
    partials: asyncio.Queue[Partial]
    prompt: str
    edit: bool


@dataclass
class ImageGenerationBinding(Binding):
    endpoint: ImagesEndpoint
    tool: ImageGenerationTool
    env: ToolEnv
    tenant: str
    given: list[InputImage]  # this turn's user images
    generated: list[str] = field(default_factory=list)  # base64 images of the conversation, oldest first

    def offered(self) -> list[Offered]:
        properties: dict[str, Any] = {"prompt": {"type": "string", "description": "What the image shows."}}
        about = "Make an image from a text description."
        if self.tool.action in (None, "auto"):
            properties["edit"] = {"type": "boolean", "description": "True to change the latest image of the "
                                  "conversation (the user's or one made before) instead of making a new one."}
        elif self.tool.action == "edit":
            about = "Change the latest image of the conversation as the prompt describes."
        return [Offered({"type": "function", "function": {
            "name": FUNCTION_NAME, "description": about,
            "parameters": {"type": "object", "properties": properties, "required": ["prompt"]}}},
            source={"type": "image_generation"})]

    def forced(self, choice: ToolModel) -> Any:
        return {"type": "function", "function": {"name": FUNCTION_NAME}}

    def start(self, call: ToolCall, approved: bool) -> _Run:
        args = arguments_of(call.arguments)
        prompt = str(args.get("prompt") or "").strip()
        edit = self.tool.action == "edit" or (self.tool.action != "generate" and args.get("edit") is True)
        partials: asyncio.Queue[Partial] = asyncio.Queue()
        return _Run(asyncio.ensure_future(self._make(prompt, edit, partials)), partials, prompt, edit)

    async def _make(self, prompt: str, edit: bool, partials: asyncio.Queue[Partial]) -> Picture:
        if not prompt:
            raise ImagesFailed("the call needs a non-empty 'prompt'")
        images = await self._images() if edit else []
        if edit and not images:
            raise ImagesFailed("there is no image in the conversation to edit")
        mask = await self._mask() if images and self.tool.input_image_mask else None
        params = {name: getattr(self.tool, name) for name in FORWARDED}
        if images:
            params["input_fidelity"] = self.tool.input_fidelity
        return await self.endpoint.make(prompt, params, images, mask, self.tool.partial_images or 0, partials)

    async def _images(self) -> list[Upload]:
        if self.given:
            return [await self._read(part.url, f"image_{n}") for n, part in enumerate(self.given[:MAX_EDIT_IMAGES])]
        if self.generated:
            return [("image.png", base64.b64decode(self.generated[-1]), "image/png")]
        return []

    async def _read(self, url: str, name: str) -> Upload:
        if url.startswith("data:"):
            data, declared = decode_file_data(url, name)
        else:
            data, declared = await fetch(url, name, self.env.address_policy, MAX_IMAGE_BYTES, self.env.tool_timeout)
        kind = (declared or "image/png").split(";")[0]
        if kind not in IMAGE_TYPES:
            raise ImagesFailed(f"an image to edit is {kind}, not PNG, JPEG, GIF or WebP")
        return (f"{name}.{kind.split('/')[1]}", data, kind)

    async def _mask(self) -> Upload:
        mask = self.tool.input_image_mask
        assert mask is not None
        if mask.image_url is not None:
            return await self._read(mask.image_url, "mask")
        record = await self.env.files.get(mask.file_id, self.tenant)
        if record is None:
            raise ImagesFailed(f"no file with id '{mask.file_id}'")
        data = b"".join([piece async for piece in self.env.files.content(record)])
        return ("mask.png", data, "image/png")

    async def emit(self, call: ToolCall, run: Any, index: int) -> AsyncIterator[Produced]:
        assert isinstance(run, _Run)
        action = "edit" if run.edit else "generate"
        item = ImageGenerationCall(id=new_id("ig"), type="image_generation_call", status="in_progress", action=action)
        common = {"item_id": item.id, "output_index": index, "sequence_number": 0}
        yield ResponseOutputItemAddedEvent(type="response.output_item.added", item=item.model_copy(),
                                           output_index=index, sequence_number=0)
        yield ResponseImageGenCallInProgressEvent(type="response.image_generation_call.in_progress", **common)
        yield ResponseImageGenCallGeneratingEvent(type="response.image_generation_call.generating", **common)
        async for partial in _partials(run):
            yield ResponseImageGenCallPartialImageEvent(
                type="response.image_generation_call.partial_image", partial_image_b64=partial.b64,
                partial_image_index=partial.index, **common)
        try:
            picture = run.task.result()
        except (ImagesFailed, ParleyError) as exc:
            message = exc.message if isinstance(exc, ParleyError) else str(exc)
            log.warning("image generation failed: %s", message)
            item = item.model_copy(update={"status": "failed"})
            text = f"The image generation failed: {message}."
        else:
            self.generated.append(picture.b64)
            item = ImageGenerationCall.model_validate({
                **item.model_dump(exclude_none=True), "status": "completed", "result": picture.b64,
                "revised_prompt": picture.revised_prompt or run.prompt, "background": picture.background,
                "output_format": picture.output_format, "quality": picture.quality, "size": picture.size})
            yield ResponseImageGenCallCompletedEvent(type="response.image_generation_call.completed", **common)
            text = f"The image was {'edited' if run.edit else 'generated'} and shown to the user ({item.id})."
        yield ResponseOutputItemDoneEvent(type="response.output_item.done", item=item.model_copy(),
                                          output_index=index, sequence_number=0)
        yield CallDone(item, {"role": "tool", "tool_call_id": call.call_id, "content": text})


async def _partials(run: _Run) -> AsyncIterator[Partial]:
    """The partial images of a run as they come, until it ends (a run whose events are no longer wanted, its
    response cancelled, is cancelled with them)."""
    getter: asyncio.Future[Partial] | None = None
    try:
        while not run.task.done() or not run.partials.empty():
            getter = asyncio.ensure_future(run.partials.get())
            await asyncio.wait([getter, run.task], return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:  # the run ended first (a partial it put is still in the queue: the next look takes it)
                getter.cancel()
    finally:
        if getter is not None and not getter.done():
            getter.cancel()
        if not run.task.done():
            run.task.cancel()


def _earlier_images(context: BindContext) -> list[str]:
    """The images generated earlier in the conversation, oldest first: the previous response's, then those of
    the replayed items of this input."""
    found = [item.result for item in context.previous_output
             if getattr(item, "type", None) == "image_generation_call" and getattr(item, "result", None)]
    return found + [item.result for item in context.input if isinstance(item, ImageGenerationCallItem) and item.result]


class ImageGenerationKind(SingleToolKind):
    label = "image_generation"
    models = {"image_generation": ImageGenerationTool}
    choices = {"image_generation": ToolChoiceImageGeneration}

    async def admit(self, tools: list[tuple[str, Any]], env: ToolEnv, tenant: str = "") -> None:
        for where, tool in tools:
            if env.images is None:
                raise InvalidRequest("The image_generation tool needs an images endpoint: start Parley with "
                                     "--images-upstream (an OpenAI-compatible base URL serving /images/generations "
                                     "and /images/edits).", param=where, code="image_generation_not_configured")
            mask = tool.input_image_mask
            if mask is not None and mask.file_id is not None and (
                    env.files is None or await env.files.get(mask.file_id, tenant) is None):
                raise InvalidRequest(f"No file with id '{mask.file_id}' found.",
                                     param=f"{where}.input_image_mask.file_id", code="file_not_found")

    def bind(self, tools: list[Any], context: BindContext) -> Binding | None:
        if not tools:
            return None
        given = [part for item in context.input if isinstance(item, MessageItem) and item.role == "user"
                 and isinstance(item.content, list) for part in item.content if isinstance(part, InputImage)]
        return ImageGenerationBinding(context.env.images, tools[0], context.env, context.tenant, given,
                                      _earlier_images(context))


KIND = ImageGenerationKind()
