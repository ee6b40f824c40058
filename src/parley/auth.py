"""API keys: bearer tokens mapped to tenants.

Keys come from ``--api-keys KEY=TENANT,…`` and/or ``--api-keys-file`` (one ``KEY TENANT`` or
``KEY=TENANT`` per line, ``#`` comments), each at least ``MIN_KEY_LENGTH`` characters.  Only SHA-256
digests of the keys are kept in memory.  With no keys configured Parley serves locally without
authentication, and every stored object belongs to the tenant ``""``.  A client address that sends
``FailedKeys.LIMIT`` wrong keys within a minute is refused (429) for the rest of that minute.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from parley.errors import AuthenticationFailed, TooManyFailures

ADMIN_TENANT = "admin"  # the tenant an admin key acts for in the API when it names none
CALLER_KEY = "parley.caller"  # an ASGI scope's caller, resolved already (the console's playground sets it)
MIN_KEY_LENGTH = 8


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _checked(key: str) -> str:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"an API key must be at least {MIN_KEY_LENGTH} characters: {key[:2]}…")
    return key


class FailedKeys:
    """Wrong keys per client address in the current minute; an address past ``LIMIT`` is refused until the
    minute ends (a guess at a key costs a request, and a minute after twenty)."""

    LIMIT, WINDOW_S, ADDRESSES = 20, 60.0, 10_000

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address: (window start, failures)

    def check(self, address: str | None) -> None:
        if address is None or address not in self._seen:
            return
        start, failures = self._seen[address]
        left = start + self.WINDOW_S - time.monotonic()
        if left <= 0:
            del self._seen[address]
        elif failures >= self.LIMIT:
            raise TooManyFailures(f"Too many wrong API keys from this address; try again in {int(left) + 1} s.",
                                  retry_after_s=int(left) + 1)

    def failed(self, address: str | None) -> None:
        if address is None:
            return
        now = time.monotonic()
        start, failures = self._seen.pop(address, (now, 0))
        self._seen[address] = (start, failures + 1) if now - start < self.WINDOW_S else (now, 1)
        while len(self._seen) > self.ADDRESSES:  # (bounded: the oldest addresses are forgotten first)
            self._seen.popitem(last=False)


def _pairs(text: str, separators: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in text.replace(",", "\n").splitlines() if separators == "," else text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, tenant = line.replace("=", " ", 1).partition(" ")
        if not key or not tenant.strip():
            raise ValueError(f"an API key entry needs a key and a tenant: {line[:8]}…")
        pairs.append((_checked(key.strip()), tenant.strip()))
    return pairs


@dataclass(frozen=True)
class Caller:
    """The tenant a request acts for, and the bearer token it sent (forwarded upstream only when the
    operator configured that)."""

    tenant: str
    token: str | None = field(default=None, repr=False)


class ApiKeys:
    """Resolves ``Authorization: Bearer <key>`` to a tenant."""

    def __init__(self, pairs: list[tuple[str, str]], admins: list[tuple[str, str]] | None = None) -> None:
        admins = admins or []
        self._tenants = {_digest(key): tenant for key, tenant in [*pairs, *admins]}
        self._admins = frozenset(_digest(key) for key, _ in admins)
        self.failures = FailedKeys()

    @classmethod
    def from_settings(cls, inline: str | None, file: Path | None, admin: str | None = None) -> ApiKeys:
        pairs = _pairs(inline, ",") if inline else []
        if file:
            pairs += _pairs(Path(file).read_text(), "\n")
        admins = []
        for entry in filter(str.strip, (admin or "").split(",")):
            key, _, tenant = entry.partition("=")
            if not key.strip():
                raise ValueError(f"an admin key entry needs a key: {entry.strip()[:8]}…")
            admins.append((_checked(key.strip()), tenant.strip() or ADMIN_TENANT))
        return cls(pairs, admins)

    def is_admin(self, key: str | None) -> bool:
        """Whether ``key`` is one of ``--admin-keys`` (whose console sees every tenant)."""
        return key is not None and _digest(key) in self._admins

    @property
    def enabled(self) -> bool:
        return bool(self._tenants)

    def caller(self, authorization: str | None, address: str | None = None) -> Caller:
        """Who is calling, from the ``Authorization`` header (read once per request, here); raises a 401 when
        keys are configured and this one is not among them, and a 429 for an ``address`` that sent too many
        wrong keys."""
        scheme, _, token = (authorization or "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        if not self.enabled:
            return Caller("", bearer)
        if bearer is None:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
        self.failures.check(address)
        tenant = self._tenants.get(_digest(bearer))
        if tenant is None:
            self.failures.failed(address)
            raise AuthenticationFailed("Incorrect API key provided.")
        return Caller(tenant, bearer)

    def digest(self, key: str) -> str | None:
        """The hex digest that stands for ``key`` (a console session keeps it, never the key), or ``None`` for a
        key that is not one of this server's."""
        digest = _digest(key)
        return digest.hex() if digest in self._tenants else None

    def by_digest(self, digest: str) -> tuple[str, bool] | None:
        """The tenant and admin flag of the key with this hex digest, while it is still configured."""
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return None
        tenant = self._tenants.get(raw)
        return None if tenant is None else (tenant, raw in self._admins)

    def tenant(self, authorization: str | None) -> str:
        """The caller's tenant (see :meth:`caller`)."""
        return self.caller(authorization).tenant
