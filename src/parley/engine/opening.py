"""The start of a streamed, stored response: its ``in_progress`` row is written while the run's first step calls
the model, so that the first token does not wait for the database (unless the database is already writing many
rows: then the step starts once the row is written, as the response's memory would otherwise wait twice).

No event goes out before the row is written (a client that saw ``response.created`` can retrieve the response),
and no tool acts before it (:func:`opened` is awaited before a setup, a call or a progress write).  A row that
cannot be written raises :class:`~parley.engine.recorder.NotOpened` before any event: the response does not start.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from openai.types.responses import Response

from parley.engine.recorder import NotOpened, Recorder
from parley.engine.turn import RunState, Turn


# Rows being written at once (this process) from which a stream's first step waits for its row instead: under a
# burst of new streams, the database is the queue, and a stream that waits there with its model call open holds both
# at once (at 3,000 streams started together, 62 against 55 KiB per stream; bench/README.md).
OVERLAP_WRITES = 32


def begin(recorder: Recorder, turn: Turn, state: RunState, opening: Response,
          steps: AsyncIterator[Any]) -> asyncio.Future[Any] | None:
    """Start writing the row (``state.opened``) and, unless ``OVERLAP_WRITES`` rows are being written already, the
    first step; the future of the step's first event (its result ``None`` when it has none), or ``None`` when the
    step is to start once the row is written."""
    overlap = recorder.opening < OVERLAP_WRITES
    state.opened = asyncio.ensure_future(recorder.open(turn, RunState(turn.conversation), opening))
    state.opened.add_done_callback(seen)  # (its failure is raised where the run waits for it)
    if not overlap:
        return None
    first = asyncio.ensure_future(anext(steps, None))
    first.add_done_callback(seen)  # (raised where the run awaits it; not at all when the run was cut short)
    return first


async def opened(state: RunState) -> None:
    """Wait for the response's row while it is being written; raises ``NotOpened`` when it was not."""
    if state.opened is not None:
        await state.opened
        state.opened = None


async def before_events(state: RunState, first: asyncio.Future[Any] | None, steps: AsyncIterator[Any]) -> None:
    """Wait for the row before the run's first event; when it was not written, stop the agent loop and raise
    ``NotOpened`` (the response does not start)."""
    try:
        await opened(state)
    except NotOpened:
        await stopped(first, steps)
        raise


async def stopped(first: asyncio.Future[Any] | None, steps: AsyncIterator[Any]) -> None:
    """The agent loop of a response that does not start, stopped: its first step, if it runs, and its generator."""
    if first is not None:
        first.cancel()
        await asyncio.wait([first])
        seen(first)
    await steps.aclose()  # type: ignore[attr-defined]


def seen(done: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved."""
    if not done.cancelled():
        done.exception()
