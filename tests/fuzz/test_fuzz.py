"""Property: no request, however malformed or hostile, gets a 5xx from a real ``parley serve`` (on SQLite and
on PostgreSQL), and every error is in OpenAI's shape (a sample here; bench/fuzz.py sends 20,000)."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.strategies import GET_PATHS, http_body


@pytest.fixture(scope="module")
def http(parley_server):
    with httpx.Client(base_url=parley_server.url, timeout=60) as client:
        yield client
    assert httpx.get(f"{parley_server.url}/health").json() == {"status": "ok", "store": "ok"}


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(request=http_body, path=GET_PATHS)
def test_no_request_gets_a_5xx(http, backend, request, path) -> None:
    kind, payload = request
    content = json.dumps(payload).encode() if kind == "json" else payload
    response = http.post("/v1/responses", content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, (payload, response.text[:500])
    if response.status_code != 200:  # a 200 may be JSON or an SSE stream; every error is OpenAI's JSON shape
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    got = http.get(path)
    assert got.status_code < 500, (path, got.text)
