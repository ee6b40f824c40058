"""The Vector Stores API (``/v1/vector_stores``): stores, their files and file batches, and search; per
tenant.  Ingestion runs in the background (:mod:`parley.retrieval.ingest`); a retrieval of something still in
progress tells the SDK's pollers to look again soon (``openai-poll-after-ms``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, field_validator

from parley.auth import Caller
from parley.errors import InvalidRequest, NotFound
from parley.http.bodies import check_metadata, parse_body
from parley.http.routes import caller, runtime
from parley.retrieval.chunking import parse_strategy
from parley.retrieval.filters import check_attributes, check_filter
from parley.retrieval.search import Query as SearchQuery
from parley.retrieval.service import Retrieval, parse_ranking
from parley.store.vector_stores import STATUSES, Entry
from parley.validation import StrictModel

vector_store_routes = APIRouter()
POLL_AFTER_MS = "100"
MAX_FILES = 500


class ExpiresAfter(StrictModel):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class CreateStore(StrictModel):
    name: str | None = Field(None, max_length=512)
    description: str | None = Field(None, max_length=2048)
    file_ids: list[str] = Field(default_factory=list, max_length=MAX_FILES)
    chunking_strategy: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None
    embedding_model: str | None = Field(None, description="Parley's own: the store's embedding model.")
    _metadata = field_validator("metadata")(check_metadata)


class UpdateStore(StrictModel):
    name: str | None = Field(None, max_length=512)
    metadata: dict[str, Any] | None = None
    expires_after: ExpiresAfter | None = None
    _metadata = field_validator("metadata")(check_metadata)


class AddFile(StrictModel):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class UpdateFile(StrictModel):
    attributes: dict[str, Any] | None


class CreateBatch(StrictModel):
    file_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_FILES)
    files: list[AddFile] | None = Field(None, min_length=1, max_length=MAX_FILES)
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class Search(StrictModel):
    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: dict[str, Any] | None = None
    rewrite_query: bool = False


def _retrieval(request: Request) -> Retrieval:
    return runtime(request).retrieval


def _store_missing(store_id: str) -> NotFound:
    return NotFound(f"Vector store with id '{store_id}' not found.", param="vector_store_id")


def _file_missing(file_id: str) -> NotFound:
    return NotFound(f"No file with id '{file_id}' found in the vector store.", param="file_id")


def _polled(resource: dict[str, Any]) -> JSONResponse:
    headers = {"openai-poll-after-ms": POLL_AFTER_MS} if resource["status"] in ("in_progress", "cancelling") else {}
    return JSONResponse(resource, headers=headers)


async def _entries(retrieval: Retrieval, tenant: str, items: list[tuple[str, Any, Any]], param: str) -> list[Entry]:
    """Files to add, each one of the tenant's (a 404 naming it otherwise), with its attributes and chunking."""
    entries = []
    for i, (file_id, attributes, chunking) in enumerate(items):
        record = await retrieval.files.get(file_id, tenant)
        if record is None:
            raise NotFound(f"No file with id '{file_id}' found.", param=f"{param}[{i}]")
        entries.append(Entry(file_id, record.filename, check_attributes(attributes),
                             parse_strategy(chunking)))
    return entries


# -- stores ---------------------------------------------------------------------------------------------------

@vector_store_routes.post("/v1/vector_stores")
async def create_store(request: Request, who: Caller = Depends(caller)) -> Response:
    body: CreateStore = await parse_body(request, CreateStore)
    retrieval = _retrieval(request)
    model = body.embedding_model or runtime(request).settings.embedding_model
    retrieval.embedders.check(model)
    chunking = parse_strategy(body.chunking_strategy)
    entries = await _entries(retrieval, who.tenant, [(f, None, chunking) for f in body.file_ids], "file_ids")
    resource = await retrieval.vector_stores.create(
        who.tenant, name=body.name, description=body.description, metadata=body.metadata or {},
        expires_after=body.expires_after.model_dump() if body.expires_after else None, embedding_model=model,
        entries=entries)
    retrieval.ingestor.wake()
    return JSONResponse(resource)


