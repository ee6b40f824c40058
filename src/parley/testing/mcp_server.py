"""A real MCP server for tests, built on the official ``mcp`` SDK's ``MCPServer``.

Served over SSE (``/sse``) or Streamable HTTP (``/mcp``) on 127.0.0.1, optionally
demanding a bearer token (401 without it).  Its tools are deterministic: the seed's
``greet_everyone`` and ``get_boiling_point``, and with ``tools="all"`` two dependency
chains (``get_user_id`` → ``get_user_permissions`` → ``check_file_access``,
``get_experiment_id`` → ``get_experiment_results``) and ``fail_always`` for tool errors; with ``tools="hold"``,
the seed's and ``wait_for_signal``, whose calls wait until the test calls :meth:`MCPTestServer.release`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.server.mcpserver.exceptions import ToolError

from parley.testing.threaded import LoopbackService

USERS = {"alice": "user_1", "bob": "user_2"}
PERMISSIONS = {"user_1": ["read", "write"], "user_2": ["read"]}
EXPERIMENTS = {"boiling": "exp_42"}


class Hold:
    """What ``wait_for_signal`` waits on (threads: the server runs on a loop of its own)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()


def build_server(tools: Literal["seed", "all", "hold"] = "seed", hold: Hold | None = None) -> MCPServer:
    """The seed's two tools; with ``"all"``, also lookups, a rendezvous of two concurrent calls and a failure;
    with ``"hold"``, a tool that waits for a signal."""
    server = MCPServer("parley-test-mcp")
    _add_seed_tools(server)
    if tools == "hold":
        assert hold is not None

        @server.tool()
        async def wait_for_signal() -> str:
            """Wait until the operator gives the signal."""
            hold.entered.set()
            await asyncio.to_thread(hold.released.wait, 120)
            return "The signal came."
    if tools == "all":
        _add_lookup_tools(server)
        _add_rendezvous_tools(server)

        @server.tool()
        def fail_always(reason: str) -> str:
            """A tool that always fails."""
            raise ToolError(f"tool failed on purpose: {reason}")
    return server


def _add_seed_tools(server: MCPServer) -> None:
    @server.tool()
    def greet_everyone(url: str) -> str:
        """Greet everyone at the given URL."""
        return f"Hello, world! (from {url})"

    @server.tool()
    def get_boiling_point(liquid_name: str, celcius: bool = True) -> int:
        """Return the boiling point of a liquid in Celcius (or Fahrenheit when celcius is false)."""
        if liquid_name.lower() == "polyjuice":
            return -100 if celcius else -212
        return 100 if celcius else 212


def _add_lookup_tools(server: MCPServer) -> None:
    @server.tool()
    def get_user_id(username: str) -> str:
        """Look up the id of a user by name."""
        return USERS.get(username, "unknown_user")

    @server.tool()
    def get_user_permissions(user_id: str) -> str:
        """List the permissions of a user id."""
        return json.dumps(PERMISSIONS.get(user_id, []))

    @server.tool()
    def check_file_access(user_id: str, filename: str) -> str:
        """Say whether a user id may read a file."""
        allowed = "read" in PERMISSIONS.get(user_id, [])
        return f"{user_id} {'may' if allowed else 'may not'} read {filename}"

    @server.tool()
    def get_experiment_id(experiment_name: str) -> str:
        """Look up the id of an experiment by name."""
        return EXPERIMENTS.get(experiment_name, "unknown_experiment")

    @server.tool()
    def get_experiment_results(experiment_id: str) -> str:
        """The results of an experiment id."""
        return json.dumps({"experiment_id": experiment_id, "accuracy": 0.93})


def _add_rendezvous_tools(server: MCPServer) -> None:
    arrived: dict[tuple[str, str], asyncio.Event] = {}

    async def rendezvous(token: str, me: str, peer: str) -> str:
        arrived.setdefault((token, me), asyncio.Event()).set()
        try:
            await asyncio.wait_for(arrived.setdefault((token, peer), asyncio.Event()).wait(), 5)
        except asyncio.TimeoutError:
            return "alone"
        return "met"

    @server.tool()
    async def rendezvous_a(token: str) -> str:
        """Answers 'met' only if rendezvous_b runs with the same token at the same time."""
        return await rendezvous(token, "a", "b")

    @server.tool()
    async def rendezvous_b(token: str) -> str:
        """Answers 'met' only if rendezvous_a runs with the same token at the same time."""
        return await rendezvous(token, "b", "a")


class _BearerGate:
    """ASGI wrapper: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.seen_headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            self.seen_headers.append({k.decode(): v.decode() for k, v in headers.items()})
            if headers.get(b"authorization") != self.expected:
                body = b'{"error": "unauthorized"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _RequestLog:
    """ASGI wrapper recording (method, path) of every HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


class MCPTestServer(LoopbackService):
    """Start with ``with MCPTestServer(...) as server:``; ``server.url`` is what a request names."""

    service_name = "MCP test server"
    lifespan = "auto"  # the Streamable HTTP app runs its session manager in its lifespan

    def __init__(self, transport: Literal["sse", "streamable-http"] = "sse", *, auth_token: str | None = None,
                 tools: Literal["seed", "all", "hold"] = "seed", host_names: tuple[str, ...] = ()) -> None:
        self.transport = transport
        self.host_names = host_names  # names besides 127.0.0.1/localhost the server answers to
        self.auth_token = auth_token
        self.hold = Hold()
        self.server = build_server(tools, self.hold)
        self.gate: _BearerGate | None = None
        self.log: _RequestLog | None = None

    def release(self) -> None:
        """Let the calls of ``wait_for_signal`` return (``tools="hold"``)."""
        self.hold.released.set()

    def stop(self) -> None:
        self.release()  # a held call must not keep the server from stopping
        super().stop()

    @property
    def url(self) -> str:
        path = "/sse" if self.transport == "sse" else "/mcp"
        return f"http://127.0.0.1:{self.port}{path}"

    def asgi_app(self) -> Any:
        # The SDK's DNS-rebinding protection stays on; it admits the loopback names and any given here.
        names = ["127.0.0.1", "localhost", "[::1]", *self.host_names]
        security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                             allowed_hosts=[f"{n}:*" for n in names],
                                             allowed_origins=[f"http://{n}:*" for n in names])
        app: Any = (self.server.sse_app(transport_security=security) if self.transport == "sse"
                    else self.server.streamable_http_app(transport_security=security))
        if self.auth_token:
            self.gate = app = _BearerGate(app, self.auth_token)
        self.log = app = _RequestLog(app)
        return app
