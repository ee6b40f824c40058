"""Containers in the store's database, so that every instance can answer for them: the container (its
tenant, limits, when it was last active and which instance holds its live session) and its files (path,
size, SHA-256, who wrote it, and the stored file that holds its bytes: a ``parley_files`` row of purpose
``container``, never listed by ``/v1/files``)."""

from __future__ import annotations

import time
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from parley.ids import new_id
from parley.store.pages import Order, Page, page_query
from parley.store.sql import SqlStore
from parley.store.tables import metadata

containers = sa.Table(
    "parley_containers", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("last_active_at", sa.BigInteger, nullable=False),
    sa.Column("expires_minutes", sa.Integer, nullable=False),
    sa.Column("memory_limit", sa.String(8), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running, expired
    sa.Column("host", sa.String(64)),  # the instance that holds its live session
    sa.Column("session_ref", sa.String(200)),  # what names its session to every instance (a shared sandbox)
    sa.Column("skills", sa.Text),  # JSON: the skill versions it mounts ({skill_id, version, name, description})
)
container_files = sa.Table(
    "parley_container_files", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("container_id", sa.String(80), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # user, assistant
    sa.Column("blob", sa.String(80), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)


@dataclass
class Container:
    id: str
    tenant: str
    name: str
    created_at: int
    last_active_at: int
    expires_minutes: int
    memory_limit: str
    status: str
    host: str | None
    session_ref: str | None = None
    skills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expired(self) -> bool:
        return self.status != "running" or self.last_active_at + self.expires_minutes * 60 <= time.time()

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "object": "container", "created_at": self.created_at, "name": self.name,
                "status": "expired" if self.expired else "running",
                "expires_after": {"anchor": "last_active_at", "minutes": self.expires_minutes},
                "last_active_at": self.last_active_at, "memory_limit": self.memory_limit,
                "network_policy": {"type": "disabled"}}


@dataclass
class ContainerFile:
    id: str
    container_id: str
    path: str
    bytes: int
    sha256: str
    source: str
    blob: str
    created_at: int

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "object": "container.file", "created_at": self.created_at, "bytes": self.bytes,
                "container_id": self.container_id, "path": self.path, "source": self.source}


def _container(row: Any) -> Container:
    return Container(row.id, row.tenant, row.name, row.created_at, row.last_active_at, row.expires_minutes,
                     row.memory_limit, row.status, row.host, row.session_ref, json.loads(row.skills or "[]"))


def _file(row: Any) -> ContainerFile:
    return ContainerFile(row.id, row.container_id, row.path, row.bytes, row.sha256, row.source, row.blob,
                         row.created_at)


class SqlContainers:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def create(self, tenant: str, name: str, expires_minutes: int, memory_limit: str,
                     skills: list[dict[str, Any]] | None = None) -> Container:
        now_ns = time.time_ns()
        now = now_ns // 1_000_000_000
        container = Container(new_id("cntr"), tenant, name, now, now, expires_minutes, memory_limit, "running", None,
                              None, skills or [])
        await self.store.run(lambda conn: conn.execute(containers.insert().values(
            id=container.id, tenant=tenant, name=name, created_at=now, created_ns=now_ns, last_active_at=now,
            expires_minutes=expires_minutes, memory_limit=memory_limit, status="running",
            skills=json.dumps(skills) if skills else None)))
        return container

    async def get(self, container_id: str, tenant: str) -> Container | None:
        query = sa.select(containers).where(containers.c.id == container_id, containers.c.tenant == tenant)
        row = await self.store.run(lambda conn: conn.execute(query).first())
        return None if row is None else _container(row)

    async def get_any(self, container_id: str) -> Container | None:
        """A container of any tenant (for the expiry sweep)."""
        query = sa.select(containers).where(containers.c.id == container_id)
        row = await self.store.run(lambda conn: conn.execute(query).first())
        return None if row is None else _container(row)

    async def list(self, tenant: str, *, name: str | None, after: str | None, order: Order, limit: int) -> Page:
        scope = containers.c.tenant == tenant
        query = sa.select(containers).where(scope)
        if name is not None:
            query = query.where(containers.c.name == name)
        query = page_query(query, containers, containers.c.id, scope, after, None, order, limit)
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return Page([_container(r).resource() for r in rows[:limit]], len(rows) > limit)

    async def touch(self, container_id: str, host: str) -> str | None:
        """Mark the container active now, held by ``host``; the host that held it before."""
        def touch(conn: sa.Connection) -> str | None:
            before = conn.execute(sa.select(containers.c.host).where(containers.c.id == container_id)).scalar()
            conn.execute(containers.update().where(containers.c.id == container_id).values(
                last_active_at=int(time.time()), host=host))
            return before

        return await self.store.run(touch)

    async def set_ref(self, container_id: str, ref: str | None) -> None:
        await self.store.run(lambda conn: conn.execute(containers.update().where(
            containers.c.id == container_id).values(session_ref=ref)))

    async def expire(self, container_id: str) -> list[str]:
        """Mark a container expired and forget its files; the stored files (blobs) to delete."""
        def expire(conn: sa.Connection) -> list[str]:
            blobs = list(conn.execute(sa.select(container_files.c.blob).where(
                container_files.c.container_id == container_id)).scalars())
            conn.execute(container_files.delete().where(container_files.c.container_id == container_id))
            conn.execute(containers.update().where(containers.c.id == container_id).values(
                status="expired", host=None, session_ref=None))
            return blobs

        return await self.store.run(expire)

    async def delete(self, container_id: str) -> list[str]:
        """Delete a container and its files' rows; the stored files (blobs) to delete."""
        def delete(conn: sa.Connection) -> list[str]:
            blobs = list(conn.execute(sa.select(container_files.c.blob).where(
                container_files.c.container_id == container_id)).scalars())
            conn.execute(container_files.delete().where(container_files.c.container_id == container_id))
            conn.execute(containers.delete().where(containers.c.id == container_id))
            return blobs

        return await self.store.run(delete)

    async def due(self, now: float) -> list[str]:
        """Running containers whose idle time is up (any instance may expire them)."""
        query = sa.select(containers.c.id, containers.c.last_active_at, containers.c.expires_minutes).where(
            containers.c.status == "running")
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return [r.id for r in rows if r.last_active_at + r.expires_minutes * 60 <= now]

    # -- files ---------------------------------------------------------------------------------------------

    async def files(self, container_id: str) -> list[ContainerFile]:
        query = sa.select(container_files).where(container_files.c.container_id == container_id).order_by(
            container_files.c.created_ns, container_files.c.id)
        return [_file(r) for r in await self.store.run(lambda conn: conn.execute(query).all())]

    async def file(self, container_id: str, file_id: str) -> ContainerFile | None:
        query = sa.select(container_files).where(container_files.c.container_id == container_id,
                                                 container_files.c.id == file_id)
        row = await self.store.run(lambda conn: conn.execute(query).first())
        return None if row is None else _file(row)

    async def page(self, container_id: str, *, after: str | None, order: Order, limit: int) -> Page:
        scope = container_files.c.container_id == container_id
        query = page_query(sa.select(container_files).where(scope), container_files, container_files.c.id, scope,
                           after, None, order, limit)
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return Page([_file(r).resource() for r in rows[:limit]], len(rows) > limit)

    async def put_file(self, container_id: str, path: str, size: int, sha256: str, source: str,
                       blob: str) -> tuple[ContainerFile, str | None]:
        """Record a file at ``path`` (replacing the one there, whose id it keeps); the blob it replaced."""
        now_ns = time.time_ns()

        def put(conn: sa.Connection) -> tuple[ContainerFile, str | None]:
            row = conn.execute(sa.select(container_files).where(container_files.c.container_id == container_id,
                                                                container_files.c.path == path)).first()
            if row is not None:
                conn.execute(container_files.update().where(container_files.c.id == row.id).values(
                    bytes=size, sha256=sha256, source=source, blob=blob))
                return ContainerFile(row.id, container_id, path, size, sha256, source, blob, row.created_at), row.blob
            record = ContainerFile(new_id("cfile"), container_id, path, size, sha256, source, blob,
                                   now_ns // 1_000_000_000)
            conn.execute(container_files.insert().values(
                id=record.id, container_id=container_id, path=path, bytes=size, sha256=sha256, source=source,
                blob=blob, created_at=record.created_at, created_ns=now_ns))
            return record, None

        return await self.store.run(put)

    async def remove_file(self, container_id: str, file_id: str) -> str | None:
        """Forget a file; its blob, or ``None`` when there was no such file."""
        def remove(conn: sa.Connection) -> str | None:
            blob = conn.execute(sa.select(container_files.c.blob).where(
                container_files.c.container_id == container_id, container_files.c.id == file_id)).scalar()
            conn.execute(container_files.delete().where(container_files.c.container_id == container_id,
                                                        container_files.c.id == file_id))
            return blob

        return await self.store.run(remove)
