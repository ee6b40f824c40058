"""Prompts and their versions in the store, per tenant: a version is a template of a create's settings
(``model``, ``instructions``, ``input`` messages, ``tools``…) kept as JSON, numbered from 1."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from parley.errors import NotFound
from parley.ids import new_id
from parley.store.pages import Order, Page, page_query
from parley.store.sql import SqlStore
from parley.store.tables import metadata

prompts = sa.Table(
    "parley_prompts", metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
)
prompt_versions = sa.Table(
    "parley_prompt_versions", metadata,
    sa.Column("prompt_id", sa.String(80), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("template", sa.Text, nullable=False),
)


@dataclass
class PromptVersion:
    id: str
    name: str
    version: int
    latest_version: int
    created_at: int
    template: dict[str, Any]
    variables: list[str]

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "object": "prompt", "name": self.name, "version": str(self.version),
                "latest_version": str(self.latest_version), "created_at": self.created_at,
                "variables": self.variables, **self.template}


class SqlPrompts:
    def __init__(self, store: SqlStore, variables_of: Any) -> None:
        self.store = store
        self.variables_of = variables_of  # template -> the names of its variables

    def _version(self, row: Any) -> PromptVersion:
        template = json.loads(row.template)
        return PromptVersion(row.id, row.name, row.version, row.latest_version, row.created_at, template,
                             self.variables_of(template))

    async def create(self, tenant: str, name: str, template: dict[str, Any]) -> PromptVersion:
        now_ns = time.time_ns()
        now = now_ns // 1_000_000_000
        prompt_id = new_id("pmpt")

        def create(conn: sa.Connection) -> None:
            conn.execute(prompts.insert().values(id=prompt_id, tenant=tenant, name=name, created_at=now,
                                                 created_ns=now_ns, latest_version=1))
            conn.execute(prompt_versions.insert().values(prompt_id=prompt_id, version=1, created_at=now,
                                                         template=json.dumps(template)))

        await self.store.run(create)
        return PromptVersion(prompt_id, name, 1, 1, now, template, self.variables_of(template))

    async def add_version(self, prompt_id: str, tenant: str, template: dict[str, Any],
                          name: str | None = None) -> PromptVersion:
        now = int(time.time())

        def add(conn: sa.Connection) -> tuple[str, int] | None:
            row = conn.execute(sa.select(prompts.c.name, prompts.c.latest_version).where(
                prompts.c.id == prompt_id, prompts.c.tenant == tenant).with_for_update()).first()
            if row is None:
                return None
            version = row.latest_version + 1
            conn.execute(prompt_versions.insert().values(prompt_id=prompt_id, version=version, created_at=now,
                                                         template=json.dumps(template)))
            conn.execute(prompts.update().where(prompts.c.id == prompt_id).values(
                latest_version=version, name=name or row.name))
            return name or row.name, version

        added = await self.store.run(add)
        if added is None:
            raise _missing(prompt_id)
        return PromptVersion(prompt_id, added[0], added[1], added[1], now, template, self.variables_of(template))

    async def get(self, prompt_id: str, tenant: str, version: int | None = None,
                  param: str = "prompt_id") -> PromptVersion:
        """A version of the tenant's prompt (its latest without ``version``): a 404 naming ``param`` otherwise."""
        joined = prompts.join(prompt_versions, prompt_versions.c.prompt_id == prompts.c.id)
        query = sa.select(prompts.c.id, prompts.c.name, prompts.c.latest_version, prompt_versions.c.version,
                          prompt_versions.c.created_at, prompt_versions.c.template).select_from(joined).where(
            prompts.c.id == prompt_id, prompts.c.tenant == tenant,
            prompt_versions.c.version == (version if version is not None else prompts.c.latest_version))
        row = await self.store.run(lambda conn: conn.execute(query).first())
        if row is None:
            if version is not None:
                raise NotFound(f"Prompt '{prompt_id}' has no version {version}.",
                               param=param.replace("id", "version") if param.endswith("id") else param)
            raise _missing(prompt_id, param)
        return self._version(row)

    async def list(self, tenant: str, *, after: str | None, order: Order, limit: int) -> Page:
        scope = prompts.c.tenant == tenant
        joined = prompts.join(prompt_versions, sa.and_(prompt_versions.c.prompt_id == prompts.c.id,
                                                        prompt_versions.c.version == prompts.c.latest_version))
        query = sa.select(prompts.c.id, prompts.c.name, prompts.c.latest_version, prompt_versions.c.version,
                          prompts.c.created_at, prompt_versions.c.template).select_from(joined).where(scope)
        query = page_query(query, prompts, prompts.c.id, scope, after, None, order, limit)
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return Page([self._version(r).resource() for r in rows[:limit]], len(rows) > limit)

    async def versions(self, prompt_id: str, tenant: str) -> list[PromptVersion]:
        """Every version of the prompt, newest first."""
        latest = await self.get(prompt_id, tenant)
        query = sa.select(prompt_versions).where(prompt_versions.c.prompt_id == prompt_id) \
            .order_by(prompt_versions.c.version.desc())
        rows = await self.store.run(lambda conn: conn.execute(query).all())
        return [PromptVersion(prompt_id, latest.name, r.version, latest.latest_version, r.created_at,
                              json.loads(r.template), self.variables_of(json.loads(r.template))) for r in rows]

    async def delete(self, prompt_id: str, tenant: str) -> None:
        def delete(conn: sa.Connection) -> bool:
            gone = conn.execute(prompts.delete().where(prompts.c.id == prompt_id, prompts.c.tenant == tenant))
            if gone.rowcount:
                conn.execute(prompt_versions.delete().where(prompt_versions.c.prompt_id == prompt_id))
            return bool(gone.rowcount)

        if not await self.store.run(delete):
            raise _missing(prompt_id)


def _missing(prompt_id: str, param: str = "prompt_id") -> NotFound:
    return NotFound(f"No prompt with id '{prompt_id}' found.", param=param)
