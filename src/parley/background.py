"""Background responses: queued when accepted, run by whichever instance claims them, cancelled and followed
from any instance.

- **Accept** (:meth:`Background.enqueue`): the request was prepared like any other (so its errors are plain
  4xx); its row is stored ``queued`` with its create body and its first two events (``response.created``,
  ``response.queued``), and the answer goes out at once.
- **Run**: each instance claims queued rows, oldest first, while it runs fewer than ``max_background_runs``
  (woken at once by a local accept, else every ``background_poll_s``), prepares the request again and runs
  it through the engine like a streamed response; its rows are then ordinary ``in_progress`` rows, failed by
  recovery if the instance stops.
- **Events**: each event is encoded once.  It goes to the run's followers on this instance from memory, and
  to ``parley_response_events`` in batches (every ``FLUSH_S``, and all that is left when the run ends), so a
  follower on another instance reads them with the same ``sequence_number``.
- **Cancel**: a queued response is cancelled in the database at once; a running one is marked, and the
  instance running it (which looks for marks every ``CANCEL_POLL_S`` while it runs background responses)
  stops its agent loop and stores it ``cancelled`` with what it had produced.  If no instance does so within
  ``CANCEL_WAIT_S`` (the one running it stopped), the stored state is cancelled as it is.
- **Follow** (:meth:`Background.follow`): the kept events after ``starting_after``, then the live ones, until
  the terminal event.  A response that ended without one (its instance stopped; recovery failed it; a cancel
  that no instance carried out) gets it from its stored state once its events have been quiet for
  ``SETTLE_S``.

A cancelled response's stream ends with ``response.failed`` whose response has status ``cancelled``: the
protocol has no event of its own for a cancel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import (Response, ResponseCreatedEvent, ResponseErrorEvent, ResponseQueuedEvent,
                                    ResponseStreamEvent)

from parley.engine.engine import TERMINAL_EVENTS, Engine
from parley.engine.turn import Queued, RunState, Turn, snapshot
from parley.errors import InvalidRequest, NotFound, ParleyError, StoreUnavailable
from parley.request import parse_create
from parley.store.background import TERMINAL, Chunk, Claimed, SqlBackground
from parley.wire import event_frame, sse_frame

log = logging.getLogger("parley.background")

FLUSH_S = 0.1  # how often a run's new events are written for followers on other instances
CANCEL_POLL_S = 0.2  # how often an instance running background responses looks for cancels asked elsewhere
CANCEL_WAIT_S = 3.0  # how long a cancel waits for the running instance to stop the response
FOLLOW_POLL_S = 0.1  # how often a follower on another instance reads new events
PREPARED_KEPT = 256  # requests accepted here kept as prepared, for when this instance runs them
SETTLE_S = 2.0  # how long a finished response's events stay quiet before its stream is closed for it


def terminal_event(response_json: str, seq: int) -> Chunk:
    """The terminal event a stored final state makes (for a stream its instance could not close)."""
    response = json.loads(response_json)
    status = response.get("status")
    type_ = "response.completed" if status == "completed" else (
        "response.incomplete" if status == "incomplete" else "response.failed")
    return Chunk(seq, seq, True, sse_frame(type_, json.dumps({"type": type_, "response": response,
                                                          "sequence_number": seq})))


@dataclass
class LiveRun:
    """A background response this instance runs: its events so far (from ``first_seq``), those not yet
    written, and what wakes its followers here."""

    id: str
    first_seq: int = 2
    frames: list[str] = field(default_factory=list)
    pending_from: int = 2  # the number of the first event not yet written
    terminal: int | None = None  # the terminal event's number, once produced
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)  # batches are written in order
    state: RunState | None = None
    task: asyncio.Task[None] | None = None

    def add(self, event: ResponseStreamEvent) -> None:
        self.frames.append(event_frame(event))
        if event.type in TERMINAL_EVENTS:
            self.terminal = event.sequence_number
        self.changed.set()
        self.changed = asyncio.Event()

    def after(self, seq: int) -> list[str]:
        return self.frames[seq + 1 - self.first_seq:]

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.frames) - 1

    def cancel(self) -> bool:
        """Stop the agent loop (only there: the writes around it always complete); ``False`` when the run is
        not in it now (not yet, or no longer)."""
        if self.state is None or not self.state.stepping or self.task is None:
            return False
        if not self.state.cancel_requested:
            self.state.cancel_requested = True
            self.task.cancel()
        return True


class Background:
    """The background responses of one server instance."""

    def __init__(self, engine: Engine, store: SqlBackground, *, max_runs: int = 8, poll_s: float = 0.5,
                 max_input_items: int = 5000, grace_s: float = 30.0) -> None:
        self.engine = engine
        self.store = store
        self.max_runs = max_runs
        self.poll_s = poll_s
        self.max_input_items = max_input_items
        self.grace_s = grace_s
        self.live: dict[str, LiveRun] = {}
        # Requests accepted here, as prepared then: run here, they are not prepared again (bounded: a request
        # another instance runs leaves its entry until it is pushed out).
        self._prepared: OrderedDict[str, Turn] = OrderedDict()
        self._claimed = asyncio.Event()  # set (and replaced) when this instance starts running responses
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._runs: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        self._loops = [asyncio.create_task(loop()) for loop in (self._claim_loop, self._flush_loop,
                                                                 self._cancel_loop)]

    async def aclose(self) -> None:
        """Stop claiming; let running responses finish within the grace, then stop them (recovery elsewhere
        fails what was left ``in_progress``)."""
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        if self._runs:
            await asyncio.wait(self._runs, timeout=self.grace_s)
        for task in list(self._runs):
            task.cancel()
        if self._runs:
            await asyncio.wait(self._runs)

    # accepting

    async def enqueue(self, turn: Turn, body: dict[str, Any]) -> tuple[Response, Chunk]:
        """Store a prepared background request as ``queued``; its answer (status ``queued``) and its first
        events."""
        if turn.client_key is not None and turn.upstream.forward_client_key:
            raise InvalidRequest("This model's upstream takes the caller's own key, which Parley does not keep: "
                                 "it cannot run a response in the background.", param="background")
        state = RunState(conversation=turn.conversation)
        queued = snapshot(turn, state, "queued")
        events = [ResponseCreatedEvent(type="response.created", response=queued, sequence_number=0),
                  ResponseQueuedEvent(type="response.queued", response=queued, sequence_number=1)]
        record = self.engine.recorder.record(turn, state, queued)
        record.owner = None
        first = Chunk(0, 1, False, "".join(event_frame(e) for e in events))
        # (encrypted at rest: it may hold an MCP server's credentials; it is forgotten once the response ends)
        await self.store.enqueue(record, self.engine.cipher.encrypt(json.dumps(body)), first)
        self._prepared[turn.id] = turn
        while len(self._prepared) > PREPARED_KEPT:
            self._prepared.popitem(last=False)
        self._wake.set()
        return queued, first

    # running

    async def _claim_loop(self) -> None:
        recorder = self.engine.recorder
        while not self._closing:
            self._wake.clear()
            free = self.max_runs - len(self._runs)
            if free > 0:
                try:
                    async with recorder.guard:  # recovery must not take a row claimed a moment ago
                        claimed = await self.store.claim(recorder.instance_id, free)
                        recorder.running.update(c.id for c in claimed)
                except StoreUnavailable:
                    claimed = []
                except Exception:
                    log.exception("claiming background responses failed; retrying")
                    claimed = []
                for job in claimed:
                    live = self.live[job.id] = LiveRun(job.id)
                    task = live.task = asyncio.create_task(self._run(job, live))
                    self._runs.add(task)
                    task.add_done_callback(self._ran)
                if claimed:
                    self._claimed.set()
                    self._claimed = asyncio.Event()
                if claimed and len(claimed) == free:
                    continue  # there may be more
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._wake.set()  # a place is free

    async def _run(self, job: Claimed, live: LiveRun) -> None:
        try:
            turn = self._prepared.pop(job.id, None)
            if turn is not None:  # accepted here: prepared then
                turn.queued = True
            else:
                try:
                    request = parse_create(json.loads(self._request_of(job)), max_input_items=self.max_input_items)
                    turn = await self.engine.prepare(request, job.tenant, None, queued=Queued(
                        job.id, job.created_at, await self.store.stored_input_items(job)))
                except ParleyError as exc:  # what changed since it was accepted (its previous response is gone…)
                    await self._fail(job, exc)
                    return
            live.state = RunState(conversation=turn.conversation)
            async for event in self.engine.run(turn, live.state):
                live.add(event)  # never awaits: a cancel reaches the run only inside the engine's agent loop
        except Exception:
            log.exception("background response %s broke off", job.id)
        finally:
            self.engine.recorder.forget(job.id)
            await self._flush(live, final=True)
            self.live.pop(job.id, None)
            live.changed.set()
            try:
                await self.store.forget_request(job.id)
            except StoreUnavailable:
                log.warning("the request of background response %s stays (encrypted) until the retention sweep",
                            job.id)

    def _request_of(self, job: Claimed) -> str:
        """The create body a queued response runs, decrypted (one queued before bodies were encrypted is
        plain JSON)."""
        if job.request.startswith("{"):
            return job.request
        text = self.engine.cipher.decrypt(job.request)
        if text is None:
            raise InvalidRequest("This background response was queued by an instance with another --reasoning-key "
                                 "(instances sharing a database must share it); it cannot be run here.")
        return text

    async def _fail(self, job: Claimed, error: ParleyError) -> None:
        log.info("background response %s failed before it ran: %s", job.id, error.message)
        try:
            await self.store.end_running(job.id, "failed", {"code": error.response_error_code,
                                                            "message": error.message})
            await self.store.close_stream(job.id, terminal_event)
        except StoreUnavailable:
            log.warning("background response %s could not be failed; recovery will", job.id)

    async def _flush(self, live: LiveRun, final: bool = False) -> None:
        """Write the run's new events, in order; a failed write is tried again (at the end, for as long as a
        final write is)."""
        deadline = time.monotonic() + (self.engine.recorder.retry_s if final else 0)
        async with live.flushing:
            while live.pending_from <= live.last_seq:
                first, last = live.pending_from, live.last_seq
                chunk = Chunk(first, last, live.terminal == last, "".join(live.frames[first - live.first_seq:]))
                try:
                    await self.store.append(live.id, chunk)
                    live.pending_from = last + 1
                except StoreUnavailable:
                    if time.monotonic() > deadline:
                        return
                    await asyncio.sleep(0.2)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            for live in list(self.live.values()):
                if live.pending_from <= live.last_seq:
                    try:
                        await self._flush(live)
                    except Exception:
                        log.exception("writing the events of a background response failed")

    # cancelling

    async def _cancel_loop(self) -> None:
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            running = [rid for rid, live in self.live.items() if live.state is not None]
            if not running:
                continue
            try:
                for response_id in await self.store.cancels_requested(running):
                    live = self.live.get(response_id)
                    if live is not None:
                        live.cancel()
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("looking for cancelled background responses failed")

    async def cancel(self, response_id: str, tenant: str) -> str:
        """Cancel a background response (idempotent); its stored JSON, ``cancelled``."""
        outcome, stored = await self.store.request_cancel(response_id, tenant, terminal_event)
        if outcome == "not_found":
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        if outcome == "not_background":
            raise InvalidRequest("Only responses created with background=true can be cancelled.",
                                 param="response_id")
        if outcome == "requested":
            stored = await self._wait_cancelled(response_id)
        assert stored is not None
        status = json.loads(stored).get("status")
        if status != "cancelled":
            raise InvalidRequest(f"Cannot cancel a {status} response.", param="response_id")
        return stored

    async def _wait_cancelled(self, response_id: str) -> str | None:
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            live = self.live.get(response_id)
            if live is not None and live.cancel() and live.task is not None:  # running here: wait for its end
                await asyncio.wait({live.task}, timeout=max(0.0, deadline - time.monotonic()))
            state = await self.store.state(response_id)
            if state is None:
                raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
            if state[0] in TERMINAL:
                return state[1]
            if time.monotonic() > deadline:
                log.warning("background response %s was not stopped by its instance in time; cancelled as stored",
                            response_id)
                return await self.store.end_running(response_id, "cancelled")
            await asyncio.sleep(0.05)

    # following

    async def check_followable(self, response_id: str, tenant: str) -> None:
        """A 404 for an unknown response, a 400 for one that was not created in the background."""
        if await self.engine.store.get(response_id, tenant) is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        if not await self.store.is_background(response_id, tenant):
            raise InvalidRequest("Only a response created with background=true can be streamed again; retrieve "
                                 "it without stream.", param="stream")

    async def follow(self, response_id: str, after: int = -1, first: Chunk | None = None) -> AsyncIterator[bytes]:
        """The frames of the events after ``after``, kept and then live, until the terminal event (``first``:
        the events its create just kept)."""
        last, quiet_since = after, None
        waiting = first is not None  # nothing more is kept until the response runs: wait before reading
        if first is not None:
            yield first.after(last).encode()
            last = first.last
        while True:
            claimed = self._claimed  # taken before reading: a claim while it reads still wakes it
            live = self.live.get(response_id)
            if live is not None and last >= live.first_seq - 1:
                frames = live.after(last)
                if frames:
                    yield "".join(frames).encode()
                    last += len(frames)
                if live.terminal is not None and last >= live.terminal:
                    return  # (also when the client had every event already)
                if frames:
                    continue
                changed = live.changed
                if self.live.get(response_id) is live:
                    try:
                        await asyncio.wait_for(changed.wait(), 1.0)
                    except TimeoutError:
                        pass
                continue
            if waiting:
                waiting = False
                try:
                    await asyncio.wait_for(claimed.wait(), FOLLOW_POLL_S)
                except TimeoutError:
                    pass
                continue
            try:
                chunks = await self.store.events_after(response_id, last)
                if chunks:
                    quiet_since = None
                    ends = next((i for i, chunk in enumerate(chunks) if chunk.terminal), len(chunks) - 1)
                    yield "".join(chunk.after(last) if n == 0 else chunk.frames
                                  for n, chunk in enumerate(chunks[:ends + 1])).encode()
                    last = chunks[ends].last
                    if chunks[ends].terminal:
                        return
                    continue
                state = await self.store.state(response_id)
                if state is None:  # deleted meanwhile: the client learns why its stream ends
                    yield _deleted(response_id, last + 1)
                    return
                if state[0] in TERMINAL and response_id not in self.live:
                    closed = await self.store.terminal_seq(response_id)
                    if closed is not None and closed <= last:
                        return  # the client has every event already (starting_after at or past the end)
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= SETTLE_S:
                        await self.store.close_stream(response_id, terminal_event)
                        quiet_since = None
                        continue
            except StoreUnavailable:  # the database is away: the stream waits for it, as a poll of it would
                await asyncio.sleep(0.5)
                continue
            try:  # a claim here wakes it at once; runs on other instances are read every poll
                await asyncio.wait_for(claimed.wait(), FOLLOW_POLL_S)
            except TimeoutError:
                pass


def _deleted(response_id: str, sequence_number: int) -> bytes:
    """The error event that ends the stream of a response deleted while it was followed."""
    return event_frame(ResponseErrorEvent(
        type="error", code="response_not_found", param=None, sequence_number=sequence_number,
        message=f"Response '{response_id}' was deleted while its stream was followed.")).encode()


def make_background(engine: Engine, store: Any, settings: Any) -> Background:
    return Background(engine, SqlBackground(store), max_runs=settings.max_background_runs,
                      poll_s=settings.background_poll_s, max_input_items=settings.max_input_items,
                      grace_s=settings.shutdown_grace_s)

