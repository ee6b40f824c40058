"""The database fails under a real ``parley serve`` on PostgreSQL, through a proxy that cuts or blackholes it:
requests get a 503 in bounded time instead of hanging or a 500, a final write is retried and, when it never
lands, the response is failed rather than left ``in_progress``, and a final state never changes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from parley.store.base import UNSTORED
from parley.testing import ParleyProcess
from tests.contract.tcp_fronts import FaultProxy

PG_PORT = 5432


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(PG_PORT) as proxy:
        yield proxy


def through(proxy: FaultProxy, url: str) -> str:
    assert f"127.0.0.1:{PG_PORT}" in url
    return url.replace(f"127.0.0.1:{PG_PORT}", f"127.0.0.1:{proxy.port}")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def store_state(server: ParleyProcess) -> str:
    return httpx.get(f"{server.url}/health", timeout=10).json()["store"]


def is_ready(server: ParleyProcess) -> bool:
    return httpx.get(f"{server.url}/ready", timeout=30).status_code == 200


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def start_stream(server: ParleyProcess, text: str) -> tuple[object, Iterator[str], str]:
    """A streamed stored create, read up to ``response.created``: (context, line iterator, response id)."""
    context = httpx.stream("POST", f"{server.base_url}/responses", timeout=60,
                           json={"model": "m", "input": text, "stream": True})
    response = context.__enter__()
    assert response.status_code == 200, response.read()
    lines = response.iter_lines()
    assert next(lines) == "event: response.created"
    return context, lines, json.loads(next(lines)[6:])["response"]["id"]


def last_event(lines: Iterator[str]) -> dict:
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    return data[-1]


def test_a_blackholed_database_is_a_503_in_bounded_time_and_health_says_so(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url),
                       "--store-timeout-s", "1") as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:  # a hang fails the test at 30 s
        done = http.post("/responses", json={"model": "m", "input": "hi"}).json()
        assert is_ready(server) and store_state(server) == "ok"
        proxy.blackhole()
        got = http.get(f"/responses/{done['id']}")
        assert got.status_code == 503 and error_code(got) == "store_unavailable"
        deleted = http.delete(f"/responses/{done['id']}")
        assert deleted.status_code == 503 and error_code(deleted) == "store_unavailable"
        listed = http.get(f"/responses/{done['id']}/input_items")
        assert listed.status_code == 503 and error_code(listed) == "store_unavailable"
        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok", "store": "unavailable"}
        assert not is_ready(server)
        calls = len(backend.requests)
        for stream in (False, True):  # refused before the model runs, not after
            created = http.post("/responses", json={"model": "m", "input": "x", "stream": stream})
            assert created.status_code == 503 and error_code(created) == "store_unavailable"
        assert len(backend.requests) == calls
        unstored = http.post("/responses", json={"model": "m", "input": "x", "store": False})
        assert unstored.status_code == 200  # a response that is not stored does not need the store
        proxy.heal()
        wait_for(lambda: is_ready(server), "the store is back")
        assert http.get(f"/responses/{done['id']}").json() == done


def test_a_database_that_refuses_connections_is_a_503_not_a_500(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url),
                       "--store-timeout-s", "1") as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:
        done = http.post("/responses", json={"model": "m", "input": "hi"}).json()
        proxy.cut()
        for response in (http.get(f"/responses/{done['id']}"), http.delete(f"/responses/{done['id']}"),
                         http.post("/responses", json={"model": "m", "input": "x", "stream": True})):
            assert response.status_code == 503 and error_code(response) == "store_unavailable", response.text
        assert len(backend.requests) == 1
        proxy.heal()
        wait_for(lambda: is_ready(server), "the store is back")
        assert http.get(f"/responses/{done['id']}").json()["status"] == "completed"


def test_a_stream_calls_the_model_while_its_row_is_written_and_sends_nothing_before_it(
        backend, postgres_url, proxy) -> None:
    """The in_progress row of a streamed response is written beside its first model call, so the first token
    does not wait for the database; no event goes out before the row is written (a client that saw
    ``response.created`` can retrieve the response)."""
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url),
                       "--store-timeout-s", "60") as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as http:
        http.post("/responses", json={"model": "m", "input": "warm"}).raise_for_status()
        calls = len(backend.requests)
        proxy.hold()  # the database is slow: what Parley sends it waits here
        got: dict[str, object] = {}

        def stream() -> None:
            with httpx.stream("POST", f"{server.base_url}/responses", timeout=60,
                              json={"model": "m", "input": "slow database", "stream": True}) as response:
                got["status"] = response.status_code
                got["data"] = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]

        streaming = threading.Thread(target=stream)
        streaming.start()
        try:
            backend.wait_for_requests(calls + 1, timeout=30)  # the model is called while the row waits
            assert "status" not in got  # (nothing, not even the headers, has gone out)
        finally:
            proxy.heal()
            streaming.join(60)
        events = got["data"]
        assert got["status"] == 200 and isinstance(events, list)
        assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
        assert events[-1]["type"] == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        stored = http.get(f"/responses/{events[0]['response']['id']}").json()
        assert stored["status"] == "completed" and stored["output"] == events[-1]["response"]["output"]


def test_a_stream_whose_row_cannot_be_written_is_a_503(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url),
                       "--store-timeout-s", "1") as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:
        http.post("/responses", json={"model": "m", "input": "warm"}).raise_for_status()
        proxy.blackhole()
        refused = http.post("/responses", json={"model": "m", "input": "x", "stream": True})
        assert refused.status_code == 503 and error_code(refused) == "store_unavailable", refused.text
        assert refused.headers["content-type"] == "application/json"
        proxy.heal()
        wait_for(lambda: is_ready(server), "the store is back")
        with http.stream("POST", "/responses", json={"model": "m", "input": "y", "stream": True}) as response:
            assert response.status_code == 200
            assert [line for line in response.iter_lines() if line.startswith("event: ")][-1] == \
                "event: response.completed"


def test_a_websocket_response_whose_row_cannot_be_written_is_an_error_event(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url),
                       "--store-timeout-s", "1") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client, \
            client.responses.connect() as conn:
        conn.response.create(model="m", input="warm")
        while json.loads(conn.recv_bytes())["type"] != "response.completed":
            pass
        proxy.blackhole()
        conn.response.create(model="m", input="x")
        error = json.loads(conn.recv_bytes())  # nothing of the response before it: it did not start
        assert (error["type"], error["status"], error["error"]["code"]) == ("error", 503, "store_unavailable")
        proxy.heal()
        wait_for(lambda: is_ready(server), "the store is back")
        conn.response.create(model="m", input="y")  # the socket goes on
        events = [json.loads(conn.recv_bytes())]
        while events[-1]["type"] not in ("response.completed", "response.failed", "error"):
            events.append(json.loads(conn.recv_bytes()))
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"


def test_a_final_write_that_never_lands_fails_the_response_and_its_row(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url), "--store-timeout-s", "1",
                       "--store-retry-s", "1", "--instance-stale-s", "3") as server:
        backend.hold()
        context, lines, response_id = start_stream(server, "blip")
        backend.wait_for_requests(1)
        proxy.cut()
        backend.release()
        final = last_event(lines)
        context.__exit__(None, None, None)
        assert final["type"] == "response.failed"
        assert final["response"]["status"] == "failed"
        proxy.heal()

        def stored() -> dict:
            return httpx.get(f"{server.base_url}/responses/{response_id}", timeout=30).json()

        wait_for(lambda: stored().get("status") == "failed", "the unwritten response's row is failed")
        assert stored()["error"]["message"] == UNSTORED


def test_a_final_write_is_retried_until_the_database_is_back(backend, postgres_url, proxy) -> None:
    with ParleyProcess("--upstream", backend.url, "--db", through(proxy, postgres_url), "--store-timeout-s", "1",
                       "--store-retry-s", "60") as server:
        backend.hold()
        context, lines, response_id = start_stream(server, "blip")
        backend.wait_for_requests(1)
        proxy.cut()
        backend.release()
        wait_for(lambda: f"final write of response {response_id} failed" in server.log(), "a failed final write")
        proxy.heal()
        final = last_event(lines)
        context.__exit__(None, None, None)
        assert final["type"] == "response.completed"
        stored = httpx.get(f"{server.base_url}/responses/{response_id}", timeout=30).json()
        assert stored["status"] == "completed" and stored["output"] == final["response"]["output"]


def test_a_failed_response_stays_failed_when_its_instance_comes_back(backend, postgres_url, proxy) -> None:
    common = ("--upstream", backend.url, "--instance-stale-s", "1.5", "--store-timeout-s", "1")
    with ParleyProcess(*common, "--db", through(proxy, postgres_url), "--store-retry-s", "60") as a, \
            ParleyProcess(*common, "--db", postgres_url) as b:
        backend.hold()
        context, lines, response_id = start_stream(a, "long")
        backend.wait_for_requests(1)
        proxy.cut()  # A is cut off from the database for longer than the stale window: B takes it for stopped

        def on_b() -> dict:
            return httpx.get(f"{b.base_url}/responses/{response_id}", timeout=30).json()

        wait_for(lambda: on_b()["status"] == "failed", "B fails A's response")
        proxy.heal()
        wait_for(lambda: is_ready(a), "A reaches the database again")
        backend.release()  # A finishes the response it still runs
        final = last_event(lines)
        context.__exit__(None, None, None)
        assert final["type"] == "response.failed"  # what A's client is told is what the store holds
        assert on_b()["status"] == "failed" and on_b() == final["response"]


def test_an_outage_both_instances_see_fails_no_live_instances_work(backend, postgres_url, proxy) -> None:
    """Both instances lose the database for longer than the stale window: the first back must not take its
    live peer for stopped (it failed half of the peer's running responses as "The server stopped before the
    response finished.").  Silence is judged only by an instance that reached the database for the whole
    window."""
    common = ("--upstream", backend.url, "--instance-stale-s", "1.5", "--store-timeout-s", "1",
              "--store-retry-s", "60", "--db", through(proxy, postgres_url))
    with ParleyProcess(*common) as a, ParleyProcess(*common) as b:
        backend.hold()
        streams = [start_stream(server, f"long {i}") for i, server in enumerate((a, b, a, b))]
        backend.wait_for_requests(len(streams))
        proxy.cut()
        wait_for(lambda: store_state(a) == "unavailable" and store_state(b) == "unavailable", "both see the cut")
        time.sleep(3 * 1.5)  # (the outage must outlast the stale window: both heartbeats go stale)
        proxy.heal()
        wait_for(lambda: is_ready(a) and is_ready(b), "both reach the database again")
        time.sleep(3 * 1.5)  # (room for a wrong judgment to be made: each instance's recovery runs meanwhile)
        backend.release()
        for context, lines, response_id in streams:
            final = last_event(lines)
            context.__exit__(None, None, None)
            assert final["type"] == "response.completed", (response_id, final)
        assert "abandoned" not in a.log() + b.log()


def test_ingestion_that_meets_an_outage_is_handed_back_and_completes(backend, postgres_url, proxy) -> None:
    """A single instance whose database goes away while it indexes a file: once the database is back the file
    is indexed again and completes (it stayed in_progress forever: its owner was alive, so no one took it)."""
    import openai

    from tests.contract.test_ingestion_recovery import _big_text, _row

    with ParleyProcess("--upstream", backend.url, "--instance-stale-s", "1.5",
                       "--db", through(proxy, postgres_url)) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60) as client:
        uploaded = client.files.create(file=("big.txt", _big_text()), purpose="assistants")
        store = client.vector_stores.create(name="outage", file_ids=[uploaded.id])
        wait_for(lambda: _row(postgres_url, store.id)[1] is not None, "the instance claims the file")
        proxy.cut()
        wait_for(lambda: "went away while" in server.log(), "the indexing meets the outage", timeout=120)
        proxy.heal()
        wait_for(lambda: _row(postgres_url, store.id)[0] != "in_progress", "the file is indexed again",
                 timeout=120)
        assert _row(postgres_url, store.id) == ("completed", None), server.log()[-3000:]
        assert client.vector_stores.files.retrieve(file_id=uploaded.id, vector_store_id=store.id).status == \
            "completed"


def test_a_search_past_the_store_timeout_is_its_504_and_the_instance_stays_ready(backend, own_postgres_url) -> None:
    """A statement the database is slow to finish (here a search that waits on a lock another session holds on the
    chunks; at a million chunks, a cold cache) is cancelled by the database at the store timeout: that search's 504,
    while the instance stays ready for everyone else, and the same search succeeds once the lock is gone."""
    import asyncio

    import asyncpg

    locked, release = threading.Event(), threading.Event()

    async def hold_lock() -> None:
        conn = await asyncpg.connect(own_postgres_url.replace("+asyncpg", ""))
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE parley_vector_store_chunks IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    with ParleyProcess("--upstream", backend.url, "--db", own_postgres_url, "--store-timeout-s", "1") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60) as client:
        store = client.vector_stores.create(name="docs")
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=("etna.md", b"Mount Etna is an active volcano on the east coast of Sicily."))
        assert done.status == "completed", done.last_error
        holder = threading.Thread(target=asyncio.run, args=(hold_lock(),))
        holder.start()
        try:
            assert locked.wait(30)
            with pytest.raises(openai.APIStatusError) as info:
                client.vector_stores.search(store.id, query="Which volcano is in Sicily?")
            assert info.value.status_code == 504 and info.value.body["code"] == "store_timeout", info.value.body
            assert is_ready(server) and store_state(server) == "ok"
        finally:
            release.set()
            holder.join(30)
        found = client.vector_stores.search(store.id, query="Which volcano is in Sicily?")
        assert found.data and "Etna" in found.data[0].content[0].text
