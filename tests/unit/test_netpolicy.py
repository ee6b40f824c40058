"""The outbound address policy for URLs Parley contacts on a user's behalf."""

from __future__ import annotations

import pytest

from parley.errors import InvalidRequest
from parley.netpolicy import AddressPolicy

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/mcp", "http://localhost/sse", "http://10.1.2.3/mcp",
                                 "http://192.168.0.5/mcp", "http://169.254.169.254/latest", "http://[::1]:8/mcp",
                                 "http://0.0.0.0/x"])
async def test_non_public_addresses_are_refused_when_enforced(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await AddressPolicy(enforce=True).check(url, "tools[0].server_url")
    assert info.value.param == "tools[0].server_url" and info.value.status_code == 400


async def test_public_addresses_pass_and_local_mode_allows_everything() -> None:
    await AddressPolicy(enforce=True).check("http://93.184.215.14/mcp", "p")
    await AddressPolicy(enforce=False).check("http://127.0.0.1:9/mcp", "p")


async def test_the_allowlist_admits_ranges_and_hosts() -> None:
    policy = AddressPolicy(enforce=True, allow="127.0.0.0/8, mcp.internal")
    await policy.check("http://127.0.0.1:9/mcp", "p")
    await policy.check("http://mcp.internal/mcp", "p")
    with pytest.raises(InvalidRequest):
        await policy.check("http://10.0.0.1/mcp", "p")


async def test_every_address_a_name_resolves_to_is_checked() -> None:
    async def resolve(host: str) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]  # one public, one private: refused

    with pytest.raises(InvalidRequest) as info:
        await AddressPolicy(enforce=True, resolve=resolve).check("http://mixed.example/mcp", "p")
    assert "10.0.0.7" in info.value.message and info.value.code == "url_not_allowed"


@pytest.mark.parametrize("host", ["[64:ff9b::7f00:1]", "[64:ff9b::a9fe:a9fe]", "[2002:7f00:1::]", "[2002:a00:1::1]",
                                  "[::127.0.0.1]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[64:ff9b:1::a00:1]",
                                  "[2001:0:4136:e378:8000:63bf:80ff:fffe]"])
async def test_ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address(host: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await AddressPolicy(enforce=True).check(f"http://{host}:8080/mcp", "p")
    assert info.value.code == "url_not_allowed"


async def test_embedded_public_ipv4_and_admitted_ranges_pass() -> None:
    await AddressPolicy(enforce=True).check("http://[64:ff9b::5db8:d70e]/mcp", "p")  # NAT64 of 93.184.215.14
    await AddressPolicy(enforce=True).check("http://[2002:5db8:d70e::1]/mcp", "p")  # 6to4 of 93.184.215.14
    await AddressPolicy(enforce=True, allow="127.0.0.0/8").check("http://[64:ff9b::7f00:1]/mcp", "p")


@pytest.mark.parametrize("url", ["http://127.0.0.1:5432\\@1.1.1.1/x.png", "http://1.1.1.1\\@127.0.0.1/x",
                                 "http://93.184.215.14 /x", "http://93.184.215.14/\tx"])
async def test_urls_parsers_read_differently_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await AddressPolicy(enforce=True).check(url, "input[0].content[0].image_url")
    assert info.value.code == "url_not_allowed" and info.value.param == "input[0].content[0].image_url"


@pytest.mark.parametrize("host", ["224.0.0.1", "233.252.0.1", "239.255.255.250", "[ff02::1]", "[ff0e::1]"])
async def test_multicast_is_never_public(host: str) -> None:
    with pytest.raises(InvalidRequest):
        await AddressPolicy(enforce=True).check(f"http://{host}/x", "p")


async def test_an_allowed_host_or_address_with_a_port_admits_that_port_alone() -> None:
    policy = AddressPolicy(enforce=True, allow="localhost:8080, 127.0.0.2:9000, [::1]:7000, 10.0.0.0/8")
    await policy.check("http://localhost:8080/mcp", "p")
    await policy.check("http://127.0.0.2:9000/mcp", "p")
    await policy.check("http://[::1]:7000/mcp", "p")
    await policy.check("http://10.1.2.3:5432/x", "p")  # a range without a port: every port
    for url in ("http://localhost:5432/x", "http://localhost/x", "http://127.0.0.2:9001/x", "http://[::1]:7001/x"):
        with pytest.raises(InvalidRequest):
            await policy.check(url, "p")
