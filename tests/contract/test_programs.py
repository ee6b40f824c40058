"""Programmatic tool calling through a real ``parley serve`` with the bwrap sandbox: the model's JavaScript runs
in QuickJS in a sandbox of its own; a program that calls the client's tools stops the response with calls whose
``caller`` names it, and goes on (replayed from its start) when their outputs come back, chained by
``previous_response_id`` or sent back whole by a client that keeps its own history; on SQLite and PostgreSQL,
streamed and not, every body and event validated strictly against the SDK's types."""

from __future__ import annotations

import json
import re

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.strict import strict_client

PROGRAMS = {"type": "programmatic_tool_calling"}
WEATHER = {"type": "function", "name": "weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "allowed_callers": ["programmatic"]}
SHOUT = {"type": "custom", "name": "shout", "description": "Says a text aloud.",
         "allowed_callers": ["direct", "programmatic"]}
TRIP = """
const home = await tools.weather({city: "Paris"});
const [a, b] = await Promise.all([tools.weather({city: "Rome"}), tools.weather({city: "Oslo"})]);
const said = await tools.shout("go " + (Math.random() < 2 ? "south" : "north"));
return {home, a, b, said, when: new Date().getTime() === Date.now()};
"""
BLOCK = re.compile(r"```js\n(.*?)```", re.S)


def programmer(request: dict) -> Reply:
    """Runs the JavaScript block of the user's message as a program; then answers with the program's result."""
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=f"Program said: {last['content']}")
    text = last["content"] if isinstance(last["content"], str) else " ".join(p.get("text", "")
                                                                             for p in last["content"])
    block = BLOCK.search(text)
    return Reply(tool_calls=[ToolCall("program", {"code": block.group(1)})]) if block else Reply(text="No program.")


def ask(code: str) -> str:
    return f"Run:\n```js\n{code}\n```"


@pytest.fixture(scope="module")
def programs_backend():
    with ScriptedBackend(programmer) as backend:
        yield backend


@pytest.fixture(scope="module")
def programs_server(programs_backend, db_url, tmp_path_factory):
    with ParleyProcess("--upstream", programs_backend.url, "--db", db_url, "--sandbox", "bwrap",
                       "--code-timeout-s", "5",
                       "--containers-dir", str(tmp_path_factory.mktemp("containers"))) as server:
        yield server


@pytest.fixture(scope="module")
def client(programs_server):
    with strict_client(programs_server.base_url) as official:
        yield official


def outputs(calls: list, answers: dict[str, str]) -> list[dict]:
    """The client's outputs for a program's calls (custom calls answered by their input, upper-cased)."""
    out = []
    for call in calls:
        if call.type == "custom_tool_call":
            out.append({"type": "custom_tool_call_output", "call_id": call.call_id, "output": call.input.upper()})
        else:
            out.append({"type": "function_call_output", "call_id": call.call_id,
                        "output": answers[json.loads(call.arguments)["city"]]})
    return out


ANSWERS = {"Paris": "12C", "Rome": "20C", "Oslo": "-3C"}


def test_a_program_calls_the_clients_tools_across_chained_turns(client, programs_backend) -> None:
    first = client.responses.create(model="m", input=ask(TRIP), tools=[WEATHER, SHOUT, PROGRAMS])
    program, call = first.output
    assert program.type == "program" and program.code.strip() == TRIP.strip() and program.fingerprint
    assert call.type == "function_call" and call.name == "weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.caller.type == "program" and call.caller.caller_id == program.call_id
    assert first.status == "completed" and client.responses.retrieve(first.id).output[1].call_id == call.call_id
    offered = [t["function"]["name"] for t in programs_backend.requests[-1]["tools"]]
    assert offered == ["shout", "program"], "a tool only programs may call is not offered to the model"
    description = programs_backend.requests[-1]["tools"][1]["function"]["description"]
    assert "tools.weather(args)" in description and "tools.shout(text)" in description

    second = client.responses.create(model="m", previous_response_id=first.id, tools=[WEATHER, SHOUT, PROGRAMS],
                                     input=outputs([call], ANSWERS))
    assert [(c.type, json.loads(c.arguments)["city"]) for c in second.output] == [("function_call", "Rome"),
                                                                                   ("function_call", "Oslo")]
    assert all(c.caller.caller_id == program.call_id for c in second.output)
    third = client.responses.create(model="m", previous_response_id=second.id, tools=[WEATHER, SHOUT, PROGRAMS],
                                    input=outputs(second.output, ANSWERS))
    (shout,) = third.output
    assert shout.type == "custom_tool_call" and shout.input == "go south" and shout.caller.type == "program"
    last = client.responses.create(model="m", previous_response_id=third.id, tools=[WEATHER, SHOUT, PROGRAMS],
                                   input=outputs([shout], ANSWERS))
    result, message = last.output
    assert result.type == "program_output" and result.status == "completed" and result.call_id == program.call_id
    assert json.loads(result.result) == {"home": "12C", "a": "20C", "b": "-3C", "said": "GO SOUTH", "when": True}
    assert message.content[0].text == f"Program said: {result.result}"
    chat = programs_backend.requests[-1]["messages"]
    assert [m["role"] for m in chat] == ["user", "assistant", "tool"], "a program's own calls never reach the chat"
    assert chat[1]["tool_calls"][0]["function"]["name"] == "program" and chat[2]["content"] == result.result
    items = client.responses.input_items.list(last.id).data
    assert items[0].type == "custom_tool_call_output"


