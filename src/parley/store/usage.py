"""Usage counts per minute and per hour, kept as responses end: what the console's overview charts read.

Each final state written adds one to its tenant's minute and hour (those the response was created in), in
the same transaction as the write, so a count is never lost or doubled: a write that changes nothing (a final
state stored before it) counts nothing.  The statements are plain SQL that SQLite and PostgreSQL both run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from parley.store.tables import LATENCY_BOUNDS_MS

PERIODS = (60, 3600)
# Both periods' rows in one statement (one round trip on PostgreSQL): ":slot0" is the minute, ":slot1" the hour.
_ROWS = ", ".join(f"({period}, :tenant, :slot{i}, :model, 1, :failed, :input_tokens, :output_tokens, :timed{{one}})"
                  for i, period in enumerate(PERIODS))


def _upsert(bucket: str | None) -> str:
    """The count of one ended response, in latency ``bucket`` (a column), or in none (a response with no
    duration, one failed by crash recovery)."""
    column, one = (f", {bucket}", ", 1") if bucket else ("", "")
    tail = f", {bucket} = parley_usage.{bucket} + excluded.{bucket}" if bucket else ""
    return (
        "INSERT INTO parley_usage (period, tenant, slot, model, responses, failed, input_tokens, output_tokens, "
        f"timed{column}) VALUES {_ROWS.format(one=one)} ON CONFLICT (period, slot, tenant, model) DO UPDATE SET "
        "responses = parley_usage.responses + excluded.responses, failed = parley_usage.failed + excluded.failed, "
        "input_tokens = parley_usage.input_tokens + excluded.input_tokens, "
        "output_tokens = parley_usage.output_tokens + excluded.output_tokens, "
        f"timed = parley_usage.timed + excluded.timed{tail}"
    )


_BY_BUCKET = {bound: _upsert(f"ms_{bound}") for bound in LATENCY_BOUNDS_MS}
_OVER = _upsert("ms_over")
_UNTIMED = _upsert(None)
_ERROR = ("INSERT INTO parley_usage_errors (period, tenant, slot, code, count) VALUES "
          + ", ".join(f"({period}, :tenant, :slot{i}, :code, 1)" for i, period in enumerate(PERIODS))
          + " ON CONFLICT (period, slot, tenant, code) DO UPDATE SET count = parley_usage_errors.count + 1")


# The statements as SQLAlchemy text, built once (building one per write was a fifth of PostgreSQL's statement time).
_TEXT = {sql: sa.text(sql) for sql in (*_BY_BUCKET.values(), _OVER, _UNTIMED, _ERROR)}


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

    def statements(self) -> list[tuple[str, dict[str, Any]]]:
        if self.duration_ms is None:
            sql = _UNTIMED
        else:
            sql = next((_BY_BUCKET[b] for b in LATENCY_BOUNDS_MS if self.duration_ms <= b), _OVER)
        slots = {f"slot{i}": int(self.created_at // period) for i, period in enumerate(PERIODS)}
        out = [(sql, {"tenant": self.tenant, **slots, "model": (self.model or "")[:200], "failed": int(self.failed),
                      "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                      "timed": int(self.duration_ms is not None)})]
        if self.error_code:
            out.append((_ERROR, {"tenant": self.tenant, **slots, "code": self.error_code[:100]}))
        return out


def count(conn: sa.Connection, ended: Ended, driver: Any = None) -> None:
    """Add ``ended`` to its minute and hour, on ``conn``'s transaction (through the SQLite driver's connection when
    given: the request path's statements run there)."""
    for sql, values in ended.statements():
        if driver is not None:
            driver.execute(sql, values)
        else:
            conn.execute(_TEXT[sql], values)
