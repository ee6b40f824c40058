"""The HTTP edge under hostile traffic, against a real ``parley serve``: metric labels stay bounded, a
missing key is a 401 before anything else, the docs and metrics are closed by default with keys on,
request bodies in flight are bounded, and a connection that never finishes its headers is closed."""

from __future__ import annotations

import re
import secrets
import socket
import time

import httpx
import pytest

from parley.testing import ParleyProcess

KEY = {"Authorization": "Bearer sk-alice"}


@pytest.fixture(scope="module")
def keyed(scripted_server, tmp_path_factory):
    db = tmp_path_factory.mktemp("edge") / "p.db"
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{db}", "--api-keys",
                       "sk-alice=alice") as server:
        yield server


def route_labels(metrics: str) -> set[str]:
    return set(re.findall(r'parley_requests_total\{route="([^"]*)"', metrics))


def test_metric_labels_stay_bounded_whatever_the_method_and_path(keyed) -> None:
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        for i in range(40):
            tail = secrets.token_hex(6)
            http.request("PURGE", f"/v1/responses/x/{tail}")  # no key: answered all the same, and counted
            http.request(secrets.choice(["GET", "BREW", "DELETE"]), f"/v1/responses/resp_{tail}/{tail}")
            http.get(f"/v1/{tail}", headers=KEY)
            http.get(f"/v1/responses/resp_{tail}", headers=KEY)
        labels = route_labels(http.get("/metrics", headers=KEY).text)
    assert not any(re.search(r"[0-9a-f]{12}", label) for label in labels), labels  # no id or tail in a label
    methods = {label.split(" ")[0] for label in labels if " " in label}
    assert methods <= {"GET", "POST", "DELETE", "HEAD", "OPTIONS", "OTHER"}, methods
    assert "GET /v1/responses/{response_id}" in labels and "other" in labels
    assert len(labels) <= 12, labels


def test_a_missing_key_is_a_401_before_the_query_is_validated(keyed) -> None:
    response = httpx.get(f"{keyed.base_url}/responses/resp_x/input_items?limit=0")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with_key = httpx.get(f"{keyed.base_url}/responses/resp_x/input_items?limit=0", headers=KEY)
    assert with_key.status_code == 400


def test_docs_are_off_and_metrics_need_a_key_by_default(keyed, scripted_server, tmp_path) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{keyed.url}{path}").status_code == 404, path
    assert httpx.get(f"{keyed.url}/metrics").status_code == 401
    assert httpx.get(f"{keyed.url}/metrics", headers=KEY).status_code == 200
    assert httpx.get(f"{keyed.url}/health").status_code == 200  # probes need no key
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}", "--api-keys",
                       "sk-alice=alice", "--docs", "true", "--public-metrics", "true") as server:
        assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "Parley"
        assert httpx.get(f"{server.url}/docs").status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code == 200


def _partial_request(port: int, length: int, sent: int) -> socket.socket:
    """A POST that declares ``length`` body bytes and has sent ``sent`` of them."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % length + b" " * sent)
    return sock


def test_request_bodies_in_flight_are_bounded(scripted_server, backend, tmp_path) -> None:
    body_limit, budget = 40_000, 64_000
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--max-body-bytes", str(body_limit), "--max-inflight-body-bytes", str(budget)) as server:
        slow = _partial_request(server.port, 30_000, 100)  # holds 30,000 bytes of the budget while it uploads
        try:
            # Once the slow body is counted, a second 30,000-byte body does not fit with it.
            deadline = time.monotonic() + 30
            while True:
                busy = httpx.post(f"{server.base_url}/responses", content=b" " * 35_000,
                                  headers={"content-type": "application/json"})
                if busy.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"]["code"] == "server_busy" and busy.headers["retry-after"] == "1"
            small = httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": "fits"})
            assert small.status_code == 200  # what fits beside it is served
        finally:
            slow.close()
        deadline = time.monotonic() + 30
        while (after := httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": "x" * 34_000})
               ).status_code == 503:
            assert time.monotonic() < deadline, "the budget was never given back"
            time.sleep(0.05)
        assert after.status_code == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(scripted_server, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--header-timeout-s", "1") as server:
        stalled = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing
            sock.settimeout(30)
            stalled.append(sock)
        kept_alive = socket.create_connection(("127.0.0.1", server.port))
        kept_alive.settimeout(30)
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"}"):  # the whole first response (its head and its JSON body)
            reply += kept_alive.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a second request that stalls in its headers
        stalled.append(kept_alive)
        for sock in stalled:
            assert sock.recv(4096) == b"", "the server answered instead of closing"  # closed by the server
            sock.close()
        assert httpx.get(f"{server.url}/health").status_code == 200  # and it serves on


def test_a_streaming_client_that_stops_reading_is_left_behind_and_its_response_is_stored(scripted_server, backend,
                                                                                         tmp_path) -> None:
    from parley.testing import Reply

    text = "word " * 400_000  # 2 MB of deltas: more than the sockets on the way hold
    backend.push(Reply(text=text, chunk_size=2000))
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path}/p.db",
                       "--slow-client-s", "1") as server:
        body = b'{"model": "m", "input": "long", "stream": true}'
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            head = b""
            while not (found := re.search(rb'"id":"(resp_[0-9a-f]+)"', head)):  # the first frames, then no more
                head += sock.recv(4096)
            response_id = found.group(1).decode()
            deadline = time.monotonic() + 60
            while True:
                stored = httpx.get(f"{server.base_url}/responses/{response_id}").json()
                if stored["status"] != "in_progress" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert stored["status"] == "completed"
        assert "".join(part["text"] for part in stored["output"][0]["content"]) == text
        assert "stopped reading" in server.log()


def test_a_kept_alive_connection_outlives_the_clients_own_idle_limit(keyed) -> None:
    """httpx keeps an idle connection 5 s and uvicorn closed it after 5 s too, so a request sent as the server
    closed it met a reset (8 of 6,361 under load).  The server keeps it longer (--keep-alive-s): a request on
    a connection idle past the client's 5 s is answered."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", keyed.port, timeout=30)
    try:
        connection.request("GET", "/health")
        first = connection.getresponse()
        assert first.status == 200 and first.read()
        local = connection.sock.getsockname()
        time.sleep(6)  # (the scenario itself: idle longer than the client's keep-alive)
        connection.request("GET", "/health")
        again = connection.getresponse()
        assert again.status == 200 and again.read()
        assert connection.sock.getsockname() == local  # the same connection, not a new one
    finally:
        connection.close()
