"""Containers in the store with a real bwrap session: idle past its minutes, a container expires (any instance's
sweep may do it): its processes are killed, its workspace and stored files deleted, its row kept as expired so
a late call gets a clear 400."""

from __future__ import annotations

import io
import os

import pytest
import sqlalchemy as sa

from parley.containers.service import Containers
from parley.containers.store import SqlContainers, containers
from parley.errors import InvalidRequest
from parley.sandbox.base import Limits
from parley.sandbox.bwrap import BwrapSandbox
from parley.store.files import BLOB, SqlFiles, files


@pytest.fixture
async def service(store, tmp_path):
    service = Containers(SqlContainers(store), SqlFiles(store), BwrapSandbox(tmp_path / "containers"), "inst_a",
                         limits=Limits(call_timeout_s=30), max_memory="4g")
    yield service
    await service.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.anyio
async def test_an_idle_container_expires_with_its_processes_and_files(service, store, tmp_path) -> None:
    container = await service.create("t1", "idle", file_ids=[], minutes=20, memory_limit=None)
    await service.container_files.add(container, "input.txt", io.BytesIO(b"uploaded"))
    ran = await service.python(container, "open('/mnt/data/out.txt', 'w').write('written')")
    assert [f.path for f in ran.changed] == ["/mnt/data/out.txt"]
    session = service.live[container.id].session
    kernel = session.kernel_pid  # type: ignore[attr-defined]
    assert _alive(kernel) and (tmp_path / "containers" / container.id / "out.txt").exists()
    assert await service.expire_due() == [], "not idle long enough"

    await store.run(lambda conn: conn.execute(containers.update().where(containers.c.id == container.id).values(
        last_active_at=containers.c.last_active_at - 21 * 60)))
    assert await service.expire_due() == [container.id]

    assert not _alive(kernel) and container.id not in service.live
    assert not (tmp_path / "containers" / container.id).exists()
    assert await service.store.files(container.id) == []
    blobs = await store.run(lambda conn: conn.execute(sa.select(sa.func.count()).select_from(files).where(
        files.c.purpose == BLOB)).scalar())
    assert blobs == 0
    assert (await service.get(container.id, "t1")).resource()["status"] == "expired"
    with pytest.raises(InvalidRequest) as info:
        await service.python(container, "print(1)")
    assert info.value.code == "container_expired"
