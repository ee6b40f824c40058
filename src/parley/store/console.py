"""The console's reads of stored responses: lists, one response with its neighbours in a chain, and the
overview's aggregates.  Every read is one indexed query on the response's own columns (migration
``0011_console``), so a page costs the same with a hundred stored responses or a million.

``scope`` is the tenant a viewer sees, or ``None`` for an admin, who sees every tenant.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from parley.ids import STORED_ID
from parley.store.base import NOT_ENDED
from parley.store.sql import SqlStore
from parley.store.tables import LATENCY_BOUNDS_MS, input_items, responses, usage, usage_errors

WORD = re.compile(r"[^\W_]+")  # what both word indexes take for a word: letters and digits
MAX_WORDS = 8
MAX_MODELS = 500  # the list's model filter offers at most this many
FEW_MATCHES = 2000  # up to this many, SQLite finds a text filter's page from the word index's matches
_LISTED = (responses.c.id, responses.c.tenant, responses.c.created_at, responses.c.status, responses.c.model,
           responses.c.duration_ms, responses.c.input_tokens, responses.c.output_tokens, responses.c.error_code,
           responses.c.previous_response_id, sa.func.substr(responses.c.search_text, 1, 160).label("preview"))


@dataclass
class Filters:
    status: str | None = None
    model: str | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    text: str | None = None


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # the cursor of the next (older) page, if there is one


@dataclass
class Overview:
    bucket_s: int
    since: float
    buckets: list[dict[str, Any]] = field(default_factory=list)  # one per bucket, oldest first
    errors: dict[str, int] = field(default_factory=dict)  # error code -> count over the range
    running: dict[str, int] = field(default_factory=dict)  # status -> responses of the range not ended yet
    models: list[dict[str, Any]] = field(default_factory=list)  # per model over the range, busiest first


def scoped(query: Any, scope: str | None, table: Any = responses) -> Any:
    """``query`` narrowed to ``scope``'s rows of ``table`` (a table with a tenant column; all rows for None)."""
    return query if scope is None else query.where(table.c.tenant == scope)


def _replace_table(query: Any, table: Any) -> Any:
    """``query`` (on parley_responses) run on ``table``, a subset of its rows with the same columns."""
    from sqlalchemy.sql.util import ClauseAdapter

    return ClauseAdapter(table).traverse(query)


def _cursor(row: Any) -> str:
    return f"{row.created_at!r}:{row.id}"


def _parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    at, _, response_id = cursor.partition(":")
    try:
        return float(at), response_id
    except ValueError:
        return None


