"""API keys: bearer tokens mapped to tenants.

Keys come from ``--api-keys KEY=TENANT,…`` and/or ``--api-keys-file`` (one ``KEY TENANT`` or
``KEY=TENANT`` per line, ``#`` comments).  Only SHA-256 digests of the keys are kept in
memory.  With no keys configured Parley serves locally without authentication, and every
stored object belongs to the tenant ``""``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from parley.errors import AuthenticationFailed


ADMIN_TENANT = "admin"  # the tenant an admin key acts for in the API when it names none


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _pairs(text: str, separators: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in text.replace(",", "\n").splitlines() if separators == "," else text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, tenant = line.replace("=", " ", 1).partition(" ")
        if not key or not tenant.strip():
            raise ValueError(f"an API key entry needs a key and a tenant: {line[:8]}…")
        pairs.append((key.strip(), tenant.strip()))
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
            admins.append((key.strip(), tenant.strip() or ADMIN_TENANT))
        return cls(pairs, admins)

    def is_admin(self, key: str | None) -> bool:
        """Whether ``key`` is one of ``--admin-keys`` (whose console sees every tenant)."""
        return key is not None and _digest(key) in self._admins

    @property
    def enabled(self) -> bool:
        return bool(self._tenants)

    def caller(self, authorization: str | None) -> Caller:
        """Who is calling, from the ``Authorization`` header (read once per request, here); raises a 401 when
        keys are configured and this one is not among them."""
        scheme, _, token = (authorization or "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        if not self.enabled:
            return Caller("", bearer)
        if bearer is None:
            raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
        tenant = self._tenants.get(_digest(bearer))
        if tenant is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return Caller(tenant, bearer)

    def tenant(self, authorization: str | None) -> str:
        """The caller's tenant (see :meth:`caller`)."""
        return self.caller(authorization).tenant
