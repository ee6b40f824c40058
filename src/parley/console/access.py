"""Who is looking at the console, and what they may see.

With no API keys configured (local mode) the console is open, as the API is, and shows the local tenant.
With keys, a viewer signs in with one: an API key sees its own tenant's responses, an ``--admin-keys`` key
sees every tenant's.  The key is kept in an HttpOnly, SameSite=Strict cookie scoped to ``/console``; the
console's one write (the playground's create) also needs a header a cross-site form cannot send.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from starlette.requests import Request

from parley.auth import ApiKeys
from parley.errors import AuthenticationFailed

COOKIE = "parley_console_key"
WRITE_HEADER = "x-parley-console"  # sent by the console's own scripts; a cross-site request cannot set it


@dataclass(frozen=True)
class Viewer:
    scope: str | None  # the tenant whose responses they see; None: every tenant (an admin key)
    key: str | None = None  # the key they signed in with (none in local mode)

    @property
    def admin(self) -> bool:
        return self.scope is None


def viewer_of(keys: ApiKeys, request: Request) -> Viewer | None:
    """The viewer of ``request``, or ``None`` when they must sign in first."""
    if not keys.enabled:
        return Viewer(scope="")
    return viewer_for_key(keys, unquote(request.cookies.get(COOKIE, "")))


def viewer_for_key(keys: ApiKeys, key: str) -> Viewer | None:
    """The viewer a key signs in (keys configured), or ``None`` for a key that is not one of them."""
    if not key:
        return None
    if keys.is_admin(key):
        return Viewer(scope=None, key=key)
    try:
        return Viewer(scope=keys.caller(f"Bearer {key}").tenant, key=key)
    except AuthenticationFailed:
        return None


def cookie_header(request: Request, key: str | None) -> str:
    """The ``Set-Cookie`` value that signs ``key`` in (or, for ``None``, signs out)."""
    secure = "; Secure" if request.url.scheme == "https" else ""
    if key is None:
        return f"{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    return f"{COOKIE}={quote(key, safe='')}; Path=/console; Max-Age=2592000; HttpOnly; SameSite=Strict{secure}"
