"""Context management against a real parley serve with the official client: ``truncation: "auto"``
(the context window from the upstream's model listing), on SQLite and PostgreSQL."""

from __future__ import annotations

import openai
import pytest

from parley.testing.scripted import Reply, ToolCall


def _tokens(messages: list[dict]) -> int:
    """What the scripted backend's /tokenize counts: 3 per message and one per word."""
    return sum(3 + len((m.get("content") or "").split()) for m in messages)


def _history(client, model: str, turns: int) -> str:
    previous = None
    for i in range(turns):
        previous = client.responses.create(model=model, input=f"turn {i} " + "word " * 20,
                                           previous_response_id=previous).id
    return previous


def test_truncation_auto_drops_the_oldest_messages_to_fit(client, backend) -> None:
    backend.context_windows["small-window"] = 120
    previous = _history(client, "small-window", 6)
    answer = client.responses.create(model="small-window", input="final question", previous_response_id=previous,
                                     instructions="Be brief.", max_output_tokens=10, truncation="auto")
    assert answer.status == "completed" and answer.truncation == "auto"
    sent = backend.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."} and sent[-1]["content"] == "final question"
    assert _tokens(sent) <= 120 - 10  # the window less the room kept for the answer
    kept = [m["content"] for m in sent[1:-1]]
    assert kept and kept[-1] == "You said: turn 5 " + "word " * 20  # the newest stayed, the oldest went
    assert not any(text.startswith(("turn 0", "You said: turn 0")) for text in kept)
    client.responses.create(model="small-window", input="again", previous_response_id=answer.id)
    assert len(backend.requests[-1]["messages"]) == 6 * 2 + 3  # what is stored is whole: disabled sends it all


def test_truncation_keeps_tool_calls_with_their_results(client, backend) -> None:
    backend.context_windows["tool-window"] = 150
    for i in range(4):  # each turn: the model calls the tool, then answers from its result
        backend.push(Reply(tool_calls=[ToolCall("lookup", {"n": i}, id=f"call_{i}")]), f"answer {i}")
    previous = None
    for i in range(4):
        called = client.responses.create(model="tool-window", input=f"look {i}", previous_response_id=previous,
                                         tools=[{"type": "function", "name": "lookup", "parameters": {}}])
        previous = client.responses.create(
            model="tool-window", previous_response_id=called.id, truncation="auto",
            tools=[{"type": "function", "name": "lookup", "parameters": {}}],
            input=[{"type": "function_call_output", "call_id": f"call_{i}", "output": "result " * 25}]).id
    for request in backend.requests:
        messages = request["messages"]
        assert messages[0]["role"] != "tool"
        calls = {c["id"] for m in messages for c in m.get("tool_calls") or []}
        answered = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
        assert calls == answered  # never a call without its result, nor a result without its call
    assert _tokens(backend.requests[-1]["messages"]) <= 150 - min(150 // 8, 4096)
    last = backend.requests[-1]["messages"]
    assert last[0]["content"] != "look 0" and any(m.get("tool_call_id") == "call_3" for m in last)  # oldest went


def test_truncation_auto_refuses_what_cannot_fit_or_an_unknown_window(client, backend) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="no-listed-window", input="hi", truncation="auto")
    assert (refused.value.body["param"], refused.value.body["code"]) == ("model", "context_window_unknown")
    assert "no-listed-window" in refused.value.body["message"]
    backend.context_windows["tiny-window"] = 40
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="tiny-window", input="word " * 60, truncation="auto")
    assert (refused.value.body["param"], refused.value.body["code"]) == ("input", "context_length_exceeded")
    assert client.responses.create(model="tiny-window", input="word " * 60).status == "completed"  # disabled


def test_input_tokens_counts_what_truncation_leaves(client, backend) -> None:
    backend.context_windows["count-window"] = 100
    previous = _history(client, "count-window", 4)
    whole = client.responses.input_tokens.count(model="count-window", input="q", previous_response_id=previous)
    cut = client.responses.input_tokens.count(model="count-window", input="q", previous_response_id=previous,
                                              truncation="auto")
    assert whole.input_tokens > 100 - 12 >= cut.input_tokens


def test_compact_keeps_the_user_messages_and_a_summary_that_is_accepted_back(client, backend) -> None:
    previous = _history(client, "m", 3)
    backend.push("Ada asked three things; each was answered.")
    compacted = client.responses.compact(model="m", previous_response_id=previous)
    assert compacted.object == "response.compaction" and compacted.usage.output_tokens > 0
    assert [item.type for item in compacted.output] == ["message"] * 3 + ["compaction"]
    assert [item.content[0].text for item in compacted.output[:3]] == [f"turn {i} " + "word " * 20 for i in range(3)]
    asked = backend.requests[-1]["messages"]
    assert asked[0]["role"] == "system" and "summary" in asked[0]["content"]
    assert "[user]\nturn 0" in asked[1]["content"] and "[assistant]\nYou said: turn 2" in asked[1]["content"]
    replay = [item.model_dump(exclude_none=True, warnings=False) for item in compacted.output]  # (SDK typing)
    client.responses.create(model="m", input=[*replay, {"role": "user", "content": "next"}])
    sent = backend.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user"] * 3 + ["assistant", "user"]
    assert sent[3]["content"].endswith("Ada asked three things; each was answered.")
    altered = dict(replay[-1], encrypted_content=replay[-1]["encrypted_content"][:-4] + "AAAA")
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="m", input=[altered, {"role": "user", "content": "next"}])
    assert (refused.value.body["param"], refused.value.body["code"]) == ("input[0].encrypted_content",
                                                                         "invalid_encrypted_content")
    from_input = client.responses.compact(model="m", input=[{"role": "user", "content": "hello"},
                                                            {"role": "assistant", "content": "hi there"}])
    assert [item.type for item in from_input.output] == ["message", "compaction"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.post("/responses/compact", body={"model": "m", "input": "x", "stream": True}, cast_to=object)
    assert refused.value.body["param"] == "stream"


def test_context_management_compacts_the_history_past_its_threshold(client, backend) -> None:
    previous = None
    for i in range(3):  # about 1,300 tokens as the scripted /tokenize counts
        previous = client.responses.create(model="m", input=f"part {i} " + "word " * 200,
                                           previous_response_id=previous).id
    backend.push("Three long parts were read.", "Short answer.")
    answer = client.responses.create(model="m", input="now", previous_response_id=previous,
                                     context_management=[{"type": "compaction", "compact_threshold": 1000}])
    assert [item.type for item in answer.output] == ["compaction", "message"]
    assert answer.output_text == "Short answer."
    sent = backend.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user"] * 3 + ["assistant", "user"]
    assert sent[3]["content"].endswith("Three long parts were read.") and sent[-1]["content"] == "now"
    client.responses.create(model="m", input="after", previous_response_id=answer.id)
    assert len(backend.requests[-1]["messages"]) == 7  # it goes on from the compacted history
    small = client.responses.create(model="m", input="tiny", previous_response_id=answer.id, stream=True,
                                    context_management=[{"type": "compaction", "compact_threshold": 100000}])
    done = [e for e in small if e.type == "response.completed"][0]
    assert [item.type for item in done.response.output] == ["message"]  # under the threshold: untouched
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="m", input="x", context_management=[{"type": "compaction",
                                                                            "compact_threshold": 10}])
    assert refused.value.body["param"].startswith("context_management")
