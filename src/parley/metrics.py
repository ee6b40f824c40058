"""Prometheus metrics, one registry per app (served at ``GET /metrics``).

The engine reports what it sees in its one event stream (time to first token, tokens, tool
calls, backend failures); the HTTP edge reports requests, their latency and open streams.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("parley_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("parley_request_seconds", "HTTP request latency (to the end of the body)",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram("parley_time_to_first_token_seconds", "From the request to the first output delta",
                              buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("parley_tokens", "Tokens counted by the backends", ["kind"], registry=self.registry)
        self.responses = Counter("parley_responses", "Responses finished, by status", ["status"],
                                 registry=self.registry)
        self.backend_errors = Counter("parley_backend_errors", "Failed responses by error code", ["code"],
                                      registry=self.registry)
        self.streams = Gauge("parley_inflight_streams", "Streamed responses running now", registry=self.registry)
        self.tool_calls = Counter("parley_tool_calls", "Server-side and client tool calls by type", ["type"],
                                  registry=self.registry)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def finished(self, response: Any, error_code: str | None) -> None:
        self.responses.labels(response.status or "unknown").inc()
        if response.usage is not None:
            self.tokens.labels("input").inc(response.usage.input_tokens)
            self.tokens.labels("output").inc(response.usage.output_tokens)
        for item in response.output:
            if item.type != "message" and item.type != "reasoning" and item.type != "mcp_list_tools":
                self.tool_calls.labels(item.type).inc()
        if error_code:
            self.backend_errors.labels(error_code).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
