"""PostgreSQL's pool (parley.store.database._ping_when_idle): a connection that sat idle in the pool is pinged
before use and replaced when the database dropped it; one used a moment ago is not pinged, so a drop the database
made meanwhile fails that one operation (the database's absence), and the next gets a new connection."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from parley.errors import StoreUnavailable
from parley.store.database import Database, open_engine

pytestmark = pytest.mark.anyio

PID = sa.text("SELECT pg_backend_pid()")


async def terminate(admin: Database, pid: int) -> None:
    """End the backend ``pid`` as a restart would, and wait until it is gone."""
    assert await admin.run(lambda conn: conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar())
    gone = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
    deadline = time.monotonic() + 30
    while await admin.run(lambda conn: conn.execute(gone, {"p": pid}).scalar()):
        assert time.monotonic() < deadline, "the backend never ended"
        await asyncio.sleep(0.01)


@pytest.fixture
async def admin(own_postgres_url):
    admin = Database(open_engine(own_postgres_url, 5.0))
    yield admin
    await admin.close()


async def test_an_idle_connection_the_database_dropped_is_replaced_before_use(own_postgres_url, admin) -> None:
    db = Database(open_engine(own_postgres_url, 5.0, idle_ping_s=0.0))  # every reused connection counts as idle
    try:
        first = await db.run(lambda conn: conn.execute(PID).scalar())
        await terminate(admin, first)
        second = await db.run(lambda conn: conn.execute(PID).scalar())  # pinged, replaced: no error
        assert second != first
    finally:
        await db.close()


async def test_a_connection_used_a_moment_ago_is_not_pinged(own_postgres_url, admin) -> None:
    db = Database(open_engine(own_postgres_url, 5.0, idle_ping_s=3600.0))
    try:
        first = await db.run(lambda conn: conn.execute(PID).scalar())
        await terminate(admin, first)
        with pytest.raises(StoreUnavailable):  # not pinged: the operation meets the dropped connection
            await db.run(lambda conn: conn.execute(PID).scalar())
        second = await db.run(lambda conn: conn.execute(PID).scalar())  # the pool gave it up: a new one
        assert second != first
    finally:
        await db.close()
