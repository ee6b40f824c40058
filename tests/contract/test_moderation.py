"""Moderated responses through the ``openai`` SDK over the scripted backend's moderations API: scores reported,
flagged input kept from the model, flagged output withheld (streamed or not), failures, and the 400s."""

from __future__ import annotations

import openai
import pytest

from parley.testing import ParleyProcess, Reply
from parley.testing.grammar import check_stream
from parley.testing.strict import stream_raw
from parley.testing.strict import strict_client

SCORE = {"model": "omni-moderation-latest"}
BLOCK = {"model": "omni-moderation-latest", "policy": {"input": {"mode": "block"}, "output": {"mode": "block"}}}


@pytest.fixture(scope="module")
def moderated_server(scripted_server, db_url):
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url,
                       "--moderation-upstream", scripted_server.url) as server:
        yield server


@pytest.fixture
def mod(moderated_server, backend):
    with strict_client(moderated_server.base_url) as client:
        yield client


def test_scores_are_reported_for_input_and_output(mod, backend) -> None:
    backend.push(Reply(text="A calm answer."))
    response = mod.responses.create(model="m", moderation=SCORE, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Tell me something calm."},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])
    assert response.status == "completed" and response.output_text == "A calm answer."
    checked_input, checked_output = response.moderation.input, response.moderation.output
    assert (checked_input.type, checked_input.flagged, checked_output.flagged) == ("moderation_result", False, False)
    assert checked_input.category_applied_input_types["violence"] == ["image", "text"]
    sent = backend.moderations.requests
    assert sent[-2]["input"][0] == {"type": "text", "text": "Tell me something calm."}
    assert sent[-2]["input"][1]["type"] == "image_url" and sent[-1]["input"] == [
        {"type": "text", "text": "A calm answer."}]
    assert mod.responses.retrieve(response.id).moderation.output.flagged is False


def test_flagged_input_never_reaches_the_model_under_block(mod, backend) -> None:
    before = len(backend.requests)
    response = mod.responses.create(model="m", moderation=BLOCK, input="How do I build a forbidden weapon?")
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    assert response.output == [] and len(backend.requests) == before
    assert response.moderation.input.flagged and response.moderation.input.categories["violence"]
    assert response.moderation.output.type == "error" and response.moderation.output.code == "not_moderated"


def test_flagged_output_is_withheld_streamed_and_stored(mod, backend, moderated_server) -> None:
    backend.push(Reply(text="Here is an attack plan.", chunk_size=3))
    events = stream_raw(moderated_server.base_url, {"model": "m", "input": "Plan my day.", "moderation": BLOCK})
    final = check_stream(events)
    assert "response.output_text.delta" not in [e.type for e in events]  # held back, then withheld
    assert final.status == "incomplete" and final.incomplete_details.reason == "content_filter" and final.output == []
    assert final.moderation.output.flagged and not final.moderation.input.flagged
    assert mod.responses.retrieve(final.id).output == []
    backend.push(Reply(text="Fine."))
    mod.responses.create(model="m", input="And tomorrow?", previous_response_id=final.id)
    assert [m["role"] for m in backend.requests[-1]["messages"]] == ["user", "user"]  # the answer is not history

    backend.push(Reply(text="Another attack plan.", chunk_size=4))
    scored = stream_raw(moderated_server.base_url, {"model": "m", "input": "Plan it.", "moderation": SCORE})
    final = check_stream(scored)
    assert "response.output_text.delta" in [e.type for e in scored] and final.status == "completed"
    assert final.output_text == "Another attack plan." and final.moderation.output.flagged


def test_a_moderation_that_cannot_run_fails_block_and_is_reported_under_score(mod, backend) -> None:
    backend.push(Reply(text="Answered."))
    response = mod.responses.create(model="m", input="x", moderation={"model": "broken-moderation"})
    assert response.status == "completed" and response.moderation.input.type == "error"
    assert "HTTP 500" in response.moderation.input.message
    with pytest.raises(openai.APIStatusError) as info:
        mod.responses.create(model="m", input="x", moderation={"model": "broken-moderation",
                                                               "policy": {"input": {"mode": "block"}}})
    assert info.value.status_code == 502 and info.value.body["code"] == "moderation_unavailable"


def test_bad_moderation_requests_are_400s(mod, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:  # a server without --moderation-upstream
        client.responses.create(model="m", input="x", moderation=SCORE)
    assert info.value.code == "moderation_not_configured" and "--moderation-upstream" in info.value.message
    for bad, param in [({"model": "m", "policy": {"input": {"mode": "shout"}}}, "moderation.policy.input.mode"),
                       ({"policy": {}}, "moderation.model"), ({"model": "m", "extra": 1}, "moderation.extra")]:
        with pytest.raises(openai.BadRequestError) as info:
            mod.responses.create(model="m", input="x", moderation=bad)
        assert info.value.body["param"] == param, (bad, info.value.body)


GUARD = "llama-guard3"


def guarded_model(request: dict) -> Reply:
    """A Llama Guard that finds weapons unsafe (S9, and violence S1: the word in lower case), and an assistant that
    answers what it is told to say (``say: …``), in lower case."""
    text = request["messages"][-1]["content"]
    if request["model"] == GUARD:
        return Reply(text="unsafe\nS1,S9" if "weapon" in text else "safe")
    return Reply(text=text.split("say: ", 1)[1].lower() if "say: " in text else "Sure.")


@pytest.fixture(scope="module")
def guarded(db_url):
    from parley.testing import ScriptedBackend

    with ScriptedBackend(guarded_model) as backend, \
            ParleyProcess("--upstream", backend.url, "--db", db_url, "--moderation-guard-model", GUARD) as server, \
            strict_client(server.base_url) as client:
        yield client, backend


def test_a_guard_model_on_the_upstream_moderates_input_and_output(guarded) -> None:
    client, backend = guarded
    calm = client.responses.create(model="m", moderation=SCORE, input="Tell me about tea.")
    assert calm.status == "completed" and calm.output_text == "Sure."
    assert (calm.moderation.input.flagged, calm.moderation.output.flagged) == (False, False)
    assert calm.moderation.input.model == GUARD and calm.moderation.input.category_scores["violence"] == 0.0
    asked = [r for r in backend.requests if r["model"] == GUARD]
    assert asked[-2]["messages"] == [{"role": "user", "content": "Tell me about tea."}]
    assert asked[-1]["messages"] == [{"role": "user", "content": "Tell me about tea."},
                                     {"role": "assistant", "content": "Sure."}], "the guard judges the answer"

    before = len([r for r in backend.requests if r["model"] == "m"])
    blocked = client.responses.create(model="m", moderation=BLOCK, input="How do I build a weapon?")
    assert blocked.status == "incomplete" and blocked.incomplete_details.reason == "content_filter"
    assert blocked.output == [] and len([r for r in backend.requests if r["model"] == "m"]) == before
    checked = blocked.moderation.input
    assert checked.flagged and checked.categories["violence"] and checked.categories["illicit/violent"]
    assert not checked.categories["hate"] and checked.category_applied_input_types == {
        "illicit/violent": ["text"], "violence": ["text"]}

    withheld = client.responses.create(model="m", moderation=BLOCK, input="Please say: a WEAPON plan")
    assert withheld.status == "incomplete" and withheld.output == [] and withheld.moderation.output.flagged
    assert not withheld.moderation.input.flagged


def test_a_guard_model_no_upstream_serves_stops_serve(scripted_server, tmp_path) -> None:
    config = tmp_path / "parley.yaml"
    config.write_text(f"upstreams:\n  - name: only-m\n    url: {scripted_server.url}\n    models: ['m']\n")
    server = ParleyProcess("--config", str(config), "--moderation-guard-model", GUARD,
                           "--db", f"sqlite:///{tmp_path / 'p.db'}")
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert "exited with 2" in str(info.value) and "--moderation-guard-model llama-guard3" in str(info.value)
