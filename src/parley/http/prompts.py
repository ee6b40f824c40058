"""Parley's prompts API (``/v1/prompts``): OpenAI keeps its prompts in its dashboard, so this small API (and the
console's Prompts page) is how they are made here.  A prompt has a name and versions; each version is a
template of a create (see :mod:`parley.prompts.templates`).

- ``POST /v1/prompts`` ``{"name", …settings}``: a prompt, version 1
- ``POST /v1/prompts/{id}/versions`` ``{…settings, "name"?}``: its next version
- ``GET /v1/prompts`` (``after``, ``limit``, ``order``), ``GET /v1/prompts/{id}`` (``version``),
  ``GET /v1/prompts/{id}/versions``, ``DELETE /v1/prompts/{id}``
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from parley.auth import Caller
from parley.errors import InvalidRequest
from parley.http.bodies import read_json
from parley.http.routes import caller, runtime
from parley.prompts.store import SqlPrompts
from parley.prompts.templates import check_template

prompt_routes = APIRouter()


def _prompts(request: Request) -> SqlPrompts:
    prompts = runtime(request).prompts
    assert prompts is not None, "the runtime has started"
    return prompts


def _name(body: dict[str, Any], required: bool) -> str | None:
    name = body.pop("name", None)
    if name is None and not required:
        return None
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 256:
        raise InvalidRequest("A prompt's 'name' is a string of 1 to 256 characters.", param="name")
    return name.strip()


async def _template(request: Request, name_required: bool) -> tuple[str | None, dict[str, Any]]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.", code="invalid_type")
    name = _name(body, name_required)
    return name, check_template({k: v for k, v in body.items() if v is not None})


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**31:
        raise InvalidRequest("'version' is a version number.", param="version")
    return int(raw)


@prompt_routes.post("/v1/prompts")
async def create_prompt(request: Request, who: Caller = Depends(caller)) -> Response:
    name, template = await _template(request, True)
    return JSONResponse((await _prompts(request).create(who.tenant, name or "", template)).resource())


@prompt_routes.get("/v1/prompts")
async def list_prompts(request: Request, who: Caller = Depends(caller), after: str | None = None,
                       limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc") -> Response:
    return JSONResponse((await _prompts(request).list(who.tenant, after=after, order=order, limit=limit)).body())


@prompt_routes.get("/v1/prompts/{prompt_id}")
async def retrieve_prompt(request: Request, prompt_id: str, who: Caller = Depends(caller),
                          version: str | None = None) -> Response:
    return JSONResponse((await _prompts(request).get(prompt_id, who.tenant, _version(version))).resource())


@prompt_routes.post("/v1/prompts/{prompt_id}/versions")
async def create_prompt_version(request: Request, prompt_id: str, who: Caller = Depends(caller)) -> Response:
    await _prompts(request).get(prompt_id, who.tenant)  # a 404 before the body is read
    name, template = await _template(request, False)
    return JSONResponse((await _prompts(request).add_version(prompt_id, who.tenant, template, name)).resource())


@prompt_routes.get("/v1/prompts/{prompt_id}/versions")
async def list_prompt_versions(request: Request, prompt_id: str, who: Caller = Depends(caller)) -> Response:
    versions = [v.resource() for v in await _prompts(request).versions(prompt_id, who.tenant)]
    return JSONResponse({"object": "list", "data": versions, "first_id": None, "last_id": None, "has_more": False})


@prompt_routes.delete("/v1/prompts/{prompt_id}")
async def delete_prompt(request: Request, prompt_id: str, who: Caller = Depends(caller)) -> Response:
    await _prompts(request).delete(prompt_id, who.tenant)
    return JSONResponse({"id": prompt_id, "object": "prompt.deleted", "deleted": True})
