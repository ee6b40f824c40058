"""Moderation by a guard model on a Chat upstream (``--moderation-guard-model``), where no moderations API is
at hand: Llama Guard 3, or any model that answers as it does (``safe``, or ``unsafe`` and a line of its
categories, ``S1,S10``).

The model is asked about the turn as a conversation: the user's text alone for the input; the user's text and
the assistant's answer for the output (the guard judges the last message).  Its categories become the moderations
API's names (``S10`` is ``hate``), with a score of 1 for those it names and 0 for the others; the ones that have no
such name keep Llama Guard's (``privacy``, ``elections``…).  A guard reads text: images in the input are not
checked by it.  Each result's ``model`` is the guard model's name.
"""

from __future__ import annotations

import logging
from typing import Any

from parley.errors import ParleyError

log = logging.getLogger("parley.moderation")
MAX_TEXT = 100_000  # characters of one side sent to the guard (the rest is not checked)
CATEGORIES = {  # Llama Guard 3's hazard categories, by the moderations API's names where it has one
    "S1": "violence", "S2": "illicit", "S3": "sexual", "S4": "sexual/minors", "S5": "defamation",
    "S6": "specialized_advice", "S7": "privacy", "S8": "intellectual_property", "S9": "illicit/violent",
    "S10": "hate", "S11": "self-harm", "S12": "sexual", "S13": "elections", "S14": "code_interpreter_abuse",
}
NAMES = sorted(set(CATEGORIES.values()))


def _text(parts: list[dict[str, Any]]) -> str:
    return "\n".join(part["text"] for part in parts if part.get("type") == "text")[:MAX_TEXT]


def verdict_of(answer: str, model: str) -> dict[str, Any]:
    """A guard's answer as a Response's ``moderation_result`` (or an ``error`` for an answer that is not one)."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    first = lines[0].lower() if lines else ""
    if first not in ("safe", "unsafe"):
        return _error(f"the guard model's answer is not a verdict: {answer[:80]!r}")
    named = {code.strip().upper() for line in lines[1:] for code in line.split(",") if code.strip()}
    flagged_names = {CATEGORIES[code] for code in named if code in CATEGORIES}
    categories = {name: name in flagged_names for name in NAMES}
    return {"type": "moderation_result", "categories": categories, "category_applied_input_types":
            {name: ["text"] for name in sorted(flagged_names)},
            "category_scores": {name: 1.0 if flagged else 0.0 for name, flagged in categories.items()},
            "flagged": first == "unsafe", "model": model}


def _error(message: str) -> dict[str, Any]:
    log.warning("moderation failed: %s", message)
    return {"type": "error", "code": "moderation_unavailable", "message": message}


class GuardModerator:
    """Checks text with the guard model through the router, as the moderations endpoint would."""

    def __init__(self, router: Any, model: str) -> None:
        self.router = router
        self.model = model

    async def check(self, model: str, parts: list[dict[str, Any]],
                    prompt: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The guard's verdict on ``parts`` (``prompt``: the user's text the parts answer, for the output)."""
        text = _text(parts)
        if not text:
            return verdict_of("safe", self.model)
        messages = [{"role": "user", "content": _text(prompt) or "(no text)"}, {"role": "assistant", "content": text}] \
            if prompt is not None else [{"role": "user", "content": text}]
        try:
            answer = await self.router.ask(self.model, messages, 32)
        except ParleyError as exc:
            return _error(f"the guard model could not be asked: {exc.message}")
        return verdict_of(answer, self.model)

    async def aclose(self) -> None:
        return None
