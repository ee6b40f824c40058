"""Chat Completions token logprobs as the Responses types (pure).

A chunk's ``choices[0].logprobs.content`` lists one entry per token of its content delta; each becomes a
``Logprob`` on the ``response.output_text.delta`` event, and all of a part's on its ``output_text`` part and
its ``response.output_text.done`` event.
"""

from __future__ import annotations

from typing import Any

from openai.types.responses import response_output_text as part_types
from openai.types.responses import response_text_delta_event as delta_types
from openai.types.responses import response_text_done_event as done_types

from parley.backends.chunk_shapes import malformed


def _entry(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str) or \
            not isinstance(raw.get("logprob"), (int, float)) or isinstance(raw.get("logprob"), bool):
        raise malformed("a logprob entry without a token and a number")
    top = raw.get("top_logprobs") or []
    if not isinstance(top, list):
        raise malformed("top_logprobs that are not a list")
    return {"token": raw["token"], "logprob": float(raw["logprob"]), "bytes": raw.get("bytes") or [],
            "top_logprobs": [_entry({**t, "top_logprobs": None}) for t in top]}


def chunk_logprobs(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The token entries of a choice's content logprobs (none when the backend sent none)."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if content is None:
        return []
    if not isinstance(content, list):
        raise malformed("logprobs.content that is not a list")
    return [_entry(raw) for raw in content]


def for_delta(entries: list[dict[str, Any]]) -> list[delta_types.Logprob]:
    return [delta_types.Logprob(token=e["token"], logprob=e["logprob"], top_logprobs=[
        delta_types.LogprobTopLogprob(token=t["token"], logprob=t["logprob"]) for t in e["top_logprobs"]])
        for e in entries]


def for_done(entries: list[dict[str, Any]]) -> list[done_types.Logprob]:
    return [done_types.Logprob(token=e["token"], logprob=e["logprob"], top_logprobs=[
        done_types.LogprobTopLogprob(token=t["token"], logprob=t["logprob"]) for t in e["top_logprobs"]])
        for e in entries]


def for_part(entries: list[dict[str, Any]]) -> list[part_types.Logprob]:
    return [part_types.Logprob(token=e["token"], logprob=e["logprob"], bytes=e["bytes"], top_logprobs=[
        part_types.LogprobTopLogprob(token=t["token"], logprob=t["logprob"], bytes=t["bytes"])
        for t in e["top_logprobs"]]) for e in entries]
