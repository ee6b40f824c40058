"""A scripted Chat Completions backend: a real HTTP server on loopback whose answers a test writes.

It speaks the Chat Completions wire format (streamed SSE chunks with usage, or one JSON
body), ``/v1/embeddings`` (hashed bag-of-words vectors) and vLLM's ``/tokenize``; it records every request
it receives, and can hold its answer until released, fail with an HTTP status, cut a stream short or send
malformed data.  Parley's own tests, its
benchmarks and library users all use it the same way::

    with ScriptedBackend() as backend:
        backend.push(Reply(text="Hello"), Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]))
        ...  # point Parley at backend.url
        assert backend.requests[0]["messages"][-1]["content"] == "Hi"
"""

from __future__ import annotations

import asyncio
import json
import secrets
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from parley.testing.images import ScriptedImages
from parley.testing.moderations import ScriptedModerations
from parley.testing.threaded import LoopbackService


@dataclass
class ToolCall:
    """A tool call the scripted model makes; ``arguments`` may be a dict or a JSON string."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted answer.

    ``text`` streams in pieces of ``chunk_size`` characters; each piece counts as one
    completion token, so ``max_tokens`` in the request cuts the text (finish reason
    ``length``).  ``status`` other than 200 answers with that HTTP error instead.
    ``cut_after`` ends the stream abruptly after that many chunks; ``raw`` sends these
    lines verbatim as the body of the SSE stream.
    """

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None
    refusal: str | None = None
    finish_reason: str | None = None
    chunk_size: int = 4
    status: int = 200
    error_message: str = "scripted failure"
    prompt_tokens: int = 10
    cut_after: int | None = None
    raw: list[str] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0  # a pause before each chunk after the first (a model that takes its time)
    service_tier: str | None = None  # reported in every chunk, as OpenAI does
    together: bool = False  # the whole stream in one write (a busy upstream's chunks reach Parley in one read)
    pause_after: int | None = None  # after that many chunks (the first is the role's), the stream waits for resume()


Responder = Callable[[dict[str, Any]], "Reply | str"]


def last_user_text(request: dict[str, Any]) -> str:
    """The text of the last user message of a Chat Completions request."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content or [] if part.get("type") == "text")
    return ""


def echo_responder(request: dict[str, Any]) -> Reply:
    """The default answer when nothing is queued: repeat the last user message."""
    return Reply(text=f"You said: {last_user_text(request)}")


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, model: str = "scripted") -> dict[str, Any]:
    return {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _logprob(token: str, position: int, top: int) -> dict[str, Any]:
    """A made-up logprob for a token: the same for the same request, lower further into the answer."""
    entry = {"token": token, "logprob": -0.01 * (position + 1), "bytes": list(token.encode())}
    return {**entry, "top_logprobs": [{**entry, "logprob": entry["logprob"] - k} for k in range(top)]}


def reply_chunks(reply: Reply, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The streamed chunks of ``reply`` for ``request`` (max_tokens honoured), usage last."""
    limit = request.get("max_tokens") or request.get("max_completion_tokens")
    chunks = [_chunk({"role": "assistant", "content": ""})]
    produced = 0
    finish = reply.finish_reason
    for kind, text in (("reasoning_content", reply.reasoning), ("refusal", reply.refusal), ("content", reply.text)):
        for piece in _pieces(text, reply.chunk_size) if text else []:
            if limit is not None and produced >= limit:
                finish = "length"
                break
            chunks.append(_chunk({kind: piece}))
            if kind == "content" and request.get("logprobs"):  # one token per piece, as it was counted
                chunks[-1]["choices"][0]["logprobs"] = {"content": [_logprob(piece, produced,
                                                                              request.get("top_logprobs") or 0)]}
            produced += 1
    if finish != "length":
        for i, call in enumerate(reply.tool_calls):
            call_id = call.id or f"call_{secrets.token_hex(12)}"
            arguments = call.arguments_json()
            half = len(arguments) // 2
            chunks.append(_chunk({"tool_calls": [{"index": i, "id": call_id, "type": "function",
                                                  "function": {"name": call.name, "arguments": arguments[:half]}}]}))
            chunks.append(_chunk({"tool_calls": [{"index": i, "function": {"arguments": arguments[half:]}}]}))
            produced += 2
        finish = finish or ("tool_calls" if reply.tool_calls else "stop")
    chunks.append(_chunk({}, finish))
    usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": produced,
             "total_tokens": reply.prompt_tokens + produced}
    chunks.append({"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()),
                   "model": "scripted", "choices": [], "usage": usage})
    if reply.service_tier is not None:
        for chunk in chunks:
            chunk["service_tier"] = reply.service_tier
    return chunks