class ConsoleQueries:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def page(self, scope: str | None, filters: Filters, cursor: str | None = None, limit: int = 50) -> Page:
        """Stored responses, newest first, ``limit`` at a time; ``cursor`` continues after an earlier page."""
        query = scoped(sa.select(*_LISTED), scope)
        if filters.status:
            query = query.where(responses.c.status == filters.status)
        if filters.model:
            query = query.where(responses.c.model == filters.model)
        if filters.since is not None:
            query = query.where(responses.c.created_at >= filters.since)
        if filters.until is not None:
            query = query.where(responses.c.created_at < filters.until)
        after = _parse_cursor(cursor)
        if after is not None:  # (a row value: both databases walk the index from there)
            query = query.where(sa.tuple_(responses.c.created_at, responses.c.id) < sa.tuple_(*after))
        query = query.order_by(responses.c.created_at.desc(), responses.c.id.desc()).limit(limit + 1)
        text = (filters.text or "").strip()

        def read(conn: sa.Connection) -> list[Any]:
            return list(conn.execute(self._searched(conn, query, text, scope) if text else query).all())

        rows = await self.store.run(read)
        more = len(rows) > limit
        rows = rows[:limit]
        return Page([dict(row._mapping) for row in rows], _cursor(rows[-1]) if more and rows else None)

    def _searched(self, conn: sa.Connection, query: Any, text: str, scope: str | None) -> Any:
        """``query`` narrowed to the responses whose text holds every word of ``text`` (each as a word or the
        start of one), through the word index, or to the response whose id ``text`` is.

        Neither database plans this well alone (neither knows how many responses a word prefix matches), so
        the plan is chosen here: the matches are counted first, up to FEW_MATCHES, from the word index alone.
        Few: the page is sorted from those matches, held apart from the rest of the query.  Many: the newest
        responses are walked in order, most of them matching, each checked against the word index."""
        words = WORD.findall(text.lower())[:MAX_WORDS]
        by_id = [responses.c.id == text] if STORED_ID.fullmatch(text) else []
        if not words:
            return query.where(sa.or_(*by_id) if by_id else sa.false())
        if self.store.is_postgres:
            match = sa.literal_column("search_tsv").op("@@")(
                sa.func.to_tsquery("simple", " & ".join(f"{word}:*" for word in words)))
            for setting in ("enable_seqscan", "enable_indexscan"):  # the count reads the word index (GIN)
                conn.execute(sa.text(f"SET LOCAL {setting} = off"))
            few = list(conn.execute(scoped(sa.select(responses.c.id).where(match), scope)
                                    .limit(FEW_MATCHES + 1)).scalars())
            for setting in ("enable_seqscan", "enable_indexscan"):
                conn.execute(sa.text(f"SET LOCAL {setting} = on"))
            if len(few) > FEW_MATCHES:
                conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))  # walk the newest in order
                return query.where(sa.or_(*by_id, match))
            hit = responses.c.id.in_(few)
        else:
            indexed = sa.select(sa.literal_column("rowid")).select_from(sa.table("parley_response_search")).where(
                sa.literal_column("parley_response_search").op("MATCH")(" AND ".join(f'"{w}"*' for w in words)))
            few = list(conn.execute(indexed.limit(FEW_MATCHES + 1)).scalars())
            if len(few) > FEW_MATCHES:  # (the unary + keeps SQLite from driving the query from the matches)
                return query.where(sa.or_(*by_id, sa.literal_column("+parley_responses.search_rowid").in_(indexed)))
            hit = responses.c.search_rowid.in_(few)
        hits = sa.select(responses).where(sa.or_(*by_id, hit)).cte("hits").prefix_with("MATERIALIZED")
        return _replace_table(query, hits)

    async def models(self, scope: str | None) -> list[str]:
        """The models of ended responses, for the list's filter: read from the hourly usage counts."""
        query = sa.select(usage.c.model).where(usage.c.period == 3600, usage.c.model != "").distinct()
        query = scoped(query, scope, usage).limit(MAX_MODELS)
        return sorted(await self.store.run(lambda conn: list(conn.execute(query).scalars())))

    async def statuses(self, scope: str | None, ids: list[str]) -> dict[str, str]:
        """The status of each of ``ids`` (a page's running responses, polled)."""
        ids = [i for i in ids if STORED_ID.fullmatch(i)][:200]
        if not ids:
            return {}
        query = scoped(sa.select(responses.c.id, responses.c.status).where(responses.c.id.in_(ids)), scope)
        return dict(await self.store.run(lambda conn: [tuple(r) for r in conn.execute(query).all()]))

    async def response(self, scope: str | None, response_id: str) -> dict[str, Any] | None:
        """One stored response with everything the console shows of it: the Response object, the chat
        messages of its last model call, its input items, its timeline, and its neighbours in its chain."""
        if not STORED_ID.fullmatch(response_id):
            return None

        def read(conn: sa.Connection) -> dict[str, Any] | None:
            row = conn.execute(scoped(sa.select(responses).where(responses.c.id == response_id), scope)).first()
            if row is None:
                return None
            items = [json.loads(item) for item in conn.execute(
                sa.select(input_items.c.item).where(input_items.c.response_id == response_id)
                .order_by(input_items.c.position)).scalars()]
            chain, previous = [], row.previous_response_id
            while previous and len(chain) < 20:  # the turns before it, nearest first
                found = conn.execute(scoped(sa.select(responses.c.id, responses.c.previous_response_id)
                                             .where(responses.c.id == previous), scope)).first()
                if found is None:
                    chain.append({"id": previous, "missing": True})
                    break
                chain.append({"id": found.id})
                previous = found.previous_response_id
            following = list(conn.execute(scoped(
                sa.select(responses.c.id).where(responses.c.previous_response_id == response_id), scope)
                .order_by(responses.c.created_at).limit(20)).scalars())
            return {"row": dict(row._mapping), "input_items": items, "earlier": chain, "following": following}

        found = await self.store.run(read)
        if found is None:
            return None
        row = found.pop("row")
        return {**found, "id": row["id"], "tenant": row["tenant"], "status": row["status"],
                "created_at": row["created_at"], "response": json.loads(row["response"]),
                "messages": json.loads(row["messages"]), "duration_ms": row["duration_ms"],
                "trace": json.loads(row["trace"]) if row["trace"] else None}

    async def overview(self, scope: str | None, since: float, until: float, bucket_s: int) -> Overview:
        """Per time bucket: responses that ended, tokens, failures and latency percentiles; over the range:
        failures by error code, and the responses not ended yet.  Read from the usage counts
        (parley.store.usage) per minute or, for buckets of hours, per hour, aggregated by the database."""
        period = 3600 if bucket_s >= 3600 else 60
        first, last = int(since // period), int(-(-until // period))  # the slots the range touches
        per_bucket_slots = max(1, bucket_s // period)
        bucket = sa.cast(sa.func.floor((usage.c.slot - first) / per_bucket_slots), sa.Integer).label("bucket")
        latency = [sa.func.sum(usage.c[f"ms_{bound}"]).label(f"ms_{bound}") for bound in LATENCY_BOUNDS_MS]
        per_bucket = self._in(usage, scope, period, first, last, sa.select(
            bucket, sa.func.sum(usage.c.responses).label("responses"),
            sa.func.sum(usage.c.input_tokens).label("input_tokens"),
            sa.func.sum(usage.c.output_tokens).label("output_tokens"),
            sa.func.sum(usage.c.failed).label("failed"), sa.func.sum(usage.c.timed).label("timed"), *latency,
        )).group_by(bucket).order_by(bucket)
        errors = self._in(usage_errors, scope, period, first, last, sa.select(
            usage_errors.c.code, sa.func.sum(usage_errors.c.count))).group_by(usage_errors.c.code)
        by_model = self._in(usage, scope, period, first, last, sa.select(
            usage.c.model, sa.func.sum(usage.c.responses).label("responses"),
            sa.func.sum(usage.c.failed).label("failed"), sa.func.sum(usage.c.input_tokens).label("input_tokens"),
            sa.func.sum(usage.c.output_tokens).label("output_tokens"))).group_by(usage.c.model)
        # the responses not ended: found by status (few), then narrowed (held apart, so that neither database
        # walks the tenant's every response instead)
        not_ended = (sa.select(responses.c.tenant, responses.c.status).where(
            responses.c.status.in_(NOT_ENDED), responses.c.created_at >= since,
            responses.c.created_at < until).cte("not_ended").prefix_with("MATERIALIZED"))
        statuses = sa.select(not_ended.c.status, sa.func.count()).group_by(not_ended.c.status)
        statuses = scoped(statuses, scope, not_ended)

        def read(conn: sa.Connection) -> tuple[list[Any], ...]:
            return tuple(conn.execute(q).all() for q in (per_bucket, errors, statuses, by_model))

        rows, error_rows, running, model_rows = await self.store.run(read)
        count = max(1, -(-(last - first) // per_bucket_slots))
        by_bucket = {row.bucket: row for row in rows}
        overview = Overview(bucket_s, first * float(period), errors={code: int(n) for code, n in error_rows},
                            running={status: int(n) for status, n in running},
                            models=sorted(({"model": row.model or "(unknown)", "responses": int(row.responses),
                                            "failed": int(row.failed), "input_tokens": int(row.input_tokens),
                                            "output_tokens": int(row.output_tokens)} for row in model_rows),
                                          key=lambda m: -m["responses"]))
        for index in range(count):
            row = by_bucket.get(index)
            histogram = [int(getattr(row, f"ms_{bound}") or 0) for bound in LATENCY_BOUNDS_MS] if row else []
            timed = int(row.timed or 0) if row else 0
            overview.buckets.append({
                "start": (first + index * per_bucket_slots) * float(period),
                "responses": int(row.responses) if row else 0,
                "input_tokens": int(row.input_tokens or 0) if row else 0,
                "output_tokens": int(row.output_tokens or 0) if row else 0,
                "failed": int(row.failed or 0) if row else 0,
                "p50_ms": _percentile(histogram, timed, 0.50), "p95_ms": _percentile(histogram, timed, 0.95),
                "p99_ms": _percentile(histogram, timed, 0.99)})
        return overview

    @staticmethod
    def _in(table: sa.Table, scope: str | None, period: int, first: int, last: int, query: Any) -> Any:
        return scoped(query.where(table.c.period == period, table.c.slot >= first, table.c.slot < last), scope, table)


def _percentile(counts: list[int], total: int, q: float) -> float | None:
    """The upper bound of the latency bucket the ``q`` quantile falls in (counts per bucket, in order)."""
    if not total:
        return None
    wanted, seen = q * total, 0
    for bound, count in zip(LATENCY_BOUNDS_MS, counts):
        seen += count
        if seen >= wanted:
            return float(bound)
    return float("inf")
