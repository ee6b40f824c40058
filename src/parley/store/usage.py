"""Usage counts per minute and per hour, kept as responses end: what the console's overview charts read.

Each final state written adds one to its tenant's minute and hour (those the response was created in), in
the same transaction as the write (several writes' sums together when their transaction is shared), so a
count is never lost or doubled: a write that changes nothing (a final state stored before it) counts nothing.
The statements are plain SQL that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from parley.store.tables import LATENCY_BOUNDS_MS

PERIODS = (60, 3600)
_SUMS = ("responses", "failed", "input_tokens", "output_tokens", "timed",
         *(f"ms_{bound}" for bound in LATENCY_BOUNDS_MS), "ms_over")
MAX_ROWS = 500  # rows per statement (SQLite allows 32,766 parameters in one)
# (table, its columns as the rows give them, its key, what a row that exists already gets)
_USAGE = ("parley_usage", ("period", "tenant", "slot", "model", *_SUMS), "period, slot, tenant, model",
          ", ".join(f"{c} = parley_usage.{c} + excluded.{c}" for c in _SUMS))
_ERRORS = ("parley_usage_errors", ("period", "tenant", "slot", "code", "count"), "period, slot, tenant, code",
           "count = parley_usage_errors.count + excluded.count")


@functools.cache
def _upsert(table: str, columns: tuple[str, ...], key: str, update: str, rows: int, qmark: bool) -> Any:
    """Add ``rows`` rows to ``table``'s in one statement (one round trip on PostgreSQL): SQLite driver text with
    positional parameters (``qmark``), or SQLAlchemy text with named ones."""
    if qmark:
        values = ", ".join(["(" + ", ".join("?" * len(columns)) + ")"] * rows)
    else:
        values = ", ".join("(" + ", ".join(f":{c}{i}" for c in columns) + ")" for i in range(rows))
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} ON CONFLICT ({key}) DO UPDATE SET {update}"
    return sql if qmark else sa.text(sql)


@functools.cache
def _names(columns: tuple[str, ...], rows: int) -> tuple[str, ...]:
    return tuple(f"{c}{i}" for i in range(rows) for c in columns)


@dataclass(frozen=True)
class Ended:
    """One response that ended, as the overview counts it."""

    tenant: str
    created_at: float
    failed: bool
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    duration_ms: float | None = None
    error_code: str | None = None

    def bucket(self) -> str | None:
        """Its latency column (``None``: a response with no duration, one failed by crash recovery)."""
        if self.duration_ms is None:
            return None
        return next((f"ms_{bound}" for bound in LATENCY_BOUNDS_MS if self.duration_ms <= bound), "ms_over")


def count(conn: sa.Connection, ended: Iterable[Ended], driver: Any = None) -> None:
    """Add ``ended`` to their minutes and hours, on ``conn``'s transaction (through the SQLite driver's connection
    when given: the request path's statements run there).

    The sums go row by row in the order of the table's key, minutes before hours, in every transaction that
    counts: a transaction holds each row it adds to until it commits, and rows taken in one order by all of
    them cannot deadlock (several responses' counts are one transaction's when their writes are grouped).
    """
    sums: dict[tuple[int, int, str, str], list[int]] = {}
    errors: dict[tuple[int, int, str, str], int] = {}
    for one in ended:
        bucket, model = one.bucket(), (one.model or "")[:200]
        for period in PERIODS:
            slot = int(one.created_at // period)
            row = sums.setdefault((period, slot, one.tenant, model), [0] * len(_SUMS))
            row[0] += 1
            row[1] += int(one.failed)
            row[2] += one.input_tokens
            row[3] += one.output_tokens
            if bucket is not None:
                row[4] += 1
                row[_SUMS.index(bucket)] += 1
            if one.error_code:
                key = (period, slot, one.tenant, one.error_code[:100])
                errors[key] = errors.get(key, 0) + 1
    _execute(conn, driver, _USAGE, [(period, tenant, slot, model, *row)
                                    for (period, slot, tenant, model), row in sorted(sums.items())])
    _execute(conn, driver, _ERRORS, [(period, tenant, slot, code, n)
                                     for (period, slot, tenant, code), n in sorted(errors.items())])


def _execute(conn: sa.Connection, driver: Any, table: tuple[str, tuple[str, ...], str, str],
             rows: list[tuple[Any, ...]]) -> None:
    for first in range(0, len(rows), MAX_ROWS):
        chunk = rows[first:first + MAX_ROWS]
        flat = [value for row in chunk for value in row]
        if driver is not None:
            driver.execute(_upsert(*table, len(chunk), True), flat)
        else:
            conn.execute(_upsert(*table, len(chunk), False), dict(zip(_names(table[1], len(chunk)), flat)))
