"""Skills (``/v1/skills``): named bundles of files with versions, mounted read-only into the containers that
name them.  A skill's row and its versions live in the store; each version's files are one normalized zip, a
``parley_files`` row of purpose ``skill`` (never listed by ``/v1/files``)."""

from __future__ import annotations

import asyncio
import io
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from parley.containers.skill_bundle import Bundle
from parley.errors import InvalidRequest, NotFound
from parley.ids import new_id
from parley.store.files import SqlFiles
from parley.store.pages import Order, Page, page_query
from parley.store.sql import SqlStore
from parley.store.tables import metadata

SKILL_BLOB = "skill"
skills = sa.Table(
    "parley_skills", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("default_version", sa.Integer, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
)
skill_versions = sa.Table(
    "parley_skill_versions", metadata,
    sa.Column("skill_id", sa.String(80), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("id", sa.String(80), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("blob", sa.String(80), nullable=False),
)


@dataclass
class Version:
    id: str
    skill_id: str
    version: int
    name: str
    description: str
    created_at: int
    blob: str

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "object": "skill.version", "skill_id": self.skill_id, "version": str(self.version),
                "name": self.name, "description": self.description, "created_at": self.created_at}


def _skill_resource(row: Any) -> dict[str, Any]:
    return {"id": row.id, "object": "skill", "name": row.name, "description": row.description,
            "created_at": row.created_at, "default_version": str(row.default_version),
            "latest_version": str(row.latest_version)}


def _version(row: Any) -> Version:
    return Version(row.id, row.skill_id, row.version, row.name, row.description, row.created_at, row.blob)


def version_number(value: str | None, param: str) -> int | None:
    """A version as the API names it ("1", "2"…; ``None`` or "latest"/"default" handled by the caller)."""
    if value is None:
        return None
    if not value.isdigit() or not 0 < int(value) < 10 ** 9:
        raise InvalidRequest(f"'{value}' is not a skill version (1, 2, …).", param=param)
    return int(value)


class SqlSkills:
    def __init__(self, store: SqlStore, files: SqlFiles, directory: Path) -> None:
        self.store = store
        self.files = files
        self.directory = directory  # where versions are unpacked for the bwrap sandbox to mount

    async def create(self, tenant: str, bundle: Bundle) -> dict[str, Any]:
        skill_id, now_ns = new_id("skill"), time.time_ns()
        blob = await self.files.create(tenant, SKILL_BLOB, f"{bundle.name}.zip", io.BytesIO(bundle.zip()))
        version = Version(new_id("skillver"), skill_id, 1, bundle.name, bundle.description, now_ns // 10 ** 9,
                          blob.id)

        def create(conn: sa.Connection) -> Any:
            conn.execute(skills.insert().values(id=skill_id, tenant=tenant, name=bundle.name,
                                                description=bundle.description, created_at=version.created_at,
                                                created_ns=now_ns, default_version=1, latest_version=1))
            conn.execute(skill_versions.insert().values(**version.__dict__))
            return conn.execute(sa.select(skills).where(skills.c.id == skill_id)).first()

        return _skill_resource(await self.store.run(create))

    async def _row(self, skill_id: str, tenant: str) -> Any:
        query = sa.select(skills).where(skills.c.id == skill_id, skills.c.tenant == tenant)
        row = await self.store.run(lambda conn: conn.execute(query).first()) if len(skill_id) <= 80 else None
        if row is None:
            raise NotFound(f"No skill with id '{skill_id}' found.", param="skill_id")
        return row

    async def get(self, skill_id: str, tenant: str) -> dict[str, Any]:
        return _skill_resource(await self._row(skill_id, tenant))

    async def list(self, tenant: str, *, after: str | None, order: Order, limit: int) -> Page:
        scope = skills.c.tenant == tenant
        query = page_query(sa.select(skills).where(scope), skills, skills.c.id, scope, after, None, order, limit)
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return Page([_skill_resource(r) for r in rows[:limit]], len(rows) > limit)

    async def set_default(self, skill_id: str, tenant: str, version: int) -> dict[str, Any]:
        row = await self._row(skill_id, tenant)
        await self.version(skill_id, tenant, version, "default_version")
        await self.store.run(lambda conn: conn.execute(skills.update().where(skills.c.id == row.id).values(
            default_version=version)))
        return await self.get(skill_id, tenant)

    async def add_version(self, skill_id: str, tenant: str, bundle: Bundle, default: bool) -> Version:
        await self._row(skill_id, tenant)
        blob = await self.files.create(tenant, SKILL_BLOB, f"{bundle.name}.zip", io.BytesIO(bundle.zip()))

        def add(conn: sa.Connection) -> Version:
            latest = conn.execute(sa.select(skills.c.latest_version).where(skills.c.id == skill_id)
                                  .with_for_update()).scalar()
            version = Version(new_id("skillver"), skill_id, int(latest) + 1, bundle.name, bundle.description,
                              int(time.time()), blob.id)
            conn.execute(skill_versions.insert().values(**version.__dict__))
            values: dict[str, Any] = {"latest_version": version.version, "name": bundle.name,
                                      "description": bundle.description}
            if default:
                values["default_version"] = version.version
            conn.execute(skills.update().where(skills.c.id == skill_id).values(**values))
            return version

        return await self.store.run(add)

    async def version(self, skill_id: str, tenant: str, version: int | None, param: str = "version") -> Version:
        """A version of the tenant's skill (its default one when ``version`` is ``None``)."""
        row = await self._row(skill_id, tenant)
        number = row.default_version if version is None else version
        query = sa.select(skill_versions).where(skill_versions.c.skill_id == row.id,
                                                skill_versions.c.version == number)
        found = await self.store.run(lambda conn: conn.execute(query).first())
        if found is None:
            raise NotFound(f"Skill '{skill_id}' has no version '{number}'.", param=param)
        return _version(found)

    async def versions(self, skill_id: str, tenant: str, *, after: str | None, order: Order,
                       limit: int) -> Page:
        await self._row(skill_id, tenant)
        query = sa.select(skill_versions).where(skill_versions.c.skill_id == skill_id)
        if after is not None:  # a version's id (the list's last_id, which the SDK pages with) or its number
            point = sa.literal(int(after)) if after.isdigit() else sa.select(skill_versions.c.version).where(
                skill_versions.c.skill_id == skill_id, skill_versions.c.id == after).scalar_subquery()
            query = query.where(skill_versions.c.version < point if order == "desc"
                                else skill_versions.c.version > point)
        column = skill_versions.c.version
        rows = await self.store.run(lambda conn: conn.execute(query.order_by(
            column.desc() if order == "desc" else column).limit(limit + 1)).all())
        return Page([_version(r).resource() for r in rows[:limit]], len(rows) > limit)

    async def delete_version(self, skill_id: str, tenant: str, version: int) -> None:
        row = await self._row(skill_id, tenant)
        found = await self.version(skill_id, tenant, version)
        if found.version == row.default_version:
            raise InvalidRequest("The default version cannot be deleted; make another the default first.",
                                 param="version")

        def delete(conn: sa.Connection) -> None:
            conn.execute(skill_versions.delete().where(skill_versions.c.skill_id == skill_id,
                                                       skill_versions.c.version == version))
            latest = conn.execute(sa.select(sa.func.max(skill_versions.c.version)).where(
                skill_versions.c.skill_id == skill_id)).scalar()
            conn.execute(skills.update().where(skills.c.id == skill_id).values(latest_version=latest))

        await self.store.run(delete)
        await self.files.delete(found.blob, tenant, SKILL_BLOB)

    async def delete(self, skill_id: str, tenant: str) -> None:
        row = await self._row(skill_id, tenant)

        def delete(conn: sa.Connection) -> list[str]:
            blobs = list(conn.execute(sa.select(skill_versions.c.blob).where(
                skill_versions.c.skill_id == row.id)).scalars())
            conn.execute(skill_versions.delete().where(skill_versions.c.skill_id == row.id))
            conn.execute(skills.delete().where(skills.c.id == row.id))
            return blobs

        for blob in await self.store.run(delete):
            await self.files.delete(blob, tenant, SKILL_BLOB)

    async def content(self, version: Version, tenant: str) -> Any:
        blob = await self.files.get(version.blob, tenant, SKILL_BLOB)
        if blob is None:
            raise NotFound(f"The files of skill '{version.skill_id}' version {version.version} are gone.",
                           param="skill_id")
        return blob, self.files.content(blob)

    async def unpacked(self, version: Version, tenant: str) -> Path:
        """The version's files in a folder of this host (made once; versions never change), for mounting."""
        target = self.directory / version.skill_id / str(version.version)
        if target.is_dir():
            return target
        blob, content = await self.content(version, tenant)
        data = b"".join([piece async for piece in content])
        await asyncio.to_thread(_unpack, data, target)
        return target


def _unpack(data: bytes, target: Path) -> None:
    """Unpack a normalized zip (paths checked when it was made) into ``target``, whole or not at all."""
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for entry in archive.infolist():
            path = entry.filename.split("/", 1)[1]  # under the skill's own folder
            out = partial / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(entry))
    for path in sorted(partial.rglob("*"), reverse=True):
        path.chmod(0o755 if path.is_dir() else 0o644)
    partial.chmod(0o755)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(target)
