"""The Containers API (``/v1/containers``): containers and their files, per tenant (see
:mod:`parley.containers.service`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from starlette.datastructures import UploadFile

from parley.auth import Caller
from parley.containers.service import Containers
from parley.containers.store import Container
from parley.errors import InvalidRequest, NotFound, UnsupportedParameter
from parley.replayed_items import field_of
from parley.http.bodies import parse_body
from parley.http.files import check_size, upload_form
from parley.http.routes import caller, runtime
from parley.store.files import FileRecord
from parley.validation import StrictModel

container_routes = APIRouter()
MAX_FILES = 100


class ExpiresAfter(StrictModel):
    anchor: Literal["last_active_at"]
    minutes: int = Field(ge=1, le=10080)


class NetworkPolicy(StrictModel):
    type: Literal["disabled", "allowlist"]
    allowed_domains: list[str] | None = None
    domain_secrets: list[dict[str, Any]] | None = None


class CreateContainer(StrictModel):
    name: str = Field(min_length=1, max_length=256)
    expires_after: ExpiresAfter | None = None
    file_ids: list[str] = Field(default_factory=list, max_length=MAX_FILES)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = None
    network_policy: NetworkPolicy | None = None
    skills: list[dict[str, Any]] | None = None


class AddFile(StrictModel):
    file_id: str = Field(min_length=1, max_length=80)


def _containers(request: Request) -> Containers:
    return runtime(request).containers


def check_network_policy(policy: Any, param: str) -> None:
    """A container has no network; an allowlist is refused by name (it may come later)."""
    kind = field_of(policy, "type")
    if kind not in (None, "disabled"):
        raise UnsupportedParameter(param, "Containers have no network access in Parley; only "
                                          "network_policy {\"type\": \"disabled\"} is supported.")


@container_routes.post("/v1/containers")
async def create_container(request: Request, who: Caller = Depends(caller)) -> Response:
    body: CreateContainer = await parse_body(request, CreateContainer)
    if body.network_policy is not None:
        check_network_policy(body.network_policy, "network_policy")
    containers = _containers(request)
    containers.check_available("name")
    skills = await containers.skill_versions(who.tenant, body.skills, "skills")
    container = await containers.create(who.tenant, body.name, file_ids=body.file_ids,
                                        minutes=body.expires_after.minutes if body.expires_after else 20,
                                        memory_limit=body.memory_limit, skills=skills)
    return JSONResponse(container.resource())


@container_routes.get("/v1/containers")
async def list_containers(request: Request, who: Caller = Depends(caller), after: str | None = None,
                          limit: int = Query(20, ge=1, le=100), order: Literal["asc", "desc"] = "desc",
                          name: str | None = None) -> Response:
    page = await _containers(request).store.list(who.tenant, name=name, after=after, order=order, limit=limit)
    return JSONResponse(page.body())


@container_routes.get("/v1/containers/{container_id}")
async def retrieve_container(request: Request, container_id: str, who: Caller = Depends(caller)) -> Response:
    return JSONResponse((await _containers(request).get(container_id, who.tenant)).resource())


@container_routes.delete("/v1/containers/{container_id}")
async def delete_container(request: Request, container_id: str, who: Caller = Depends(caller)) -> Response:
    containers = _containers(request)
    await containers.delete(await containers.get(container_id, who.tenant))
    return JSONResponse({"id": container_id, "object": "container.deleted", "deleted": True})


# -- files ----------------------------------------------------------------------------------------------------

async def _usable(request: Request, container_id: str, tenant: str) -> Container:
    return await _containers(request).usable(container_id, tenant, "container_id")


@container_routes.post("/v1/containers/{container_id}/files")
async def create_container_file(request: Request, container_id: str, who: Caller = Depends(caller)) -> Response:
    containers = _containers(request)
    container = await _usable(request, container_id, who.tenant)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        body: AddFile = await parse_body(request, AddFile)
        record = await containers.container_files.copy(container, await _upload(containers, who.tenant, body.file_id))
        return JSONResponse(record.resource())
    limit = runtime(request).settings.max_file_bytes
    form = await upload_form(request, limit, 4, "a 'file', or JSON with a 'file_id'")
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            file_id = form.get("file_id")
            if not isinstance(file_id, str):
                raise InvalidRequest("Give a 'file' or a 'file_id'.", param="file", code="missing_required_parameter")
            record = await containers.container_files.copy(container, await _upload(containers, who.tenant, file_id))
            return JSONResponse(record.resource())
        check_size(upload, limit)
        record = await containers.container_files.add(container, (upload.filename or "upload")[:255], upload.file)
    finally:
        await form.close()
    return JSONResponse(record.resource())


async def _upload(containers: Containers, tenant: str, file_id: str) -> FileRecord:
    """The tenant's uploaded file to copy into a container (a 404 naming ``file_id`` otherwise)."""
    record = await containers.files.get(file_id, tenant) if len(file_id) <= 80 else None
    if record is None:
        raise NotFound(f"No file with id '{file_id}' found.", param="file_id")
    return record


@container_routes.get("/v1/containers/{container_id}/files")
async def list_container_files(request: Request, container_id: str, who: Caller = Depends(caller),
                               after: str | None = None, limit: int = Query(20, ge=1, le=100),
                               order: Literal["asc", "desc"] = "desc") -> Response:
    containers = _containers(request)
    container = await containers.get(container_id, who.tenant)
    page = await containers.store.page(container.id, after=after, order=order, limit=limit)
    return JSONResponse(page.body())


async def _file(request: Request, container_id: str, file_id: str, tenant: str) -> tuple[Container, Any]:
    containers = _containers(request)
    container = await containers.get(container_id, tenant)
    record = await containers.store.file(container.id, file_id) if len(file_id) <= 80 else None
    if record is None:
        raise NotFound(f"No file with id '{file_id}' found in container '{container_id}'.", param="file_id")
    return container, record


@container_routes.get("/v1/containers/{container_id}/files/{file_id}")
async def retrieve_container_file(request: Request, container_id: str, file_id: str,
                                  who: Caller = Depends(caller)) -> Response:
    _, record = await _file(request, container_id, file_id, who.tenant)
    return JSONResponse(record.resource())


@container_routes.get("/v1/containers/{container_id}/files/{file_id}/content")
async def container_file_content(request: Request, container_id: str, file_id: str,
                                 who: Caller = Depends(caller)) -> Response:
    container, record = await _file(request, container_id, file_id, who.tenant)
    content = await _containers(request).container_files.content(container, record)
    return StreamingResponse(content, media_type="application/octet-stream",
                             headers={"content-length": str(record.bytes)})


@container_routes.delete("/v1/containers/{container_id}/files/{file_id}")
async def delete_container_file(request: Request, container_id: str, file_id: str,
                                who: Caller = Depends(caller)) -> Response:
    container, record = await _file(request, container_id, file_id, who.tenant)
    await _containers(request).container_files.remove(container, record.id)
    return JSONResponse({"id": file_id, "object": "container.file.deleted", "deleted": True})
