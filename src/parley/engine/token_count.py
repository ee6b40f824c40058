"""Counting the tokens of a chat request (``POST /v1/responses/input_tokens``): with the backend's own
tokenizer where it offers one (``count_tokens`` on the backend: vLLM's and llama.cpp's ``/tokenize``, the
embedded model's tokenizer), else an estimate of one token per four characters of the request's messages and
tools as JSON, the usual rule of thumb for English text and code."""

from __future__ import annotations

import json
import math
from typing import Any


def estimate(body: dict[str, Any]) -> int:
    text = json.dumps(body.get("messages", []), ensure_ascii=False) + json.dumps(body.get("tools", []) or [],
                                                                               ensure_ascii=False)
    return math.ceil(len(text) / 4)


async def count(backend: Any, body: dict[str, Any]) -> tuple[int, str]:
    """(tokens, how they were counted: ``"tokenizer"`` or ``"estimate"``)."""
    counter = getattr(backend, "count_tokens", None)
    if counter is not None:
        counted = await counter(body)
        if counted is not None:
            return counted, "tokenizer"
    return estimate(body), "estimate"
