"""The bodies of JSON requests: read within ``--max-body-bytes`` (a 413 as soon as one passes it, before it is
read whole), parsed strictly (orjson: no NaN, Infinity or lone surrogates), and validated into a request
model whose errors are 400s naming the parameter.  One place for every JSON endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import ValidationError

from parley.errors import InvalidRequest, PayloadTooLarge
from parley.validation import StrictModel, validation_error

M = TypeVar("M", bound=StrictModel)


async def collect(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytearray:
    """A body from its chunks, refused with a 413 as soon as it passes ``limit`` bytes (before reading it all;
    at once when its declared ``Content-Length`` does)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
    body = bytearray()  # one buffer: a list of chunks joined at the end held the body twice
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
        body += chunk
    return body


def loads(raw: bytes | bytearray | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON (UTF-8, no NaN or lone surrogates).",
                             code="invalid_json") from None


async def read_body(request: Request, limit: int) -> bytearray:
    return await collect(request.stream(), request.headers.get("content-length"), limit)


async def read_json(request: Request, empty: Any = None) -> Any:
    """The body's JSON value; ``empty`` for an empty body, when given (else an empty body is not JSON)."""
    raw = await read_body(request, request.app.state.runtime.settings.max_body_bytes)
    if not raw and empty is not None:
        return empty
    return loads(raw)


async def parse_body(request: Request, model: type[M]) -> M:
    """The body as ``model`` (an empty body is ``{}``)."""
    raw = await read_json(request, empty={})
    if not isinstance(raw, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A ``metadata`` field's validator: at most 16 keys of at most 64 characters, string values of at most 512."""
    if value is not None and (len(value) > 16 or any(
            not isinstance(v, str) or len(k) > 64 or len(v) > 512 for k, v in value.items())):
        raise ValueError("metadata holds at most 16 keys of at most 64 characters, with string values of at "
                         "most 512 characters")
    return value
