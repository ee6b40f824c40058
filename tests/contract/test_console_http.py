"""The console over plain HTTP against a real ``parley serve``: local mode is open, the playground's create needs
the console's header, bad parameters are ignored rather than a 500, and a database that goes away is a 503 page
(the browser tests in tests/browser drive the pages themselves)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from parley.testing import ParleyProcess, Reply
from tests.contract.tcp_fronts import FaultProxy

PG_PORT = 5432


@pytest.fixture(scope="module")
def local(scripted_server, tmp_path_factory) -> Iterator[ParleyProcess]:
    db = tmp_path_factory.mktemp("console-local") / "c.db"
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{db}") as server:
        yield server


def test_local_mode_is_open_and_the_playground_create_needs_the_console_header(local, backend) -> None:
    with httpx.Client(base_url=local.url, timeout=30) as http:
        listing = http.get("/console/responses")
        assert listing.status_code == 200 and "local mode" in listing.text
        refused = http.post("/console/api/responses", json={"model": "scripted", "input": "hi"})
        assert refused.status_code == 403 and refused.json()["error"]["message"].endswith("x-parley-console.")
        backend.push(Reply(text="from the console"))
        made = http.post("/console/api/responses", json={"model": "scripted", "input": "hi"},
                         headers={"x-parley-console": "1"})
        assert made.status_code == 200 and made.json()["output"][0]["content"][0]["text"] == "from the console"
        assert http.get(f"/v1/responses/{made.json()['id']}").json()["status"] == "completed"  # stored as usual
        assert made.json()["id"] in http.get("/console/responses?fragment=1").text


@pytest.mark.parametrize("path", [
    "/console/responses?since=yesterday&until=%00&cursor=nonsense&status=bogus&model=%FF&q=%25%25",
    "/console/responses?cursor=1e999:resp_x", "/console/overview?range=forever",
    "/console/responses/not%20an%20id", "/console/conversations/%00", "/console/vector-stores/..%2F..",
    "/console/api/statuses?ids=" + ",".join(["x"] * 500),
])
def test_odd_parameters_are_ignored_or_a_404_never_a_500(local, path) -> None:
    reply = httpx.get(local.url + path, timeout=30)
    assert reply.status_code in (200, 404), reply.text[:300]


def test_a_console_page_is_a_503_while_the_database_is_away(backend, postgres_url) -> None:
    with FaultProxy(PG_PORT) as proxy:
        url = postgres_url.replace(f"127.0.0.1:{PG_PORT}", f"127.0.0.1:{proxy.port}")
        with ParleyProcess("--upstream", backend.url, "--db", url, "--store-timeout-s", "1") as server:
            assert httpx.get(f"{server.url}/console/responses", timeout=30).status_code == 200
            proxy.cut()
            try:
                away = httpx.get(f"{server.url}/console/responses", timeout=30)
                assert away.status_code == 503 and "store is unavailable" in away.text
            finally:
                proxy.heal()
            assert httpx.get(f"{server.url}/console/responses", timeout=30).status_code == 200