@vector_store_routes.get("/v1/vector_stores")
async def list_stores(request: Request, who: Caller = Depends(caller), after: str | None = None,
                      before: str | None = None, limit: int = Query(20, ge=1, le=100),
                      order: Literal["asc", "desc"] = "desc") -> Response:
    page = await _retrieval(request).vector_stores.list(who.tenant, after=after, before=before, limit=limit,
                                                        order=order)
    return JSONResponse(page.body())


@vector_store_routes.get("/v1/vector_stores/{store_id}")
async def retrieve_store(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await _retrieval(request).vector_stores.get(store_id, who.tenant)
    if resource is None:
        raise _store_missing(store_id)
    return _polled(resource)


@vector_store_routes.post("/v1/vector_stores/{store_id}")
async def update_store(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    body: UpdateStore = await parse_body(request, UpdateStore)
    values = body.model_dump(exclude_unset=True)
    resource = await _retrieval(request).vector_stores.update(store_id, who.tenant, values)
    if resource is None:
        raise _store_missing(store_id)
    return JSONResponse(resource)


@vector_store_routes.delete("/v1/vector_stores/{store_id}")
async def delete_store(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    if not await _retrieval(request).vector_stores.delete(store_id, who.tenant):
        raise _store_missing(store_id)
    return JSONResponse({"id": store_id, "object": "vector_store.deleted", "deleted": True})


# -- files ----------------------------------------------------------------------------------------------------

@vector_store_routes.post("/v1/vector_stores/{store_id}/files")
async def add_file(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    body: AddFile = await parse_body(request, AddFile)
    retrieval = _retrieval(request)
    if await retrieval.vector_stores.get(store_id, who.tenant) is None:
        raise _store_missing(store_id)
    [entry] = await _entries(retrieval, who.tenant, [(body.file_id, body.attributes, body.chunking_strategy)],
                             "file_id")
    resource = await retrieval.vector_stores.add_file(store_id, who.tenant, entry)
    if resource is None:
        raise _store_missing(store_id)
    retrieval.ingestor.wake()
    return JSONResponse(resource)


@vector_store_routes.get("/v1/vector_stores/{store_id}/files")
async def list_store_files(request: Request, store_id: str, who: Caller = Depends(caller), after: str | None = None,
                           before: str | None = None, limit: int = Query(20, ge=1, le=100),
                           order: Literal["asc", "desc"] = "desc", filter: str | None = None) -> Response:
    return await _list_files(request, store_id, who.tenant, None, after, before, limit, order, filter)


async def _list_files(request: Request, store_id: str, tenant: str, batch_id: str | None, after: str | None,
                      before: str | None, limit: int, order: Literal["asc", "desc"], status: str | None) -> Response:
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"'filter' must be one of {', '.join(STATUSES)}.", param="filter")
    page = await _retrieval(request).vector_stores.list_files(
        store_id, tenant, status=status, batch_id=batch_id, after=after, before=before, limit=limit, order=order)
    if page is None:
        raise _store_missing(store_id)
    return JSONResponse(page.body())


@vector_store_routes.get("/v1/vector_stores/{store_id}/files/{file_id}")
async def retrieve_store_file(request: Request, store_id: str, file_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await _retrieval(request).vector_stores.get_file(store_id, file_id, who.tenant)
    if resource is None:
        raise _file_missing(file_id)
    return _polled(resource)


@vector_store_routes.post("/v1/vector_stores/{store_id}/files/{file_id}")
async def update_store_file(request: Request, store_id: str, file_id: str, who: Caller = Depends(caller)) -> Response:
    body: UpdateFile = await parse_body(request, UpdateFile)
    resource = await _retrieval(request).vector_stores.update_file(store_id, file_id, who.tenant,
                                                                   check_attributes(body.attributes))
    if resource is None:
        raise _file_missing(file_id)
    return JSONResponse(resource)


@vector_store_routes.delete("/v1/vector_stores/{store_id}/files/{file_id}")
async def delete_store_file(request: Request, store_id: str, file_id: str, who: Caller = Depends(caller)) -> Response:
    if not await _retrieval(request).vector_stores.delete_file(store_id, file_id, who.tenant):
        raise _file_missing(file_id)
    return JSONResponse({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


@vector_store_routes.get("/v1/vector_stores/{store_id}/files/{file_id}/content")
async def store_file_content(request: Request, store_id: str, file_id: str, who: Caller = Depends(caller)) -> Response:
    texts = await _retrieval(request).vector_stores.file_chunks(store_id, file_id, who.tenant)
    if texts is None:
        raise _file_missing(file_id)
    return JSONResponse({"object": "vector_store.file_content.page", "data": [{"type": "text", "text": t}
                                                                             for t in texts],
                         "has_more": False, "next_page": None})


# -- file batches ---------------------------------------------------------------------------------------------

@vector_store_routes.post("/v1/vector_stores/{store_id}/file_batches")
async def create_batch(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    body: CreateBatch = await parse_body(request, CreateBatch)
    if (body.file_ids is None) == (body.files is None):
        raise InvalidRequest("Give either 'file_ids' or 'files'.", param="file_ids")
    if body.files is not None and (body.attributes is not None or body.chunking_strategy is not None):
        raise InvalidRequest("With 'files', give attributes and chunking_strategy per file.", param="files")
    retrieval = _retrieval(request)
    if await retrieval.vector_stores.get(store_id, who.tenant) is None:
        raise _store_missing(store_id)
    items = [(f, body.attributes, body.chunking_strategy) for f in body.file_ids] if body.file_ids is not None \
        else [(f.file_id, f.attributes, f.chunking_strategy) for f in body.files or []]
    entries = await _entries(retrieval, who.tenant, items, "file_ids" if body.file_ids is not None else "files")
    resource = await retrieval.vector_stores.create_batch(store_id, who.tenant, entries)
    if resource is None:
        raise _store_missing(store_id)
    retrieval.ingestor.wake()
    return _polled(resource)


def _batch_missing(batch_id: str) -> NotFound:
    return NotFound(f"File batch with id '{batch_id}' not found.", param="batch_id")


@vector_store_routes.get("/v1/vector_stores/{store_id}/file_batches/{batch_id}")
async def retrieve_batch(request: Request, store_id: str, batch_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await _retrieval(request).vector_stores.get_batch(store_id, batch_id, who.tenant)
    if resource is None:
        raise _batch_missing(batch_id)
    return _polled(resource)


@vector_store_routes.post("/v1/vector_stores/{store_id}/file_batches/{batch_id}/cancel")
async def cancel_batch(request: Request, store_id: str, batch_id: str, who: Caller = Depends(caller)) -> Response:
    resource = await _retrieval(request).vector_stores.cancel_batch(store_id, batch_id, who.tenant)
    if resource is None:
        raise _batch_missing(batch_id)
    return JSONResponse(resource)


@vector_store_routes.get("/v1/vector_stores/{store_id}/file_batches/{batch_id}/files")
async def list_batch_files(request: Request, store_id: str, batch_id: str, who: Caller = Depends(caller),
                           after: str | None = None, before: str | None = None, limit: int = Query(20, ge=1, le=100),
                           order: Literal["asc", "desc"] = "desc", filter: str | None = None) -> Response:
    if await _retrieval(request).vector_stores.get_batch(store_id, batch_id, who.tenant) is None:
        raise _batch_missing(batch_id)
    return await _list_files(request, store_id, who.tenant, batch_id, after, before, limit, order, filter)


# -- search ---------------------------------------------------------------------------------------------------

@vector_store_routes.post("/v1/vector_stores/{store_id}/search")
async def search(request: Request, store_id: str, who: Caller = Depends(caller)) -> Response:
    body: Search = await parse_body(request, Search)
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries) or len(queries) > 10:
        raise InvalidRequest("'query' must be a non-empty string or a list of 1 to 10 of them.", param="query")
    ranking = parse_ranking(body.ranking_options)
    filters = None if body.filters is None else check_filter(body.filters)
    retrieval = _retrieval(request)
    stores = await retrieval.stores([store_id], who.tenant, "vector_store_id")
    if body.rewrite_query:
        queries = await retrieval.rewrite(queries)
    query = SearchQuery(queries, max_results=body.max_num_results, filters=filters, **ranking)
    hits = await retrieval.search(stores, query)
    return JSONResponse({"object": "vector_store.search_results.page", "search_query": queries,
                         "data": [{"file_id": h.file_id, "filename": h.filename, "score": h.score,
                                   "attributes": h.attributes, "content": [{"type": "text", "text": h.text}]}
                                  for h in hits],
                         "has_more": False, "next_page": None})
