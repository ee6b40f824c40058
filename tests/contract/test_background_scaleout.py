"""Background responses on two real parley serve processes sharing PostgreSQL: accepted on one, followed,
resumed and cancelled through the other; taken over from an instance killed with SIGKILL; 50 at once."""

from __future__ import annotations

import asyncio
import json
import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import openai
import pytest

from parley.store.base import ABANDONED
from parley.testing import ParleyProcess
from parley.testing.scripted import Reply
from tests.contract.test_background import LONG, settle

STALE = "1.5"


def _clients(*servers: ParleyProcess) -> list[openai.OpenAI]:
    return [openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0) for s in servers]


@contextmanager
def _runner_and_watcher(upstream: str, db: str) -> Iterator[tuple[ParleyProcess, ParleyProcess, openai.OpenAI,
                                                                    openai.OpenAI]]:
    """Two instances: a runs background responses; b runs none, so whatever it shows of them comes from the
    database.  With their clients."""
    args = ("--upstream", upstream, "--db", db, "--instance-stale-s", STALE)
    with ParleyProcess(*args) as a, ParleyProcess(*args, "--max-background-runs", "0") as b:
        one, other = _clients(a, b)
        with one, other:
            yield a, b, one, other


def test_accepted_on_one_polled_resumed_and_cancelled_through_the_other(scripted_server, backend,
                                                                         own_postgres_url) -> None:
    with _runner_and_watcher(scripted_server.url, own_postgres_url) as (a, b, one, other):
        backend.push(Reply(text=LONG * 5, chunk_size=2, chunk_delay_s=0.01))
        queued = one.responses.create(model="m", input="go", background=True)
        backend.wait_for_requests(1)
        assert other.responses.retrieve(queued.id).status == "in_progress"
        resumed = []
        with other.responses.retrieve(queued.id, stream=True, starting_after=5) as stream:
            for event in stream:
                resumed.append(event)
                if len(resumed) == 20:
                    break
        assert [e.sequence_number for e in resumed] == list(range(6, 26))
        cancelled = other.responses.cancel(queued.id)
        assert cancelled.status == "cancelled" and 0 < len(cancelled.output_text) < len(LONG * 5)
        replay_a = list(one.responses.retrieve(queued.id, stream=True))
        replay_b = list(other.responses.retrieve(queued.id, stream=True))
        assert [e.model_dump() for e in replay_a] == [e.model_dump() for e in replay_b]
        assert [e.model_dump() for e in replay_b[6:26]] == [e.model_dump() for e in resumed]
        assert replay_b[-1].type == "response.failed" and replay_b[-1].response.status == "cancelled"
        deadline = time.monotonic() + 10  # (a logs the run just after it stores the row b reads)
        while f"response {queued.id} cancelled" not in a.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"response {queued.id} cancelled" in a.log() and f"response {queued.id}" not in b.log()


def test_the_instance_running_it_is_killed(scripted_server, backend, own_postgres_url) -> None:
    with _runner_and_watcher(scripted_server.url, own_postgres_url) as (a, b, one, other):
        backend.push(Reply(text=LONG * 20, chunk_size=2, chunk_delay_s=0.02))
        queued = one.responses.create(model="m", input="go", background=True)
        backend.wait_for_requests(1)
        time.sleep(0.3)
        a.process.kill()  # SIGKILL: no shutdown code runs
        a.process.wait()
        # b's stream ends: recovery fails the response after the stale window, b closes its stream for it
        events = list(other.responses.retrieve(queued.id, stream=True))
        failed = other.responses.retrieve(queued.id)
        assert failed.status == "failed" and failed.error.message == ABANDONED
        assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
        assert [e.sequence_number for e in events] == list(range(len(events)))


