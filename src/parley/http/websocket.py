"""WebSocket mode: ``client.responses.connect()`` on ``/v1/responses``.

One connection carries many responses.  Each ``response.create`` event (the body of ``POST /v1/responses``,
streamed implicitly) runs on its lane (``stream_id``; one default lane without it): a lane's responses run one
after another, lanes side by side.  Every event of a response goes out as one text message, as over SSE, with
the lane's ``stream_id`` when one was given; a create that cannot run is an ``error`` event (the HTTP status
and OpenAI's error object) and the connection stays open.  The key is the handshake's ``Authorization``
header, as for HTTP; a bad key refuses the handshake with the HTTP 401 a create would get.

``response.steer`` queues user input for a response running on this connection (``response.steer.accepted``,
or ``response.steer.failed`` with the reason).  The running response stops at its next safe boundary (after a
tool step, before the next model call) as ``incomplete``, reason ``steered``, or finishes; then a successor
response starts by itself with the queued input, chained to it with the same settings.  When the response
instead stops for client-owned tool output, ``response.steer.pending`` names the outputs it waits for, and the
queued input goes first in the next ``response.create`` on this connection that continues it.

Messages to the client go through one queue per connection and one writer: a client that stops reading is
dropped once ``MAX_QUEUED`` messages wait, and its responses run on to the end without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response as HttpResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from parley.auth import Caller
from parley.engine.recorder import NotOpened
from parley.engine.turn import RunState
from parley.errors import InvalidRequest, ParleyError, PayloadTooLarge
from parley.http.bodies import loads
from parley.items import raw_items
from parley.ids import new_id
from parley.prompts.templates import apply as apply_prompt
from parley.request import parse_create
from parley.runtime import Runtime
from parley.wire import to_json

log = logging.getLogger("parley.websocket")
MAX_QUEUED = 10_000  # messages waiting for a client that does not read
MAX_STEERS = 16  # steering submissions waiting for one response
MAX_LANES = 64  # lanes of one connection (each runs its responses; more lanes, more at once)
MAX_WAITING = 64  # responses of one connection whose steering input waits for the client's tool outputs
CLIENT_CALLS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output",
                "computer_call": "computer_call_output", "shell_call": "shell_call_output",
                "apply_patch_call": "apply_patch_call_output", "local_shell_call": "local_shell_call_output"}


@dataclass
class Steer:
    id: str
    input: Any  # as the client sent it: a string or user messages
    previous_response_id: str

    def items(self) -> list[Any]:
        return raw_items(self.input)


@dataclass
class Running:
    body: dict[str, Any]  # the create as it was sent (without the envelope): a successor's settings
    lane: str | None
    steers: list[Steer] = field(default_factory=list)
    final: Any = None  # the Response of its terminal event, once sent: steering from then on is for a finished one


class ResponsesSocket:
    def __init__(self, runtime: Runtime, websocket: WebSocket, caller: Caller) -> None:
        self.runtime = runtime
        self.websocket = websocket
        self.caller = caller
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.gone = False
        self.lanes: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}
        self.workers: list[asyncio.Task[None]] = []
        self.running: dict[str, Running] = {}
        self.waiting: dict[str, list[Steer]] = {}  # steering input for a response that awaits client outputs
        self.sequence = 0  # of the connection-level events (steering)

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text") if message.get("text") is not None else (message.get("bytes") or b"")
                self._receive(text)
        except WebSocketDisconnect:
            pass
        finally:
            self.gone = True
            self.outbox.put_nowait(None)
            for worker in self.workers:  # what waits in a lane is dropped; a running response runs to its end
                worker.cancel()
            await writer

    # -- what the client sends -------------------------------------------------------------

    def _receive(self, text: str | bytes) -> None:
        limit = self.runtime.settings.max_body_bytes  # a message is a request body: the same bound, the same parse
        try:
            if len(text) > limit:
                raise PayloadTooLarge(f"A message may be at most {limit} bytes (--max-body-bytes).",
                                      code="request_too_large")
            event = loads(text)
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise InvalidRequest("Each message must be a JSON object with a 'type'.", param="type")
        except ParleyError as exc:
            self._error(exc, None)
            return
        if event["type"] == "response.create":
            lane = event.get("stream_id")
            if lane is not None and (not isinstance(lane, str) or not 0 < len(lane) <= 200):
                self._error(InvalidRequest("'stream_id' must be a string of 1 to 200 characters.",
                                           param="stream_id"), None)
                return
            if lane not in self.lanes and len(self.lanes) >= MAX_LANES:
                self._error(InvalidRequest(f"A connection has at most {MAX_LANES} lanes (stream_id values).",
                                           param="stream_id", code="too_many_lanes"), lane)
                return
            self._lane(lane).put_nowait(event)
        elif event["type"] == "response.steer":
            self._steer(event)
        else:
            self._error(InvalidRequest(f"Unknown event type '{event['type']}': this socket takes response.create "
                                       "and response.steer.", param="type", code="unknown_event_type"), None)

    def _lane(self, lane: str | None) -> asyncio.Queue[dict[str, Any]]:
        if lane not in self.lanes:
            self.lanes[lane] = asyncio.Queue()
            self.workers.append(asyncio.create_task(self._run_lane(self.lanes[lane])))
        return self.lanes[lane]

    async def _run_lane(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await queue.get()
            # (a task of its own, as a streamed HTTP response: it finishes, and is stored, if the client leaves)
            await asyncio.shield(self.runtime.spawn(self._create(event)))

    # -- responses ------------------------------------------------------------------------

    async def _create(self, event: dict[str, Any], carried: list[Steer] | None = None) -> None:
        lane = event.get("stream_id")
        body = {k: v for k, v in event.items() if k not in ("type", "stream_id")}
        try:
            generate = body.pop("generate", True)
            if not isinstance(generate, bool):
                raise InvalidRequest("'generate' is true or false.", param="generate")
            if body.get("background"):
                raise InvalidRequest("background is not supported over WebSocket.", param="background")
            body.pop("stream", None)
            sent = body = await apply_prompt(body, self.runtime.prompts, self.caller.tenant)
            queued = carried or self.waiting.pop(str(body.get("previous_response_id")), [])
            if queued:  # the steering input waiting for this continuation goes first
                body = {**body, "input": [item for steer in queued for item in steer.items()] +
                        raw_items(body.get("input"))}
            create = parse_create({**body, "stream": True}, max_input_items=self.runtime.settings.max_input_items)
            turn = await self.runtime.engine.prepare(create, self.caller.tenant, self.caller.token)
        except ParleyError as exc:
            self._refused(exc, carried, lane)
            return
        running = self.running[turn.id] = Running(sent, lane)
        state = RunState(conversation=turn.conversation, steered=lambda: bool(running.steers), generate=generate)
        try:
            await self._stream(turn, state, running)
        except NotOpened as exc:  # its row could not be written: it did not start, as if prepare had refused it
            self._refused(exc, carried, lane)
            for steer in running.steers:
                self._steer_failed(steer, "response_not_active", "The response did not start.", lane)
            return
        finally:
            del self.running[turn.id]
        if running.steers and running.final is not None:
            await self._after(running.final, running)

    async def _stream(self, turn: Any, state: RunState, running: Running) -> None:
        async for produced in self.runtime.engine.run(turn, state):
            if produced.type in ("response.completed", "response.incomplete", "response.failed"):
                running.final = produced.response  # type: ignore[union-attr]
            self._send(to_json(produced, hasattr(produced, "response")), running.lane)

    async def _after(self, final: Any, running: Running) -> None:
        """The steering input queued while ``final`` ran: a successor takes it, or it waits for the client's
        tool outputs."""
        required = [{"type": CLIENT_CALLS[item.type], "call_id": item.call_id,
                     **({"name": item.name} if item.type == "function_call" else {})}
                    for item in final.output if item.type in CLIENT_CALLS]
        required += [{"type": "mcp_approval_response", "approval_request_id": item.id}
                     for item in final.output if item.type == "mcp_approval_request"]
        if required or final.status == "failed":
            if final.status == "failed":
                for steer in running.steers:
                    self._steer_failed(steer, "response_not_active", "The response failed.", running.lane)
                return
            if len(self.waiting) >= MAX_WAITING:
                for steer in running.steers:
                    self._steer_failed(steer, "too_many_pending_steers", f"At most {MAX_WAITING} responses of a "
                                       "connection may hold steering input waiting for tool outputs.", running.lane)
                return
            self.waiting[final.id] = running.steers
            for steer in running.steers:
                self._send_event({"type": "response.steer.pending", "reason": "waiting_for_required_input",
                                  "required_input": required,
                                  "steer": {"id": steer.id, "previous_response_id": final.id}}, running.lane)
            return
        successor = {**running.body, "type": "response.create", "previous_response_id": final.id, "input": []}
        successor.pop("conversation", None)
        successor.pop("prompt", None)  # (its template is in the body already: applied again, it would repeat)
        if running.lane is not None:
            successor["stream_id"] = running.lane
        await self._create(successor, carried=running.steers)

    def _steer(self, event: dict[str, Any]) -> None:
        target, given = event.get("previous_response_id"), event.get("input")
        steer = Steer(new_id("steer"), given, str(target))
        problem = _steer_problem(event)
        if problem is not None:  # (its input goes back as it came)
            self._steer_failed(steer, "invalid_input", problem, None, with_id=False)
            return
        if isinstance(given, list):  # as the SDK's type of steering input has them
            steer.input = [{"type": "message", **item} for item in given]
        running = self.running.get(str(target))
        if running is None:
            code = "response_not_found"
            self._steer_failed(steer, code, "No response with that id is running on this connection.", None,
                               with_id=False)
        elif running.final is not None:
            self._steer_failed(steer, "response_already_completed", "The response has finished.", running.lane,
                               with_id=False)
        elif running.body.get("conversation") is not None or running.body.get("context_management") is not None:
            self._steer_failed(steer, "steering_not_supported", "A response bound to a conversation or with automatic "
                               "compaction cannot be steered.", running.lane, with_id=False)
        elif len(running.steers) >= MAX_STEERS:
            self._steer_failed(steer, "too_many_pending_steers", f"At most {MAX_STEERS} steering submissions may "
                               "wait for one response.", running.lane, with_id=False)
        else:
            running.steers.append(steer)
            self._send_event({"type": "response.steer.accepted",
                              "steer": {"id": steer.id, "previous_response_id": steer.previous_response_id}},
                             running.lane)

    def _refused(self, exc: ParleyError, carried: list[Steer] | None, lane: str | None) -> None:
        """A response.create that did not start: its error, and the steering input it carried failed."""
        for steer in carried or []:
            self._steer_failed(steer, "successor_creation_failed", exc.message, lane)
        self._error(exc, lane)

    def _steer_failed(self, steer: Steer, code: str, message: str, lane: str | None, with_id: bool = True) -> None:
        self._send_event({"type": "response.steer.failed", "error": {
            "type": "invalid_request_error", "code": code, "message": message},
            "steer": {**({"id": steer.id} if with_id else {}), "input": steer.input,
                      "previous_response_id": steer.previous_response_id}}, lane)

    # -- what goes to the client -------------------------------------------------------------

    def _error(self, exc: ParleyError, lane: str | None) -> None:
        self._send_event({"type": "error", "status": exc.status_code, **exc.body()}, lane, numbered=False)

    def _send_event(self, event: dict[str, Any], lane: str | None, numbered: bool = True) -> None:
        if numbered:
            event["sequence_number"] = self.sequence
            self.sequence += 1
        self._send(json.dumps(event), lane)

    def _send(self, text: str, lane: str | None) -> None:
        if self.gone:
            return
        if lane is not None:  # every event of a lane carries its stream_id
            text = f'{text[:-1]},"stream_id":{json.dumps(lane)}}}'
        if self.outbox.qsize() >= MAX_QUEUED:
            log.warning("a WebSocket client stopped reading: dropped, its responses run on")
            self.gone = True
            self.outbox.put_nowait(None)
            return
        self.outbox.put_nowait(text)

    async def _write(self) -> None:
        while (text := await self.outbox.get()) is not None:
            try:
                await self.websocket.send_text(text)
            except Exception:  # the client went away
                self.gone = True
                break
        try:
            await self.websocket.close()
        except Exception:
            pass


def _steer_problem(event: dict[str, Any]) -> str | None:
    """Why a ``response.steer`` event is not one Parley can queue (``None``: it is)."""
    if set(event) - {"type", "input", "previous_response_id"}:
        return "response.steer takes only type, previous_response_id and input."
    if not isinstance(event.get("previous_response_id"), str):
        return "response.steer needs previous_response_id: the id of the response to steer."
    given = event.get("input")
    if isinstance(given, str):
        return None if given else "The steering input is empty."
    if not isinstance(given, list) or not given:
        return "The steering input must be a string or a non-empty list of user messages."
    for item in given:
        if not isinstance(item, dict) or item.get("role") != "user" or item.get("type", "message") != "message" or \
                set(item) - {"type", "role", "content"}:
            return "Steering takes only user messages (type, role and content)."
        content = item.get("content")
        if not isinstance(content, str) and not (isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") in ("input_text", "input_image", "input_file") for p in content)):
            return "A steering message's content is a string or input_text, input_image and input_file parts."
    return None


async def serve_socket(runtime: Runtime, scope: dict[str, Any], receive: Any, send: Any,
                       authorization: str | None) -> None:
    """A WebSocket on ``/v1/responses``: refused with the HTTP error a create would get for a bad key."""
    websocket = WebSocket(scope, receive, send)
    try:
        caller = runtime.keys.caller(authorization, (scope.get("client") or (None,))[0])
    except ParleyError as exc:
        denial = HttpResponse(json.dumps(exc.body()), status_code=exc.status_code, media_type="application/json",
                              headers=dict(exc.header_pairs()) if exc.header_pairs() else None)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(denial)
        else:
            await websocket.close(code=1008, reason=exc.message[:120])
        return
    await websocket.accept()
    await ResponsesSocket(runtime, websocket, caller).serve()
