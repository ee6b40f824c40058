"""The SQL store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest

from parley.store import StoredResponse, open_store
from parley.store.base import UNSTORED
from parley.store.migrations import MIGRATIONS

pytestmark = pytest.mark.anyio


def record(response_id: str, items: int = 0, tenant: str = "") -> StoredResponse:
    return StoredResponse(
        id=response_id, created_at=1.0, status="in_progress", tenant=tenant,
        response_json=json.dumps({"id": response_id, "status": "in_progress", "output": []}),
        messages=[{"role": "user", "content": "hi"}],
        input_items=[{"id": f"msg_{response_id}_{i}", "type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": str(i)}]} for i in range(items)],
    )


@pytest.fixture
async def store(db_url: str):
    store = await open_store(db_url)
    yield store
    await store.close()


async def test_create_finish_get_delete(store, request) -> None:
    rid = f"resp_{request.node.name[-30:]}".replace("[", "_").replace("]", "_")
    await store.create(record(rid, items=2))
    got = await store.get(rid)
    assert got.status == "in_progress" and got.messages == [{"role": "user", "content": "hi"}]
    final = record(rid)
    final.status, final.response = "completed", {"id": rid, "status": "completed", "output": [{"x": "é"}]}
    final.messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    await store.finish(final)
    got = await store.get(rid)
    assert got.status == "completed" and got.response["output"] == [{"x": "é"}]
    assert got.messages[-1] == {"role": "assistant", "content": "hello"}
    assert await store.delete(rid) is True
    assert await store.get(rid) is None
    assert await store.input_items(rid) is None
    assert await store.delete(rid) is False


async def test_input_items_pagination(store) -> None:
    import secrets

    rid = f"resp_{secrets.token_hex(6)}"
    await store.create(record(rid, items=5))
    ids = [f"msg_{rid}_{i}" for i in range(5)]
    page = await store.input_items(rid, order="asc", limit=2)
    assert [i["id"] for i in page.data] == ids[:2] and page.has_more
    page = await store.input_items(rid, order="asc", limit=2, after=ids[1])
    assert [i["id"] for i in page.data] == ids[2:4] and page.has_more
    page = await store.input_items(rid, order="asc", limit=10, after=ids[3])
    assert [i["id"] for i in page.data] == ids[4:] and not page.has_more
    page = await store.input_items(rid)  # default order is desc
    assert [i["id"] for i in page.data] == ids[::-1]
    page = await store.input_items(rid, order="asc", before=ids[2])
    assert [i["id"] for i in page.data] == ids[:2]


async def test_tenants_do_not_see_each_other(store) -> None:
    import secrets

    rid = f"resp_{secrets.token_hex(6)}"
    await store.create(record(rid, tenant="alice"))
    assert await store.get(rid, "bob") is None
    assert await store.delete(rid, "bob") is False
    assert await store.input_items(rid, "bob") is None
    assert (await store.get(rid, "alice")).id == rid


async def test_migrations_are_recorded_and_idempotent(store) -> None:
    assert await store.migrate() == []
    import sqlalchemy as sa

    names = await store.run(lambda conn: conn.execute(sa.text("SELECT name FROM parley_migrations")).scalars().all())
    assert set(names) == {name for name, _ in MIGRATIONS}


async def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    import sqlalchemy as sa

    store = await open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        assert await store.run(lambda conn: conn.execute(sa.text("PRAGMA journal_mode")).scalar()) == "wal"
    finally:
        await store.close()


async def test_a_final_state_never_changes_and_a_retried_write_is_idempotent(store) -> None:
    import secrets

    rid = f"resp_{secrets.token_hex(6)}"
    running = record(rid)
    running.owner = "inst_gone"  # an instance that never beat: its responses are abandoned
    await store.create(running)
    assert rid in await store.fail_abandoned(30.0, "inst_here")
    late = record(rid)
    late.status, late.response = "completed", {"id": rid, "status": "completed", "output": [{"late": True}]}
    kept = await store.finish(late)  # the instance comes back and finishes: the failed state stays
    assert kept is not None and kept.status == "failed" and kept.response["error"]["code"] == "server_error"
    assert (await store.get(rid)).status == "failed"

    rid2 = f"resp_{secrets.token_hex(6)}"
    await store.create(record(rid2))
    final = record(rid2)
    final.status, final.response = "completed", {"id": rid2, "status": "completed", "output": []}
    assert await store.finish(final) is None
    assert await store.finish(final) is None  # a retry whose first try landed changes nothing
    assert (await store.get(rid2)).response == final.response


async def test_a_retried_create_whose_first_try_landed_is_not_an_error(store) -> None:
    import secrets

    rid = f"resp_{secrets.token_hex(6)}"
    final = record(rid, items=1)
    final.status = "completed"
    assert await store.create(final) is None
    assert await store.create(final) is None
    other = record(rid)
    other.response = {"id": rid, "status": "completed", "output": ["another"]}
    assert (await store.create(other)).response == final.response  # the stored record is answered


async def test_staleness_is_read_on_the_database_clock(store, monkeypatch) -> None:
    import secrets
    import time

    rid = f"resp_{secrets.token_hex(6)}"
    running = record(rid)
    running.owner = f"inst_{secrets.token_hex(4)}"
    await store.create(running)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # this host's clock is an hour behind
    await store.heartbeat(running.owner)
    monkeypatch.setattr(time, "time", real)
    assert rid not in await store.fail_abandoned(30.0, "inst_other")  # it beat just now, by the database's clock
    assert (await store.get(rid)).status == "in_progress"


async def test_an_instance_fails_its_own_rows_it_no_longer_runs(store) -> None:
    import secrets

    me = f"inst_{secrets.token_hex(4)}"
    await store.heartbeat(me)
    running, orphan = (f"resp_{secrets.token_hex(6)}" for _ in range(2))
    for rid in (running, orphan):
        row = record(rid)
        row.owner = me
        await store.create(row)
    failed = await store.fail_abandoned(30.0, me, frozenset({running}))
    assert orphan in failed and running not in failed
    assert (await store.get(orphan)).response["error"]["message"] == UNSTORED
    assert (await store.get(running)).status == "in_progress"



async def test_server_side_items_are_stored_with_their_call_ids(store, request) -> None:
    rid = f"resp_pend_{request.node.name[-20:]}".replace("[", "_").replace("]", "_")
    await store.create(record(rid))
    assert (await store.get(rid)).call_ids == {}
    final = record(rid)
    final.status, final.call_ids = "completed", {"mcpr_1": "call_a", "ws_2": "call_b"}
    final.messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_b", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "[1] Result"}]
    final.output_ids = ["mcpr_1", "ws_2"]
    await store.finish(final)
    assert (await store.get(rid)).call_ids == {"mcpr_1": "call_a", "ws_2": "call_b"}
    call, answer = await store.find_call("ws_2")
    assert call["id"] == "call_b" and answer["content"] == "[1] Result"
    assert await store.find_call("mcpr_1") is None  # its call has no answer in the stored messages
    assert await store.find_call("ws_2", "other-tenant") is None


async def test_items_are_found_by_id_in_outputs_and_inputs_of_the_tenant_only(store, request) -> None:
    rid = f"resp_find_{request.node.name[-20:]}".replace("[", "_").replace("]", "_")
    final = record(rid, items=1, tenant="t1")
    final.status = "completed"
    final.response = {"id": rid, "status": "completed", "output": [{"id": f"msg_out_{rid}", "type": "message"}]}
    final.output_ids = [f"msg_out_{rid}"]
    await store.create(final)
    assert await store.find_item(f"msg_out_{rid}", "t1") == {"id": f"msg_out_{rid}", "type": "message"}
    assert (await store.find_item(f"msg_{rid}_0", "t1"))["content"][0]["text"] == "0"
    assert await store.find_item(f"msg_out_{rid}", "t2") is None
    assert await store.find_item("msg_nothing", "t1") is None
    await store.delete(rid, "t1")
    assert await store.find_item(f"msg_out_{rid}", "t1") is None


async def test_a_connection_lost_in_the_middle_of_a_statement_is_unavailable(postgres_url: str) -> None:
    """asyncpg reports it as a plain driver error ("connection was closed in the middle of operation"): it is
    the database's failure, a 503 for the client, never a 500; the next operation gets a new connection."""
    import threading

    import sqlalchemy as sa

    from parley.errors import StoreUnavailable
    from tests.contract.tcp_fronts import FaultProxy

    with FaultProxy(5432) as proxy:
        store = await open_store(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), timeout_s=5.0)
        try:
            threading.Timer(0.3, proxy.cut).start()
            with pytest.raises(StoreUnavailable):
                await store.run(lambda conn: conn.execute(sa.text("SELECT pg_sleep(3)")).scalar())
            proxy.heal()
            assert await store.run(lambda conn: conn.execute(sa.text("SELECT 1")).scalar()) == 1
        finally:
            await store.close()


