"""Which addresses Parley may contact on a user's behalf (MCP ``server_url``s, and image URLs that a
backend would fetch).

With API keys configured (a shared service), a URL whose host resolves to a private,
loopback, link-local, multicast or otherwise non-public address is refused unless ``--outbound-allow``
admits it (CIDR ranges or host names, each on every port, or a host or address with ``:PORT`` on that
port alone).  A URL with a backslash, whitespace or a control character is refused outright: parsers
disagree on where its host is (Python reads ``http://127.0.0.1:5432\\@1.1.1.1/`` as host 1.1.1.1, a
browser-style parser as 127.0.0.1).  In local mode a developer's own loopback MCP server
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
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlparse

import httpcore2
import httpx2

from parley.errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


Resolver = Callable[[str], Awaitable[list[str]]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_WITH_PORT = re.compile(r"^(\[[^\]]+\]|[^:/\[\]]+):(\d{1,5})$")  # host:port, 1.2.3.4:port or [v6]:port
DEFAULT_PORTS = {"http": 80, "https": 443}
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


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


class AddressPolicy:
    def __init__(self, enforce: bool, allow: str | None = None, resolve: Resolver = system_resolve) -> None:
        self.enforce = enforce
        self.resolve = resolve
        self.networks: list[tuple[Network, int | None]] = []  # (range, its one port or None: every port)
        self.hosts: dict[str, set[int] | None] = {}  # name: its ports, or None: every port
        for entry in (allow or "").split(","):
            entry = entry.strip().lower()
            if not entry:
                continue
            port = None
            if (found := _WITH_PORT.match(entry)) and not _is_network(entry):
                entry, port = found.group(1).strip("[]"), int(found.group(2))
            try:
                self.networks.append((ipaddress.ip_network(entry, strict=False), port))
            except ValueError:
                ports = self.hosts.get(entry, set())
                self.hosts[entry] = None if port is None or (entry in self.hosts and ports is None) else \
                    {*(ports or ()), port}

    def _listed(self, address: Address, port: int | None) -> bool:
        return any(address in network and (only is None or only == port) for network, only in self.networks)

    def _named(self, host: str, port: int | None) -> bool:
        if host not in self.hosts:
            return False
        ports = self.hosts[host]
        return ports is None or port in ports

    def _admitted(self, address: Address, port: int | None = None) -> bool:
        """Public, or admitted by the operator.  An IPv6 address that carries an IPv4 address (IPv4-mapped or
        -compatible, 6to4, Teredo, NAT64) is judged by the IPv4 address it leads to; a local-use NAT64 address
        leads to one nobody can tell, so only the operator can admit it.  Multicast is never public."""
        if self._listed(address, port):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            if address in LOCAL_NAT64:
                return False
            inner = embedded_ipv4(address)
            if inner is not None:
                return self._admitted(inner, port)
        return address.is_global and not address.is_multicast

    async def check(self, url: str, param: str) -> None:
        """Raise a 400 naming ``param`` when ``url`` may not be contacted."""
        if not self.enforce:
            return
        if "\\" in url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
            raise InvalidRequest(f"'{param}' holds a backslash, whitespace or a control character; URL parsers "
                                 "disagree on where such a URL's host is.", param=param, code="url_not_allowed")
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        if not host:
            raise InvalidRequest(f"'{url}' has no host.", param=param)
        try:
            port = parsed.port or DEFAULT_PORTS.get(parsed.scheme.lower())
        except ValueError:
            raise InvalidRequest(f"'{param}' has no valid port.", param=param) from None
        if not self._named(host, port):  # a name the operator admitted is resolved only when connecting
            await self.addresses(host, param, port)

    async def addresses(self, host: str, param: str, port: int | None = None) -> list[str]:
        """The addresses ``host`` resolves to, every one admitted (on ``port``); a 400 naming ``param``
        otherwise."""
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
        if not self._named(host, port):
            for address in found:
                if not self._admitted(address, port):
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
        addresses = await self.policy.addresses(host, self.param, port)
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
