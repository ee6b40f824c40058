"""The Conversations API and the ``conversation`` parameter, against a real parley serve with the official
client, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest


def _text(item) -> str:
    return "".join(getattr(part, "text", "") for part in item.content)


def test_conversations_and_their_items(client) -> None:
    conversation = client.conversations.create(
        metadata={"topic": "birds"}, items=[{"type": "message", "role": "user", "content": "Hi"},
                                            {"type": "message", "role": "assistant", "content": "Hello!"}])
    assert conversation.object == "conversation" and conversation.metadata == {"topic": "birds"}
    assert client.conversations.retrieve(conversation.id).id == conversation.id
    assert client.conversations.update(conversation.id, metadata={"topic": "fish"}).metadata == {"topic": "fish"}
    added = client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me more"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"}])
    assert [i.type for i in added.data] == ["message", "function_call"]
    ascending = list(client.conversations.items.list(conversation.id, order="asc", limit=2))  # pages of 2
    assert [_text(i) if i.type == "message" else i.name for i in ascending] == \
        ["Hi", "Hello!", "Tell me more", "lookup"]
    newest = client.conversations.items.list(conversation.id, limit=1)
    assert newest.data[0].type == "function_call" and newest.has_more
    item = client.conversations.items.retrieve(ascending[1].id, conversation_id=conversation.id)
    assert item.role == "assistant" and _text(item) == "Hello!"
    assert client.conversations.items.delete(ascending[1].id, conversation_id=conversation.id).id == conversation.id
    assert len(list(client.conversations.items.list(conversation.id))) == 3
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(ascending[1].id, conversation_id=conversation.id)
    assert client.conversations.delete(conversation.id).deleted
    for call in (lambda: client.conversations.retrieve(conversation.id),
                 lambda: client.conversations.items.list(conversation.id)):
        with pytest.raises(openai.NotFoundError):
            call()


def test_responses_continue_a_conversation_and_append_their_turn(client, backend) -> None:
    conversation = client.conversations.create()
    first = client.responses.create(model="m", input="hello", conversation=conversation.id)
    assert first.conversation.id == conversation.id and first.output_text == "You said: hello"
    second = client.responses.create(model="m", input="again", conversation={"id": conversation.id})
    assert second.output_text == "You said: again"
    assert [(m["role"], m["content"]) for m in backend.requests[-1]["messages"]] == [
        ("user", "hello"), ("assistant", "You said: hello"), ("user", "again")]
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [(i.role, _text(i)) for i in items] == [("user", "hello"), ("assistant", "You said: hello"),
                                                    ("user", "again"), ("assistant", "You said: again")]
    assert items[1].id == first.output[0].id
    assert client.responses.retrieve(second.id).conversation.id == conversation.id
    streamed = client.responses.create(model="m", input="streamed", conversation=conversation.id, stream=True)
    assert [e for e in streamed if e.type == "response.completed"][0].response.conversation.id == conversation.id
    assert len(list(client.conversations.items.list(conversation.id))) == 6


def test_concurrent_turns_never_interleave(client, backend) -> None:
    conversation = client.conversations.create()

    def turn(n: int) -> None:
        client.responses.create(model="m", input=f"turn {n}", conversation=conversation.id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(turn, range(24)))
    items = list(client.conversations.items.list(conversation.id, order="asc", limit=100))
    assert len(items) == 48
    pairs = [(_text(items[i]), _text(items[i + 1])) for i in range(0, 48, 2)]
    assert all(answer == f"You said: {question}" for question, answer in pairs)
    assert sorted(q for q, _ in pairs) == sorted(f"turn {n}" for n in range(24))


def test_bad_conversation_requests(client) -> None:
    conversation = client.conversations.create()
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="m", input="x", conversation="conv_missing")
    assert info.value.body["param"] == "conversation"
    first = client.responses.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="x", conversation=conversation.id, previous_response_id=first.id)
    assert info.value.body["param"] == "conversation"
    with pytest.raises(openai.BadRequestError) as info:
        client.conversations.items.create(conversation.id, items=[{"type": "nonsense"}])
    assert info.value.body["param"] == "items[0].type"
    with pytest.raises(openai.BadRequestError) as info:
        client.conversations.create(items=[{"type": "message", "role": "user", "content": "x"}] * 21)
    assert info.value.body["param"] == "items"
    with pytest.raises(openai.BadRequestError):
        client.conversations.items.list(conversation.id, include=["code_interpreter_call.outputs"])
