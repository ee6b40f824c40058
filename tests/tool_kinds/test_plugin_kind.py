"""A tool kind registered from outside the package (``tests/tool_kinds/dice.py``), used end to end by a real
``parley serve --plugins``: non-streamed and streamed, stored, retrieved and chained, with its forced choice."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.grammar import check_stream

ROOT = Path(__file__).resolve().parents[2]
DICE = {"type": "programmatic_tool_calling"}


@pytest.fixture(scope="module")
def dice_server(scripted_server: ScriptedBackend, tmp_path_factory) -> Iterator[ParleyProcess]:
    db = tmp_path_factory.mktemp("dice") / "parley.db"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{db}",
                       "--plugins", "tests.tool_kinds.dice", env=env) as server:
        yield server


@pytest.fixture
def dice_client(dice_server: ParleyProcess, backend: ScriptedBackend) -> Iterator[openai.OpenAI]:
    """The official client; every Response body and SSE event it receives is validated strictly."""
    from parley.testing.strict import strict_client

    with strict_client(dice_server.base_url, "k") as client:
        yield client


def test_a_plugin_kind_runs_stored_retrieved_and_chained(dice_client, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("roll_dice", {"times": 2})]), Reply(text="2 and 3."),
                 Reply(text="Their sum is 5."))
    first = dice_client.responses.create(model="m", input="Roll twice", tools=[DICE], tool_choice="required")
    assert [item.type for item in first.output] == ["code_interpreter_call", "message"]
    assert first.output[0].outputs[0].logs == "[2, 3]"
    assert backend.requests[0]["tool_choice"] == "required"
    assert [t["function"]["name"] for t in backend.requests[0]["tools"]] == ["roll_dice"]
    stored = dice_client.responses.retrieve(first.id)
    assert stored.model_dump() == first.model_dump()
    assert stored.tools[0].model_dump(exclude_none=True) == DICE

    second = dice_client.responses.create(model="m", input="Sum them", previous_response_id=first.id, tools=[DICE])
    assert second.output_text == "Their sum is 5."
    roles = [m["role"] for m in backend.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert backend.requests[-1]["messages"][2]["content"] == "Rolled: [2, 3]"


def test_a_plugin_kind_streams_its_items(dice_client, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("roll_dice", {})]), Reply(text="A two."))
    with dice_client.responses.stream(model="m", input="Roll", tools=[DICE]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_stream(events)
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["code_interpreter_call", "message"]
    assert final.output[0].outputs[0].logs == json.dumps([2])
    assert dice_client.responses.retrieve(final.id).output_text == "A two."


def test_a_plugin_kinds_own_checks_and_model_give_400s(dice_client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        dice_client.responses.create(model="m", input="x", tools=[{**DICE, "sides": 5}])
    assert info.value.body["param"] == "tools[0].sides"
    with pytest.raises(openai.BadRequestError) as info:
        dice_client.responses.create(model="m", input="x", tools=[DICE, DICE])
    assert info.value.body["param"] == "tools"


def test_without_the_plugin_the_type_is_parleys_own_kind(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:  # the plugin's own field is unknown to Parley's kind
        client.responses.create(model="m", input="x", tools=[{**DICE, "sides": 6}])
    assert info.value.body["param"] == "tools[0].sides"


def test_a_plugin_that_cannot_load_stops_serve_with_a_message(scripted_server) -> None:
    server = ParleyProcess("--upstream", scripted_server.url, "--plugins", "no_such_parley_plugin")
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert "exited with 2" in str(info.value) and "no_such_parley_plugin" in str(info.value)
