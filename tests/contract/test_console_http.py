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
        assert refused.status_code == 403 and "x-parley-console" in refused.json()["error"]["message"]
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


@pytest.fixture(scope="module")
def keyed(scripted_server, tmp_path_factory) -> Iterator[ParleyProcess]:
    db = tmp_path_factory.mktemp("console-keyed") / "c.db"
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{db}", "--api-keys",
                       "sk-alice=alice", "--admin-keys", "sk-root-0000") as server:
        yield server


def _sign_in(http: httpx.Client, key: str, **headers: str) -> httpx.Response:
    return http.post("/console/login", data={"key": key, "next": "/console/responses"}, headers=headers)


def test_the_session_cookie_holds_no_key_and_signing_out_revokes_it(keyed) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        signed = _sign_in(http, "sk-alice", **{"Sec-Fetch-Site": "same-origin", "Origin": keyed.url})
        assert signed.status_code == 303, signed.text[:300]
        cookie = signed.headers["set-cookie"]
        assert "sk-alice" not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Max-Age=43200" in cookie
        session = http.cookies["parley_console_session"]
        assert http.get("/console/responses").status_code == 200
        assert http.post("/console/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 303
        # the old cookie, sent again (as a thief who copied it would), signs in no one
        again = httpx.get(f"{keyed.url}/console/responses", cookies={"parley_console_session": session})
        assert again.status_code == 303 and "/console/login" in again.headers["location"]


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "https://evil.example"}, {"Origin": "null"}])
def test_sign_in_and_out_from_another_site_are_refused(keyed, headers) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        refused = _sign_in(http, "sk-alice", **headers)
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        assert _sign_in(http, "sk-alice").status_code == 303  # (no browser page sent it: allowed)
        assert http.post("/console/logout", headers=headers).status_code == 403
        assert http.get("/console/responses").status_code == 200  # still signed in


def test_every_console_page_forbids_framing_sniffing_and_inline_scripts(keyed) -> None:
    for path in ("/console/login", "/console/responses", "/console/static/console.js"):
        reply = httpx.get(keyed.url + path, timeout=30)
        policy = reply.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert reply.headers["x-frame-options"] == "DENY" and reply.headers["x-content-type-options"] == "nosniff"


def test_wrong_keys_are_limited_per_client_address(scripted_server, tmp_path) -> None:
    from parley.auth import FailedKeys

    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'l.db'}",
                       "--api-keys", "sk-alice=alice") as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(FailedKeys.LIMIT):
            assert _sign_in(http, "sk-guess-000").status_code == 401
        limited = _sign_in(http, "sk-alice")
        assert limited.status_code == 429 and "Too many wrong API keys" in limited.text
        api = http.get("/v1/models", headers={"Authorization": "Bearer sk-alice"})
        assert api.status_code == 429 and api.json()["error"]["code"] == "too_many_failed_keys"
        assert int(api.headers["retry-after"]) > 0
