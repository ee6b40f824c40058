"""Several processes starting at once on a new database (``--workers``) migrate it in turn: every store opens,
and each migration is applied once.  On SQLite the second process's read of what is applied used to come before
the first one's writes, and its own first ``CREATE TABLE`` failed: its worker did not start, and uvicorn stopped
the whole server."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from parley.store import open_store
from parley.store.migrations import MIGRATIONS

pytestmark = pytest.mark.anyio


async def test_eight_stores_opening_a_new_database_at_once_all_open(own_db_url) -> None:
    opened = await asyncio.gather(*(open_store(own_db_url) for _ in range(8)), return_exceptions=True)
    try:
        assert [o for o in opened if isinstance(o, BaseException)] == []
        applied = sa.text("SELECT name FROM parley_migrations")
        names = await opened[0].run(lambda conn: conn.execute(applied).scalars().all())
        assert sorted(names) == sorted(name for name, _ in MIGRATIONS)
    finally:
        for store in opened:
            if not isinstance(store, BaseException):
                await store.close()
