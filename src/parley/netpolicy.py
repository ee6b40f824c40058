"""Which addresses Parley may contact on a user's behalf (MCP ``server_url``).

With API keys configured (a shared service), a URL whose host resolves to a private,
loopback, link-local or otherwise non-public address is refused unless ``--outbound-allow``
admits it (CIDR ranges or host names).  In local mode a developer's own loopback MCP server
keeps working.  The check runs before a response starts (a plain 400) and again on every HTTP
request an MCP session makes (:meth:`AddressPolicy.request_hook`), so redirects and
reconnections are checked too; the MCP SDK itself follows only same-origin redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlparse

from parley.errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressPolicy:
    def __init__(self, enforce: bool, allow: str | None = None) -> None:
        self.enforce = enforce
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

    def _admitted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return address.is_global or any(address in network for network in self.networks)

    async def check(self, url: str, param: str) -> None:
        """Raise a 400 naming ``param`` when ``url`` may not be contacted."""
        if not self.enforce:
            return
        host = (urlparse(url).hostname or "").lower()
        if not host:
            raise InvalidRequest(f"'{url}' has no host.", param=param)
        if host in self.hosts:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise InvalidRequest(f"The host '{host}' does not resolve.", param=param) from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if not self._admitted(address):
                raise InvalidRequest(
                    f"'{host}' resolves to {address}, a non-public address this server may not contact "
                    "(an operator can admit it with --outbound-allow).", param=param, code="url_not_allowed")

    def request_hook(self, param: str) -> Any:
        """An httpx(2) ``request`` event hook that re-checks every request's URL."""
        async def check(request: Any) -> None:
            await self.check(str(request.url), param)

        return check
