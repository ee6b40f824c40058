"""API keys and tenants, against a real parley serve with keys configured."""

from __future__ import annotations

import httpx
import openai
import pytest

from parley.testing import ParleyProcess


@pytest.fixture(scope="module")
def keyed_server(scripted_server, db_url, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text("# key tenant\nsk-bob-0000 bob\n")
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url, "--api-keys", "sk-alice=alice",
                       "--api-keys-file", str(keys_file)) as server:
        yield server


def client_for(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_missing_or_wrong_key_is_a_401_in_openai_shape(keyed_server, backend) -> None:
    response = httpx.post(f"{keyed_server.base_url}/responses", json={"model": "m", "input": "hi"})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.AuthenticationError):
        client_for(keyed_server, "sk-wrong").responses.create(model="m", input="hi")
    with pytest.raises(openai.AuthenticationError):
        client_for(keyed_server, "sk-wrong").responses.retrieve("resp_x")
    assert httpx.get(f"{keyed_server.url}/health").status_code == 200
    for path in ("/files", "/vector_stores", "/vector_stores/vs_x/search", "/conversations",
                 "/conversations/conv_x/items"):
        answer = httpx.request("POST" if path.endswith(("search", "items", "conversations")) else "GET",
                               f"{keyed_server.base_url}{path}", json={})
        assert answer.status_code == 401, path


def test_another_tenants_response_is_a_404_everywhere(keyed_server, backend) -> None:
    alice, bob = client_for(keyed_server, "sk-alice"), client_for(keyed_server, "sk-bob-0000")
    mine = alice.responses.create(model="m", input="alice's secret")
    assert alice.responses.retrieve(mine.id).output_text == "You said: alice's secret"
    for call in (bob.responses.retrieve, bob.responses.delete, bob.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    with pytest.raises(openai.BadRequestError) as info:
        bob.responses.create(model="m", input="x", previous_response_id=mine.id)
    assert info.value.code == "previous_response_not_found"
    assert alice.responses.retrieve(mine.id).id == mine.id  # bob's delete did not touch it
    chained = alice.responses.create(model="m", input="more", previous_response_id=mine.id)
    assert chained.status == "completed"


def test_another_tenants_background_response_cannot_be_cancelled_or_followed(keyed_server, backend) -> None:
    alice, bob = client_for(keyed_server, "sk-alice"), client_for(keyed_server, "sk-bob-0000")
    queued = alice.responses.create(model="m", input="alice's job", background=True)
    for call in (lambda: bob.responses.cancel(queued.id), lambda: list(bob.responses.retrieve(queued.id, stream=True)),
                 lambda: bob.responses.retrieve(queued.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    events = list(alice.responses.retrieve(queued.id, stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "You said: alice's job"


def test_local_mode_says_it_has_no_authentication(parley_server) -> None:
    assert "serving without authentication" in parley_server.log()


def test_with_keys_a_loopback_mcp_server_is_refused_unless_allowed(keyed_server, scripted_server, db_url,
                                                                   backend) -> None:
    tools = [{"type": "mcp", "server_label": "s", "server_url": "http://127.0.0.1:9/mcp", "require_approval": "never"}]
    with pytest.raises(openai.BadRequestError) as info:
        client_for(keyed_server, "sk-alice").responses.create(model="m", input="x", tools=tools)
    assert info.value.body["param"] == "tools[0].server_url" and info.value.code == "url_not_allowed"
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url, "--api-keys", "sk-a-0000=a",
                       "--outbound-allow", "127.0.0.0/8") as allowed:
        with pytest.raises(openai.APIStatusError) as info:  # admitted, so it is tried: nothing listens there
            client_for(allowed, "sk-a-0000").responses.create(model="m", input="x", tools=tools)
        assert info.value.status_code == 424


def test_another_tenants_file_is_a_404_everywhere(keyed_server) -> None:
    with client_for(keyed_server, "sk-alice") as alice, client_for(keyed_server, "sk-bob-0000") as bob:
        mine = alice.files.create(file=("secret.txt", b"alice only"), purpose="user_data")
        for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(mine.id)
        assert mine.id not in [f.id for f in bob.files.list()]
        assert alice.files.content(mine.id).read() == b"alice only"


def test_another_tenants_vector_stores_are_404_everywhere(keyed_server, backend) -> None:
    alice, bob = client_for(keyed_server, "sk-alice"), client_for(keyed_server, "sk-bob-0000")
    secret = alice.files.create(file=("plan.md", b"The launch code is 1234."), purpose="assistants")
    store = alice.vector_stores.create(name="alice's", file_ids=[secret.id])
    calls = [lambda: bob.vector_stores.retrieve(store.id), lambda: bob.vector_stores.delete(store.id),
             lambda: bob.vector_stores.update(store.id, name="mine"),
             lambda: bob.vector_stores.files.list(store.id),
             lambda: bob.vector_stores.files.retrieve(file_id=secret.id, vector_store_id=store.id),
             lambda: bob.vector_stores.files.content(file_id=secret.id, vector_store_id=store.id),
             lambda: bob.vector_stores.files.delete(file_id=secret.id, vector_store_id=store.id),
             lambda: bob.vector_stores.search(store.id, query="launch code")]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises(openai.NotFoundError) as info:
        bob.responses.create(model="m", input="x", tools=[{"type": "file_search", "vector_store_ids": [store.id]}])
    assert info.value.body["param"] == "tools[0].vector_store_ids[0]"
    own = bob.vector_stores.create(name="bob's")
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.files.create(vector_store_id=own.id, file_id=secret.id)
    with pytest.raises(openai.NotFoundError):
        bob.vector_stores.create(file_ids=[secret.id])
    assert store.id not in [s.id for s in bob.vector_stores.list().data]
    assert alice.vector_stores.retrieve(store.id).name == "alice's"  # bob's delete and update did nothing


def test_another_tenants_conversations_are_404_everywhere(keyed_server, backend) -> None:
    alice, bob = client_for(keyed_server, "sk-alice"), client_for(keyed_server, "sk-bob-0000")
    mine = alice.conversations.create(metadata={"owner": "alice"})
    alice.responses.create(model="m", input="alice's secret", conversation=mine.id)
    item_id = alice.conversations.items.list(mine.id).data[0].id
    calls = [lambda: bob.conversations.retrieve(mine.id), lambda: bob.conversations.update(mine.id, metadata={}),
             lambda: bob.conversations.delete(mine.id), lambda: bob.conversations.items.list(mine.id),
             lambda: bob.conversations.items.create(mine.id, items=[{"role": "user", "content": "x"}]),
             lambda: bob.conversations.items.retrieve(item_id, conversation_id=mine.id),
             lambda: bob.conversations.items.delete(item_id, conversation_id=mine.id),
             lambda: bob.responses.create(model="m", input="x", conversation=mine.id)]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            call()
    assert alice.conversations.retrieve(mine.id).metadata == {"owner": "alice"}
    assert len(alice.conversations.items.list(mine.id).data) == 2
