"""Prometheus metrics, one registry per app (served at ``GET /metrics``).

The engine reports what it sees in its one event stream (time to first token, tokens, tool
calls, backend failures); the HTTP edge reports requests, their latency and open streams.

With ``parley serve --workers N`` the workers share one port, so a scrape reaches any one of
them: the CLI gives them a directory in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode), each worker writes its values there, and ``/metrics`` on any worker
answers with the sum over all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.shared = bool(os.environ.get(MULTIPROCESS_ENV))  # one of several --workers processes
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
        self.streams = Gauge("parley_inflight_streams", "Streamed responses running now", registry=self.registry,
                             multiprocess_mode="livesum")
        self.tool_calls = Counter("parley_tool_calls", "Server-side and client tool calls by type", ["type"],
                                  registry=self.registry)
        self.relayed_writes = Counter(  # (added once per stream, at its end: nothing per token)
            "parley_relayed_writes", "Writes of text deltas made from the upstream's read, with no task woken",
            registry=self.registry)

        self._children: dict[tuple[Any, ...], Any] = {}  # labelled series, looked up once (labels() locks)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, route: str, status: int, seconds: float) -> None:
        self._child(self.requests, route, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def finished(self, response: Any, error_code: str | None) -> None:
        self._child(self.responses, response.status or "unknown").inc()
        if response.usage is not None:
            self._child(self.tokens, "input").inc(response.usage.input_tokens)
            self._child(self.tokens, "output").inc(response.usage.output_tokens)
        for item in response.output:
            if item.type != "message" and item.type != "reasoning" and item.type != "mcp_list_tools":
                self._child(self.tool_calls, item.type).inc()
        if error_code:
            self._child(self.backend_errors, error_code).inc()

    def exposition(self) -> bytes:
        if not self.shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()  # a fresh one each scrape: the sum of every worker's files
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown: a stopped worker's open streams no longer count."""
        if self.shared:
            multiprocess.mark_process_dead(os.getpid())
