"""``input_file`` parts: the file's text, extracted and sent to chat backends as a text part.

Chat Completions backends take no documents, so Parley reads them (:mod:`parley.extract`), in a worker
process (:mod:`parley.workers`): a file that inflates or runs long costs that process, never the server's
memory or event loop.  Vector stores read their files the same way.  A file comes as ``file_data`` (base64,
or a ``data:`` URL), ``file_url`` (fetched by Parley, within the address policy and ``--max-file-bytes``) or
``file_id``.  An unreadable, unsupported or oversized file is a 400 naming its part.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx2

from parley.errors import InvalidRequest
from parley.extract import Limits, Unreadable, media_type
from parley.items import InputFile, InputImage
from parley.netpolicy import AddressPolicy
from parley.retrieval.jobs import read_file, refusal
from parley.workers import JobError, WorkerFailed, WorkerPool

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}


def decode_file_data(data: str, where: str) -> tuple[bytes, str | None]:
    """``file_data`` as bytes and the media type a ``data:`` URL declares."""
    declared = None
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        declared = header[5:].replace(";base64", "") or None
    try:
        return base64.b64decode(data, validate=True), declared
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{where}.file_data' is not base64.", param=f"{where}.file_data") from None


async def fetch(url: str, where: str, policy: AddressPolicy, max_bytes: int, timeout: float) -> tuple[bytes, str | None]:
    """The bytes at ``url`` (within the address policy and ``max_bytes``) and their declared type."""
    param = f"{where}.file_url"
    await policy.check(url, param)
    transport = policy.transport(param) if policy.enforce else None
    try:
        async with httpx2.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise InvalidRequest(f"'{param}' answered HTTP {response.status_code}.", param=param)
                if response.is_redirect or response.status_code >= 300:  # (its body is no file)
                    raise InvalidRequest(f"'{param}' answered HTTP {response.status_code}, a redirect; Parley does not "
                                         "follow them: give the file's own URL.", param=param)
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise _too_large(param, max_bytes)
                return bytes(body), response.headers.get("content-type")
    except httpx2.HTTPError as exc:
        raise InvalidRequest(f"'{param}' could not be fetched: {exc.__class__.__name__}.", param=param) from None


def _too_large(param: str, max_bytes: int) -> InvalidRequest:
    return InvalidRequest(f"The file of '{param}' is larger than {max_bytes} bytes (--max-file-bytes).",
                          param=param, code="file_too_large")


class FileReader:
    """Reads the ``input_file`` parts of a request, within the server's limits."""

    def __init__(self, policy: AddressPolicy, max_bytes: int = 20 * 1024 * 1024, timeout: float = 30.0,
                 uploads: Any = None, workers: WorkerPool | None = None, limits: Limits = Limits()) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.uploads = uploads  # the Files API's store (parley.store.files.SqlFiles), for file_id
        self.workers = workers or WorkerPool()
        self.limits = limits

    async def read(self, parts: list[tuple[str, InputFile]], tenant: str = "") -> None:
        """Extract each part's text into it (a 400 naming the part when it cannot be read)."""
        for where, part in parts:
            if part.file_id is not None:
                data, declared = await self._uploaded(part, where, tenant)
            elif part.file_url is not None:
                data, declared = await fetch(part.file_url, where, self.policy, self.max_bytes, self.timeout)
            else:
                data, declared = decode_file_data(part.file_data or "", where)
            if len(data) > self.max_bytes:
                raise _too_large(where, self.max_bytes)
            try:
                part._extracted = await self.workers.run(read_file, data, media_type(part.filename, declared),
                                                         self.limits, expected=(Unreadable,))
            except (JobError, WorkerFailed) as exc:
                code, message = refusal(exc, where)
                raise InvalidRequest(message, param=where, code=code) from None

    async def read_images(self, parts: list[tuple[str, InputImage]], tenant: str = "") -> None:
        """Each uploaded image as a data URL for the chat backend (a 400 naming the part for a file that is not
        the tenant's or not an image)."""
        for where, part in parts:
            record = await self.uploads.get(part.file_id, tenant) if self.uploads is not None else None
            if record is None:
                raise InvalidRequest(f"No file with id '{part.file_id}' found.", param=f"{where}.file_id",
                                     code="file_not_found")
            kind = media_type(record.filename)
            if kind not in IMAGE_TYPES:
                raise InvalidRequest(f"The file '{record.filename}' is not an image Parley sends to models "
                                     "(PNG, JPEG, GIF or WebP).", param=f"{where}.file_id", code="unsupported_file")
            if record.bytes > self.max_bytes:
                raise _too_large(f"{where}.file_id", self.max_bytes)
            data = b"".join([piece async for piece in self.uploads.content(record)])
            part._data_url = f"data:{kind};base64,{base64.b64encode(data).decode()}"

    async def _uploaded(self, part: InputFile, where: str, tenant: str) -> tuple[bytes, str | None]:
        """An uploaded file's bytes (uploads are bounded by the same limit); its name names the part."""
        record = await self.uploads.get(part.file_id, tenant) if self.uploads is not None else None
        if record is None:
            raise InvalidRequest(f"No file with id '{part.file_id}' found.", param=f"{where}.file_id",
                                 code="file_not_found")
        part.filename = part.filename or record.filename
        if record.bytes > self.max_bytes:
            raise _too_large(where, self.max_bytes)
        return b"".join([piece async for piece in self.uploads.content(record)]), None
