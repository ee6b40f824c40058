"""Background responses, cancel and stream resume, against a real parley serve with the official client, on
SQLite and PostgreSQL (two instances sharing PostgreSQL: tests/contract/test_background_scaleout.py)."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from parley.testing.scripted import Reply
from parley.testing.server import ParleyProcess

LONG = "abcdefghij" * 20


def settle(client: openai.OpenAI, response_id: str, timeout: float = 20.0):
    """The response once it is no longer queued or in progress."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_a_background_response_is_queued_then_runs_and_is_stored(client, backend) -> None:
    queued = client.responses.create(model="m", input="hello", background=True, metadata={"k": "v"})
    assert (queued.status, queued.background, queued.output, queued.metadata) == ("queued", True, [], {"k": "v"})
    done = settle(client, queued.id)
    assert (done.status, done.output_text, done.background) == ("completed", "You said: hello", True)
    assert done.usage is not None and done.usage.output_tokens > 0
    items = client.responses.input_items.list(queued.id).data
    assert [part.text for item in items for part in item.content] == ["hello"]
    client.responses.create(model="m", input="more", previous_response_id=queued.id)
    assert [m["content"] for m in backend.requests[-1]["messages"]] == ["hello", "You said: hello", "more"]


def test_a_background_stream_resumes_with_the_same_sequence_numbers(client, backend) -> None:
    backend.push(Reply(text=LONG, chunk_size=2, chunk_delay_s=0.005))
    first = []
    with client.responses.create(model="m", input="go", background=True, stream=True) as stream:
        for event in stream:  # the client goes away in the middle
            first.append(event)
            if len(first) == 15:
                break
    response_id = first[0].response.id
    assert [e.type for e in first[:3]] == ["response.created", "response.queued", "response.in_progress"]
    assert first[0].response.status == "queued" and first[0].response.background is True
    rest = list(client.responses.retrieve(response_id, stream=True, starting_after=14))
    whole = first + rest
    assert [e.sequence_number for e in whole] == list(range(len(whole)))
    assert whole[-1].type == "response.completed" and whole[-1].response.output_text == LONG
    assert "".join(e.delta for e in whole if e.type == "response.output_text.delta") == LONG
    replay = list(client.responses.retrieve(response_id, stream=True))  # the whole stream, from its first event
    assert [e.model_dump() for e in replay] == [e.model_dump() for e in whole]
    with client.responses.stream(response_id=response_id, starting_after=20) as resumed:  # the SDK's helper
        events = list(resumed)
        assert resumed.get_final_response().output_text == LONG
    assert [e.sequence_number for e in events] == list(range(21, len(whole)))


def test_a_follower_joins_a_running_response_and_sees_it_to_the_end(client, backend) -> None:
    backend.push(Reply(text=LONG, chunk_size=2, chunk_delay_s=0.01))
    queued = client.responses.create(model="m", input="go", background=True)
    backend.wait_for_requests(1)
    events = list(client.responses.retrieve(queued.id, stream=True, starting_after=3))
    assert events[0].sequence_number == 4 and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(4, 4 + len(events)))