def _full_completion(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    calls: list[dict[str, Any]] = []
    finish = "stop"
    for chunk in chunks[:-1]:
        choice = chunk["choices"][0]
        delta = choice["delta"]
        message["content"] += delta.get("content") or ""
        for call in delta.get("tool_calls") or []:
            if call.get("id"):
                calls.append({"id": call["id"], "type": "function", "function": dict(call["function"])})
            else:
                calls[-1]["function"]["arguments"] += call["function"]["arguments"]
        finish = choice["finish_reason"] or finish
    if calls:
        message["tool_calls"] = calls
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": chunks[-1]["usage"]}


class Script:
    """The answers of a scripted model: queued replies, then the responder; every request is recorded."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or echo_responder
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # the HTTP headers of each request, in order
        self.embedding_requests: list[dict[str, Any]] = []  # the bodies sent to /v1/embeddings
        self.images = ScriptedImages()  # /v1/images/*, and what was sent there
        self.moderations = ScriptedModerations()  # /v1/moderations
        self.tokenize = True  # whether /tokenize answers
        self.context_windows: dict[str, int] = {}  # models /v1/models lists with their max_model_len
        self._queue: deque[Reply | str] = deque()
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()
        self._resumed = threading.Event()  # (a reply's pause_after)

    def push(self, *replies: Reply | str) -> None:
        """Queue answers, used in order before the responder."""
        with self._lock:
            self._queue.extend(replies)

    def hold(self) -> None:
        """Make answers wait (after their request is recorded) until :meth:`release`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def resume(self) -> None:
        """Let a reply paused by its ``pause_after`` go on."""
        self._resumed.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` requests have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.005)

    def reset(self, responder: Responder | None = None) -> None:
        """Forget queued answers and recorded requests; set the responder (default: echo)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.headers.clear()
            self.embedding_requests.clear()
            self.images.requests.clear()
            self.moderations.requests.clear()
            self.tokenize = True
            self.context_windows = {}
            self.responder = responder or echo_responder
        self._gate.set()

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            reply = self._queue.popleft() if self._queue else self.responder(request)
        return Reply(text=reply) if isinstance(reply, str) else reply


class ScriptedChat(Script):
    """The scripted model without a socket: a :class:`~parley.backends.base.ChatBackend` that an engine calls
    directly, for tests of the engine and the tool loop where HTTP is not the point.  A reply with another
    ``status`` than 200 fails as the upstream client would fail on that HTTP status; ``cut_after`` ends the
    stream with a connection error."""

    name = "scripted"

    async def stream(self, request: dict[str, Any], api_key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        from parley.errors import BackendError, BackendRejected

        reply = self._next_reply(json.loads(json.dumps(request)))  # recorded as a server would have read it
        if not self._gate.is_set():
            await asyncio.to_thread(self._gate.wait)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            error = BackendRejected if 400 <= reply.status < 500 else BackendError
            raise error(f"The model backend answered HTTP {reply.status}: {reply.error_message}")
        for i, chunk in enumerate(reply_chunks(reply, request)):
            if reply.cut_after is not None and i >= reply.cut_after:
                raise BackendError("The model backend's stream ended before it finished.")
            if i and reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            yield chunk
            await asyncio.sleep(0)

    async def models(self) -> list[str]:
        return ["scripted"]

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class ScriptedBackend(Script, LoopbackService):
    """The server; use as a context manager or call :meth:`start` and :meth:`stop`."""

    service_name = "scripted backend"

    def __init__(self, responder: Responder | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(responder)
        self.host = host
        self.port = port

    # -- server --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give Parley as ``--upstream`` (ends in ``/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/tokenize", self._tokenize, methods=["POST"]),
            *self.images.routes(),
            *self.moderations.routes(),
        ])

    async def _tokenize(self, http_request: Request) -> JSONResponse:
        """vLLM's ``/tokenize`` for chat messages, counting 3 tokens per message plus one per whitespace-separated
        word of its text; a 404 while ``tokenize`` is off (a server without a tokenizer endpoint)."""
        if not self.tokenize:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        request = await http_request.json()
        total = 0
        for message in request.get("messages", []):
            content = message.get("content") or ""
            text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
            total += 3 + len(text.split())
        return JSONResponse({"count": total, "max_model_len": 8192, "tokens": list(range(total))})

    async def _embeddings(self, http_request: Request) -> JSONResponse:
        """OpenAI's /v1/embeddings with hashed bag-of-words vectors (64 dimensions): texts that share words are
        near.  A model whose name starts with ``fail`` answers HTTP 500."""
        request = await http_request.json()
        with self._lock:
            self.embedding_requests.append(request)
        if str(request.get("model", "")).startswith("fail"):
            return JSONResponse({"error": {"message": "scripted failure", "type": "scripted"}}, status_code=500)
        texts = request["input"] if isinstance(request["input"], list) else [request["input"]]
        data = []
        for i, text in enumerate(texts):
            vector = [0.0] * 64
            for word in re.findall(r"\w+", text.lower()):
                vector[zlib.crc32(word.encode()) % 64] += 1.0
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return JSONResponse({"object": "list", "data": data, "model": request["model"],
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    async def _models(self, _request: Request) -> JSONResponse:
        listed = [{"id": model, "object": "model", "created": 0, "owned_by": "parley-testing", "max_model_len": size}
                  for model, size in self.context_windows.items()]
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0,
                                                         "owned_by": "parley-testing"}, *listed]})

    async def _completions(self, http_request: Request) -> Response:
        request = await http_request.json()
        with self._lock:
            self.headers.append(dict(http_request.headers))
        reply = self._next_reply(request)
        if not self._gate.is_set():
            await asyncio.to_thread(self._gate.wait)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            body = {"error": {"message": reply.error_message, "type": "scripted", "param": None, "code": None}}
            return JSONResponse(body, status_code=reply.status)
        chunks = reply_chunks(reply, request)
        if not request.get("stream"):
            return JSONResponse(_full_completion(chunks))
        return StreamingResponse(self._sse(reply, chunks), media_type="text/event-stream")

    async def _sse(self, reply: Reply, chunks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        if reply.raw is not None:
            for line in reply.raw:
                yield (line + "\n").encode()
            return
        if reply.together:
            yield b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + b"data: [DONE]\n\n"
            return
        for i, chunk in enumerate(chunks):
            if reply.cut_after is not None and i >= reply.cut_after:
                return
            if i and reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            if i and i == reply.pause_after:
                await asyncio.to_thread(self._resumed.wait)
                self._resumed.clear()
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0)
        yield b"data: [DONE]\n\n"

    def asgi_app(self) -> Starlette:
        return self.app()

    def stop(self) -> None:
        self._gate.set()  # a held answer must not keep the server from stopping
        self._resumed.set()
        super().stop()
