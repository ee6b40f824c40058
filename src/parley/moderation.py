"""Moderated responses (the request's ``moderation``): input and output checked through the operator's
moderations endpoint (``--moderation-upstream``: OpenAI's ``/v1/moderations``, called with the ``openai`` SDK),
or by a guard model on a Chat upstream (``--moderation-guard-model``, :mod:`parley.moderation_guard`).

The turn's new input (its user messages' text, files' text and images) is checked before the model runs;
with the input policy ``block``, flagged input never reaches the model: the response ends ``incomplete``
(``content_filter``) with no output.  The output (the assistant's text) is checked when the model is done;
with the output policy ``block``, the response's events wait until it is, and flagged output is withheld
(``incomplete``, ``content_filter``, no output).  ``score`` only reports.  Either way the results are the
Response's ``moderation`` (``input`` and ``output``: a ``moderation_result`` or an ``error``).  A moderation
that cannot run fails a ``block`` response (it cannot be let through unchecked) and is an ``error`` result
for ``score``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import openai
from pydantic import Field

from parley.errors import BackendError
from parley.items import InputFile, InputImage, InputText, MessageItem
from parley.validation import StrictModel

log = logging.getLogger("parley.moderation")
MAX_TEXT = 100_000  # characters of one side sent to the endpoint (the rest is not checked)


class SidePolicy(StrictModel):
    mode: Literal["score", "block"]


class ModerationPolicy(StrictModel):
    input: SidePolicy | None = None
    output: SidePolicy | None = None


class ModerationConfig(StrictModel):
    model: str = Field(min_length=1, max_length=200)
    policy: ModerationPolicy | None = None

    def mode(self, side: str) -> str:
        chosen = getattr(self.policy, side, None) if self.policy else None
        return chosen.mode if chosen else "score"


class ModerationFailed(BackendError):
    default_code = "moderation_unavailable"


NOT_RUN = {"type": "error", "code": "not_moderated", "message": "The output was not moderated: the input was blocked."}


def input_parts(items: list[Any]) -> list[dict[str, Any]]:
    """What the moderations endpoint checks of a turn's input: its user messages' text and images."""
    parts: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, MessageItem) or item.role != "user":
            continue
        if isinstance(item.content, str):
            parts.append({"type": "text", "text": item.content})
            continue
        for part in item.content:
            if isinstance(part, InputText):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, InputFile) and part.text:
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, InputImage) and part.url:
                parts.append({"type": "image_url", "image_url": {"url": part.url}})
    return parts


def output_parts(output: list[Any]) -> list[dict[str, Any]]:
    """The assistant's text of a response's output items."""
    texts = [getattr(part, "text", None) or getattr(part, "refusal", None) or ""
             for item in output if getattr(item, "type", None) == "message" for part in item.content]
    text = "\n".join(t for t in texts if t)
    return [{"type": "text", "text": text}] if text else []


class Moderator:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0,
                                         timeout=timeout)

    async def check(self, model: str, parts: list[dict[str, Any]],
                    prompt: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The endpoint's verdict on ``parts`` as a Response's ``moderation_result`` (or its ``error``); the
        endpoint checks text on its own, so ``prompt`` (what an output answers) is not sent."""
        if not parts:
            return {"type": "moderation_result", "categories": {}, "category_applied_input_types": {},
                    "category_scores": {}, "flagged": False, "model": model}
        budget, sent = MAX_TEXT, []
        for part in parts:
            if part["type"] == "text":
                part = {"type": "text", "text": part["text"][:budget]}
                budget -= len(part["text"])
            sent.append(part)
        try:
            answer = await self.client.moderations.create(model=model, input=sent)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            return _error(f"the moderations endpoint answered HTTP {exc.status_code}")
        except openai.APIError as exc:
            return _error(f"the moderations endpoint could not be reached: {exc.__class__.__name__}")
        if not answer.results:
            return _error("the moderations endpoint sent no result")
        results = answer.results
        flagged = any(r.flagged for r in results)
        categories: dict[str, bool] = {}
        scores: dict[str, float] = {}
        applied: dict[str, list[str]] = {}
        for result in results:  # one per input part on some endpoints: the strictest of each category
            for name, value in result.categories.model_dump(by_alias=True).items():
                categories[name] = bool(categories.get(name) or value)
            for name, value in result.category_scores.model_dump(by_alias=True).items():
                scores[name] = max(scores.get(name, 0.0), float(value or 0.0))
            for name, kinds in (result.category_applied_input_types.model_dump(by_alias=True)
                                if result.category_applied_input_types else {}).items():
                applied[name] = sorted(set(applied.get(name, [])) | set(kinds or []))
        return {"type": "moderation_result", "categories": categories, "category_applied_input_types": applied,
                "category_scores": scores, "flagged": flagged, "model": answer.model or model}

    async def aclose(self) -> None:
        await self.client.close()


def _error(message: str) -> dict[str, Any]:
    log.warning("moderation failed: %s", message)
    return {"type": "error", "code": "moderation_unavailable", "message": message}


def verdict(config: ModerationConfig, side: str, result: dict[str, Any]) -> bool:
    """Whether ``result`` stops the response under the policy for ``side`` (``True``: blocked); a result that
    is an error fails a ``block`` side (raised)."""
    if config.mode(side) != "block":
        return False
    if result["type"] == "error":
        raise ModerationFailed(f"The {side} could not be moderated: {result['message']}.")
    return bool(result["flagged"])


def moderated(step: AsyncIterator[Any], config: ModerationConfig | None, moderator: Any,
              items: list[Any], state: Any) -> AsyncIterator[Any]:
    """The events of a response's agent loop (``step``), moderated as ``config`` asks: input first, then the
    output, holding the events back when the output policy blocks.  ``state`` is the run's
    (:class:`parley.engine.turn.RunState`): its output, conversation, incomplete reason and moderation.  Without
    moderation, ``step`` itself (no layer more for each token to pass)."""
    if not applies(config, moderator):
        return step
    return _moderated(step, config, moderator, items, state)  # type: ignore[arg-type]


def applies(config: ModerationConfig | None, moderator: Any) -> bool:
    """Whether a request's moderation runs (it asked for it, and the server has a moderator): its events then
    pass :func:`moderated`, which may hold them back."""
    return config is not None and moderator is not None


async def _moderated(step: AsyncIterator[Any], config: ModerationConfig, moderator: Any,
                     items: list[Any], state: Any) -> AsyncIterator[Any]:
    checked_input = await moderator.check(config.model, input_parts(items))
    state.moderation = {"input": checked_input, "output": NOT_RUN}
    if verdict(config, "input", checked_input):
        await step.aclose()  # never started: the input does not reach the model
        state.incomplete_reason = "content_filter"
        return
    hold = config.mode("output") == "block"
    history, held = len(state.conversation), []
    async for event in step:
        if hold:
            held.append(event)
        else:
            yield event
    checked_output = await moderator.check(config.model, output_parts(state.output), input_parts(items))
    state.moderation = {"input": checked_input, "output": checked_output}
    if verdict(config, "output", checked_output):
        state.output.clear()  # withheld, and not in the stored history a chained turn goes on from
        del state.conversation[history:]
        state.incomplete_reason = "content_filter"
        return
    for event in held:
        yield event
