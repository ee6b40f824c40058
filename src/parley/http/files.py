"""The Files API (``/v1/files``): upload (multipart), list, retrieve, content, delete, per tenant."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile

from parley.auth import Caller
from parley.errors import InvalidRequest, NotFound, PayloadTooLarge
from parley.http.routes import caller, runtime
from parley.store.files import encode_list

file_routes = APIRouter()
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and other fields, beyond the file itself


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"No file with id '{file_id}' found.", param="file_id")


def _expiry(form: Any) -> int | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after.anchor must be 'created_at'.", param="expires_after.anchor")
    if not isinstance(seconds, str) or not seconds.isdigit() or not 3600 <= int(seconds) <= 2592000:
        raise InvalidRequest("expires_after.seconds must be between 3600 (1 hour) and 2592000 (30 days).",
                             param="expires_after.seconds")
    return int(seconds)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than {limit} bytes (--max-file-bytes).", param="file")


async def upload_form(request: Request, limit: int, max_fields: int, shape: str) -> FormData:
    """A multipart form holding one file of at most ``limit`` bytes (its declared length checked before it is
    read; the file is spooled to disk as it arrives); ``shape`` says in the 400 what the form should hold."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    try:
        return await request.form(max_files=1, max_fields=max_fields)
    except Exception:  # noqa: BLE001 - starlette's multipart errors are of several kinds
        raise InvalidRequest(f"The body must be multipart/form-data with {shape}.", param="file") from None


def check_size(upload: UploadFile, limit: int) -> None:
    if upload.size is not None and upload.size > limit:
        raise _too_large(limit)


@file_routes.post("/v1/files")
async def upload_file(request: Request, who: Caller = Depends(caller)) -> Response:
    server = runtime(request)
    limit = server.settings.max_file_bytes
    form = await upload_form(request, limit, 8, "a 'file' and a 'purpose'")
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing required parameter: 'file'.", param="file",
                                 code="missing_required_parameter")
        if purpose not in PURPOSES:
            raise InvalidRequest(f"'purpose' must be one of {', '.join(PURPOSES)}.", param="purpose")
        if not upload.size:
            raise InvalidRequest("The file is empty.", param="file", code="empty_file")
        check_size(upload, limit)
        record = await server.files.create(who.tenant, str(purpose), (upload.filename or "upload")[:512],
                                           upload.file, _expiry(form))
    finally:
        await form.close()
    return JSONResponse(record.resource())


@file_routes.get("/v1/files")
async def list_files(request: Request, who: Caller = Depends(caller), purpose: str | None = None,
                     after: str | None = None, limit: int = Query(10000, ge=1, le=10000),
                     order: Literal["asc", "desc"] = "desc") -> Response:
    records, has_more = await runtime(request).files.list(who.tenant, purpose=purpose, after=after, limit=limit,
                                                          order=order)
    return Response(encode_list(records, has_more), media_type="application/json")


@file_routes.get("/v1/files/{file_id}")
async def retrieve_file(request: Request, file_id: str, who: Caller = Depends(caller)) -> Response:
    record = await runtime(request).files.get(file_id, who.tenant)
    if record is None:
        raise _not_found(file_id)
    return JSONResponse(record.resource())


@file_routes.get("/v1/files/{file_id}/content")
async def file_content(request: Request, file_id: str, who: Caller = Depends(caller)) -> StreamingResponse:
    server = runtime(request)
    record = await server.files.get(file_id, who.tenant)
    if record is None:
        raise _not_found(file_id)
    return StreamingResponse(server.files.content(record), media_type="application/octet-stream",
                             headers={"content-length": str(record.bytes)})


@file_routes.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    if not await runtime(request).files.delete(file_id, who.tenant):
        raise _not_found(file_id)
    return {"id": file_id, "object": "file", "deleted": True}

