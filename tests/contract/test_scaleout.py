"""Two real parley serve processes on one PostgreSQL database behave as one service."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import openai
import pytest

from parley.testing import ParleyProcess


@pytest.fixture(scope="module")
def two_servers(scripted_server, postgres_url):
    args = ("--upstream", scripted_server.url, "--db", postgres_url, "--instance-stale-s", "1.5")
    with ParleyProcess(*args) as first, ParleyProcess(*args) as second:
        yield first, second


def test_create_on_one_retrieve_chain_delete_on_the_other(two_servers, backend) -> None:
    first, second = (openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0) for s in two_servers)
    created = first.responses.create(model="m", input="hello from one")
    assert second.responses.retrieve(created.id).output_text == created.output_text
    chained = second.responses.create(model="m", input="and two", previous_response_id=created.id)
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "assistant", "user"]
    assert [i.content[0].text for i in first.responses.input_items.list(chained.id)] == ["and two"]
    second.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        first.responses.retrieve(created.id)


def test_under_concurrent_load(two_servers, backend) -> None:
    urls = [s.base_url for s in two_servers]

    def turn(i: int) -> bool:
        one, other = urls[i % 2], urls[(i + 1) % 2]
        made = httpx.post(f"{one}/responses", json={"model": "m", "input": f"n{i}"}, timeout=30).json()
        chained = httpx.post(f"{other}/responses", timeout=30, json={
            "model": "m", "input": "next", "previous_response_id": made["id"]}).json()
        return chained["status"] == "completed" and \
            httpx.get(f"{one}/responses/{chained['id']}", timeout=30).json()["id"] == chained["id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert all(pool.map(turn, range(64)))


def test_a_live_instance_keeps_its_running_responses(two_servers, backend) -> None:
    first, second = two_servers
    backend.hold()
    with httpx.stream("POST", f"{first.base_url}/responses", timeout=30,
                      json={"model": "m", "input": "slow", "stream": True}) as response:
        lines = response.iter_lines()
        next(lines)
        response_id = json.loads(next(lines)[6:])["response"]["id"]
        # Both watchdogs run several passes (every 0.5 s, stale after 1.5 s) while the response is held:
        # the running instance keeps beating, so nobody may fail its response.
        time.sleep(4)
        assert httpx.get(f"{second.base_url}/responses/{response_id}").json()["status"] == "in_progress"
        backend.release()
        events = [json.loads(line[6:])["type"] for line in lines if line.startswith("data: ")]
    assert events[-1] == "response.completed"
    assert httpx.get(f"{second.base_url}/responses/{response_id}").json()["status"] == "completed"


def test_workers_share_one_port(scripted_server, postgres_url, backend) -> None:
    import asyncio

    import asyncpg

    async def instances() -> set[str]:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            return {row["id"] for row in await conn.fetch("SELECT id FROM parley_instances")}
        finally:
            await conn.close()

    before = asyncio.run(instances())
    with ParleyProcess("--upstream", scripted_server.url, "--db", postgres_url, "--workers", "2") as server:
        children = open(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read().split()
        responses = [httpx.post(f"{server.base_url}/responses", json={"model": "m", "input": f"w{i}"}).json()
                     for i in range(10)]
        assert {r["status"] for r in responses} == {"completed"}
        deadline = time.monotonic() + 30  # /health answered from one worker; the other may still be starting
        while len(started := asyncio.run(instances()) - before) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(started) == 2  # each worker process runs its own engine
    assert len(children) >= 2  # the two workers (and multiprocessing's resource tracker)


def test_metrics_from_any_worker_count_every_worker(scripted_server, postgres_url, backend) -> None:
    import asyncio

    import asyncpg

    async def owners(ids: list[str]) -> set[str]:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch("SELECT DISTINCT owner FROM parley_responses WHERE id = ANY($1)", ids)
            return {row["owner"] for row in rows}
        finally:
            await conn.close()

    def requests_answered(text: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                   if s.name == "parley_requests_total" and s.labels["route"] == "POST /v1/responses")

    with ParleyProcess("--upstream", scripted_server.url, "--db", postgres_url, "--workers", "2") as server:
        sent, served_by = 0, set()
        deadline = time.monotonic() + 60
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while len(served_by) < 2 and time.monotonic() < deadline:  # until both workers answered some
                ids = list(pool.map(lambda i: httpx.post(f"{server.base_url}/responses", timeout=30,
                                                         json={"model": "m", "input": f"m{i}"}).json()["id"],
                                    range(16)))
                sent += len(ids)
                served_by |= asyncio.run(owners(ids))
        assert len(served_by) == 2
        for _ in range(8):  # each scrape lands on either worker; each one reports both workers' requests
            scrape = httpx.get(f"{server.url}/metrics", headers={"connection": "close"}).text
            assert requests_answered(scrape) == sent
