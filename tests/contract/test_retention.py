"""Retention: stored responses and unused conversations are deleted after --retention-days by a sweep."""

from __future__ import annotations

import time

import openai
import pytest

from parley.testing import ParleyProcess


def test_old_responses_and_conversations_are_swept_and_recent_ones_kept(backend, db_url) -> None:
    # The conversation, used at 0.75 of the lifetime (its time kept in whole seconds), outlives the response by
    # at least 0.75 * lifetime - 1 s: 3.5 s here, room for a loaded machine's sweep and polling.
    lifetime_s = 6.0
    with ParleyProcess("--upstream", backend.url, "--db", db_url, "--retention-days", str(lifetime_s / 86400),
                       "--retention-sweep-s", "0.2") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        old = client.responses.create(model="m", input="old")
        conversation = client.conversations.create(items=[{"role": "user", "content": "old"}])
        time.sleep(lifetime_s * 0.75)
        client.conversations.items.create(conversation.id, items=[{"role": "user", "content": "still used"}])
        deadline = time.monotonic() + 30
        while True:  # until the sweep has taken the old response
            try:
                client.responses.retrieve(old.id)
            except openai.NotFoundError:
                break
            assert time.monotonic() < deadline, "the old response was never swept"
            time.sleep(0.2)
        assert len(client.conversations.items.list(conversation.id).data) == 2  # used since: kept for now
        recent = client.responses.create(model="m", input="recent")
        assert client.responses.retrieve(recent.id).id == recent.id
        with pytest.raises(openai.NotFoundError):
            client.responses.input_items.list(old.id)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.conversations.retrieve(conversation.id)
            except openai.NotFoundError:
                break
            assert time.monotonic() < deadline, "the unused conversation was never swept"
            time.sleep(0.2)
        assert "retention: deleted" in server.log()


def _gone(retrieve, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            retrieve()
        except openai.NotFoundError:
            return
        assert time.monotonic() < deadline, "never swept"
        time.sleep(0.2)


def test_retention_counts_from_the_end_of_a_response_and_never_takes_work_in_progress(backend, db_url) -> None:
    """A background response that runs longer than the whole retention window is followed to its terminal
    event, polled without a 404, and kept for the window after it ended (it was swept as it ended)."""
    from parley.testing import Reply

    lifetime_s = 3.0
    backend.push(Reply(text="tide " * 40, chunk_size=5, chunk_delay_s=0.12))  # about 5 s of streaming
    with ParleyProcess("--upstream", backend.url, "--db", db_url, "--retention-days", str(lifetime_s / 86400),
                       "--retention-sweep-s", "0.2") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        with client.responses.create(model="m", input="slow", background=True, stream=True) as stream:
            events = list(stream)
        assert events[-1].type == "response.completed", events[-1]
        response_id = events[0].response.id
        assert client.responses.retrieve(response_id).status == "completed"  # ended just now: kept
        assert time.time() - events[0].response.created_at > lifetime_s, "the response ran shorter than the window"
        _gone(lambda: client.responses.retrieve(response_id))  # and swept once the window after its end passed


def test_a_turn_on_a_conversation_is_a_use_from_its_start(backend, db_url) -> None:
    """A turn that starts late in its conversation's window keeps the conversation while it runs, and its
    items are appended (the sweep took the conversation in the middle of the turn)."""
    from parley.testing import Reply

    lifetime_s = 6.0
    with ParleyProcess("--upstream", backend.url, "--db", db_url, "--retention-days", str(lifetime_s / 86400),
                       "--retention-sweep-s", "0.2") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        conversation = client.conversations.create(items=[{"role": "user", "content": "early"}])
        time.sleep(lifetime_s * 0.7)
        backend.push(Reply(text="marsh " * 30, chunk_size=6, chunk_delay_s=0.12))  # about 3.5 s
        answer = client.responses.create(model="m", input="late question", conversation=conversation.id)
        assert answer.status == "completed"
        items = client.conversations.items.list(conversation.id).data
        assert len(items) == 3, items
        _gone(lambda: client.conversations.retrieve(conversation.id))
