"""The console's sign-in sessions, in the database every instance shares.

A viewer's cookie holds a random session id; the store keeps only its SHA-256 and the digest of the API key
the session was opened with (:meth:`parley.auth.ApiKeys.digest`), never the key, with an expiry.  Signing
out deletes the row, so a session is revoked at once on every instance; a key removed from the server's
configuration ends every session opened with it (the digest no longer resolves)."""

from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa

from parley.store.sql import SqlStore
from parley.store.tables import metadata

sessions = sa.Table(
    "parley_console_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    def __init__(self, store: SqlStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def open(self, key_digest: str) -> str:
        """A new session for the key with ``key_digest``: its id, for the cookie.  Expired sessions go too."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()

        def open_(conn: sa.Connection) -> None:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(sessions.insert().values(id_hash=_hashed(session_id), key_hash=key_digest, created_at=now,
                                                  expires_at=now + self.ttl_s))

        await self.store.run(open_)
        return session_id

    async def key_digest(self, session_id: str) -> str | None:
        """The key digest of a live session, or ``None`` (unknown, signed out or expired)."""
        if not session_id or len(session_id) > 100:
            return None
        query = sa.select(sessions.c.key_hash).where(sessions.c.id_hash == _hashed(session_id),
                                                     sessions.c.expires_at > time.time())
        return await self.store.run(lambda conn: conn.execute(query).scalar())

    async def close(self, session_id: str) -> None:
        """Sign a session out (revoke it) everywhere."""
        await self.store.run(lambda conn: conn.execute(sessions.delete().where(
            sessions.c.id_hash == _hashed(session_id))))
