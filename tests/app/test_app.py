"""The HTTP edge in process (httpx ASGITransport): status codes, validation, JSON bodies."""

from __future__ import annotations

import httpx
import pytest

from parley.http.app import create_app
from parley.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(backend, tmp_path):
    app = create_app(Settings(upstream=backend.url, db=f"sqlite:///{tmp_path / 'p.db'}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley") as client:
            yield client


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
    return error


async def test_health(http) -> None:
    assert (await http.get("/health")).json() == {"status": "ok", "store": "ok"}
    ready = await http.get("/ready")
    body = ready.json()
    assert ready.status_code == 200 and (body["status"], body["store"]) == ("ready", "ok")
    assert body["sandbox"]["available"] == (body["sandbox"]["name"] != "none"), "ready says where code runs"


async def test_invalid_json_is_a_400(http) -> None:
    response = await http.post("/v1/responses", content=b"{nope", headers={"content-type": "application/json"})
    assert_openai_error(response, 400)


async def test_non_object_body_is_a_400(http) -> None:
    assert_openai_error(await http.post("/v1/responses", json=[1, 2]), 400)


async def test_validation_errors_are_400_never_422(http) -> None:
    error = assert_openai_error(await http.post("/v1/responses", json={"model": "m", "input": "x", "top_p": 5}), 400,
                                "top_p")
    assert error["type"] == "invalid_request_error"
    response = await http.get("/v1/responses/resp_x/input_items", params={"limit": 1000})
    assert_openai_error(response, 400, "limit")
    response = await http.get("/v1/responses/resp_x/input_items", params={"order": "sideways"})
    assert_openai_error(response, 400, "order")


async def test_stream_true_validation_error_is_plain_json(http) -> None:
    response = await http.post("/v1/responses", json={"model": "m", "input": "x", "stream": True, "bogus": 1})
    assert response.headers["content-type"].startswith("application/json")
    assert assert_openai_error(response, 400, "bogus")["code"] == "unknown_parameter"


async def test_unknown_route_is_a_404_in_openai_shape(http) -> None:
    assert_openai_error(await http.get("/v1/nothing-here"), 404)


async def test_create_retrieve_delete_shapes(http, backend) -> None:
    created = (await http.post("/v1/responses", json={"model": "m", "input": "hi"})).json()
    assert created["object"] == "response" and created["id"].startswith("resp_")
    assert created["output"][0]["id"].startswith("msg_")
    for field in ("completed_at", "incomplete_details", "instructions", "tools", "tool_choice", "truncation", "top_p",
                  "temperature", "reasoning", "usage", "max_output_tokens", "max_tool_calls", "store", "background",
                  "service_tier", "safety_identifier", "prompt_cache_key", "metadata", "text", "top_logprobs",
                  "parallel_tool_calls", "previous_response_id", "error"):
        assert field in created, field
    assert created["truncation"] == "disabled" and created["text"]["format"] == {"type": "text"}
    assert (await http.get(f"/v1/responses/{created['id']}")).json() == created
    deleted = await http.delete(f"/v1/responses/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    assert_openai_error(await http.get(f"/v1/responses/{created['id']}"), 404)
    assert_openai_error(await http.delete(f"/v1/responses/{created['id']}"), 404)


async def test_unreachable_backend_is_a_typed_502(tmp_path) -> None:
    from parley.testing import free_port

    settings = Settings(upstream=f"http://127.0.0.1:{free_port()}/v1", db=f"sqlite:///{tmp_path / 'p.db'}")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as client:
            response = await client.post("/v1/responses", json={"model": "m", "input": "x"})
    assert assert_openai_error(response, 502)["code"] == "backend_unreachable"


async def test_body_and_input_limits(backend, tmp_path) -> None:
    settings = Settings(upstream=backend.url, db=f"sqlite:///{tmp_path / 'p.db'}", max_body_bytes=2048,
                        max_input_items=3)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parley") as client:
            big = await client.post("/v1/responses", json={"model": "m", "input": "x" * 5000})
            assert_openai_error(big, 413)
            many = await client.post("/v1/responses", json={"model": "m", "input": [
                {"role": "user", "content": "x"}] * 4})
            assert assert_openai_error(many, 400, "input")["code"] == "too_many_items"
            fine = await client.post("/v1/responses", json={"model": "m", "input": "ok"})
            assert fine.status_code == 200 and fine.headers["x-request-id"].startswith("req_")


async def test_non_json_numbers_and_lone_surrogates_are_400(http) -> None:
    for raw in (b'{"model":"m","input":"x","temperature":NaN}', b'{"model":"m","input":"\\ud800"}'):
        response = await http.post("/v1/responses", content=raw, headers={"content-type": "application/json"})
        assert assert_openai_error(response, 400)["code"] == "invalid_json"


def test_the_server_imports_no_sdk_that_only_an_optional_tool_uses() -> None:
    # A start is mostly imports, and a test suite starts hundreds of servers: the mcp SDK (more than half a
    # second of CPU) is imported when the first MCP session opens, not when the server loads.
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, parley.cli, parley.http.app; "
                             "print(sorted(m for m in ('mcp', 'mcp_types') if m in sys.modules))"],
                            capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "[]", loaded.stdout
