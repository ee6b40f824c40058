"""The HTTP edge: parse, call the engine, encode JSON or SSE.  Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types.responses import ResponseStreamEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.auth import ApiKeys
from parley.backends.router import Router
from parley.engine.engine import Engine
from parley.http.limits import BodyBudget
from parley.errors import InvalidRequest, NotFound, ParleyError, PayloadTooLarge, StoreUnavailable
from parley.ids import new_id
from parley.metrics import Metrics
from parley.netpolicy import AddressPolicy
from parley.reasoning import ReasoningCipher
from parley.request import parse_create
from parley.settings import Settings
from parley.store.sql import open_store
from parley.tools.web_search import make_provider

log = logging.getLogger("parley.http")
access = logging.getLogger("parley.access")


def _error(exc: ParleyError) -> JSONResponse:
    headers = {name.decode(): value.decode() for name, value in exc.header_pairs()}
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers or None)


def encode_sse(event: ResponseStreamEvent) -> bytes:
    """One SSE frame: ``event:`` line, one ``data:`` line, blank line."""
    return f"event: {event.type}\ndata: {event.model_dump_json(by_alias=True)}\n\n".encode()


def _sse(events: AsyncIterator[ResponseStreamEvent], running: set[asyncio.Task[None]],
         metrics: Metrics) -> AsyncIterator[bytes]:
    """Frames of a response that runs in its own task, started now, so a client that goes away (even
    before the first frame is sent) does not stop it: the response still completes and is stored (when
    ``store`` is true)."""
    queue: asyncio.Queue[ResponseStreamEvent | None] = asyncio.Queue()

    async def pump() -> None:
        metrics.streams.inc()
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception:  # the engine ends every response with a terminal event; this is a bug
            log.exception("a response stream broke off")
        finally:
            metrics.streams.dec()
            queue.put_nowait(None)

    task = asyncio.create_task(pump())
    running.add(task)
    task.add_done_callback(running.discard)
    return _frames(queue)


async def _frames(queue: asyncio.Queue[ResponseStreamEvent | None]) -> AsyncIterator[bytes]:
    finished = False
    while not finished:
        # Send every event that is ready in one write: under load this saves a syscall per event.
        batch = [await queue.get()]
        while not queue.empty():
            batch.append(queue.get_nowait())
        if batch[-1] is None:
            batch.pop()
            finished = True
        if batch:
            yield b"".join(encode_sse(event) for event in batch)  # type: ignore[arg-type]


async def _recover_abandoned(engine: Engine, stale_s: float) -> None:
    """Beat this instance's heart and fail the responses of instances that stopped beating (``kill -9``, a
    crash, a lost machine) and this instance's own whose final write never landed: at start-up and then every
    third of ``stale_s``, or every second while the database is unreachable (so the store is seen back soon)."""
    while True:
        try:
            failed = await engine.recorder.recover(stale_s)
            if failed:
                log.warning("marked %d abandoned in_progress responses as failed", len(failed))
        except StoreUnavailable:
            pass  # the store logs when it becomes unavailable
        except Exception:
            log.exception("crash recovery pass failed; retrying")
        await asyncio.sleep(stale_s / 3 if engine.store.available else min(1.0, stale_s / 3))


async def _read_body(request: Request, limit: int) -> bytearray:
    """The body, refused with a 413 as soon as it passes ``limit`` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
    body = bytearray()  # one buffer: a list of chunks joined at the end held the body twice
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
        body += chunk
    return body


METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "OPTIONS"})


