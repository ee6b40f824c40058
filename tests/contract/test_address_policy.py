"""The address policy inside MCP connections: resolved once, checked, and connected to the checked address.

A real MCP server on 127.0.0.1 and the real MCP client; the policy's resolver is given in the test, so a
host name's answers can change between lookups the way a DNS-rebinding attacker makes them change.
"""

from __future__ import annotations

import pytest

from parley.errors import InvalidRequest
from parley.netpolicy import AddressPolicy
from parley.testing.mcp_server import MCPTestServer
from parley.testing.threaded import ThreadedServer
from parley.tools.mcp import MCPConnector, MCPUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["streamable-http", "sse"])
def server(request):
    with MCPTestServer(request.param, host_names=("mcp.parley-test.invalid", "rebind.parley-test.invalid")) as server:
        yield server


def _renamed(url: str, host: str) -> str:
    return url.replace("127.0.0.1", host)


async def test_the_connection_goes_to_the_address_that_was_checked(server) -> None:
    # Only the policy's resolver knows this name (the system resolver does not), so the session works only
    # if the socket is opened to the checked address rather than to a second, separate lookup.
    async def resolve(host: str) -> list[str]:
        assert host == "mcp.parley-test.invalid"
        return ["127.0.0.1"]

    policy = AddressPolicy(enforce=True, allow="127.0.0.0/8", resolve=resolve)
    session = await MCPConnector(timeout=10, policy=policy).connect(
        _renamed(server.url, "mcp.parley-test.invalid"), {})
    try:
        assert "get_boiling_point" in [tool.name for tool in await session.list_tools()]
    finally:
        await session.aclose()


async def test_a_name_that_rebinds_to_a_private_address_after_the_check_is_refused(server) -> None:
    answers = [["93.184.215.14"]]  # the first lookup (the check before the response starts) says public

    async def resolve(host: str) -> list[str]:
        return answers.pop() if answers else ["127.0.0.1"]  # every later lookup says loopback

    policy = AddressPolicy(enforce=True, resolve=resolve)
    url = _renamed(server.url, "rebind.parley-test.invalid")
    await policy.check(url, "tools[0].server_url")  # passes: the name looked public
    before = len(server.log.requests)
    with pytest.raises(InvalidRequest) as info:
        await MCPConnector(timeout=10, policy=policy).connect(url, {})
    assert info.value.code == "url_not_allowed" and "127.0.0.1" in info.value.message
    assert len(server.log.requests) == before  # nothing reached the private address


async def test_a_redirect_cannot_lead_to_a_refused_address(server) -> None:
    # An admitted server answers every MCP request with a redirect to a name that resolves to a loopback
    # address the policy refuses, where the real MCP server listens. Nothing may reach it. (Two guards hold
    # here: the MCP SDK does not follow a redirect off the endpoint's origin, and any connection it did
    # open would go through the policy, as the tests above show.)
    target = _renamed(server.url, "inner.parley-test.invalid")

    async def redirect(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", target.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    front = ThreadedServer(redirect, "redirecting server", lifespan="off")
    front.start()
    try:
        async def resolve(host: str) -> list[str]:
            return ["127.0.0.1"]  # both names are loopback; only the front one is admitted, by name

        policy = AddressPolicy(enforce=True, allow="front.parley-test.invalid", resolve=resolve)
        url = f"http://front.parley-test.invalid:{front.port}/mcp"
        await policy.check(url, "tools[0].server_url")
        before = len(server.log.requests)
        with pytest.raises(MCPUnavailable) as info:
            await MCPConnector(timeout=10, policy=policy).connect(url, {})
        assert "not followed" in info.value.message
        assert len(server.log.requests) == before
    finally:
        front.stop()


async def test_local_mode_connects_as_the_url_says(server) -> None:
    session = await MCPConnector(timeout=10, policy=AddressPolicy(enforce=False)).connect(server.url, {})
    try:
        assert await session.list_tools()
    finally:
        await session.aclose()


async def test_an_allowed_address_with_a_port_admits_that_port_alone(server) -> None:
    """``--outbound-allow 127.0.0.1:PORT`` reaches the MCP server on that port; the same address on another
    port is refused (an entry without a port admitted every port of the machine: its database too)."""
    port = int(server.url.split(":")[2].split("/")[0])
    admitted = AddressPolicy(enforce=True, allow=f"127.0.0.1:{port}")
    session = await MCPConnector(timeout=10, policy=admitted).connect(server.url, {})
    try:
        assert await session.list_tools()
    finally:
        await session.aclose()
    other = AddressPolicy(enforce=True, allow=f"127.0.0.1:{port + 1}")
    with pytest.raises((InvalidRequest, MCPUnavailable)):
        await MCPConnector(timeout=10, policy=other).connect(server.url, {})
    with pytest.raises(InvalidRequest):
        await other.check(server.url, "tools[0].server_url")
