"""Computer use through the ``openai`` SDK: the client runs the actions; screenshots reach the model as images."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest

from parley.testing import Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.strict import stream_raw

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
SHOT = "data:image/png;base64," + base64.b64encode(PNG).decode()
ACTIONS = [{"type": "click", "button": "left", "x": 10, "y": 20}, {"type": "type", "text": "hello"}]


def test_a_computer_call_streams_and_its_screenshot_reaches_the_model(client, backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("computer", {"actions": ACTIONS}, id="call_c")]))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "Open the editor and type hello.",
                                                 "tools": [{"type": "computer"}]})
    final = check_stream(events)
    [call] = final.output
    assert (call.type, call.call_id, call.status, call.pending_safety_checks) == ("computer_call", "call_c",
                                                                                  "completed", [])
    assert [a.model_dump(exclude_none=True) for a in call.actions] == ACTIONS and call.action is None
    assert [e.type for e in events if "output_item" in e.type] == ["response.output_item.added",
                                                                  "response.output_item.done"]
    offered = backend.requests[-1]["tools"][0]["function"]
    assert offered["name"] == "computer" and offered["parameters"]["required"] == ["actions"]

    backend.push(Reply(text="Typed it."))
    answer = client.responses.create(model="m", previous_response_id=final.id, tools=[{"type": "computer"}], input=[
        {"type": "computer_call_output", "call_id": "call_c", "output": {"type": "computer_screenshot",
                                                                        "image_url": SHOT}}])
    assert answer.output_text == "Typed it."
    messages = backend.requests[-1]["messages"]
    assert messages[-3]["tool_calls"][0]["function"] == {"name": "computer",
                                                         "arguments": json.dumps({"actions": ACTIONS})}
    assert messages[-2]["role"] == "tool" and messages[-2]["tool_call_id"] == "call_c"
    assert messages[-1]["role"] == "user" and messages[-1]["content"][1] == {"type": "image_url",
                                                                             "image_url": {"url": SHOT}}
    items = client.responses.input_items.list(answer.id).data
    assert items[0].type == "computer_call_output" and items[0].output.image_url == SHOT


def test_the_preview_tool_gives_one_action_and_a_stateless_replay_gives_the_same_history(client, backend) -> None:
    tool = {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "browser"}
    backend.push(Reply(tool_calls=[ToolCall("computer", {"action": {"type": "screenshot"}}, id="call_p")]))
    first = client.responses.create(model="m", input="What is on screen?", tools=[tool], store=False,
                                    tool_choice={"type": "computer_use_preview"})
    [call] = first.output
    assert call.action.type == "screenshot" and call.actions is None
    sent = backend.requests[-1]
    assert "1024x768" in sent["tools"][0]["function"]["description"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "computer"}}
    assert first.tools[0].display_width == 1024

    uploaded = client.files.create(file=("screen.png", io.BytesIO(PNG)), purpose="user_data")
    backend.push(Reply(text="A white page."))
    second = client.responses.create(model="m", tools=[tool], input=[
        {"role": "user", "content": "What is on screen?"}, call.model_dump(exclude_none=True),
        {"type": "computer_call_output", "call_id": "call_p", "acknowledged_safety_checks": [],
         "output": {"type": "computer_screenshot", "file_id": uploaded.id}}])
    assert second.output_text == "A white page."
    messages = backend.requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == json.dumps({"action": {"type": "screenshot"}})
    assert messages[3]["content"][1]["image_url"]["url"] == SHOT  # the uploaded file, as a data URL


def test_malformed_actions_become_a_screenshot_and_bad_computer_input_is_a_400(client, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("computer", {"actions": [{"type": "click", "x": "left"}]})]))
    response = client.responses.create(model="m", input="x", tools=[{"type": "computer"}])
    assert [a.type for a in response.output[0].actions] == ["screenshot"]
    bad = [
        ({"tools": [{"type": "computer_use_preview", "display_width": 10, "environment": "browser"}]},
         "tools[0].display_height"),
        ({"tools": [{"type": "computer"}, {"type": "computer"}]}, "tools"),
        ({"tool_choice": {"type": "computer"}}, "tool_choice"),
        ({"input": [{"type": "computer_call_output", "call_id": "nope",
                     "output": {"type": "computer_screenshot", "image_url": SHOT}}]}, "input"),
        ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {"type": "computer_screenshot"}}]},
         "input[0]"),
        ({"input": [{"type": "computer_call_output", "call_id": "c",
                     "output": {"type": "computer_screenshot", "image_url": "file:///etc/passwd"}}]},
         "input[0].output.image_url"),
    ]
    for change, param in bad:
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(**{"model": "m", "input": "x", **change})
        assert info.value.body["param"] == param, (change, info.value.body)


@pytest.fixture(scope="module")
def confirming(scripted_server, db_url):
    """A server whose operator asks for confirmation before any typed text that looks like a card number."""
    from parley.testing import ParleyProcess
    from parley.testing.strict import strict_client

    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url,
                       "--computer-confirm", r'"text":"[0-9 ]{12,}"') as server, \
            strict_client(server.base_url) as official:
        yield official


def test_an_operators_check_holds_a_sensitive_action_until_the_client_acknowledges_it(confirming, backend) -> None:
    card = [{"type": "click", "button": "left", "x": 5, "y": 5}, {"type": "type", "text": "4111 1111 1111 1111"}]
    backend.push(Reply(tool_calls=[ToolCall("computer", {"actions": ACTIONS}, id="call_plain")]))
    plain = confirming.responses.create(model="m", input="Say hello.", tools=[{"type": "computer"}])
    assert plain.output[0].pending_safety_checks == []

    backend.push(Reply(tool_calls=[ToolCall("computer", {"actions": card}, id="call_card")]))
    first = confirming.responses.create(model="m", input="Pay.", tools=[{"type": "computer"}])
    [check] = first.output[0].pending_safety_checks
    assert check.code == "sensitive_action" and check.id.startswith("cu_sc_") and "type action" in check.message
    screenshot = {"type": "computer_screenshot", "image_url": SHOT}
    with pytest.raises(openai.BadRequestError) as info:
        confirming.responses.create(model="m", previous_response_id=first.id, tools=[{"type": "computer"}], input=[
            {"type": "computer_call_output", "call_id": "call_card", "output": screenshot}])
    assert info.value.body["param"] == "input[0].acknowledged_safety_checks"
    assert info.value.body["code"] == "safety_check_not_acknowledged"
    with pytest.raises(openai.BadRequestError):  # a stateless replay of the call is held to it too
        confirming.responses.create(model="m", tools=[{"type": "computer"}], store=False, input=[
            {"role": "user", "content": "Pay."}, first.output[0].model_dump(exclude_none=True),
            {"type": "computer_call_output", "call_id": "call_card", "output": screenshot,
             "acknowledged_safety_checks": [{"id": "cu_sc_other"}]}])

    backend.push(Reply(text="Paid."))
    done = confirming.responses.create(model="m", previous_response_id=first.id, tools=[{"type": "computer"}], input=[
        {"type": "computer_call_output", "call_id": "call_card", "output": screenshot,
         "acknowledged_safety_checks": [check.model_dump(exclude_none=True)]}])
    assert done.output_text == "Paid."
