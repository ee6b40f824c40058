"""A container's files: in the store (the truth every instance reads), and in its live session's workspace.

The Containers API adds, copies and removes them; around each call the workspace is brought up to the store
(:meth:`ContainerFiles.sync_down`: uploads and deletions made through any instance) and what the call wrote
is stored after it (:meth:`ContainerFiles.sync_up`, ``source: "assistant"``).  Each file's bytes are a
``parley_files`` row of purpose ``container`` (its blob).
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from parley.containers.store import Container, ContainerFile, SqlContainers
from parley.errors import InvalidRequest, NotFound
from parley.sandbox.base import FileState, Limits, SandboxError, Session
from parley.sandbox.workspace import relative
from parley.store.files import BLOB, FileRecord, SqlFiles

log = logging.getLogger("parley.containers")


@dataclass
class Live:
    """A container's session on this instance, and what its workspace holds as far as the store knows:
    path -> (size, mtime_ns, sha256)."""

    session: Session
    known: dict[str, tuple[int, int, str]] = field(default_factory=dict)


class ContainerFiles:
    def __init__(self, store: SqlContainers, files: SqlFiles, limits: Limits) -> None:
        self.store = store
        self.files = files
        self.limits = limits

    async def add(self, container: Container, path: str, source: IO[bytes], origin: str = "user"
                       ) -> ContainerFile:
        """A file put into the container (an upload, a copied file, or what a call wrote), by its path."""
        try:
            path = "/mnt/data/" + relative(path)
        except ValueError as exc:
            raise InvalidRequest(f"Invalid file path: {exc}.", param="file") from None
        digest = hashlib.sha256()

        class Hashing:
            def read(self, size: int = -1) -> bytes:
                piece = source.read(size)
                digest.update(piece)
                return piece

        blob = await self.files.create(container.tenant, BLOB, path.rsplit("/", 1)[-1], Hashing())  # type: ignore
        record, replaced = await self.store.put_file(container.id, path, blob.bytes, digest.hexdigest(), origin,
                                                     blob.id)
        if replaced is not None:
            await self.files.delete(replaced, container.tenant, BLOB)
        return record

    async def copy(self, container: Container, record: FileRecord) -> ContainerFile:
        """An uploaded file (of the container's tenant) copied in, under its name."""
        with tempfile.TemporaryFile() as spool:
            async for piece in self.files.content(record):
                spool.write(piece)
            spool.seek(0)
            return await self.add(container, record.filename, spool)

    async def remove(self, container: Container, file_id: str) -> bool:
        blob = await self.store.remove_file(container.id, file_id)
        if blob is None:
            return False
        await self.files.delete(blob, container.tenant, BLOB)
        return True

    async def content(self, container: Container, record: ContainerFile) -> Any:
        blob = await self.files.get(record.blob, container.tenant, BLOB)
        if blob is None:
            raise NotFound(f"The content of container file '{record.id}' is gone.", param="file_id")
        return self.files.content(blob)

    async def sync_down(self, container: Container, live: Live) -> None:
        """Bring the workspace up to the store's files (uploads and deletions made through the API)."""
        rows = {row.path: row for row in await self.store.files(container.id)}
        # a stored file deleted through the API (a file too large to store was never a container file)
        for path in [p for p, known in live.known.items() if p not in rows and known[2]]:
            await live.session.remove(path)
            del live.known[path]
        if not live.known and rows:  # a session this instance has not synced: trust files of the stored size
            for state in await live.session.files():
                row = rows.get(state.path)
                if row is not None and row.bytes == state.size:
                    live.known[state.path] = (state.size, state.mtime_ns, row.sha256)
        written = []
        for path, row in rows.items():
            if path in live.known and live.known[path][2] == row.sha256:
                continue
            blob = await self.files.get(row.blob, container.tenant, BLOB)
            if blob is None:
                continue
            data = b"".join([piece async for piece in self.files.content(blob)])
            await live.session.write(path, data)
            written.append(path)
        if written:  # what the writes left on disk (size, mtime), so that the call after is compared with it
            states = {s.path: s for s in await live.session.files()}
            for path in written:
                if path in states:
                    live.known[path] = (states[path].size, states[path].mtime_ns, rows[path].sha256)

    async def sync_up(self, container: Container, live: Live) -> list[ContainerFile]:
        """Store what the call wrote, removed or changed under ``/mnt/data``; the files it created or changed."""
        states = await live.session.files()
        if sum(s.size for s in states) > self.limits.disk_bytes:  # the caller ends the session
            raise SandboxError(f"the container's files passed its {self.limits.disk_bytes} bytes; the call's "
                               f"writes were undone")
        changed = []
        now = {s.path: s for s in states}
        gone = [p for p in live.known if p not in now]
        if gone:
            stored = {row.path: row.id for row in await self.store.files(container.id)}
            for path in gone:
                del live.known[path]
                if path in stored:
                    await self.remove(container, stored[path])
        for state in states:
            known = live.known.get(state.path)
            if known is not None and known[:2] == (state.size, state.mtime_ns):
                continue
            record = await self._store_file(container, live, state)
            if record is not None:
                changed.append(record)
        return changed

    async def _store_file(self, container: Container, live: Live, state: FileState) -> ContainerFile | None:
        if state.size > self.limits.file_bytes:  # it stays in the workspace, not a container file
            log.info("container %s: %s is larger than %d bytes and is not stored", container.id, state.path,
                     self.limits.file_bytes)
            live.known[state.path] = (state.size, state.mtime_ns, "")
            return None
        data = await live.session.read(state.path, self.limits.file_bytes)
        sha = hashlib.sha256(data).hexdigest()
        known = live.known.get(state.path)
        live.known[state.path] = (state.size, state.mtime_ns, sha)
        if known is not None and known[2] == sha:
            return None  # touched, not changed
        return await self.add(container, state.path, io.BytesIO(data), "assistant")
