"""A response's writes: its insert with its input items, its progress and its final state, each in the
transaction the group commit gives it.

A response's writes are grouped (:meth:`ResponseWrites._grouped`): those that arrive while another is being
committed share the next transaction, so a busy store pays one ``BEGIN``/``COMMIT`` and one sum of usage counts
for many responses, and each caller still returns only once its own write is committed.  On SQLite the hot
statements run as ready SQL text on the driver's own connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
import sqlean
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.errors import StoreUnavailable
from parley.store import usage
from parley.store.base import NO_FACTS, TERMINAL, StoredResponse
from parley.store.database import Database
from parley.store.tables import input_items, output_items, responses
from parley.wire import json_text

T = TypeVar("T")
# Built once: constructing statements per call showed up in profiles of the request path.
_INSERT_RESPONSE = responses.insert()
_INSERT_ITEM = input_items.insert()
_INSERT_OUTPUT_ID = output_items.insert()
# A final state is written once: every write to a stored response is conditional on its still running.
_UPDATE_RUNNING = responses.update().where(responses.c.id == sa.bindparam("rid"), responses.c.status == "in_progress")


def _sqlite_text(statement: Any, **values: Any) -> str:
    """A statement as SQLite text with named parameters, compiled once."""
    from sqlalchemy.dialects import sqlite

    compiled = statement.values(**values) if values else statement
    return str(compiled.compile(dialect=sqlite.dialect(paramstyle="named")))


# The same statements as SQLite text, which the request path runs on the driver's own connection inside the
# transaction SQLAlchemy opened: a stored response's insert (response, input item, output id) took 400 µs
# through SQLAlchemy's execution layer and 270 µs this way, in a loop of 2,000 on this project's 2-core machine.
_RUNNING_TEXT = responses.update().where(responses.c.id == sa.bindparam("rid"),
                                         responses.c.status == sa.literal_column("'in_progress'"))
_HOT_SQLITE = {
    "insert_response": _sqlite_text(_INSERT_RESPONSE, **{c.name: sa.bindparam(c.name) for c in responses.c}),
    "insert_item": _sqlite_text(_INSERT_ITEM, **{c.name: sa.bindparam(c.name) for c in input_items.c}),
    "insert_output": _sqlite_text(_INSERT_OUTPUT_ID, **{c.name: sa.bindparam(c.name) for c in output_items.c}),
    "update_running": _sqlite_text(_RUNNING_TEXT, response=sa.bindparam("response"),
                                   messages=sa.bindparam("messages"), call_ids=sa.bindparam("call_ids"),
                                   trace=sa.bindparam("trace")),
    "finish_running": _sqlite_text(_RUNNING_TEXT, response=sa.bindparam("response"),
                                   messages=sa.bindparam("messages"), call_ids=sa.bindparam("call_ids"),
                                   status=sa.bindparam("status"),
                                   **{name: sa.bindparam(name) for name in NO_FACTS.columns()}),
}
_CORE = {"insert_response": _INSERT_RESPONSE, "insert_item": _INSERT_ITEM, "insert_output": _INSERT_OUTPUT_ID,
         "update_running": _UPDATE_RUNNING, "finish_running": _UPDATE_RUNNING}
GROUP_MAX = 64  # writes committed in one transaction at most (group commit)


class ResponseWrites(Database):
    """The writes of stored responses, grouped into shared transactions."""

    def __init__(self, engine: AsyncEngine | sa.Engine, timeout_s: float = 5.0) -> None:
        super().__init__(engine, timeout_s)
        self._driver_sql = engine.dialect.name == "sqlite"  # the hot statements on the driver (see _HOT_SQLITE)
        self.text_pending = asyncio.Event()  # set when a response ended: there is text to index (SQLite)
        # Group commit (see _grouped): whether a response's write is being committed, the writes waiting for
        # the next transaction, and the task that commits them.
        self._committing = False
        self._next_group: list[tuple[Callable[[sa.Connection, list[usage.Ended]], Any], asyncio.Future[Any]]] = []
        self._group_task: asyncio.Task[None] | None = None

    async def create(self, record: StoredResponse) -> StoredResponse | None:
        try:
            await self._grouped(self._insert(record))
        except (sa.exc.IntegrityError, sqlean.IntegrityError):  # a retried write whose first try landed
            return await self.run(lambda conn: self._winner(conn, record.id, record.serialized()))
        if record.status in TERMINAL:
            self.text_pending.set()
        return None

    async def _grouped(self, write: Callable[[sa.Connection, list[usage.Ended]], T]) -> T:
        """Run a response's write in a transaction of its own, or, while one is being committed, in the next
        transaction with the writes that arrive meanwhile (group commit: one ``BEGIN``/``COMMIT``, one flush of
        the log and one sum of usage counts for all of them).  Each caller returns once its own write is
        committed, so a response is still stored before its terminal event; an idle store adds no wait."""
        if self._committing:
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            self._next_group.append((write, future))
            return await future
        self._committing = True
        try:
            return await self._alone(write)
        finally:
            if self._next_group:
                self._group_task = asyncio.create_task(self._commit_groups())
            else:
                self._committing = False

    async def _commit_groups(self) -> None:
        try:
            while self._next_group:
                group, self._next_group = self._next_group[:GROUP_MAX], self._next_group[GROUP_MAX:]
                await self._commit_group(group)
        finally:
            for _, future in self._next_group:  # (only when this task itself was cancelled: the store closes)
                _settle(future, exception=StoreUnavailable("The response store is closing; try again."))
            self._next_group, self._committing = [], False

    async def _commit_group(self, group: list[tuple[Callable[[sa.Connection, list[usage.Ended]], Any],
                                                    asyncio.Future[Any]]]) -> None:
        try:
            results = await self.run(lambda conn: self._counted(conn, [write for write, _ in group]))
        except StoreUnavailable as exc:  # each caller retries its own write, as after a write of its own
            for _, future in group:
                _settle(future, exception=StoreUnavailable(str(exc)))
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exception=exc)
                return
            # One write's own fault (a retried write whose first try landed) rolled back the whole group: each
            # write again in a transaction of its own, so the others land and that one gets its own error.
            for write, future in group:
                try:
                    result = await self._alone(write)
                except Exception as own:
                    _settle(future, exception=own)
                else:
                    _settle(future, result)
        except BaseException:  # cancelled: the store closes
            for _, future in group:
                _settle(future, exception=StoreUnavailable("The response store is closing; try again."))
            raise
        else:
            for (_, future), result in zip(group, results):
                _settle(future, result)

    async def _alone(self, write: Callable[[sa.Connection, list[usage.Ended]], T]) -> T:
        """Run one response's write in a transaction of its own."""
        return (await self.run(lambda conn: self._counted(conn, [write])))[0]

    def _counted(self, conn: sa.Connection, writes: list[Callable[[sa.Connection, list[usage.Ended]], T]]) -> list[T]:
        """Run ``writes`` on ``conn``, then add the responses they ended to the usage counts, all at once."""
        ended: list[usage.Ended] = []
        results = [write(conn, ended) for write in writes]
        if ended:
            usage.count(conn, ended, self._driver(conn))
        return results

    def _driver(self, conn: sa.Connection) -> Any:
        """SQLite's own connection under ``conn`` (the request path's statements run there), else ``None``."""
        return conn.connection.driver_connection if self._driver_sql else None

    def _hot(self, conn: sa.Connection, name: str, parameters: Any) -> int:
        """Run one of the request path's statements (a dict of parameters, or a list of them); its rowcount."""
        driver = self._driver(conn)
        if driver is None:
            return conn.execute(_CORE[name], parameters).rowcount
        if isinstance(parameters, list):
            return driver.executemany(_HOT_SQLITE[name], parameters).rowcount
        return driver.execute(_HOT_SQLITE[name], parameters).rowcount

    def inserter(self, record: StoredResponse) -> Callable[[sa.Connection], None]:
        """The insert of a response with its items, as an operation (a queued background response adds its
        own rows to the same transaction)."""
        insert = self._insert(record)
        return lambda conn: self._counted(conn, [insert])[0]

    def _insert(self, record: StoredResponse) -> Callable[[sa.Connection, list[usage.Ended]], None]:
        """The insert of a response with its items; it adds the response to ``ended`` when it ended."""
        # The rows are serialized here, on the caller's thread: the store's thread only runs SQL.
        row = {"id": record.id, "tenant": record.tenant, "created_at": record.created_at, "status": record.status,
               "previous_response_id": record.previous_response_id, "response": record.serialized(),
               "messages": json_text(record.messages), "owner": record.owner, "call_ids": _call_ids(record),
               **(record.facts or NO_FACTS).columns(), "search_rowid": None}
        items = [{"response_id": record.id, "position": i, "item_id": item["id"], "item": json_text(item)}
                 for i, item in enumerate(record.input_items)]

        outputs = _output_rows(record) if record.status != "in_progress" else []
        ended = _ended(record)

        def create(conn: sa.Connection, counted: list[usage.Ended]) -> None:
            self._hot(conn, "insert_response", row)
            if ended is not None:
                counted.append(ended)
            if items:
                self._hot(conn, "insert_item", items)
            if outputs:
                self._hot(conn, "insert_output", outputs)

        return create

    async def finish(self, record: StoredResponse) -> StoredResponse | None:
        parameters = self._update_parameters(record, status=record.status, **(record.facts or NO_FACTS).columns())
        outputs = _output_rows(record)
        ended = _ended(record)

        def finish(conn: sa.Connection, counted: list[usage.Ended]) -> StoredResponse | None:
            if self._hot(conn, "finish_running", parameters):
                if outputs:
                    self._hot(conn, "insert_output", outputs)
                if ended is not None:
                    counted.append(ended)
                return None
            return self._winner(conn, record.id, parameters["response"])

        try:
            return await self._grouped(finish)
        finally:
            self.text_pending.set()

    @staticmethod
    def _winner(conn: sa.Connection, response_id: str, ours: str) -> StoredResponse | None:
        """After a write that changed nothing: ``None`` when the stored row is already this write (a retry
        whose first try landed), else the stored final state, which stays."""
        row = conn.execute(sa.select(responses).where(responses.c.id == response_id)).first()
        if row is None or row.response == ours:
            return None
        return record_of(row)

    async def progress(self, record: StoredResponse) -> None:
        parameters = self._update_parameters(record)
        await self.run(lambda conn: self._hot(conn, "update_running", parameters))

    @staticmethod
    def _update_parameters(record: StoredResponse, **values: Any) -> dict[str, Any]:
        return {"rid": record.id, "response": record.serialized(), "messages": json_text(record.messages),
                "call_ids": _call_ids(record), "trace": (record.facts or NO_FACTS).trace, **values}

    async def close(self) -> None:
        if self._group_task is not None:  # the writes already handed to it land first
            await asyncio.gather(self._group_task, return_exceptions=True)
        await super().close()


def _settle(future: asyncio.Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # its caller was cancelled; the write itself went on
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _ended(record: StoredResponse) -> usage.Ended | None:
    """What the overview counts of a final state written now (nothing for a running or queued one)."""
    if record.status not in TERMINAL:
        return None
    facts = record.facts or NO_FACTS
    return usage.Ended(record.tenant, record.created_at, record.status == "failed", facts.model,
                       facts.input_tokens or 0, facts.output_tokens or 0, facts.duration_ms, facts.error_code)


def _output_rows(record: StoredResponse) -> list[dict[str, Any]]:
    return [{"response_id": record.id, "position": i, "item_id": item_id}
            for i, item_id in enumerate(record.output_ids) if item_id]


def _call_ids(record: StoredResponse) -> str | None:
    return json_text(record.call_ids) if record.call_ids else None


def record_of(row: Any) -> StoredResponse:
    """A row of ``parley_responses`` as a :class:`StoredResponse`."""
    return StoredResponse(
        id=row.id, tenant=row.tenant, created_at=row.created_at, status=row.status,
        previous_response_id=row.previous_response_id, response_json=row.response, messages=json.loads(row.messages),
        call_ids=json.loads(row.call_ids) if row.call_ids else {},
    )
