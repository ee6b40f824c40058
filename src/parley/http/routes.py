"""The routes: parse, call the engine or the store, encode JSON or SSE.  Each handler reaches the server's
:class:`~parley.runtime.Runtime` one way (``request.app.state.runtime``) and its caller one way (the
:func:`caller` dependency, so a missing or wrong key is a 401 before anything else is read or validated)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from parley.auth import Caller
from parley.engine.compaction import COMPACT_PARAMETERS
from parley.errors import InvalidRequest, NotFound, StoreUnavailable, UnknownParameter, UnsupportedParameter
from parley.http.bodies import read_json
from parley.prompts.templates import apply as apply_prompt
from parley.request import parse_create
from parley.wire import integer_timestamps
from parley.runtime import Runtime

routes = APIRouter()


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def caller(request: Request) -> Caller:  # async: FastAPI runs a plain def on a worker thread
    return runtime(request).keys.caller(request.headers.get("authorization"),
                                        request.client.host if request.client else None)


async def metrics_reader(request: Request) -> None:
    """With API keys configured, a scrape needs a key unless ``--public-metrics``."""
    if not runtime(request).settings.public_metrics:
        await caller(request)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


@routes.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness: 200 while the process serves, with the store's state as last seen (no database call)."""
    server = runtime(request)
    if not server.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    return JSONResponse({"status": "ok", "store": "ok" if server.store.available else "unavailable"})


@routes.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only when the store answers now; a load balancer sends no traffic here otherwise."""
    server = runtime(request)
    if not server.ready:
        return JSONResponse({"status": "starting"}, status_code=503)
    try:
        await server.store.ping()
    except StoreUnavailable:
        return JSONResponse({"status": "unavailable", "store": "unavailable"}, status_code=503)
    containers = server.containers
    sandbox = {"name": containers.sandbox.name if containers.sandbox else "none",
               "available": containers.why_unavailable is None}
    if containers.why_unavailable is not None:
        sandbox["reason"] = containers.why_unavailable
    return JSONResponse({"status": "ready", "store": "ok", "sandbox": sandbox})


@routes.get("/metrics", dependencies=[Depends(metrics_reader)])
async def prometheus(request: Request) -> Response:
    return Response(runtime(request).metrics.exposition(), media_type="text/plain; version=0.0.4")


@routes.get("/v1/models", dependencies=[Depends(caller)])
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": await runtime(request).router.list_models()}


@routes.post("/v1/responses/input_tokens")
async def count_input_tokens(request: Request, who: Caller = Depends(caller)) -> Response:
    """The tokens a create with this body would send to the model first (``x-parley-token-count`` says whether
    the backend's tokenizer counted them or they are estimated)."""
    server = runtime(request)
    body = await read_json(request)
    if isinstance(body, dict) and ("stream" in body or "background" in body):
        raise UnsupportedParameter("stream" if "stream" in body else "background", "Not a parameter of a count.")
    body = await apply_prompt(body, server.prompts, who.tenant)
    create = parse_create(body, max_input_items=server.settings.max_input_items)
    tokens, how = await server.engine.count_input_tokens(create, who.tenant)
    return JSONResponse({"object": "response.input_tokens", "input_tokens": tokens},
                        headers={"x-parley-token-count": how})


@routes.post("/v1/responses/compact")
async def compact_response(request: Request, who: Caller = Depends(caller)) -> Response:
    """The user messages of a history and a ``compaction`` item summarizing the rest (nothing is stored)."""
    server = runtime(request)
    body = await read_json(request)
    for name in body if isinstance(body, dict) else ():
        if name not in COMPACT_PARAMETERS:
            raise UnknownParameter(name)
    create = parse_create(body, max_input_items=server.settings.max_input_items)
    return JSONResponse(await server.engine.compact(create, who.tenant, who.token))


# What retrieve and input_items can honour of ``include``: what every stored response and item already holds.
RETRIEVE_INCLUDES = {"web_search_call.action.sources"}
INPUT_ITEMS_INCLUDES = {"message.input_image.image_url", "computer_call_output.output.image_url"}


def _refuse_what_is_not_honoured(request: Request, includes: set[str]) -> None:
    """A 400 naming an ``include`` value Parley would otherwise ignore."""
    query = request.query_params
    for value in query.getlist("include[]") + query.getlist("include"):
        if value not in includes:
            raise UnsupportedParameter("include", f"include value '{value}' is not supported here; supported: "
                                       f"{', '.join(sorted(includes))}.")


MAX_SEQUENCE_NUMBER = 2**31 - 1  # the column's type on PostgreSQL


def _stream_query(request: Request) -> tuple[bool, int]:
    """``stream`` and ``starting_after`` of a retrieve (-1: from the first event)."""
    query = request.query_params
    stream = query.get("stream", "false").lower()
    if stream not in ("true", "false"):
        raise InvalidRequest("'stream' is true or false.", param="stream", code="invalid_type")
    after = query.get("starting_after")
    if after is None:
        return stream == "true", -1
    if stream != "true":
        raise InvalidRequest("'starting_after' goes with stream=true.", param="starting_after")
    if not after.lstrip("-").isdigit() or len(after) > 12 or not -1 <= int(after) <= MAX_SEQUENCE_NUMBER:
        raise InvalidRequest(f"'starting_after' is an event's sequence_number (-1 to {MAX_SEQUENCE_NUMBER}).",
                             param="starting_after", code="invalid_type")
    return True, int(after)


@routes.get("/v1/responses/{response_id}")
async def retrieve_response(request: Request, response_id: str, who: Caller = Depends(caller)) -> Response:
    _refuse_what_is_not_honoured(request, RETRIEVE_INCLUDES)
    stream, after = _stream_query(request)
    if stream:  # the kept events after `starting_after`, then the live ones: a background response's stream
        background = runtime(request).background
        await background.check_followable(response_id, who.tenant)
        return StreamingResponse(background.follow(response_id, after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    stored = await runtime(request).store.get(response_id, who.tenant)
    if stored is None:
        raise _not_found(response_id)
    return Response(integer_timestamps(stored.serialized()), media_type="application/json")  # rows stored before


@routes.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str, who: Caller = Depends(caller)) -> Response:
    stored = await runtime(request).background.cancel(response_id, who.tenant)
    return Response(integer_timestamps(stored), media_type="application/json")


@routes.delete("/v1/responses/{response_id}")
async def delete_response(request: Request, response_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
    if not await runtime(request).store.delete(response_id, who.tenant):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


@routes.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    request: Request,
    response_id: str,
    who: Caller = Depends(caller),
    after: str | None = None,
    before: str | None = None,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    _refuse_what_is_not_honoured(request, INPUT_ITEMS_INCLUDES)
    page = await runtime(request).store.input_items(response_id, who.tenant, after=after, before=before,
                                                    limit=limit, order=order)
    if page is None:
        raise _not_found(response_id)
    return {
        "object": "list",
        "data": page.data,
        "first_id": page.data[0]["id"] if page.data else None,
        "last_id": page.data[-1]["id"] if page.data else None,
        "has_more": page.has_more,
    }
