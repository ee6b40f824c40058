"""The console's reads (parley.store.console), on SQLite and on PostgreSQL, each test on a database of its own."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
import sqlalchemy as sa

from parley.store import StoredResponse, open_store
from parley.store.base import ResponseFacts
from parley.store.console import ConsoleQueries, Filters
from parley.store.migrations import MIGRATIONS

pytestmark = pytest.mark.anyio


def stored(n: int, *, tenant: str = "", status: str = "completed", model: str = "m-a", text: str = "",
           duration_ms: float | None = 100.0, error: str | None = None, previous: str | None = None,
           created_at: float | None = None) -> StoredResponse:
    rid = f"resp_{tenant or 'local'}_{n:04d}"
    body = {"id": rid, "status": status, "model": model, "output": [],
            "error": {"code": error, "message": "x"} if error else None}
    return StoredResponse(
        id=rid, created_at=created_at if created_at is not None else 1000.0 + n, status=status, tenant=tenant,
        response_json=json.dumps(body), previous_response_id=previous,
        facts=ResponseFacts(model=model, duration_ms=duration_ms, input_tokens=10, output_tokens=5, error_code=error,
                            search_text=text or f"question {n}"))


async def test_pages_run_newest_first_and_the_cursor_continues_without_repeats(store) -> None:
    for n in range(7):
        await store.create(stored(n))
    queries = ConsoleQueries(store)
    first = await queries.page("", Filters(), limit=3)
    assert [row["id"] for row in first.rows] == ["resp_local_0006", "resp_local_0005", "resp_local_0004"]
    second = await queries.page("", Filters(), first.next_cursor, limit=3)
    third = await queries.page("", Filters(), second.next_cursor, limit=3)
    assert [row["id"] for row in second.rows + third.rows] == [f"resp_local_{n:04d}" for n in (3, 2, 1, 0)]
    assert third.next_cursor is None
    assert first.rows[0]["input_tokens"] == 10 and first.rows[0]["preview"] == "question 6"


async def test_responses_created_in_the_same_instant_are_all_paged(store) -> None:
    for n in range(5):
        await store.create(stored(n, created_at=2000.0))
    queries = ConsoleQueries(store)
    seen, cursor = [], None
    while True:
        page = await queries.page("", Filters(), cursor, limit=2)
        seen += [row["id"] for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == [f"resp_local_{n:04d}" for n in range(5)] and len(seen) == 5


@pytest.mark.parametrize("few", [2000, 1], ids=["few-matches", "many-matches"])
async def test_filters_by_status_model_time_and_text(store, few, monkeypatch) -> None:
    import parley.store.console

    monkeypatch.setattr(parley.store.console, "FEW_MATCHES", few)  # both plans of a text filter give one answer
    await store.create(stored(1, status="failed", error="server_error", text="The capital of France"))
    await store.create(stored(2, model="m-b", text="50% off_sale"))
    await store.create(stored(3, text="nothing here"))
    queries = ConsoleQueries(store)

    await store.index_text()  # (SQLite's word index is written after the responses, off the request path)

    async def ids(**filters) -> list[str]:
        return [row["id"][-4:] for row in (await queries.page("", Filters(**filters))).rows]

    assert await ids(status="failed") == ["0001"]
    assert await ids(model="m-b") == ["0002"]
    assert await ids(since=1002.0) == ["0003", "0002"]
    assert await ids(since=1001.0, until=1003.0) == ["0002", "0001"]
    assert await ids(text="capital of france") == ["0001"]  # every word, in any case
    assert await ids(text="Capit FRAN") == ["0001"]  # a word's start finds it
    assert await ids(text="capital of spain") == []
    assert await ids(text="50%") == ["0002"] and await ids(text="sale") == ["0002"]  # punctuation is no word
    assert await ids(text="%") == []  # no word at all: nothing
    assert await ids(text="resp_local_0003") == ["0003"]  # an id finds its response
    assert await ids(text="question") == []  # (each response here has text of its own)
    assert await ids(text="the", status="failed") == ["0001"] and await ids(text="o") == ["0002", "0001"]
    assert await queries.models("") == ["m-a", "m-b"]


async def test_a_tenant_sees_only_its_own_and_an_admin_sees_all(store) -> None:
    await store.create(stored(1, tenant="alice"))
    await store.create(stored(2, tenant="bob"))
    queries = ConsoleQueries(store)
    assert [r["id"] for r in (await queries.page("alice", Filters())).rows] == ["resp_alice_0001"]
    assert {r["id"] for r in (await queries.page(None, Filters())).rows} == {"resp_alice_0001", "resp_bob_0002"}
    assert await queries.response("alice", "resp_bob_0002") is None
    assert (await queries.response(None, "resp_bob_0002"))["tenant"] == "bob"
    assert await queries.statuses("alice", ["resp_bob_0002", "resp_alice_0001"]) == {"resp_alice_0001": "completed"}
    assert [b["responses"] for b in (await queries.overview("alice", 0.0, 3600.0, 3600)).buckets] == [1]


async def test_a_response_comes_with_its_chain(store) -> None:
    await store.create(stored(1))
    await store.create(stored(2, previous="resp_local_0001"))
    await store.create(stored(3, previous="resp_local_0002"))
    await store.create(stored(4, previous="resp_gone"))
    queries = ConsoleQueries(store)
    middle = await queries.response("", "resp_local_0002")
    assert middle["earlier"] == [{"id": "resp_local_0001"}] and middle["following"] == ["resp_local_0003"]
    last = await queries.response("", "resp_local_0003")
    assert [step["id"] for step in last["earlier"]] == ["resp_local_0002", "resp_local_0001"]
    assert (await queries.response("", "resp_local_0004"))["earlier"] == [{"id": "resp_gone", "missing": True}]
    assert await queries.response("", "not an id") is None


async def test_overview_aggregates_per_bucket(store) -> None:
    await store.create(stored(0, created_at=6000.0, duration_ms=40.0))
    await store.create(stored(1, created_at=6010.0, duration_ms=900.0))
    await store.create(stored(2, created_at=6070.0, duration_ms=70000.0, status="failed", error="server_error"))
    await store.create(stored(3, created_at=6150.0, duration_ms=None, status="in_progress"))
    await store.create(stored(4, created_at=6160.0, status="failed", error="rate_limit_exceeded"))
    overview = await ConsoleQueries(store).overview("", 6000.0, 6300.0, 120)  # two-minute buckets
    assert [b["responses"] for b in overview.buckets] == [3, 1, 0]  # the running one is not counted yet
    first, second, empty = overview.buckets
    assert first["input_tokens"] == 30 and first["output_tokens"] == 15 and first["failed"] == 1
    assert (first["p50_ms"], first["p99_ms"]) == (1000.0, 120000.0)  # 900 ms is in the ≤ 1 s bucket
    assert second["p50_ms"] == 100.0  # the one timed response of the bucket (100 ms)
    assert empty["p50_ms"] is None and empty["responses"] == 0
    assert overview.errors == {"server_error": 1, "rate_limit_exceeded": 1}
    assert overview.running == {"in_progress": 1}
    assert overview.models == [{"model": "m-a", "responses": 4, "failed": 2, "input_tokens": 40, "output_tokens": 20}]


async def test_a_response_is_counted_once_when_it_ends(store) -> None:
    running = stored(1, created_at=6000.0, status="in_progress", duration_ms=None)
    await store.create(running)
    queries = ConsoleQueries(store)
    assert (await queries.overview("", 6000.0, 6060.0, 60)).buckets[0]["responses"] == 0
    final = stored(1, created_at=6000.0, status="failed", error="server_error", duration_ms=250.0)
    await store.finish(final)
    await store.finish(final)  # a retried final write that already landed counts nothing more
    bucket = (await queries.overview("", 6000.0, 6060.0, 60)).buckets[0]
    assert (bucket["responses"], bucket["failed"], bucket["p50_ms"]) == (1, 1, 250.0)
    assert (await queries.overview("", 6000.0, 6060.0, 60)).errors == {"server_error": 1}


async def test_the_console_migration_fills_the_columns_of_responses_stored_before_it(own_db_url: str,
                                                                                     monkeypatch) -> None:
    import parley.store.database

    before = [entry for entry in MIGRATIONS if entry[0] < "0011"]
    monkeypatch.setattr(parley.store.database, "MIGRATIONS", before)  # a database as the release before it left it
    store = await open_store(own_db_url)
    body = {"id": "resp_old", "status": "failed", "model": "old-model", "output": [],
            "usage": {"input_tokens": 7, "output_tokens": 3}, "error": {"code": "server_error", "message": "x"}}
    await store.run(lambda conn: conn.execute(sa.text(
        "INSERT INTO parley_responses (id, tenant, created_at, status, response, messages) "
        "VALUES ('resp_old', '', 1, 'failed', :r, '[]')"), {"r": json.dumps(body)}))
    await store.close()
    monkeypatch.setattr(parley.store.database, "MIGRATIONS", MIGRATIONS)
    store = await open_store(own_db_url)
    try:
        row = (await ConsoleQueries(store).page("", Filters(model="old-model"))).rows[0]
        assert (row["id"], row["input_tokens"], row["output_tokens"], row["error_code"]) == \
            ("resp_old", 7, 3, "server_error")
    finally:
        await store.close()


async def test_deleted_responses_leave_the_word_index_and_another_tenant_cannot_delete_them(store) -> None:
    await store.create(stored(1, tenant="alice", text="unicorn pasture"))
    await store.create(stored(2, tenant="alice", text="unicorn stable", created_at=10.0))
    await store.index_text()
    queries = ConsoleQueries(store)
    assert await store.delete("resp_alice_0001", "bob") is False
    assert [r["id"] for r in (await queries.page("alice", Filters(text="pasture"))).rows] == ["resp_alice_0001"]
    assert await store.delete("resp_alice_0001", "alice") is True
    assert (await queries.page("alice", Filters(text="unicorn"))).rows[0]["id"] == "resp_alice_0002"
    assert await store.sweep(before=100.0) == 1  # retention takes the old one
    assert (await queries.page("alice", Filters(text="unicorn"))).rows == []
    if not store.is_postgres:  # SQLite's index is a table of its own: nothing is left in it
        left = await store.run(
            lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_response_search")).scalar())
        assert left == 0


async def test_a_response_is_found_by_its_text_once_it_ended(store) -> None:
    running = stored(1, status="in_progress", text="the question", duration_ms=None)
    await store.create(running)
    queries = ConsoleQueries(store)
    await store.index_text()
    assert (await queries.page("", Filters(text="answer"))).rows == []
    await store.finish(stored(1, text="the question\nthe answer"))
    await store.index_text()
    assert [r["id"] for r in (await queries.page("", Filters(text="answer"))).rows] == ["resp_local_0001"]
    assert await store.index_text() == 0  # each response is indexed once


async def test_two_processes_on_one_sqlite_file_index_each_response_once(tmp_path) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = await open_store(url), await open_store(url)  # (each its own engine, as two processes have)
    try:
        for n in range(300):
            await first.create(stored(n, text=f"shared words {n}"))
        counts = await asyncio.gather(*(store.index_text(batch=25) for store in (first, second) for _ in range(8)))
        while await first.index_text():
            pass
        rows = await first.run(
            lambda conn: conn.execute(sa.text("SELECT count(*) FROM parley_response_search")).scalar())
        assert sum(counts) <= 300 and rows == 300
        assert len((await ConsoleQueries(second).page("", Filters(text="shared"), limit=400)).rows) == 300
    finally:
        await first.close()
        await second.close()


def commits_of(store) -> list[int]:
    """A list that grows by one each time the store commits a transaction (SQLAlchemy's ``commit`` event)."""
    commits: list[int] = []
    engine = getattr(store.engine, "sync_engine", store.engine)
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    return commits


async def test_writes_that_arrive_together_are_committed_together_and_each_counted_once(store) -> None:
    commits = commits_of(store)
    # two tenants, three minutes across an hour's end, three latency buckets, a quarter failed
    records = [stored(n, tenant=("alice", "bob")[n % 2], created_at=7190.0 + 5 * n,
                      duration_ms=(40.0, 900.0, 70000.0)[n % 3], status="failed" if n % 4 == 0 else "completed",
                      error="server_error" if n % 4 == 0 else None, model=("m-a", "m-b")[n % 3 == 0])
               for n in range(24)]
    assert await asyncio.gather(*(store.create(r) for r in records)) == [None] * 24
    assert len(commits) == 2  # the first alone; the 23 that arrived while it was committed, in one more
    queries = ConsoleQueries(store)
    assert {r["id"] for r in (await queries.page(None, Filters(), limit=50)).rows} == {r.id for r in records}

    minutes = await queries.overview(None, 7140.0, 7320.0, 60)
    per_minute = Counter(int(r.created_at // 60) for r in records)
    assert [b["responses"] for b in minutes.buckets] == [per_minute[slot] for slot in (119, 120, 121)] == [2, 12, 10]
    failed = Counter(int(r.created_at // 60) for r in records if r.status == "failed")
    assert [b["failed"] for b in minutes.buckets] == [failed[slot] for slot in (119, 120, 121)]
    assert minutes.errors == {"server_error": 6}
    assert {m["model"]: m["responses"] for m in minutes.models} == {"m-a": 16, "m-b": 8}
    hours = await queries.overview(None, 3600.0, 10800.0, 3600)
    assert [b["responses"] for b in hours.buckets] == [2, 22]
    assert [b["input_tokens"] for b in hours.buckets] == [20, 220]
    alice, bob = [await queries.overview(tenant, 3600.0, 10800.0, 3600) for tenant in ("alice", "bob")]
    assert sum(b["responses"] for b in alice.buckets) == sum(b["responses"] for b in bob.buckets) == 12
    assert alice.errors == {"server_error": 6} and bob.errors == {}  # the failed ones are even: alice's
    # latency buckets are summed per group too: a third of each minute's responses in each bucket
    assert (minutes.buckets[1]["p50_ms"], minutes.buckets[1]["p99_ms"]) == (1000.0, 120000.0)


async def test_a_write_that_conflicts_in_a_group_leaves_the_others_stored(store) -> None:
    landed = stored(1)
    await store.create(landed)
    rival = stored(1, model="m-b")  # the same id with another final state: the stored one stays
    commits = commits_of(store)
    results = await asyncio.gather(store.create(stored(2)), store.create(stored(3)), store.create(landed),
                                   store.create(stored(4)), store.create(rival))
    assert results[:4] == [None] * 4  # a retried write whose first try landed is not an error
    assert results[4] is not None and results[4].response["model"] == "m-a"
    # the first alone; the group of four rolled back; then 3 and 4 each in its own transaction, and the two that
    # conflicted each read what is stored
    assert len(commits) == 5
    queries = ConsoleQueries(store)
    assert {r["id"] for r in (await queries.page(None, Filters())).rows} == {f"resp_local_{n:04d}" for n in range(1, 5)}
    overview = await queries.overview(None, 960.0, 1020.0, 60)
    assert overview.buckets[0]["responses"] == 4 and overview.models[0]["model"] == "m-a"  # each counted once


async def test_writes_of_a_group_that_cannot_land_each_fail_and_land_when_retried(own_postgres_url) -> None:
    from parley.errors import StoreUnavailable
    from tests.contract.tcp_fronts import FaultProxy

    with FaultProxy(5432) as proxy:
        store = await open_store(own_postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), timeout_s=1.0)
        try:
            await store.create(stored(0))
            proxy.cut()
            records = [stored(n) for n in range(1, 9)]
            outcomes = await asyncio.gather(*(store.create(r) for r in records), return_exceptions=True)
            assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
            proxy.heal()
            assert await asyncio.gather(*(store.create(r) for r in records)) == [None] * 8
            overview = await ConsoleQueries(store).overview(None, 960.0, 1020.0, 60)
            assert overview.buckets[0]["responses"] == 9
        finally:
            await store.close()
