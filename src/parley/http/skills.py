"""The Skills API (``/v1/skills``): skills, their versions and their files as a zip, per tenant (see
:mod:`parley.containers.skills`)."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from parley.auth import Caller
from parley.containers.skill_bundle import MAX_BYTES, MAX_FILES, BadBundle, Bundle, read_bundle
from parley.containers.skills import SqlSkills, Version, version_number
from parley.errors import InvalidRequest, PayloadTooLarge
from parley.http.bodies import parse_body
from parley.http.files import MULTIPART_OVERHEAD
from parley.http.routes import caller, runtime
from parley.validation import StrictModel

skill_routes = APIRouter()


class UpdateSkill(StrictModel):
    default_version: str


def _skills(request: Request) -> SqlSkills:
    skills = runtime(request).containers.skills
    assert skills is not None, "the runtime has skills"
    return skills


async def _bundle(request: Request) -> tuple[Bundle, dict[str, str]]:
    """The skill a multipart upload holds (``files``: a zip, or a folder's files by their paths), and the form's
    other fields."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES + MULTIPART_OVERHEAD * MAX_FILES // 16:
        raise PayloadTooLarge(f"A skill's files may hold at most {MAX_BYTES} bytes.", param="files")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Upload a skill as multipart/form-data 'files' (a zip, or a folder's files).",
                             param="files")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=8)
    except Exception:  # noqa: BLE001 - starlette's multipart errors are of several kinds
        raise InvalidRequest(f"The body must be multipart/form-data with at most {MAX_FILES} 'files'.",
                             param="files") from None
    try:
        uploads, total = [], 0
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) and key in ("files", "files[]"):
                total += value.size or 0
                if total > MAX_BYTES:
                    raise PayloadTooLarge(f"A skill's files may hold at most {MAX_BYTES} bytes.", param="files")
                uploads.append((value.filename or "file", await value.read()))
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    finally:
        await form.close()
    try:
        return await asyncio.to_thread(read_bundle, uploads), fields
    except BadBundle as exc:
        raise InvalidRequest(f"Not a skill: {exc}.", param="files", code="invalid_skill") from None


@skill_routes.post("/v1/skills")
async def create_skill(request: Request, who: Caller = Depends(caller)) -> Response:
    bundle, _ = await _bundle(request)
    return JSONResponse(await _skills(request).create(who.tenant, bundle))


@skill_routes.get("/v1/skills")
async def list_skills(request: Request, who: Caller = Depends(caller), after: str | None = None,
                      limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc") -> Response:
    return JSONResponse((await _skills(request).list(who.tenant, after=after, order=order, limit=limit)).body())


@skill_routes.get("/v1/skills/{skill_id}")
async def retrieve_skill(request: Request, skill_id: str, who: Caller = Depends(caller)) -> Response:
    return JSONResponse(await _skills(request).get(skill_id, who.tenant))


@skill_routes.post("/v1/skills/{skill_id}")
async def update_skill(request: Request, skill_id: str, who: Caller = Depends(caller)) -> Response:
    body: UpdateSkill = await parse_body(request, UpdateSkill)
    version = version_number(body.default_version, "default_version")
    return JSONResponse(await _skills(request).set_default(skill_id, who.tenant, version or 1))


@skill_routes.delete("/v1/skills/{skill_id}")
async def delete_skill(request: Request, skill_id: str, who: Caller = Depends(caller)) -> Response:
    await _skills(request).delete(skill_id, who.tenant)
    return JSONResponse({"id": skill_id, "object": "skill.deleted", "deleted": True})


async def _zip(request: Request, version: Version, tenant: str) -> Response:
    blob, content = await _skills(request).content(version, tenant)
    return StreamingResponse(content, media_type="application/zip", headers={
        "content-length": str(blob.bytes), "content-disposition": f'attachment; filename="{version.name}.zip"'})


@skill_routes.get("/v1/skills/{skill_id}/content")
async def skill_content(request: Request, skill_id: str, who: Caller = Depends(caller)) -> Response:
    return await _zip(request, await _skills(request).version(skill_id, who.tenant, None), who.tenant)


@skill_routes.post("/v1/skills/{skill_id}/versions")
async def create_version(request: Request, skill_id: str, who: Caller = Depends(caller)) -> Response:
    await _skills(request).get(skill_id, who.tenant)  # a 404 before the upload is read
    bundle, fields = await _bundle(request)
    default = fields.get("default", "false").lower()
    if default not in ("true", "false"):
        raise InvalidRequest("'default' must be true or false.", param="default")
    version = await _skills(request).add_version(skill_id, who.tenant, bundle, default == "true")
    return JSONResponse(version.resource())


@skill_routes.get("/v1/skills/{skill_id}/versions")
async def list_versions(request: Request, skill_id: str, who: Caller = Depends(caller), after: str | None = None,
                        limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc") -> Response:
    page = await _skills(request).versions(skill_id, who.tenant, after=after, order=order, limit=limit)
    return JSONResponse(page.body())


@skill_routes.get("/v1/skills/{skill_id}/versions/{version}")
async def retrieve_version(request: Request, skill_id: str, version: str, who: Caller = Depends(caller)) -> Response:
    found = await _skills(request).version(skill_id, who.tenant, version_number(version, "version"))
    return JSONResponse(found.resource())


@skill_routes.delete("/v1/skills/{skill_id}/versions/{version}")
async def delete_version(request: Request, skill_id: str, version: str, who: Caller = Depends(caller)) -> Response:
    skills = _skills(request)
    found = await skills.version(skill_id, who.tenant, version_number(version, "version"))
    await skills.delete_version(skill_id, who.tenant, found.version)
    return JSONResponse({"id": found.id, "object": "skill.version.deleted", "deleted": True,
                         "version": str(found.version)})


@skill_routes.get("/v1/skills/{skill_id}/versions/{version}/content")
async def version_content(request: Request, skill_id: str, version: str, who: Caller = Depends(caller)) -> Response:
    found = await _skills(request).version(skill_id, who.tenant, version_number(version, "version"))
    return await _zip(request, found, who.tenant)
