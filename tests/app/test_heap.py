"""The server's collector (parley.heap): a served app freezes its start-up heap and raises the youngest
generation's threshold once started; an app in someone else's process (the in-process client) leaves the
collector alone."""

from __future__ import annotations

import gc
import weakref

import pytest

from parley import heap
from parley.http.app import create_app
from parley.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def collector():
    """The test process's collector as it was, put back afterwards."""
    gc.unfreeze()
    threshold = gc.get_threshold()
    yield threshold
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_settle_frees_start_up_garbage_then_freezes_the_rest(collector) -> None:
    kept = Node()
    garbage = weakref.ref(Node())
    assert garbage() is not None  # a cycle outlives its last reference until a collection
    heap.settle()
    assert garbage() is None  # collected, not frozen for the life of the process
    assert gc.get_freeze_count() > 1000
    assert gc.get_threshold() == (heap.YOUNG, collector[1], collector[2])
    assert not any(o is kept for o in gc.get_objects())  # frozen: in no generation a collection walks
    gc.collect()
    assert kept.me is kept


@pytest.mark.parametrize("server", [True, False])
async def test_only_a_served_app_settles(backend, tmp_path, collector, server) -> None:
    app = create_app(Settings(upstream=backend.url, db=f"sqlite:///{tmp_path / 'p.db'}"), server=server)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        if server:
            assert gc.get_freeze_count() > 1000
            assert gc.get_threshold()[0] == heap.YOUNG
        else:
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == collector
