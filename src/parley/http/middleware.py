"""Pure ASGI middleware of the HTTP edge (pure ASGI, so streamed bodies pass through untouched).

- :class:`RequestIds`: every response carries ``x-request-id`` (OpenAI's header, which the SDK exposes as
  ``_request_id``), and requests are counted, timed and logged under a label of bounded cardinality.
- :class:`BodyBudget`: a bound on the request body bytes in flight across all clients.  Each request's
  body is counted from its first byte until the request is answered (for a stream, until the stream ends:
  the response holds its parsed input that long).  A request that would take the total past the bound
  gets a 503 ``server_busy`` with ``Retry-After`` before its body is read: at once when it declares a
  ``Content-Length``, or at the chunk that crosses the bound when it streams its body.  The bound is on raw
  bytes; a request takes a small multiple of its body in memory (the parsed JSON, the typed request, what
  is sent upstream), so the bound is what keeps memory bounded when many large bodies arrive at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from parley.errors import ServerBusy
from parley.http.error_handlers import ERROR_KEY
from parley.ids import new_id
from parley.metrics import Metrics

access = logging.getLogger("parley.access")


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
            self.metrics.request(route, status, elapsed)
            extra = {"request_id": request_id.decode(), "route": route, "status": status,
                     "duration_ms": round(elapsed * 1000, 2)}
            error = scope.get(ERROR_KEY)
            if error is None:
                access.info("%s %s", route, status, extra=extra)
            else:  # an operator sees which parameter was refused, and why, without the body
                extra.update(error_code=error.code, param=error.param)
                access.info("%s %s %s param=%s", route, status, error.code, error.param, extra=extra)


class BodyBudget:
    """Pure ASGI middleware counting request body bytes in flight against ``limit``."""

    def __init__(self, app: Any, limit: int, max_body: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.max_body = max_body  # a larger declared body is the app's 413, refused unread: nothing to count
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    def _busy(self) -> ServerBusy:
        return ServerBusy("The server has too many request bodies in flight; retry shortly.",
                          retry_after_s=self.retry_after_s)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return await self.app(scope, receive, send)
        if declared is not None and self.in_flight + declared > self.limit:
            return await _send_error(send, self._busy())
        held = declared or 0
        self.in_flight += held

        async def counted() -> dict[str, Any]:  # a body with no Content-Length is counted as it arrives
            nonlocal held
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if size:
                if self.in_flight + size > self.limit:
                    raise self._busy()
                self.in_flight += size
                held += size
            return message

        try:
            await self.app(scope, receive if declared is not None else counted, send)
        finally:
            self.in_flight -= held


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _send_error(send: Any, error: ServerBusy) -> None:
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"), *error.header_pairs()]})
    await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
