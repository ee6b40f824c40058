"""Uploaded files (``/v1/files``): their description in ``parley_files`` and their bytes in
``parley_file_chunks``, 1 MiB a row, in the same database as the responses, so every instance can read them
and no request holds a whole file in memory; or, with ``--files-dir``, in a directory that every instance
shares (the row keeps the file's path, so a file stays readable whatever the setting is later).  A file is
written chunk by chunk and becomes visible once it is whole (``complete``); files belong to a tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
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
    sa.Column("path", sa.Text),  # where the bytes are, when not in parley_file_chunks
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
    path: str | None = None

    def resource(self) -> dict[str, Any]:
        """The file object as OpenAI's API returns it."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "expires_at": self.expires_at, "filename": self.filename, "purpose": self.purpose,
                "status": "processed", "status_details": None}


def _record(row: Any) -> FileRecord:
    return FileRecord(row.id, row.purpose, row.filename, row.bytes, row.created_at, row.expires_at, row.path)


BLOB = "container"  # the purpose of a container file's bytes: not a file of the Files API


def _live(tenant: str, purpose: Any = None) -> Any:
    now = int(time.time())
    return sa.and_(files.c.tenant == tenant, files.c.complete.is_(True),
                   files.c.purpose != BLOB if purpose is None else files.c.purpose == purpose,
                   sa.or_(files.c.expires_at.is_(None), files.c.expires_at > now))


class SqlFiles:
    """The files of every tenant, in the store's database (the store's connections and bounds)."""

    def __init__(self, store: SqlStore, directory: Path | None = None) -> None:
        self.store = store
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

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
            if self.directory is not None:
                record.path = str(self.directory.resolve() / record.id)
                record.bytes = await asyncio.to_thread(_copy, source, Path(record.path))
            else:
                await self._copy_in(record, source)
            await self.store.run(lambda conn: conn.execute(files.update().where(files.c.id == record.id).values(
                bytes=record.bytes, complete=True, path=record.path)))
        except BaseException:
            await self._remove(record)
            raise
        return record

    async def _copy_in(self, record: FileRecord, source: IO[bytes]) -> None:
        seq = 0
        while piece := source.read(CHUNK):
            row = {"file_id": record.id, "seq": seq, "data": piece}
            await self.store.run(lambda conn, row=row: conn.execute(chunks.insert().values(**row)))
            record.bytes += len(piece)
            seq += 1

    async def get(self, file_id: str, tenant: str, purpose: str | None = None) -> FileRecord | None:
        """A file of the tenant (of the Files API, or with that ``purpose``: a container file's blob)."""
        query = sa.select(files).where(files.c.id == file_id, _live(tenant, purpose))
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

    async def content(self, record: FileRecord) -> AsyncIterator[bytes]:
        """The file's bytes, one stored chunk (or 1 MiB of its file) at a time."""
        if record.path is not None:
            with open(record.path, "rb") as f:  # noqa: ASYNC230 - each read is on a worker thread
                while piece := await asyncio.to_thread(f.read, CHUNK):
                    yield piece
            return
        file_id = record.id
        seq = 0
        while True:
            query = sa.select(chunks.c.data).where(chunks.c.file_id == file_id, chunks.c.seq == seq)
            data = await self.store.run(lambda conn, q=query: conn.execute(q).scalar())
            if data is None:
                return
            yield bytes(data)
            seq += 1

    async def delete(self, file_id: str, tenant: str, purpose: str | None = None) -> bool:
        record = await self.get(file_id, tenant, purpose)
        if record is None:
            return False
        await self._remove(record)
        return True

    async def _remove(self, record: FileRecord) -> None:
        def remove(conn: sa.Connection) -> None:
            conn.execute(chunks.delete().where(chunks.c.file_id == record.id))
            conn.execute(files.delete().where(files.c.id == record.id))

        await self.store.run(remove)
        if record.path is not None:
            Path(record.path).unlink(missing_ok=True)
            Path(record.path + ".part").unlink(missing_ok=True)


def _copy(source: IO[bytes], path: Path) -> int:
    """Write ``source`` to ``path`` through a ``.part`` file renamed once whole; the bytes written."""
    part = path.with_name(path.name + ".part")
    size = 0
    with open(part, "wb") as out:
        while piece := source.read(CHUNK):
            out.write(piece)
            size += len(piece)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
    return size


def encode_list(records: list[FileRecord], has_more: bool) -> str:
    data = [r.resource() for r in records]
    return json.dumps({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                       "last_id": data[-1]["id"] if data else None, "has_more": has_more})
