"""Structured logs: one JSON object per line, with request and response ids, and no secrets."""

from __future__ import annotations

import json
import time

import openai

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.mcp_server import MCPTestServer


def test_json_logs_carry_ids_and_no_secrets(scripted_server, backend, tmp_path) -> None:
    with MCPTestServer("sse", auth_token="very-secret-token") as mcp, ParleyProcess(
            "--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}", "--log-format", "json",
            "--upstream-api-key", "sk-upstream-secret") as server:
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            backend.push(Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice"})]),
                         Reply(text="ok"))
            response = client.responses.create(model="m", input="x", tools=[{
                "type": "mcp", "server_label": "s", "server_url": mcp.url, "require_approval": "never",
                "headers": {"Authorization": "Bearer very-secret-token"}}])
            # the access line is written after the body is sent: wait for it, not for a moment
            deadline = time.monotonic() + 60
            while '"route": "POST /v1/responses"' not in (log := server.log()):
                assert time.monotonic() < deadline, "the access line was never written"
                time.sleep(0.05)
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    finished = [e for e in entries if e.get("response_id") == response.id]
    assert finished and finished[0]["status"] == "completed" and finished[0]["input_tokens"] == 20
    assert any(e.get("request_id", "").startswith("req_") and e.get("route") == "POST /v1/responses"
               for e in entries)
    assert "very-secret-token" not in log and "sk-upstream-secret" not in log
