"""Uploaded files (``/v1/files``) in the same database as the responses: their description in
``parley_files`` and their bytes in ``parley_file_chunks``, 1 MiB a row, so every instance can read them and no
request holds a whole file in memory.  A file is written chunk by chunk, each in its own short transaction,
and becomes visible once its last chunk is in (``complete``); files belong to a tenant.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import sqlalchemy as sa

from parley.ids import new_id
from parley.store.sql import SqlStore
from parley.store.tables import metadata

CHUNK = 1024 * 1024

files = sa.Table(
    "parley_files", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),  # the list's order: files of one second stay in order
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("complete", sa.Boolean, nullable=False),
)
chunks = sa.Table(
    "parley_file_chunks", metadata,
    sa.Column("file_id", sa.String(80), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)


@dataclass
class FileRecord:
    id: str
    purpose: str
    filename: str
    bytes: int
    created_at: int
    expires_at: int | None

    def resource(self) -> dict[str, Any]:
        """The file object as OpenAI's API returns it."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "expires_at": self.expires_at, "filename": self.filename, "purpose": self.purpose,
                "status": "processed", "status_details": None}


def _record(row: Any) -> FileRecord:
    return FileRecord(row.id, row.purpose, row.filename, row.bytes, row.created_at, row.expires_at)


def _live(tenant: str) -> Any:
    now = int(time.time())
    return sa.and_(files.c.tenant == tenant, files.c.complete.is_(True),
                   sa.or_(files.c.expires_at.is_(None), files.c.expires_at > now))


class SqlFiles:
    """The files of every tenant, in the store's database (the store's connections and bounds)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def create(self, tenant: str, purpose: str, filename: str, source: IO[bytes],
                     expires_after_s: int | None = None) -> FileRecord:
        """Copy ``source`` in, chunk by chunk; the file is listed once it is whole."""
        now_ns = time.time_ns()
        now = now_ns // 1_000_000_000
        record = FileRecord(new_id("file"), purpose, filename, 0, now, now + expires_after_s if expires_after_s else None)
        await self.store.run(lambda conn: conn.execute(files.insert().values(
            id=record.id, tenant=tenant, purpose=purpose, filename=filename, bytes=0, created_at=now,
            created_ns=now_ns, expires_at=record.expires_at, complete=False)))
        try:
            seq = 0
            while piece := source.read(CHUNK):
                row = {"file_id": record.id, "seq": seq, "data": piece}
                await self.store.run(lambda conn, row=row: conn.execute(chunks.insert().values(**row)))
                record.bytes += len(piece)
                seq += 1
            await self.store.run(lambda conn: conn.execute(
                files.update().where(files.c.id == record.id).values(bytes=record.bytes, complete=True)))
        except BaseException:
            await self._remove(record.id)
            raise
        return record

    async def get(self, file_id: str, tenant: str) -> FileRecord | None:
        query = sa.select(files).where(files.c.id == file_id, _live(tenant))
        row = await self.store.run(lambda conn: conn.execute(query).first())
        return None if row is None else _record(row)

    async def list(self, tenant: str, *, purpose: str | None = None, after: str | None = None, limit: int = 10000,
                   order: Literal["asc", "desc"] = "desc") -> tuple[list[FileRecord], bool]:
        """A page of the tenant's files, newest first by default; and whether more follow."""
        key = (files.c.created_ns, files.c.id)
        query = sa.select(files).where(_live(tenant))
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        if after is not None:  # the page after that file, in this order
            cursor = sa.tuple_(*key)
            point = sa.tuple_(sa.select(files.c.created_ns).where(files.c.id == after, files.c.tenant == tenant)
                              .scalar_subquery(), sa.literal(after))
            query = query.where(cursor < point if order == "desc" else cursor > point)
        ordering = [k.desc() for k in key] if order == "desc" else list(key)
        query = query.order_by(*ordering).limit(limit + 1)
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return [_record(r) for r in rows[:limit]], len(rows) > limit

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes, one stored chunk at a time."""
        seq = 0
        while True:
            query = sa.select(chunks.c.data).where(chunks.c.file_id == file_id, chunks.c.seq == seq)
            data = await self.store.run(lambda conn, q=query: conn.execute(q).scalar())
            if data is None:
                return
            yield bytes(data)
            seq += 1

    async def delete(self, file_id: str, tenant: str) -> bool:
        query = sa.select(files.c.id).where(files.c.id == file_id, _live(tenant))
        if await self.store.run(lambda conn: conn.execute(query).scalar()) is None:
            return False
        await self._remove(file_id)
        return True

    async def _remove(self, file_id: str) -> None:
        def remove(conn: sa.Connection) -> None:
            conn.execute(chunks.delete().where(chunks.c.file_id == file_id))
            conn.execute(files.delete().where(files.c.id == file_id))

        await self.store.run(remove)


def encode_list(records: list[FileRecord], has_more: bool) -> str:
    data = [r.resource() for r in records]
    return json.dumps({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                       "last_id": data[-1]["id"] if data else None, "has_more": has_more})
