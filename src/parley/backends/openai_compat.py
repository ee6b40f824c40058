"""Any OpenAI-compatible Chat Completions API over HTTP (vLLM, Ollama, llama.cpp, OpenAI…).

Speaks the wire format directly over Parley's own HTTP/1.1 client (:mod:`parley.backends.http1`): one streamed
``POST /chat/completions`` per backend call, with ``stream_options.include_usage``.  Errors before the first chunk
(connection refused, 429, 5xx, a connection dropped before any answer) are retried a
bounded number of times; after the first chunk nothing is retried, since the client has
already seen part of the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from parley.backends.base import READ_AHEAD
from parley.backends.chunk_shapes import chunk_list, malformed
from parley.backends.http1 import Connection, ConnectFailed, ConnectTimeout, Pool, ReadTimeout, UpstreamError
from parley.errors import BackendError, BackendRateLimited, BackendRejected, ParleyError
from parley.settings import UpstreamConfig
from parley.wire import json_text

log = logging.getLogger("parley.backend")
KEEPALIVE_S = 4.0  # below the shortest keep-alive of common upstream servers (uvicorn: 5 s)
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
ERROR_BODY_BYTES = 64 * 1024  # of an error's body, what is read for its message
LISTING_BYTES = 64 * 1024 * 1024  # the most a JSON answer (a model listing) may take


def _upstream_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data, dict) and data.get("detail"):
            return str(data["detail"])
    except ValueError:
        pass
    return body.decode(errors="replace")[:500] or f"HTTP {status}"


def status_error(status: int, body: bytes) -> ParleyError:
    """The typed error for a non-2xx answer from the upstream."""
    message = _upstream_message(status, body)
    if status == 429:
        return BackendRateLimited(f"The model backend is rate limited: {message}")
    if status in (400, 404, 413, 422):
        return BackendRejected(f"The model backend rejected the request: {message}", code="backend_rejected")
    if status in (401, 403):
        return BackendError(f"The model backend refused Parley's credentials: {message}", code="backend_auth_failed")
    return BackendError(f"The model backend failed with HTTP {status}: {message}", code="backend_error")


class OpenAICompatBackend:
    """:class:`parley.backends.base.ChatBackend` for an HTTP upstream (its client's cost is part of every token
    Parley streams: see :mod:`parley.backends.http1`)."""

    def __init__(self, config: UpstreamConfig) -> None:
        assert config.url, "an openai upstream needs a url"
        self.name = config.name
        self.config = config
        self._key = config.api_key
        # Idle pooled connections are closed after KEEPALIVE_S, before the upstream closes them: uvicorn's 5 s
        # (vLLM and many others) is the shortest, and a connection reused as its server closes it fails the
        # request's write; after a burst, several in a row used up the retries (a 502).
        try:
            self._pool = Pool(config.url, connect_timeout_s=min(10.0, config.timeout_s),
                              read_timeout_s=config.timeout_s, keepalive_s=KEEPALIVE_S)
        except ValueError:
            raise ValueError(f"upstream {config.name!r}: its url must begin with http:// or https:// "
                             f"(got {config.url!r})") from None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self._pool.close()

    def _headers(self, api_key: str | None = None, json_body: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if json_body else {}
        key = api_key or self._key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a request (``path`` from the server's root) with a JSON ``body`` (or none); an
        upstream error status raises its typed error."""
        data = b"" if body is None else json_text(body).encode()
        connection = await self._pool.request(method, path, self._headers(json_body=body is not None), data)
        try:
            if connection.status >= 400:
                raise status_error(connection.status, await connection.read(ERROR_BODY_BYTES))
            text = await connection.read(LISTING_BYTES)
            if len(text) >= LISTING_BYTES:
                raise ValueError("the upstream's answer is larger than 64 MiB")
            return json.loads(text)
        finally:
            connection.release()

    async def models(self) -> list[str]:
        return [entry["id"] for entry in (await self._json("GET", self._pool.prefix + "/models")).get("data", [])]

    async def context_window(self, model: str) -> int | None:
        """The model's context window as the server lists it: vLLM's ``max_model_len``, ``context_length``
        (OpenRouter, Together, LM Studio), ``context_window`` (Groq) or llama.cpp's ``meta.n_ctx_train``."""
        try:
            listing = await self._json("GET", self._pool.prefix + "/models")
        except ParleyError:
            return None
        for entry in listing.get("data", []) if isinstance(listing, dict) else []:
            if not isinstance(entry, dict) or entry.get("id") != model:
                continue
            meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
            for value in (entry.get("max_model_len"), entry.get("context_length"), entry.get("context_window"),
                          meta.get("n_ctx_train")):
                if isinstance(value, int) and value > 0:
                    return value
        return None

    async def count_tokens(self, request: dict[str, Any]) -> int | None:
        """The prompt's tokens by the server's own tokenizer: vLLM's ``/tokenize`` (which applies the chat
        template), else llama.cpp's ``/apply-template`` and ``/tokenize``; ``None`` when the server has neither."""
        root = self._pool.prefix.removesuffix("/v1")  # (vLLM's and llama.cpp's own routes are at the root)
        messages = {"model": request.get("model"), "messages": request.get("messages", [])}
        if request.get("tools"):
            messages["tools"] = request["tools"]
        try:
            found = await self._post_json(f"{root}/tokenize", messages)
            if isinstance(found, dict) and isinstance(found.get("count"), int):
                return int(found["count"])
            templated = await self._post_json(f"{root}/apply-template", {"messages": request.get("messages", [])})
            if isinstance(templated, dict) and isinstance(templated.get("prompt"), str):
                tokens = await self._post_json(f"{root}/tokenize", {"content": templated["prompt"]})
                if isinstance(tokens, dict) and isinstance(tokens.get("tokens"), list):
                    return len(tokens["tokens"])
        except (UpstreamError, ValueError):
            return None
        return None

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            return await self._json("POST", path, body)
        except ParleyError:  # (an error status: this server does not have it)
            return None

    relays_text = True  # stream takes a relay (parley.engine.relay): it reads the upstream's bytes itself

    async def stream(self, request: dict[str, Any], api_key: str | None = None,
                     relay: Any = None) -> AsyncIterator[Any]:
        """The chunks, as dicts; with a ``relay``, those it takes are written by it and not yielded."""
        attempt = 0
        started = False  # once a chunk went out, a retry would repeat it: errors after that are final
        body = json_text(request).encode()
        headers = self._headers(api_key, json_body=True)
        path = self._pool.prefix + "/chat/completions"
        while True:
            try:
                connection = await self._pool.request("POST", path, headers, body)
                try:
                    if connection.status >= 400:
                        error = status_error(connection.status, await connection.read(ERROR_BODY_BYTES))
                        if connection.status not in RETRYABLE_STATUS or attempt >= self.config.max_retries:
                            raise error
                        attempt += 1
                        wait = _backoff(attempt, connection.headers.get("retry-after"))
                    else:
                        async for chunk in _chunks(connection, relay):
                            started = True
                            yield chunk
                        return
                finally:
                    connection.release()
                await asyncio.sleep(wait)
            except ConnectFailed as exc:
                if attempt < self.config.max_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt, None))
                    continue
                raise BackendError(f"Cannot reach the model backend: {exc}", code="backend_unreachable") from None
            except (ConnectTimeout, ReadTimeout):
                raise BackendError("The model backend timed out.", code="backend_timeout") from None
            except UpstreamError as exc:
                if not started and attempt < self.config.max_retries:
                    # Dropped before any chunk: most often a pooled keep-alive connection the upstream had
                    # just closed. Nothing reached the client, so a new connection tries again, at once.
                    attempt += 1
                    log.info("upstream %s dropped the connection before answering (%s); retrying",
                             self.config.name, exc)
                    continue
                raise BackendError(
                    f"The connection to the model backend broke: {exc}", code="backend_disconnected"
                ) from None


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(float(retry_after), 10.0)
        except ValueError:
            pass
    return min(0.25 * 2 ** (attempt - 1), 4.0)


