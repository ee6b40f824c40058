"""OpenTelemetry spans for a response, its backend calls and its tool calls."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import parley
from parley.testing import Reply, ToolCall
from parley.testing.mcp_server import MCPTestServer

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


def test_response_backend_and_tool_spans(backend, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trace, "get_tracer", PROVIDER.get_tracer)
    EXPORTER.clear()
    client = parley.Client(upstream=backend.url, db=f"sqlite:///{tmp_path / 't.db'}")
    try:
        with MCPTestServer("sse") as server:
            backend.push(Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice"})]),
                         Reply(text="done"))
            response = client.responses.create(model="m", input="x", tools=[{
                "type": "mcp", "server_label": "s", "server_url": server.url, "require_approval": "never"}])
    finally:
        client.close()
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    root = spans["parley.response"]
    assert root.attributes["response_id"] == response.id and root.attributes["status"] == "completed"
    backend_calls = [s for s in EXPORTER.get_finished_spans() if s.name == "parley.backend.call"]
    assert len(backend_calls) == 2 and all(s.parent.span_id == root.context.span_id for s in backend_calls)
    tool = spans["parley.tool.call"]
    assert tool.attributes["tool"] == "get_boiling_point" and tool.attributes["item_type"] == "mcp_call"
    assert tool.parent.span_id == root.context.span_id
