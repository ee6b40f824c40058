"""A bound on the request body bytes in flight across all clients.

Each request's body is counted from its first byte until the request is answered (for a stream, until
the stream ends: the response holds its parsed input that long).  A request that would take the total
past the bound gets a 503 ``server_busy`` with ``Retry-After`` before its body is read: at once when it
declares a ``Content-Length``, or at the chunk that crosses the bound when it streams its body.  The
bound is on raw bytes; the memory a request takes is a small multiple of its body (the parsed JSON and
the typed request), so the bound is what keeps memory bounded when many large bodies arrive at once.
"""

from __future__ import annotations

from typing import Any

from parley.errors import ServerBusy


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
    import orjson

    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"), *error.header_pairs()]})
    await send({"type": "http.response.body", "body": orjson.dumps(error.body())})
