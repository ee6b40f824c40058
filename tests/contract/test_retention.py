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