class _Lines:
    """An SSE body's lines, split as the reads bring them, with no limit on a line's length: the task's reads
    and the relay's tap (:func:`_tap`) share the partial line a read ends with."""

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest = b""

    def split(self, data: bytes) -> list[bytes]:
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        return lines


async def _reads(response: Connection, lines: _Lines) -> AsyncIterator[list[bytes]]:
    """The body's lines, one list per read of the complete lines it brought; then the body's last line if no
    line end closed it."""
    async for data in response.chunks():
        yield lines.split(data)
    if lines.rest:
        yield [lines.rest]


def _tap(lines: _Lines, relay: Any, ahead: Any) -> Callable[[bytes], bytes]:
    """What reads the upstream's body in the socket's read callback while the response's task waits for it
    (:attr:`parley.backends.http1.Connection.tap`): the plain text chunks at the start of a read are framed by the
    relay and written to the client's transport at once, with no task woken; the rest of the read, from the first
    chunk the relay declines, is left to the task, as bytes it reads as if they had just come.  It takes nothing
    unless the relay is aimed at an open text part and the client's transport takes the frames now."""

    def tap(data: bytes) -> bytes:
        if not relay.aimed or ahead.held or not ahead.writable():
            return data
        split = lines.split(data)
        left = b""
        for j, line in enumerate(split):
            payload = _payload(line)
            if payload is not None and not relay.take(payload):
                left = b"\n".join(split[j:]) + b"\n" + lines.rest
                lines.rest = b""
                break
        if relay.pending:
            frames: list[bytes] = []
            relay.into(frames)
            ahead.write_now(frames[0] if len(frames) == 1 else b"".join(frames))
        return left

    return tap


