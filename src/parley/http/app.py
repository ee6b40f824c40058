"""The ASGI app: the routes (:mod:`parley.http.routes`), the middleware (:mod:`parley.http.middleware`) and
the error mapping (:mod:`parley.http.error_handlers`) around one :class:`~parley.runtime.Runtime`, which
starts and stops with the app.

FastAPI, over plain Starlette, for what it gives the edge for free: the OpenAPI description behind
``--docs``, declarative query validation (``input_items``) and dependencies (the caller is resolved once,
before any validation).  The hot path reads the raw body itself and never uses FastAPI's body parsing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from parley import heap
from parley.backends.router import Router
from parley.console.prompts import prompt_pages
from parley.console.access import ConsoleHeaders
from parley.console.routes import console_routes
from parley.http import error_handlers
from parley.http.create import CreateRoute
from parley.http.middleware import BodyBudget, RequestIds
from parley.http.files import file_routes
from parley.http.conversations import conversation_routes
from parley.http.vector_stores import vector_store_routes
from parley.http.containers import container_routes
from parley.http.prompts import prompt_routes
from parley.http.skills import skill_routes
from parley.http.routes import routes
from parley.runtime import Runtime
from parley.settings import Settings


def create_app(settings: Settings, *, router: Router | None = None, server: bool = False) -> FastAPI:
    """The ASGI app for ``settings``; the store and backends open in its lifespan.  ``server``: the app is its
    process's server (``parley serve``), whose heap settles once started (:mod:`parley.heap`)."""
    runtime = Runtime(settings, router)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if server:
            heap.settle()
        try:
            yield
        finally:
            await runtime.close()

    docs = settings.docs
    app = FastAPI(title="Parley", version="0.1.0", lifespan=lifespan, openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.runtime = runtime
    app.add_middleware(CreateRoute, runtime=runtime)  # the hot path, inside Parley's middleware (see create.py)
    app.add_middleware(BodyBudget, limit=settings.max_inflight_body_bytes, max_body=settings.max_body_bytes)
    app.add_middleware(RequestIds, metrics=runtime.metrics)
    app.add_middleware(ConsoleHeaders)
    error_handlers.install(app)
    # the routes themselves: include_router adds a layer to every request
    app.router.routes.extend(routes.routes + file_routes.routes + vector_store_routes.routes + container_routes.routes +
                             skill_routes.routes + prompt_routes.routes +
                             conversation_routes.routes + console_routes + prompt_pages)
    return app
