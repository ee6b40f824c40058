"""``POST /v1/responses`` as a bare ASGI route, in front of FastAPI.

The create is the hot path: every request and, streamed, every event of it.  Through FastAPI it passed the
router, the dependency resolver, the request/response adapter and two exception layers, and each streamed
event passed three ``send`` wrappers and a queue between two tasks.  Here it passes Parley's own middleware
(request ids, the body budget) and nothing else: the caller is resolved, the body read and validated, and the
events written to ``send`` by the task that runs the response (:func:`parley.http.sse.write_events`), which
runs to the end whatever the client does.  Errors leave in OpenAI's shape, as everywhere.  A WebSocket on the same path is WebSocket mode
(:mod:`parley.http.websocket`).  Every other path goes on to the FastAPI app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson

from parley.auth import CALLER_KEY
from parley.errors import InvalidRequest, ParleyError
from parley.http.bodies import collect, loads
from parley.http.error_handlers import ERROR_KEY
from parley.http.protocol import CYCLE_KEY
from parley.http.sse import SSE_HEADERS, SlowClients, write_events, write_frames
from parley.http.websocket import serve_socket
from parley.prompts.templates import apply as apply_prompt
from parley.request import parse_create
from parley.runtime import Runtime
from parley.wire import to_json

log = logging.getLogger("parley.http")

PATH = "/v1/responses"
ROUTE = SimpleNamespace(path=PATH)  # what the access log and the metrics label the request with
JSON_HEADERS = [(b"content-type", b"application/json")]


class CreateRoute:
    """Pure ASGI: serves ``POST /v1/responses``; everything else goes to ``app``."""

    def __init__(self, app: Any, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.slow_clients = SlowClients(runtime.settings.slow_client_s)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and scope["path"] == PATH:  # WebSocket mode (parley.http.websocket)
            return await serve_socket(self.runtime, scope, receive, send, _header(scope, b"authorization"))
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        scope["route"] = ROUTE
        try:
            await self._create(scope, receive, send)
        except ParleyError as exc:
            scope[ERROR_KEY] = exc
            await send_json(send, exc.status_code, exc.body(), exc.header_pairs())
        except Exception:
            log.exception("unhandled error")
            error = ParleyError("The server had an error while processing your request.")
            await send_json(send, error.status_code, error.body())

    async def _create(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        server = self.runtime
        # (the console's playground resolved its viewer already: it acts for their tenant without their key)
        who = scope.get(CALLER_KEY) or server.keys.caller(_header(scope, b"authorization"),
                                                          (scope.get("client") or (None,))[0])
        body = loads(await collect(_chunks(receive), _header(scope, b"content-length"),
                                   server.settings.max_body_bytes))
        body = await apply_prompt(body, server.prompts, who.tenant)
        create = parse_create(body, max_input_items=server.settings.max_input_items)
        turn = await server.engine.prepare(create, who.tenant, who.token)
        if create.background:  # queued: any instance runs it; a stream follows it from its first event
            queued, first = await server.background.enqueue(turn, body)
            if create.stream:
                await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                await write_frames(server.background.follow(turn.id, first=first), send)
                return
            await send_json(send, 200, to_json(queued))
            return
        if create.stream:
            async def refuse(exc: ParleyError) -> None:
                scope[ERROR_KEY] = exc
                await send_json(send, exc.status_code, exc.body(), exc.header_pairs())

            cycle = scope.get(CYCLE_KEY)  # (a weak reference: served by parley serve's protocol)
            await write_events(server.engine.run(turn), server, send, self.slow_clients, refuse,
                               cycle() if cycle is not None else None)
            return
        result = await server.engine.respond(turn)
        await send_json(send, 200, to_json(result))


async def send_json(send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = body.encode() if isinstance(body, str) else orjson.dumps(body)
    await send({"type": "http.response.start", "status": status, "headers": [*JSON_HEADERS, *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _chunks(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("The client went away before it sent the whole body.", code="client_disconnected")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
