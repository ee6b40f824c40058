"""Every error leaves in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: Parley's typed
errors, FastAPI's validation of paths and queries, Starlette's own (404 for an unknown path, 405), and
anything unexpected (a 500 whose cause goes to the log, never to the client)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley.errors import InvalidRequest, ParleyError

log = logging.getLogger("parley.http")


def error_response(exc: ParleyError) -> JSONResponse:
    headers = {name.decode(): value.decode() for name, value in exc.header_pairs()}
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers or None)


ERROR_KEY = "parley.error"  # the error a request was answered with, for its access log line


async def _parley_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ParleyError)
    request.scope[ERROR_KEY] = exc
    return error_response(exc)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    err = exc.errors()[0]
    param = str(err["loc"][-1]) if err.get("loc") else None
    return await _parley_error(request, InvalidRequest(f"Invalid value for '{param}': {err['msg']}.", param=param))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    body = {"error": {"message": str(exc.detail), "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(ParleyError("The server had an error while processing your request."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ParleyError, _parley_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
