"""Where a response's time went: each model call and each tool call, timed, kept with the stored response.

The console shows it as the turn's timeline and splits the response's wall time three ways: time waiting
for the model, time waiting for tools (the union of the calls' intervals, since the calls of one step
run together), and the rest, which is Parley's own (reading history, translating, storing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from parley.wire import json_text


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _covered(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals``."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


@dataclass
class Timeline:
    """The timed steps of one run, on ``time.perf_counter`` from ``origin`` (when the request arrived, or
    when a queued background response started to run)."""

    origin: float = field(default_factory=time.perf_counter)
    steps: list[dict[str, Any]] = field(default_factory=list)
    _model: list[tuple[float, float]] = field(default_factory=list)
    _tools: list[tuple[float, float]] = field(default_factory=list)

    def model_call(self, started: float, first_chunk: float | None, ended: float, *, messages: int,
                   items: list[str], usage: dict[str, Any] | None, error: str | None = None) -> None:
        self._model.append((started, ended))
        step: dict[str, Any] = {"kind": "model", "start_ms": _ms(started - self.origin), "ms": _ms(ended - started),
                                "messages": messages, "items": items}
        if first_chunk is not None:
            step["first_chunk_ms"] = _ms(first_chunk - started)
        if usage:
            step["usage"] = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens") if k in usage}
        if error:
            step["error"] = error
        self.steps.append(step)

    def tool_call(self, started: float, ended: float, item: Any) -> None:
        self._tools.append((started, ended))
        self.steps.append({"kind": "tool", "start_ms": _ms(started - self.origin), "ms": _ms(ended - started),
                           "item": getattr(item, "id", None), "type": getattr(item, "type", None),
                           "status": getattr(item, "status", None)})

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The steps with the split of the wall time so far."""
        now = time.perf_counter() if now is None else now
        total = now - self.origin
        model, tools = _covered(self._model), _covered(self._tools)
        waiting = _covered(self._model + self._tools)
        return {"total_ms": _ms(total), "model_ms": _ms(model), "tool_ms": _ms(tools),
                "parley_ms": _ms(max(total - waiting, 0.0)), "steps": self.steps}

    def serialized(self) -> str:
        return json_text(self.summary())
