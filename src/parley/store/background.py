"""Background responses in the store: the queue, cancel requests and the kept events of their streams.

A queued response is a row of ``parley_responses`` with status ``queued`` plus its create body in
``parley_background``.  Any instance claims queued rows, oldest first, with ``SELECT … FOR UPDATE SKIP LOCKED``
on PostgreSQL (instances never wait on each other's claims) and a conditional update on both databases (a row
is claimed once: its status goes from ``queued`` to ``in_progress`` exactly once).  From there the response is
an ordinary stored response owned by its instance, failed by recovery if that instance stops.

The events of a background response are kept in ``parley_response_events`` under their ``sequence_number``,
so a stream resumes from any instance with the numbers the first stream had.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from parley.ids import STORED_ID
from parley.store import usage
from parley.store.base import TERMINAL, StoredResponse
from parley.store.sql import SqlStore
from parley.store.tables import background, response_events, responses

# A literal, not a parameter: PostgreSQL then uses the partial index of queued rows for every plan.
_QUEUED = sa.literal_column("'queued'")


@dataclass
class Claimed:
    """A queued response this instance now runs."""

    id: str
    tenant: str
    created_at: float
    request: str  # the create body, JSON


@dataclass
class Chunk:
    """Consecutive kept events, ``first``..``last`` by ``sequence_number``, as SSE frames."""

    first: int
    last: int
    terminal: bool  # the last one is the response's terminal event
    frames: str

    def after(self, seq: int) -> str:
        """The frames of the events after ``seq``."""
        if seq < self.first:
            return self.frames
        return "".join(frame + "\n\n" for frame in self.frames.split("\n\n")[seq + 1 - self.first:-1])

    def row(self, response_id: str) -> dict[str, Any]:
        return {"response_id": response_id, "first_seq": self.first, "last_seq": self.last,
                "terminal": self.terminal, "frames": self.frames}


CancelOutcome = Literal["not_found", "not_background", "finished", "cancelled", "requested"]
# Makes the terminal event of a response from its stored JSON and sequence number (see parley.background).
TerminalEvent = Callable[[str, int], Chunk]


class SqlBackground:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        dialect = postgresql if store.is_postgres else sqlite
        self._insert_event = dialect.insert(response_events).on_conflict_do_nothing()

    async def enqueue(self, record: StoredResponse, request: str, first: Chunk) -> None:
        """Store a ``queued`` response with its create body and first events, in one transaction."""
        insert = self.store.inserter(record)

        def enqueue(conn: sa.Connection) -> None:
            insert(conn)
            conn.execute(background.insert().values(response_id=record.id, tenant=record.tenant, request=request,
                                                    cancel_requested=False))
            conn.execute(response_events.insert(), [first.row(record.id)])

        await self.store.run(enqueue)

    async def claim(self, instance: str, limit: int) -> list[Claimed]:
        """Up to ``limit`` queued responses, oldest first, now ``in_progress`` and owned by ``instance``."""
        candidates = (sa.select(responses.c.id, responses.c.response).where(responses.c.status == _QUEUED)
                      .order_by(responses.c.created_at).limit(limit))
        if self.store.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)

        def claim(conn: sa.Connection) -> list[Claimed]:
            won = []
            for row in conn.execute(candidates).all():
                data = json.loads(row.response)
                data["status"] = "in_progress"
                taken = conn.execute(responses.update().where(responses.c.id == row.id, responses.c.status == "queued")
                                     .values(status="in_progress", owner=instance, response=json.dumps(data)))
                if taken.rowcount:
                    won.append(row.id)
            if not won:
                return []
            found = conn.execute(
                sa.select(responses.c.id, responses.c.tenant, responses.c.created_at, background.c.request)
                .join(background, background.c.response_id == responses.c.id)
                .where(responses.c.id.in_(won)).order_by(responses.c.created_at)).all()
            return [Claimed(row.id, row.tenant, row.created_at, row.request) for row in found]

        return await self.store.run(claim)

    async def stored_input_items(self, claimed: Claimed) -> list[dict[str, Any]]:
        """The input items stored when the response was queued (with the ids the client was given)."""
        page = await self.store.input_items(claimed.id, claimed.tenant, limit=1 << 30, order="asc")
        return page.data if page else []

    async def is_background(self, response_id: str, tenant: str) -> bool:
        if not STORED_ID.fullmatch(response_id):
            return False
        query = sa.select(background.c.response_id).where(background.c.response_id == response_id,
                                                          background.c.tenant == tenant)
        return await self.store.run(lambda conn: conn.execute(query).first()) is not None

    async def request_cancel(self, response_id: str, tenant: str, terminal: TerminalEvent
                             ) -> tuple[CancelOutcome, str | None]:
        """Cancel a background response: a queued one is ``cancelled`` at once (with its stream's terminal
        event); a running one is marked, for the instance running it to stop it (``requested``).  Returns the
        outcome and the response's stored JSON."""
        if not STORED_ID.fullmatch(response_id):
            return "not_found", None
        query = (sa.select(responses.c.status, responses.c.response, responses.c.created_at, responses.c.model,
                           background.c.response_id.label("job"))
                 .outerjoin(background, background.c.response_id == responses.c.id)
                 .where(responses.c.id == response_id, responses.c.tenant == tenant))
        if self.store.is_postgres:
            query = query.with_for_update(of=responses)

        def cancel(conn: sa.Connection) -> tuple[CancelOutcome, str | None]:
            row = conn.execute(query).first()
            if row is None:
                return "not_found", None
            if row.job is None:
                return "not_background", row.response
            if row.status == "cancelled":
                return "cancelled", row.response
            if row.status in TERMINAL:
                return "finished", row.response
            if row.status == "in_progress":
                conn.execute(background.update().where(background.c.response_id == response_id)
                             .values(cancel_requested=True))
                return "requested", row.response
            cancelled = _ended(row.response, "cancelled")
            if not conn.execute(responses.update().where(responses.c.id == response_id,
                                                         responses.c.status == "queued")
                                .values(status="cancelled", response=cancelled, owner=None,
                                        ended_at=time.time())).rowcount:
                return "requested", row.response  # claimed meanwhile (SQLite, another process)
            self._append_terminal(conn, response_id, cancelled, terminal)
            self._forget(conn, response_id)
            usage.count(conn, [usage.Ended(tenant, row.created_at, False, row.model)])
            return "cancelled", cancelled

        return await self.store.run(cancel)

    async def end_running(self, response_id: str, status: str, error: dict[str, str] | None = None) -> str | None:
        """End a running response as it is stored: ``cancelled`` when its instance did not stop it in time (it
        stopped, or is stuck), ``failed`` when it could not start.  Returns the stored JSON as it now is."""
        def end(conn: sa.Connection) -> str | None:
            row = conn.execute(sa.select(responses.c.status, responses.c.response, responses.c.tenant,
                                         responses.c.created_at, responses.c.model)
                               .where(responses.c.id == response_id)).first()
            if row is None or row.status != "in_progress":
                return None if row is None else row.response
            ended = _ended(row.response, status, error)
            code = (error or {}).get("code")
            conn.execute(responses.update().where(responses.c.id == response_id, responses.c.status == "in_progress")
                         .values(status=status, response=ended, owner=None, error_code=code,
                                 ended_at=time.time()))
            self._forget(conn, response_id)
            usage.count(conn, [usage.Ended(row.tenant, row.created_at, status == "failed", row.model,
                                           error_code=code)])
            return ended

        return await self.store.run(end)

    async def forget_request(self, response_id: str) -> None:
        """Drop an ended response's create body: nothing of it (an MCP server's credentials) stays at rest."""
        await self.store.run(lambda conn: self._forget(conn, response_id))

    @staticmethod
    def _forget(conn: sa.Connection, response_id: str) -> None:
        conn.execute(background.update().where(background.c.response_id == response_id).values(request=""))

    async def cancels_requested(self, response_ids: list[str]) -> set[str]:
        query = sa.select(background.c.response_id).where(background.c.response_id.in_(response_ids),
                                                          background.c.cancel_requested.is_(True))
        return set(await self.store.run(lambda conn: list(conn.execute(query).scalars())))

    async def append(self, response_id: str, chunk: Chunk) -> None:
        """Keep events; events whose first number is already kept stay as they were."""
        row = chunk.row(response_id)
        await self.store.run(lambda conn: conn.execute(self._insert_event, [row]))

    async def events_after(self, response_id: str, after: int, limit: int = 100) -> list[Chunk]:
        query = (sa.select(response_events).where(response_events.c.response_id == response_id,
                                                  response_events.c.last_seq > after)
                 .order_by(response_events.c.first_seq).limit(limit))
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return [Chunk(row.first_seq, row.last_seq, row.terminal, row.frames) for row in rows]

    async def terminal_seq(self, response_id: str) -> int | None:
        """The sequence number of the terminal event kept for a response (``None`` while its stream is open)."""
        query = sa.select(response_events.c.last_seq).where(response_events.c.response_id == response_id,
                                                            response_events.c.terminal.is_(True))
        return await self.store.run(lambda conn: conn.execute(query).scalar())

    async def state(self, response_id: str) -> tuple[str, str] | None:
        """The stored status and JSON of a response (``None`` once it is deleted)."""
        query = sa.select(responses.c.status, responses.c.response).where(responses.c.id == response_id)
        row = await self.store.run(lambda conn: conn.execute(query).first())
        return None if row is None else (row.status, row.response)

    async def close_stream(self, response_id: str, terminal: TerminalEvent) -> None:
        """Give a finished response's kept events their terminal event, when its instance could not (it
        stopped, or another instance cancelled the response for it)."""
        def close(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(responses.c.status, responses.c.response)
                               .where(responses.c.id == response_id)).first()
            if row is not None and row.status in TERMINAL:
                self._append_terminal(conn, response_id, row.response, terminal)

        await self.store.run(close)

    def _append_terminal(self, conn: sa.Connection, response_id: str, response_json: str,
                         terminal: TerminalEvent) -> None:
        last = conn.execute(sa.select(response_events.c.last_seq, response_events.c.terminal)
                            .where(response_events.c.response_id == response_id)
                            .order_by(response_events.c.first_seq.desc()).limit(1)).first()
        if last is not None and last.terminal:
            return  # closed already
        conn.execute(self._insert_event, [terminal(response_json, 0 if last is None else last.last_seq + 1)
                                          .row(response_id)])


def _ended(response_json: str, status: str, error: dict[str, str] | None = None) -> str:
    data = json.loads(response_json)
    data["status"] = status
    if error is not None:
        data["error"] = error
    return json.dumps(data)
