"""Containers handed between one host's instances over Unix sockets, including from a containers directory too deep
for a socket's path (a socket's path has room for about 107 bytes)."""

from __future__ import annotations

import os

import pytest

from parley.containers.relay import MAX_SOCKET_PATH, Forwarded, Relay, Unreachable
from parley.errors import NotFound

pytestmark = pytest.mark.anyio


async def echo(container: str, tenant: str, op: dict) -> dict:
    if container == "cntr_missing":
        raise NotFound("No such container.", param="container_id")
    return {"container": container, "tenant": tenant, "op": op}


@pytest.mark.parametrize("depth", [0, 2])
async def test_an_instance_reaches_the_holder_at_any_depth_of_the_containers_directory(tmp_path, depth) -> None:
    directory = tmp_path.joinpath(*["d" * 60] * depth)
    holder, caller = Relay(directory, "instance-holder"), Relay(directory, "instance-caller")
    assert (len(os.fsencode(holder.path("instance-holder"))) > MAX_SOCKET_PATH) == (depth > 0)
    await holder.listen(echo)
    try:
        assert holder.path("instance-holder").exists()
        ran = await caller.call("instance-holder", "cntr_1", "tenant-a", {"code": "x + 1"})
        assert ran == {"container": "cntr_1", "tenant": "tenant-a", "op": {"code": "x + 1"}}
        with pytest.raises(Forwarded) as info:
            await caller.call("instance-holder", "cntr_missing", "tenant-a", {})
        assert info.value.status_code == 404 and info.value.param == "container_id"
        with pytest.raises(Unreachable):
            await caller.call("instance-gone", "cntr_1", "tenant-a", {})
    finally:
        await holder.aclose()
        await caller.aclose()
    assert not holder.path("instance-holder").exists()
    with pytest.raises(Unreachable):  # the holder stopped: the caller takes the container over
        await Relay(directory, "instance-caller").call("instance-holder", "cntr_1", "tenant-a", {})
