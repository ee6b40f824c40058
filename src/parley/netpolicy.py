"""Which addresses Parley may contact on a user's behalf (MCP ``server_url``s, and image URLs that a
backend would fetch).

With API keys configured (a shared service), a URL whose host resolves to a private,
loopback, link-local or otherwise non-public address is refused unless ``--outbound-allow``
admits it (CIDR ranges or host names).  In local mode a developer's own loopback MCP server
keeps working.  The check runs before a response starts (a plain 400), and again inside every
connection an MCP session opens (:meth:`AddressPolicy.transport`): the host is resolved once,
every address it resolves to is checked, and the socket connects to a checked address.  So a
name that resolves to a public address for the first check and to a private one a moment later
(DNS rebinding) cannot reach the private one, and redirects and reconnections, each a new
connection, are checked too.  (The MCP SDK itself follows only same-origin redirects.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import httpcore2
import httpx2

from parley.errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


Resolver = Callable[[str], Awaitable[list[str]]]
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are IPv4
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: a network's own translation prefix


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``address`` reaches through a translation or tunnel, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client behind the Teredo server
    value = int(address)
    if address in NAT64 or (value >> 32 == 0 and value > 1):  # NAT64, or IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


async def system_resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class AddressPolicy:
    def __init__(self, enforce: bool, allow: str | None = None, resolve: Resolver = system_resolve) -> None:
        self.enforce = enforce
        self.resolve = resolve
        self.networks: list[Network] = []
        self.hosts: set[str] = set()
        for entry in (allow or "").split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower())

    def _listed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.networks)

    def _admitted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Public, or admitted by the operator.  An IPv6 address that carries an IPv4 address (IPv4-mapped or
        -compatible, 6to4, Teredo, NAT64) is judged by the IPv4 address it leads to; a local-use NAT64 address
        leads to one nobody can tell, so only the operator can admit it."""
        if self._listed(address):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            if address in LOCAL_NAT64:
                return False
            inner = embedded_ipv4(address)
            if inner is not None:
                return self._admitted(inner)
        return address.is_global

    async def check(self, url: str, param: str) -> None:
        """Raise a 400 naming ``param`` when ``url`` may not be contacted."""
        if not self.enforce:
            return
        host = (urlparse(url).hostname or "").lower()
        if not host:
            raise InvalidRequest(f"'{url}' has no host.", param=param)
        if host not in self.hosts:  # a name the operator admitted is resolved only when connecting
            await self.addresses(host, param)

    async def addresses(self, host: str, param: str) -> list[str]:
        """The addresses ``host`` resolves to, every one admitted; a 400 naming ``param`` otherwise."""
        host = host.lower().strip("[]")
        try:
            found = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                found = [ipaddress.ip_address(a.split("%")[0]) for a in await self.resolve(host)]
            except (socket.gaierror, UnicodeError):
                raise InvalidRequest(f"The host '{host}' does not resolve.", param=param) from None
        if not found:
            raise InvalidRequest(f"The host '{host}' does not resolve.", param=param)
        if host not in self.hosts:
            for address in found:
                if not self._admitted(address):
                    raise InvalidRequest(
                        f"'{host}' resolves to {address}, a non-public address this server may not contact "
                        "(an operator can admit it with --outbound-allow).", param=param, code="url_not_allowed")
        return [str(a) for a in found]

    def transport(self, param: str) -> httpx2.AsyncHTTPTransport:
        """An httpx(2) transport whose every connection goes to an address this policy admitted."""
        transport = httpx2.AsyncHTTPTransport()
        # httpx2 builds its pool without a way to pass a network backend; this pool is the one it would
        # build (same TLS context and limits), with the checking backend.
        transport._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(), max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=5.0, network_backend=_CheckedBackend(self, param))
        return transport


class _CheckedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves and checks the host at connect time and connects to the checked address.

    TLS still verifies the certificate against the URL's host name (httpcore passes it as
    ``server_hostname``), so pinning the address changes nothing for HTTPS.
    """

    def __init__(self, policy: AddressPolicy, param: str) -> None:
        self.policy = policy
        self.param = param
        self.inner = httpcore2.AnyIOBackend()  # the MCP SDK runs on anyio over asyncio

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        addresses = await self.policy.addresses(host, self.param)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        raise InvalidRequest("Unix sockets are not contacted on a user's behalf.", param=self.param)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
