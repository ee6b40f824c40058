"""Property: no request, however malformed, gets a 5xx (a sample here; bench/fuzz.py runs 10,000+)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from parley.http.app import create_app
from parley.settings import Settings
from parley.testing.fuzz import GET_PATHS, raw_body


@pytest.fixture(scope="module")
def fuzz_client(scripted_server, tmp_path_factory):
    loop = asyncio.new_event_loop()
    app = create_app(Settings(upstream=scripted_server.url,
                              db=f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"))
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley")
    yield loop, client
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(lifespan.__aexit__(None, None, None))
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(request=raw_body, path=GET_PATHS)
def test_no_request_gets_a_5xx(fuzz_client, request, path) -> None:
    loop, client = fuzz_client
    kind, payload = request
    if kind == "json":
        response = loop.run_until_complete(client.post("/v1/responses", json=payload))
    else:
        response = loop.run_until_complete(client.post("/v1/responses", content=payload))
    assert response.status_code < 500, (payload, response.text)
    if response.status_code != 200:  # a 200 may be JSON or an SSE stream; every error is OpenAI's JSON shape
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    got = loop.run_until_complete(client.get(path))
    assert got.status_code < 500, (path, got.text)
