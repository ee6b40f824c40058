"""MCP client sessions over the official ``mcp`` SDK.

Streamable HTTP is tried first, then SSE; the transport that worked is remembered per URL
by the :class:`MCPConnector` (one per server process), so later connections go straight
to it.  Each session lives in a task of its own that owns the SDK's context managers
(they use anyio cancel scopes, which must be entered and left in one task), and serves
the engine's requests through a queue; calls run concurrently.  An HTTP 401 from the
server, on either transport, is :class:`MCPUnauthorized`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx2

from parley.errors import AuthenticationFailed, InvalidRequest, ParleyError
from parley.netpolicy import AddressPolicy
from parley.redaction import redact_userinfo

if TYPE_CHECKING:  # (the SDK is imported when the first session opens: :func:`_sdk`)
    from mcp.client.session import ClientSession

log = logging.getLogger("parley.mcp")
_SDK: tuple[Any, Any, Any] | None = None


async def _sdk() -> tuple[Any, Any, Any]:
    """The SDK's session and transports, imported on the first session's way in, in a thread: importing the
    SDK takes more than half a second of CPU, which a server without MCP tools never spends and which would
    otherwise hold the event loop."""
    def load() -> tuple[Any, Any, Any]:
        from mcp.client.session import ClientSession
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client

        return ClientSession, sse_client, streamable_http_client

    global _SDK
    if _SDK is None:
        _SDK = await asyncio.to_thread(load)
    return _SDK


Transport = Literal["streamable-http", "sse"]


class MCPUnauthorized(AuthenticationFailed):
    default_code = "mcp_unauthorized"


class MCPUnavailable(ParleyError):
    """The MCP server could not be reached or spoke no MCP (OpenAI answers 424 here)."""

    status_code = 424
    error_type = "external_connector_error"
    default_code = "mcp_connection_error"


@dataclass
class MCPToolInfo:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None

    def as_listing(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema,
                "annotations": self.annotations}


@dataclass
class MCPResult:
    output: str | None
    error: str | None


def _result_text(result: Any) -> str:
    texts = [getattr(part, "text", None) for part in result.content or []]
    if any(t is not None for t in texts):
        return "".join(t for t in texts if t is not None)
    if getattr(result, "structured_content", None) is not None:
        return json.dumps(result.structured_content)
    return ""


class MCPSession:
    """One connected MCP session; use :meth:`list_tools`, :meth:`call_tool`, then :meth:`aclose`."""

    def __init__(self, url: str, headers: dict[str, str], transport: Transport, timeout: float,
                 connections: Callable[[], httpx2.AsyncBaseTransport] | None = None) -> None:
        self.url = url
        self.connections = connections  # makes the HTTP transport (the address policy's, when enforced)
        self.headers = headers
        self.transport = transport
        self.timeout = timeout
        self.statuses: list[int] = []
        self._queue: asyncio.Queue[tuple[Callable[[ClientSession], Awaitable[Any]], asyncio.Future[Any]] | None] = (
            asyncio.Queue())
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    async def _record(self, response: httpx2.Response) -> None:
        self.statuses.append(response.status_code)

    def _client(self, headers: dict[str, Any] | None = None, auth: Any = None, timeout: Any = None
                ) -> httpx2.AsyncClient:
        merged = {**(headers or {}), **self.headers}
        return httpx2.AsyncClient(headers=merged, auth=auth, event_hooks={"response": [self._record]},
                                  transport=self.connections() if self.connections else None,
                                  timeout=timeout or httpx2.Timeout(self.timeout, read=max(self.timeout, 60)))

    async def _open(self, stack: contextlib.AsyncExitStack) -> ClientSession:
        ClientSession, sse_client, streamable_http_client = await _sdk()
        if self.transport == "streamable-http":
            client = await stack.enter_async_context(self._client())
            read, write = await stack.enter_async_context(streamable_http_client(self.url, http_client=client))
        else:
            read, write = await stack.enter_async_context(
                sse_client(self.url, headers=self.headers, timeout=self.timeout, httpx_client_factory=self._client))
        session = await stack.enter_async_context(ClientSession(read, write))
        await asyncio.wait_for(session.initialize(), self.timeout)
        return session

    async def _serve(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                session = await self._open(stack)
                self._ready.set_result(None)
                pending: set[asyncio.Task[Any]] = set()
                while (command := await self._queue.get()) is not None:
                    task = asyncio.create_task(self._run(session, *command))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.gather(*pending, return_exceptions=True)
        except BaseException as exc:  # reported to whoever waits; the task itself ends quietly
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            self._drain(exc)

    def _drain(self, exc: BaseException) -> None:
        while not self._queue.empty():
            command = self._queue.get_nowait()
            if command is not None and not command[1].done():
                command[1].set_exception(MCPUnavailable(f"The MCP session to {redact_userinfo(self.url)} ended: {exc!r}"))

    async def _run(self, session: ClientSession, fn: Callable[[ClientSession], Awaitable[Any]],
                   future: asyncio.Future[Any]) -> None:
        try:
            result = await asyncio.wait_for(fn(session), self.timeout)
            if not future.done():
                future.set_result(result)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._serve())
        await self._ready

    async def _request(self, fn: Callable[[ClientSession], Awaitable[Any]]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((fn, future))
        return await future

    async def list_tools(self) -> list[MCPToolInfo]:
        result = await self._request(lambda s: s.list_tools())
        return [
            MCPToolInfo(
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema or {"type": "object", "properties": {}},
                annotations=tool.annotations.model_dump(exclude_none=True) if tool.annotations else None,
            )
            for tool in result.tools
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> MCPResult:
        """Tool failures come back as ``error``, never raised."""
        try:
            result = await self._request(lambda s: s.call_tool(name, arguments))
        except asyncio.TimeoutError:
            return MCPResult(None, f"The MCP tool '{name}' timed out after {self.timeout:g} s.")
        except Exception as exc:
            return MCPResult(None, f"The MCP tool '{name}' failed: {exc}")
        text = _result_text(result)
        return MCPResult(None, text or "The tool reported an error.") if result.is_error else MCPResult(text, None)

    async def aclose(self) -> None:
        if self._task is None:
            return
        await self._queue.put(None)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, 5)


class MCPConnector:
    """Opens MCP sessions, remembering per URL which transport worked."""

    def __init__(self, timeout: float = 30.0, policy: AddressPolicy | None = None) -> None:
        self.timeout = timeout
        self.policy = policy or AddressPolicy(enforce=False)
        self._transport_of: dict[str, Transport] = {}

    async def connect(self, url: str, headers: dict[str, str]) -> MCPSession:
        known = self._transport_of.get(url)
        order: list[Transport] = [known] if known else ["streamable-http", "sse"]
        failures: list[str] = []
        for transport in order:
            connections = (lambda: self.policy.transport("tools.server_url")) if self.policy.enforce else None
            session = MCPSession(url, headers, transport, self.timeout, connections)
            try:
                await session.start()
            except BaseException as exc:  # noqa: BLE001 - the SDK raises exception groups
                if 401 in session.statuses:
                    raise MCPUnauthorized(
                        f"The MCP server at {redact_userinfo(url)} answered 401 Unauthorized: check the tool's 'authorization' "
                        "or 'headers'.", param="tools") from None
                if isinstance(refused := _innermost(exc), InvalidRequest):  # the address policy, at connect time
                    raise refused from None
                failures.append(f"{transport}: {_describe(exc)}")
                continue
            self._transport_of[url] = transport
            return session
        if known:  # the remembered transport stopped working: forget it, try both next time
            self._transport_of.pop(url, None)
        raise MCPUnavailable(f"Cannot connect to the MCP server at {redact_userinfo(url)} ({'; '.join(failures)}).", param="tools")


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _innermost(exc)
    return f"{type(exc).__name__}: {exc}"[:300]