def _payload(line: bytes) -> bytes | None:
    """A ``data:`` line's payload; ``None`` for any other line (other SSE fields and comments are passed over).
    The one reading of a line, for the task's reads and the relay's tap alike."""
    return line[5:].strip() if line.startswith(b"data:") else None


def _payloads(lines: list[bytes]) -> list[bytes]:
    """The payloads of the ``data:`` lines among ``lines``."""
    return [payload for line in lines if (payload := _payload(line)) is not None]


async def _chunks(response: Connection, relay: Any = None) -> AsyncIterator[Any]:
    """Parse ``data:`` lines into chunks; the stream must end with ``[DONE]`` or a finish reason.  The task's
    :class:`ReadAhead` says, for each chunk, whether another one this read brought follows.  With a ``relay``
    (:mod:`parley.engine.relay`), the plain text chunks it takes are not yielded: their frames join the writer's
    held frames, and go out at the end of the read; or, where the writer can write from a callback, they are
    taken and written in the socket's read callback (:func:`_tap`)."""
    ahead = READ_AHEAD.get()
    finished = False
    lines = _Lines()
    if relay is not None and ahead is not None and ahead.writable is not None:
        response.tap = _tap(lines, relay, ahead)
    try:
        async for lines_read in _reads(response, lines):
            payloads = _payloads(lines_read)
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                if relay is not None and relay.aimed and relay.take(payload):
                    continue
                if relay is not None and relay.pending:
                    relay.into(ahead.held)  # (before this chunk's events)
                if ahead is not None:
                    ahead.more = i < last
                chunk, finishes = _chunk(payload)
                if chunk is None:
                    return
                finished = finished or finishes
                yield chunk
            if relay is not None and relay.pending:  # the read ended with frames the relay made: written now
                relay.into(ahead.held)
                await ahead.flush()
    finally:
        response.tap = None
        if ahead is not None:
            ahead.more = False
    if not finished:
        raise BackendError("The model backend's stream ended before the answer was finished.",
                           code="backend_disconnected")


def _chunk(data: bytes) -> tuple[dict[str, Any] | None, bool]:
    """One ``data:`` payload as a chunk, checked as far as every chunk must be, and whether it has a finish
    reason; ``None`` for ``[DONE]``."""
    if data == b"[DONE]":
        return None, False
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackendError("The model backend sent malformed SSE data.", code="backend_protocol_error") from None
    if not isinstance(chunk, dict):
        raise BackendError("The model backend sent a chunk that is not an object.", code="backend_protocol_error")
    if chunk.get("error"):
        message = _upstream_message(200, data)
        raise BackendError(f"The model backend failed mid-stream: {message}", code="backend_error")
    choices = chunk_list(chunk.get("choices"), "choices")
    if not all(isinstance(choice, dict) for choice in choices):
        raise malformed("a choice that is not an object")
    return chunk, any(choice.get("finish_reason") for choice in choices)