def test_cancel_stops_a_running_background_response(client, backend) -> None:
    backend.push(Reply(text=LONG * 5, chunk_size=2, chunk_delay_s=0.01))
    queued = client.responses.create(model="m", input="go", background=True)
    backend.wait_for_requests(1)
    time.sleep(0.2)  # some text has streamed
    cancelled = client.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.background is True
    assert cancelled.output and cancelled.output[0].status == "incomplete"
    assert 0 < len(cancelled.output_text) < len(LONG * 5)
    assert client.responses.cancel(queued.id).status == "cancelled"  # idempotent
    assert client.responses.retrieve(queued.id).status == "cancelled"
    events = list(client.responses.retrieve(queued.id, stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.status == "cancelled"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_cancel_refuses_what_it_cannot_cancel(client, backend) -> None:
    plain = client.responses.create(model="m", input="hi")
    with pytest.raises(openai.BadRequestError, match="background=true"):
        client.responses.cancel(plain.id)
    done = settle(client, client.responses.create(model="m", input="hi", background=True).id)
    with pytest.raises(openai.BadRequestError, match="Cannot cancel a completed response"):
        client.responses.cancel(done.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.retrieve(plain.id, stream=True)
    assert refused.value.body["param"] == "stream"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="m", input="hi", background=True, store=False)
    assert refused.value.body["param"] == "background"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.retrieve(done.id, starting_after=3)
    assert refused.value.body["param"] == "starting_after"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown", stream=True)


def test_a_background_response_fails_with_its_reason(client, backend) -> None:
    backend.push(*[Reply(status=500, error_message="model exploded")] * 3)  # retried, then failed
    failed = settle(client, client.responses.create(model="m", input="hi", background=True).id)
    assert failed.status == "failed" and failed.error.code == "server_error"
    events = list(client.responses.retrieve(failed.id, stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]


def test_a_background_turn_on_a_conversation_appends_it(client, backend) -> None:
    conversation = client.conversations.create()
    settle(client, client.responses.create(model="m", input="one", conversation=conversation.id,
                                           background=True).id)
    texts = [item.content[0].text for item in client.conversations.items.list(conversation.id, order="asc")]
    assert texts == ["one", "You said: one"]


def test_queued_responses_wait_for_a_free_place_and_a_queued_one_is_cancelled_at_once(scripted_server, backend,
                                                                                      tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path}/b.db",
                       "--max-background-runs", "1") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client:
        backend.hold()
        try:
            running = client.responses.create(model="m", input="first", background=True)
            backend.wait_for_requests(1)
            waiting = [client.responses.create(model="m", input=f"next {i}", background=True) for i in range(3)]
            time.sleep(1.2)  # more than two looks at the queue
            assert len(backend.requests) == 1  # one place: the others wait
            assert [client.responses.retrieve(r.id).status for r in waiting] == ["queued"] * 3
            assert client.responses.cancel(waiting[0].id).status == "cancelled"
        finally:
            backend.release()
        assert settle(client, running.id).status == "completed"
        assert [settle(client, r.id).status for r in waiting] == ["cancelled", "completed", "completed"]
        assert [last for r in backend.requests for last in [r["messages"][-1]["content"]]] == [
            "first", "next 1", "next 2"]  # oldest first; the cancelled one never ran
        events = list(client.responses.retrieve(waiting[0].id, stream=True))
        assert [e.type for e in events] == ["response.created", "response.queued", "response.failed"]


def test_a_stream_follows_a_response_another_request_cancels(client, backend) -> None:
    backend.push(Reply(text=LONG * 5, chunk_size=2, chunk_delay_s=0.01))
    seen: list = []
    cancels: list = []
    with client.responses.create(model="m", input="go", background=True, stream=True) as stream:
        for event in stream:
            seen.append(event)
            if len(seen) == 10:
                cancels.append(threading.Thread(target=lambda: cancels.append(
                    client.responses.cancel(seen[0].response.id))))
                cancels[0].start()
    cancels[0].join()
    assert cancels[1].status == "cancelled"
    assert seen[-1].type == "response.failed" and seen[-1].response.status == "cancelled"
    assert [e.sequence_number for e in seen] == list(range(len(seen)))


def test_resuming_at_or_past_the_last_event_ends_at_once(client, backend, parley_server) -> None:
    """A client that has every event already gets a stream that ends (it hung open, polling the database)."""
    done = settle(client, client.responses.create(model="m", input="hello", background=True).id)
    whole = list(client.responses.retrieve(done.id, stream=True))
    last = whole[-1].sequence_number
    assert whole[-1].type == "response.completed"
    for after in (last, last + 1, 10**6):
        with httpx.stream("GET", f"{parley_server.base_url}/responses/{done.id}",
                          params={"stream": "true", "starting_after": after}, timeout=30) as answer:
            assert answer.status_code == 200 and answer.read() == b"", after


def test_starting_after_must_be_a_sequence_number(parley_server) -> None:
    for value in ("x", "1.5", "-2", str(2**31), "999999999999"):
        answer = httpx.get(f"{parley_server.base_url}/responses/resp_1?stream=true&starting_after={value}")
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "starting_after"