def _route(scope: dict[str, Any]) -> str:
    """A label of bounded cardinality for a request: the method (or ``OTHER``) and the path template of the
    route it matched (``/v1/responses/{response_id}``), or ``other`` for a path no route serves."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "other"
    method = scope.get("method", "")
    return f"{method if method in METHODS else 'OTHER'} {template}"


class RequestIds:
    """Pure ASGI middleware: every response carries ``x-request-id`` (OpenAI's header, which the SDK
    exposes as ``_request_id``), and requests are counted and timed.  Pure ASGI, so streamed
    bodies pass through untouched."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = new_id("req").encode()
        started, status = time.perf_counter(), 500

        async def with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            route = _route(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            access.info("%s %s", route, status, extra={"request_id": request_id.decode(), "route": route,
                                                        "status": status, "duration_ms": round(elapsed * 1000, 2)})


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


def create_app(settings: Settings, *, router: Router | None = None) -> FastAPI:
    """The ASGI app for ``settings``; the store and backends open in its lifespan."""
    router = router or Router.from_settings(settings)
    keys = ApiKeys.from_settings(settings.api_keys, settings.api_keys_file)
    if not keys.enabled:
        log.warning("no API keys configured: serving without authentication (local mode)")

    def tenant(request: Request) -> str:
        """The caller's tenant: a dependency, so a missing or wrong key is a 401 before anything else is
        read or validated."""
        return keys.tenant(request.headers.get("authorization"))
    running: set[asyncio.Task[None]] = set()
    metrics = Metrics()
    search_provider = None
    if settings.web_search:
        search_provider = make_provider(settings.web_search, tavily_api_key=settings.tavily_api_key,
                                        brave_api_key=settings.brave_api_key, timeout=settings.tool_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings.database_url(), settings.store_timeout_s)
        await router.start()
        policy = AddressPolicy(enforce=keys.enabled, allow=settings.outbound_allow)
        engine = Engine(store, router, max_tool_iterations=settings.max_tool_iterations,
                        search_provider=search_provider, address_policy=policy, tool_timeout=settings.tool_timeout,
                        metrics=metrics, cipher=ReasoningCipher.from_settings(settings.reasoning_key, settings.data_dir),
                        store_retry_s=settings.store_retry_s)
        app.state.engine = engine
        await store.heartbeat(engine.recorder.instance_id)  # registered before it serves
        watchdog = asyncio.create_task(_recover_abandoned(engine, settings.instance_stale_s))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if running:  # let responses whose clients left finish, within a bound
                await asyncio.wait(running, timeout=settings.shutdown_grace_s)
            watchdog.cancel()
            try:
                await engine.recorder.sign_off()
            except StoreUnavailable:
                log.warning("could not sign this instance off: the database is unavailable")
            await router.aclose()
            await store.close()
            metrics.close()

    docs = settings.docs
    app = FastAPI(title="Parley", version="0.1.0", lifespan=lifespan, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.add_middleware(BodyBudget, limit=settings.max_inflight_body_bytes, max_body=settings.max_body_bytes)
    app.add_middleware(RequestIds, metrics=metrics)
    app.state.ready = False

    @app.exception_handler(ParleyError)
    async def _parley_error(_request: Request, exc: ParleyError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        param = str(err["loc"][-1]) if err.get("loc") else None
        return _error(InvalidRequest(f"Invalid value for '{param}': {err['msg']}.", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = {"error": {"message": str(exc.detail), "type": kind, "param": None, "code": None}}
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(ParleyError("The server had an error while processing your request."))

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness: 200 while the process serves, with the store's state as last seen (no database call)."""
        if not app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        engine: Engine = app.state.engine
        return JSONResponse({"status": "ok", "store": "ok" if engine.store.available else "unavailable"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: 200 only when the store answers now; a load balancer sends no traffic here otherwise."""
        if not app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            await app.state.engine.store.ping()
        except StoreUnavailable:
            return JSONResponse({"status": "unavailable", "store": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "store": "ok"})

    metrics_guard = [] if settings.public_metrics else [Depends(tenant)]

    @app.get("/metrics", dependencies=metrics_guard)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(caller: str = Depends(tenant)) -> dict[str, Any]:
        return {"object": "list", "data": await router.list_models()}

    @app.post("/v1/responses")
    async def create_response(request: Request, caller: str = Depends(tenant)) -> Response:
        try:  # orjson is strict: NaN, Infinity and lone surrogates are not JSON, and never reach a backend
            body = orjson.loads(await _read_body(request, settings.max_body_bytes))
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON (UTF-8, no NaN or lone surrogates).",
                                 code="invalid_json") from None
        if isinstance(body, dict) and isinstance(body.get("input"), list) and \
                len(body["input"]) > settings.max_input_items:
            raise InvalidRequest(f"'input' holds {len(body['input'])} items; at most {settings.max_input_items} "
                                 "are accepted.", param="input", code="too_many_items")
        create = parse_create(body)
        engine: Engine = request.app.state.engine
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        turn = await engine.prepare(create, caller, token.strip() if scheme.lower() == "bearer" else None)
        if create.stream:
            return StreamingResponse(_sse(engine.run(turn), running, metrics), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = await engine.respond(turn)
        return Response(result.model_dump_json(by_alias=True), media_type="application/json")

    @app.get("/v1/responses/{response_id}")
    async def retrieve_response(request: Request, response_id: str, caller: str = Depends(tenant)) -> Response:
        stored = await request.app.state.engine.store.get(response_id, caller)
        if stored is None:
            raise _not_found(response_id)
        return Response(stored.serialized(), media_type="application/json")

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(request: Request, response_id: str, caller: str = Depends(tenant)) -> dict[str, Any]:
        if not await request.app.state.engine.store.delete(response_id, caller):
            raise _not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    @app.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(
        request: Request,
        response_id: str,
        caller: str = Depends(tenant),
        after: str | None = None,
        before: str | None = None,
        limit: int = Query(20, ge=1, le=100),
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        page = await request.app.state.engine.store.input_items(
            response_id, caller, after=after, before=before, limit=limit, order=order
        )
        if page is None:
            raise _not_found(response_id)
        return {
            "object": "list",
            "data": page.data,
            "first_id": page.data[0]["id"] if page.data else None,
            "last_id": page.data[-1]["id"] if page.data else None,
            "has_more": page.has_more,
        }

    return app