def test_a_program_streams_and_a_client_with_its_own_history_sends_it_back(client) -> None:
    code = "const t = await tools.weather({city: 'Oslo'}); return 'Oslo: ' + t;"
    with client.responses.stream(model="m", input=ask(code), tools=[WEATHER, PROGRAMS], store=False) as stream:
        events = list(stream)
        first = stream.get_final_response()
    check_stream(events)
    assert [e.item.type for e in events if e.type == "response.output_item.added"] == ["program", "function_call"]
    program, call = first.output
    history = [{"role": "user", "content": ask(code)}, program.model_dump(exclude_none=True),
               call.model_dump(exclude_none=True)]
    with pytest.raises(openai.BadRequestError) as info:  # the call's output is missing
        client.responses.create(model="m", input=history, tools=[WEATHER, PROGRAMS], store=False)
    assert info.value.body["param"] == "input" and call.call_id in info.value.body["message"]
    forged = [history[0], {**history[1], "code": "return 'something else'"}, history[2], *outputs([call], ANSWERS)]
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input=forged, tools=[WEATHER, PROGRAMS], store=False)
    assert info.value.body["code"] == "invalid_fingerprint"
    with pytest.raises(openai.BadRequestError) as info:  # the program cannot go on without its tool
        client.responses.create(model="m", input=history + outputs([call], ANSWERS), store=False)
    assert info.value.body["param"] == "tools"
    with client.responses.stream(model="m", input=history + outputs([call], ANSWERS), tools=[WEATHER, PROGRAMS],
                                 store=False) as stream:
        events = list(stream)
        done = stream.get_final_response()
    check_stream(events)
    assert [item.type for item in done.output] == ["program_output", "message"]
    assert done.output[0].result == "Oslo: -3C" and done.output_text == "Program said: Oslo: -3C"


def test_a_program_that_needs_no_client_finishes_in_one_response(client) -> None:
    response = client.responses.create(model="m", tools=[PROGRAMS], input=ask(
        "let n = 0; for (let i = 1; i <= 1000; i++) n += i; console.log('sum', n);"))
    program, result, message = response.output
    assert result.status == "completed" and result.result == "sum 500500"
    assert message.content[0].text == "Program said: sum 500500"


@pytest.mark.parametrize("code, says", [
    ("throw new Error('no luck')", "Error: no luck"),
    ("return (", "SyntaxError"),
    ("while (true) {}", "ran longer than 5 seconds"),
    ("let a = []; while (true) a.push('x'.repeat(100000));", "out of memory"),
    ("return await tools.teleport({})", "not a function"),
    ("return await new Promise(() => {})", "never settles"),
])
def test_a_program_that_fails_gives_the_model_what_went_wrong(client, code, says) -> None:
    response = client.responses.create(model="m", tools=[WEATHER, PROGRAMS], input=ask(code))
    program, result, message = response.output
    assert result.type == "program_output" and result.status == "incomplete" and says in result.result
    assert message.content[0].text.startswith("Program said: ")


def test_a_replay_that_calls_differently_from_its_record_fails(client) -> None:
    """A client that keeps its own history and changes an output it gave: the program, run again, makes another
    call than the one recorded, and says so rather than mixing the two."""
    code = "const a = await tools.weather({city: 'Paris'}); return await tools.weather({city: a});"
    user = {"role": "user", "content": ask(code)}
    first = client.responses.create(model="m", tools=[WEATHER, PROGRAMS], input=[user], store=False)
    program, call = (item.model_dump(exclude_none=True) for item in first.output)
    given = {"type": "function_call_output", "call_id": call["call_id"], "output": "Rome"}
    second = client.responses.create(model="m", tools=[WEATHER, PROGRAMS], input=[user, program, call, given],
                                     store=False)
    (again,) = (item.model_dump(exclude_none=True) for item in second.output)
    assert json.loads(again["arguments"]) == {"city": "Rome"}
    changed = {**given, "output": "Oslo"}
    done = client.responses.create(model="m", tools=[WEATHER, PROGRAMS], store=False, input=[
        user, program, call, changed, again, {"type": "function_call_output", "call_id": again["call_id"],
                                              "output": "20C"}])
    assert done.output[0].status == "incomplete" and "not deterministic" in done.output[0].result
