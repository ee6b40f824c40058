"""The store on a database of the test's own (a module that shares the session's database says so itself)."""

from __future__ import annotations

import pytest

from parley.store import open_store


@pytest.fixture
async def store(own_db_url: str):
    store = await open_store(own_db_url)
    yield store
    await store.close()


@pytest.fixture
async def sqlite(tmp_path):
    """A store on a SQLite file of the test's own (``held.db`` in ``tmp_path``, for a second engine to open)."""
    store = await open_store(f"sqlite:///{tmp_path / 'held.db'}")
    yield store
    await store.close()
