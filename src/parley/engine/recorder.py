"""The writes of one server instance's responses, as their :class:`~parley.engine.persistence.Persistence`
says, and the recovery of the ones left ``in_progress``.

A final write is retried while the database is unreachable, and what a client is told is what the store
holds: if another instance stored a final state first (it took this one for stopped), that state stays.
The recorder knows which responses this instance runs, so the rows it owns and no longer runs (a final
write that never landed) are failed by :meth:`Recorder.recover` once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from openai.types.responses import Response

from parley.engine.turn import RunState, Turn
from parley.errors import StoreUnavailable
from parley.ids import new_id
from parley.store.base import TERMINAL, ResponseFacts, Store, StoredResponse
from parley.wire import to_json

log = logging.getLogger("parley.engine")


class NotOpened(StoreUnavailable):
    """The ``in_progress`` row could not be written: the response does not start (the client gets a 503)."""


SEARCH_TEXT_CHARS = 1000  # how much of a response's input and output text the console's text filter reads


class Recorder:
    def __init__(self, store: Store, retry_s: float = 15.0) -> None:
        self.store = store
        self.retry_s = retry_s
        self.instance_id = new_id("inst")  # owns the responses this process runs, for crash recovery
        self.running: set[str] = set()  # stored responses this instance runs now (the rest of its rows are orphans)
        self.opening = 0  # in_progress rows being written now (parley.engine.opening)
        # Held while rows become this instance's outside :meth:`open` (claims of queued responses) and by
        # recovery, so recovery never takes a row claimed a moment ago for an orphan.
        self.guard = asyncio.Lock()

    def record(self, turn: Turn, state: RunState, response: Response) -> StoredResponse:
        return StoredResponse(
            id=turn.id, tenant=turn.tenant, created_at=turn.arrived_at, status=response.status or "in_progress",
            response_json=to_json(response), messages=state.conversation,
            input_items=turn.input_items, previous_response_id=turn.request.previous_response_id,
            owner=self.instance_id, call_ids=state.call_ids,
            output_ids=[getattr(item, "id", None) or "" for item in state.output],
            facts=facts(turn, state, response),
        )

    async def open(self, turn: Turn, state: RunState, response: Response) -> None:
        """The ``in_progress`` row; raises :class:`NotOpened` when it cannot be written."""
        self.running.add(turn.id)  # before the row exists: recovery never takes a row this instance runs
        self.opening += 1
        try:
            await self.store.create(self.record(turn, state, response))
        except Exception as exc:
            self.running.discard(turn.id)
            log.warning("response %s could not be stored: %s", turn.id, exc)
            raise NotOpened("The response could not be stored; try again.") from None
        finally:
            self.opening -= 1

    async def progress(self, turn: Turn, state: RunState, response: Response) -> None:
        """The items so far; a missed progress write loses nothing lasting (the final write still decides)."""
        try:
            await self.store.progress(self.record(turn, state, response))
        except Exception:
            log.warning("progress of response %s could not be stored", turn.id, exc_info=True)

    async def close(self, turn: Turn, state: RunState, final: Response) -> Response:
        """Write the final state, retried until it lands or ``retry_s`` has passed, and return the final state
        the store holds: ``final``, or the one stored before it, which stays.  Raises
        :class:`StoreUnavailable` when the write never lands."""
        record = self.record(turn, state, final)
        deadline, pause = time.monotonic() + self.retry_s, 0.05
        try:
            while True:
                try:
                    stored = await (self.store.finish(record) if turn.persistence.at_start
                                    else self.store.create(record))
                    break
                except StoreUnavailable:
                    log.warning("final write of response %s failed; retrying", turn.id, extra={"response_id": turn.id})
                    if time.monotonic() + pause > deadline:
                        log.error("response %s could not be stored; it is failed", turn.id)
                        raise
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 2.0)
        finally:
            self.forget(turn.id)
        if stored is None:
            return final
        log.error("response %s was already %s when it finished; that state stays", turn.id, stored.status,
                  extra={"response_id": turn.id})
        return Response.model_validate_json(stored.serialized())

    def forget(self, response_id: str) -> None:
        """This instance no longer runs the response (its row, if still ``in_progress``, is recovery's)."""
        self.running.discard(response_id)

    async def recover(self, stale_s: float) -> list[str]:
        """Beat this instance's heart; fail the ``in_progress`` responses of instances silent for ``stale_s``
        seconds and this instance's own that it no longer runs.  Returns the ids failed.  Others' silence is
        judged only once this instance has itself reached the database for ``stale_s``: after an outage
        (or at start) a live peer needs that long to be heard again."""
        await self.store.heartbeat(self.instance_id)
        async with self.guard:
            return await self.store.fail_abandoned(stale_s, self.instance_id, frozenset(self.running),
                                                   others=self.store.reachable_for(stale_s))

    async def sign_off(self) -> None:
        """This instance stops cleanly: others may fail what it leaves."""
        await self.store.forget_instance(self.instance_id)


def facts(turn: Turn, state: RunState, response: Response) -> ResponseFacts:
    """The columns the console lists and filters a stored response by."""
    usage, error, ended = response.usage, response.error, response.status in TERMINAL
    return ResponseFacts(
        model=response.model,
        duration_ms=round((time.perf_counter() - state.timeline.origin) * 1000, 3) if ended else None,
        input_tokens=usage.input_tokens if usage else None, output_tokens=usage.output_tokens if usage else None,
        error_code=error.code if error else None, search_text=search_text(turn.input_items, response),
        trace=None if response.status == "queued" else state.timeline.serialized(),
        ended_at=time.time() if ended else None)


def search_text(input_items: list[dict[str, Any]], response: Response) -> str:
    """The start of a response's text: its input messages', then its answer's."""
    parts: list[str] = []
    for item in input_items:
        content = item.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    if response.status in TERMINAL:
        parts.append(response.output_text)
    return "\n".join(parts)[:SEARCH_TEXT_CHARS]
