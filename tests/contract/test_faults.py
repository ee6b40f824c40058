"""Failures a user can suffer end in clear, typed errors, bounded in time."""

from __future__ import annotations

import json
import signal

import httpx
import openai

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer
from parley.testing.server import free_port
from parley.testing.strict import stream_raw


def test_a_silent_backend_times_out_with_a_typed_code(scripted_server, backend, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--upstream-timeout-s", "0.5") as server:
        backend.push(Reply(text="too late", delay_s=3))
        events = stream_raw(server.base_url, {"model": "m", "input": "x"})
    check_stream(events)
    assert events[-1].type == "response.failed" and events[-2].code == "backend_timeout"


def test_client_key_forwarding_is_opt_in(scripted_server, backend, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--upstream-api-key", "sk-operator", "--forward-client-key", "true") as server:
        openai.OpenAI(base_url=server.base_url, api_key="sk-client-own", max_retries=0).responses.create(
            model="m", input="x")
    assert backend.headers[-1]["authorization"] == "Bearer sk-client-own"


def test_slow_mcp_tool_and_down_search_provider_are_reported_in_their_items(scripted_server, backend,
                                                                            tmp_path) -> None:
    dead_search = free_port()
    with MCPTestServer("streamable-http", tools="all") as mcp, ParleyProcess(
            "--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}", "--tool-timeout", "1",
            "--web-search", f"searxng:http://127.0.0.1:{dead_search}") as server:
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            backend.push(Reply(tool_calls=[ToolCall("rendezvous_a", {"token": "nobody-else"})]), Reply(text="gave up"))
            response = client.responses.create(model="m", input="x", tools=[{
                "type": "mcp", "server_label": "s", "server_url": mcp.url, "require_approval": "never"}])
            call = response.output[1]
            assert call.status == "failed" and "timed out" in json.dumps(call.error.model_dump())
            assert response.status == "completed" and response.output_text == "gave up"
            backend.push(Reply(tool_calls=[ToolCall("web_search", {"query": "anything"})]), Reply(text="no search"))
            searched = client.responses.create(model="m", input="x", tools=[{"type": "web_search"}])
            assert searched.output[0].type == "web_search_call" and searched.output[0].status == "failed"
            assert "unreachable" in backend.requests[-1]["messages"][-1]["content"]


def test_graceful_shutdown_lets_a_running_response_finish(scripted_server, backend, tmp_path) -> None:
    server = ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}").start()
    try:
        backend.hold()
        with httpx.stream("POST", f"{server.base_url}/responses", timeout=30,
                          json={"model": "m", "input": "finish me", "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: response.created"
            server.process.send_signal(signal.SIGTERM)
            backend.release()
            events = [json.loads(line[6:])["type"] for line in lines if line.startswith("data: ")]
        assert events[-1] == "response.completed"
        # uvicorn re-raises SIGTERM once its graceful shutdown is done, so the exit status is -SIGTERM.
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    finally:
        server.stop()



def test_a_connection_dropped_before_any_answer_is_retried(scripted_server, backend, tmp_path) -> None:
    # The first connection Parley opens is closed with no answer (as when an upstream resets a keep-alive
    # connection it had idled out): nothing reached the client yet, so Parley retries on a new connection.
    from tests.contract.tcp_fronts import DroppingFront

    with DroppingFront(scripted_server.port, drops=1) as front, ParleyProcess(
            "--upstream", front.url, "--db", f"sqlite:///{tmp_path / 'p.db'}") as server:
        backend.push(Reply(text="answered after a retry"))
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            response = client.responses.create(model="m", input="x")
            assert front.dropped == 1
    assert response.status == "completed" and response.output_text == "answered after a retry"