async def test_a_statement_the_requests_data_breaks_is_its_400_and_the_store_stays_available(store) -> None:
    """An expression too large for SQLite, a NUL PostgreSQL cannot keep: the request's fault (a 400), not the
    database's absence (a 503 that would refuse every tenant's stored creates)."""
    import sqlalchemy as sa

    from parley.errors import InvalidRequest

    too_wide = sa.or_(*(sa.literal(i) == sa.literal(i + 1) for i in range(20_000)))
    nul = sa.select(sa.cast(sa.literal("a\x00b"), sa.Text))
    for statement, refused in ((sa.select(sa.literal(1)).where(too_wide), True), (nul, store.is_postgres)):
        if refused:
            with pytest.raises(InvalidRequest) as info:
                await store.run(lambda conn: conn.execute(statement).all())
            assert info.value.status_code == 400 and "database refused" in info.value.message
        else:
            await store.run(lambda conn: conn.execute(statement).all())
        assert store.available
    assert await store.run(lambda conn: conn.execute(sa.select(sa.literal(1))).scalar()) == 1


async def test_a_read_past_the_store_timeout_is_a_504_and_the_store_stays_available(own_db_url: str) -> None:
    """A read the database is slow to finish (a search of a large store on a cold cache) is cancelled at the store
    timeout, by PostgreSQL's statement timeout or by SQLite's progress handler: that request's 504, not the
    database's absence (a 503 that makes the instance unready for every tenant)."""
    import sqlalchemy as sa

    from parley.errors import StoreTimeout
    from parley.store.database import open_engine
    from parley.store.sql import SqlStore

    await (await open_store(own_db_url)).close()  # migrated under the default timeout: what is timed is the read
    store = SqlStore(open_engine(own_db_url, 0.5), 0.5)
    try:
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
        slow = sa.text("SELECT pg_sleep(60)" if store.is_postgres else endless)
        with pytest.raises(StoreTimeout) as info:
            await store.read(lambda conn: conn.execute(slow).scalar())
        assert info.value.status_code == 504 and info.value.code == "store_timeout"
        assert store.available
        assert await store.read(lambda conn: conn.execute(sa.select(sa.literal(1))).scalar()) == 1
    finally:
        await store.close()
