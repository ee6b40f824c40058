"""The WebSocket mode scenarios of ``parley verify``: responses in turn on one socket, and steering."""

from __future__ import annotations

from typing import Any

from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer
from parley.verify.base import Context, Skip, expect as _expect


def _until_terminal(conn: Any) -> list[Any]:
    events = [conn.recv()]
    while events[-1].type not in ("response.completed", "response.incomplete", "response.failed", "error"):
        events.append(conn.recv())
    return events


def websocket(ctx: Context) -> None:
    """WebSocket mode: two responses in turn on one socket (the second chained), and an error event after which
    the socket goes on."""
    with ctx.client.responses.connect() as conn:
        conn.response.create(model=ctx.model, input="Which planet do humans live on?")
        first = _until_terminal(conn)
        final = check_stream(first)
        _expect("earth" in final.output_text.lower(), f"no 'earth' in {final.output_text!r}")
        _expect(sum(e.type == "response.output_text.delta" for e in first) >= 1, "no output_text.delta event")
        conn.response.create(model=ctx.model, input="Repeat your previous response in all caps.",
                             previous_response_id=final.id)
        second = check_stream(_until_terminal(conn))
        _expect("EARTH" in second.output_text, f"the chained turn: {second.output_text!r}")
        conn.send({"type": "response.create", "model": ctx.model, "input": "x", "temperature": 5})
        error = conn.recv()
        _expect(error.type == "error" and getattr(error, "status", None) == 400, f"expected a 400 error: {error}")
        conn.response.create(model=ctx.model, input="Which planet do humans live on?")
        _expect(_until_terminal(conn)[-1].type == "response.completed", "the socket did not go on after the error")


def steering(ctx: Context) -> None:
    """``response.steer`` while a response waits on a server-side tool call (an MCP tool on loopback that
    returns when told to): accepted, the response stops steered, and a successor answers with the input."""
    if not ctx.loopback:
        raise Skip("the endpoint is not on this machine, so it cannot reach the loopback MCP server")
    with MCPTestServer("sse", tools="hold") as server, ctx.client.responses.connect() as conn:
        tools = [{"type": "mcp", "server_label": "signals", "server_url": server.url, "require_approval": "never"}]
        conn.response.create(model=ctx.model, input="Wait for the signal, then say it came.", tools=tools)
        created = conn.recv()
        _expect(created.type == "response.created", f"expected response.created first: {created.type}")
        _expect(server.hold.entered.wait(60), "the model did not call wait_for_signal")
        conn.response.steer(previous_response_id=created.response.id, input="Also tell me where llamas live.")
        events = [conn.recv()]
        while events[-1].type not in ("response.steer.accepted", "response.steer.failed", "response.completed",
                                      "response.incomplete", "response.failed", "error"):
            events.append(conn.recv())
        _expect(events[-1].type == "response.steer.accepted", f"the steering input was not accepted: {events[-1]}")
        server.release()
        first = _until_terminal(conn)
        _expect(first[-1].type == "response.incomplete" and
                first[-1].response.incomplete_details.reason == "steered", f"expected a steered stop: {first[-1]}")
        successor = _until_terminal(conn)
        _expect(successor[0].type == "response.created" and
                successor[0].response.previous_response_id == created.response.id, "no successor after the steer")
        final = check_stream(successor)
        _expect("peru" in final.output_text.lower(), f"the successor did not take the input: {final.output_text!r}")