def test_fifty_concurrent_background_responses_run_once_each(scripted_server, backend, own_postgres_url) -> None:
    args = ("--upstream", scripted_server.url, "--db", own_postgres_url, "--max-background-runs", "4")
    with ParleyProcess(*args) as a, ParleyProcess(*args) as b:
        clients = _clients(a, b)
        backend.reset(lambda request: Reply(text=f"done {request['messages'][-1]['content']}", delay_s=0.05))

        def create(i: int) -> str:
            return clients[i % 2].responses.create(model="m", input=f"job {i}", background=True).id

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(create, range(50)))
        finished = [settle(clients[i % 2], response_id, timeout=60) for i, response_id in enumerate(ids)]
        for client in clients:
            client.close()
    assert [r.status for r in finished] == ["completed"] * 50
    assert [r.output_text for r in finished] == [f"done job {i}" for i in range(50)]
    asked = sorted(r["messages"][-1]["content"] for r in backend.requests)
    assert asked == sorted(f"job {i}" for i in range(50))  # each ran once
    assert asyncio.run(_runs_started(own_postgres_url, ids)) == {response_id: 1 for response_id in ids}


async def _runs_started(url: str, ids: list[str]) -> dict[str, int]:
    """How many times each response's run started: its kept ``response.in_progress`` events."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await conn.fetch("SELECT response_id, frames FROM parley_response_events WHERE response_id = ANY($1)",
                                ids)
    finally:
        await conn.close()
    started: dict[str, int] = {}
    for response_id, frames in rows:
        started[response_id] = started.get(response_id, 0) + frames.count("event: response.in_progress\n")
    return {response_id: count for response_id, count in started.items() if count}


def test_a_response_accepted_by_an_instance_that_runs_none_is_run_by_another(scripted_server, backend,
                                                                              own_postgres_url) -> None:
    with _runner_and_watcher(scripted_server.url, own_postgres_url) as (a, b, one, other):
        first = one.responses.create(model="m", input="my name is Ada")
        queued = other.responses.create(model="m", input=[{"role": "user", "content": "what is my name?"}],
                                        previous_response_id=first.id, instructions="Be brief.",
                                        background=True, metadata={"via": "b"})
        done = settle(other, queued.id)
        assert (done.status, done.output_text, done.metadata) == ("completed", "You said: what is my name?",
                                                                  {"via": "b"})
        asked = [r["messages"] for r in backend.requests if r["messages"][-1]["content"] == "what is my name?"]
        assert [[m["content"] for m in messages] for messages in asked] == [
            ["Be brief.", "my name is Ada", "You said: my name is Ada", "what is my name?"]]
        items = other.responses.input_items.list(queued.id).data
        assert [item.id for item in items] == [item.id for item in one.responses.input_items.list(queued.id).data]
        deadline = time.monotonic() + 10  # (a logs the run just after it stores the row the test polls)
        while f"response {queued.id} completed" not in a.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"response {queued.id} completed" in a.log() and f"response {queued.id}" not in b.log()


def test_a_follower_whose_response_is_deleted_ends_with_an_error_event(scripted_server, backend,
                                                                      own_postgres_url) -> None:
    """Followed through b while a runs it, the response is deleted: b's follower ends with an error event
    naming why, not a bare end of stream."""
    import httpx

    with _runner_and_watcher(scripted_server.url, own_postgres_url) as (a, b, one, other):
        backend.hold()
        queued = one.responses.create(model="m", input="go", background=True)
        backend.wait_for_requests(1)
        with httpx.stream("GET", f"{b.base_url}/responses/{queued.id}", params={"stream": "true"},
                          timeout=60) as followed:
            lines = followed.iter_lines()
            assert next(lines) == "event: response.created"  # the follower reads the kept events
            other.responses.delete(queued.id)  # (the SDK returns nothing for a delete)
            with pytest.raises(openai.NotFoundError):
                other.responses.retrieve(queued.id)
            rest = list(lines)
        backend.release()
        events = [line.removeprefix("event: ") for line in rest if line.startswith("event: ")]
        assert events[-1] == "error", events
        last = json.loads([line for line in rest if line.startswith("data: ")][-1][6:])
        assert last["code"] == "response_not_found" and queued.id in last["message"]
