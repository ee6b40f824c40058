"""Who is looking at the console, what they may see, and how a browser may reach it.

With no API keys configured (local mode) the console is open, as the API is, and shows the local tenant.
With keys, a viewer signs in with one and gets a session: the cookie (HttpOnly, SameSite=Strict, scoped to
``/console``, ``SESSION_TTL_S`` long) holds a random session id, and the database only its hash and the key's
digest (:mod:`parley.store.console_sessions`), never the key.  An API key sees its own tenant's responses, an
``--admin-keys`` key every tenant's.  Signing in and out must come from the console's own pages
(``Sec-Fetch-Site`` or ``Origin``: a page elsewhere cannot sign a browser into another key), wrong keys count
against the client address as in the API, and every page forbids framing, inline scripts and sniffing.  The
console's one write (the playground's create) also needs a header a cross-site form cannot send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request

from parley.auth import ApiKeys
from parley.store.console_sessions import ConsoleSessions

COOKIE = "parley_console_session"
SESSION_TTL_S = 12 * 3600
WRITE_HEADER = "x-parley-console"  # sent by the console's own scripts; a cross-site request cannot set it
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


@dataclass(frozen=True)
class Viewer:
    scope: str | None  # the tenant whose responses they see; None: every tenant (an admin key)
    tenant: str = ""  # the tenant they act for (the playground's creates)
    session: str | None = None  # their session's id (none in local mode)

    @property
    def admin(self) -> bool:
        return self.scope is None


async def viewer_of(keys: ApiKeys, sessions: ConsoleSessions, request: Request) -> Viewer | None:
    """The viewer of ``request``, or ``None`` when they must sign in first."""
    if not keys.enabled:
        return Viewer(scope="")
    session = session_id(request)
    digest = await sessions.key_digest(session) if session else None
    found = keys.by_digest(digest) if digest else None
    if found is None:
        return None
    tenant, admin = found
    return Viewer(scope=None if admin else tenant, tenant=tenant, session=session)


def session_id(request: Request) -> str:
    """The session id ``request``'s cookie holds ('' for none)."""
    return unquote(request.cookies.get(COOKIE, ""))


def same_origin(request: Request) -> bool:
    """Whether a browser sent ``request`` from the console's own origin.  Browsers send ``Sec-Fetch-Site`` (or
    at least ``Origin``) with every cross-site POST; a request with neither comes from no browser page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def cookie_header(request: Request, session_id: str | None) -> str:
    """The ``Set-Cookie`` value that holds ``session_id`` (or, for ``None``, signs out)."""
    secure = "; Secure" if request.url.scheme == "https" else ""
    if session_id is None:
        return f"{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    return (f"{COOKIE}={quote(session_id, safe='')}; Path=/console; Max-Age={SESSION_TTL_S}; HttpOnly; "
            f"SameSite=Strict{secure}")


class ConsoleHeaders:
    """ASGI middleware: every response under ``/console`` carries :data:`SECURITY_HEADERS`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/console"):
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
