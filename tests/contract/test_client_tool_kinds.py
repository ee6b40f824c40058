"""Codex's tool kinds on a Chat backend: custom (freeform) tools and namespaced function tools."""

from __future__ import annotations

import json

import openai
import pytest

from parley.testing import Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.strict import stream_raw

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
FILES = {"type": "namespace", "name": "mcp__files", "description": "File tools.", "tools": [
    {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {
        "path": {"type": "string"}}, "required": ["path"]}, "strict": False}]}


def test_custom_tool_call_streams_and_round_trips_statelessly(backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("apply_patch", {"input": PATCH}, id="call_p")]))
    body = {"model": "m", "input": "add hello.txt", "tools": [APPLY_PATCH], "store": False,
            "include": ["reasoning.encrypted_content"], "client_metadata": {"originator": "codex_exec"},
            "prompt_cache_key": "k", "parallel_tool_calls": False, "reasoning": {"summary": "auto"}}
    events = stream_raw(parley_server.base_url, body)
    final = check_stream(events)
    [call] = final.output
    assert (call.type, call.name, call.input, call.call_id) == ("custom_tool_call", "apply_patch", PATCH, "call_p")
    kinds = [e.type for e in events]
    assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
    sent = backend.requests[-1]["tools"][0]["function"]
    assert sent["name"] == "apply_patch" and "lark grammar" in sent["description"]
    assert sent["parameters"]["required"] == ["input"]
    # Codex resends the whole conversation, replaying the call, with the tool's output.
    backend.push(Reply(text="Patched."))
    replay = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "add hello.txt"}]},
              json.loads(call.model_dump_json()),
              {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success. Updated: hello.txt"}]
    events = stream_raw(parley_server.base_url, {**body, "input": replay})
    assert check_stream(events).output_text == "Patched."
    messages = backend.requests[-1]["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "apply_patch",
                                                        "arguments": json.dumps({"input": PATCH})}
    assert messages[2] == {"role": "tool", "tool_call_id": "call_p", "content": "Success. Updated: hello.txt"}


def test_namespaced_function_calls_come_back_with_their_namespace(backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("mcp__files__read_file", {"path": "a.txt"}, id="call_r")]))
    body = {"model": "m", "input": "read a.txt", "tools": [FILES], "store": False}
    final = check_stream(stream_raw(parley_server.base_url, body))
    [call] = final.output
    assert (call.type, call.name, call.namespace) == ("function_call", "read_file", "mcp__files")
    assert backend.requests[-1]["tools"][0]["function"]["name"] == "mcp__files__read_file"
    backend.push(Reply(text="It says hi."))
    replay = [{"role": "user", "content": "read a.txt"}, json.loads(call.model_dump_json()),
              {"type": "function_call_output", "call_id": "call_r", "output": "hi"}]
    final = check_stream(stream_raw(parley_server.base_url, {**body, "input": replay}))
    assert final.output_text == "It says hi."
    assert backend.requests[-1]["messages"][1]["tool_calls"][0]["function"]["name"] == "mcp__files__read_file"


def test_forced_custom_tool_choice(client, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("apply_patch", {"input": PATCH})]))
    response = client.responses.create(model="m", input="patch", tools=[APPLY_PATCH],
                                       tool_choice={"type": "custom", "name": "apply_patch"})
    assert backend.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert response.output[0].type == "custom_tool_call"


def test_encrypted_reasoning_round_trip_for_stateless_clients(scripted_server, backend, tmp_path) -> None:
    import openai

    from parley.testing import ParleyProcess

    config = tmp_path / "parley.yaml"
    config.write_text(f"upstreams:\n  - name: r\n    url: {scripted_server.url}\n    models: ['*']\n"
                      "    replay_reasoning: true\n")
    with ParleyProcess("--config", str(config), "--db", f"sqlite:///{tmp_path / 'p.db'}",
                       "--data-dir", str(tmp_path)) as server:
        backend.push(Reply(reasoning="The user wants hello.txt; use apply_patch.",
                           tool_calls=[ToolCall("apply_patch", {"input": PATCH}, id="call_q")]))
        body = {"model": "m", "input": "add hello.txt", "tools": [APPLY_PATCH], "store": False,
                "include": ["reasoning.encrypted_content"]}
        final = check_stream(stream_raw(server.base_url, body))
        reasoning, call = final.output
        assert reasoning.type == "reasoning" and reasoning.encrypted_content
        assert "hello.txt" not in reasoning.encrypted_content
        backend.push(Reply(text="Done."))
        replay = [{"role": "user", "content": "add hello.txt"}, json.loads(reasoning.model_dump_json()),
                  json.loads(call.model_dump_json()),
                  {"type": "custom_tool_call_output", "call_id": "call_q", "output": "ok"}]
        assert check_stream(stream_raw(server.base_url, {**body, "input": replay})).output_text == "Done."
        assistant = backend.requests[-1]["messages"][1]
        assert assistant["reasoning_content"] == "The user wants hello.txt; use apply_patch."
        assert assistant["tool_calls"][0]["id"] == "call_q"
        tampered = json.loads(reasoning.model_dump_json())
        tampered["encrypted_content"] = tampered["encrypted_content"][:-4] + "AAAA"
        with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            try:
                client.responses.create(model="m", input=[tampered, {"role": "user", "content": "x"}])
                raise AssertionError("a tampered encrypted_content was accepted")
            except openai.BadRequestError as error:
                assert error.body["param"] == "input[0].encrypted_content"
            backend.push(Reply(reasoning="hidden", text="plain"))
            plain = client.responses.create(model="m", input="no include")
            assert plain.output[0].type == "reasoning" and plain.output[0].encrypted_content is None


DEFERRED = [{"type": "function", "name": "get_weather", "description": "Weather for a city.", "defer_loading": True,
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "namespace", "name": "billing", "description": "Billing tools.", "defer_loading": True, "tools": [
                {"type": "function", "name": "refund", "description": "Refund an invoice.",
                 "parameters": {"type": "object", "properties": {}}}]}]


def test_server_tool_search_loads_deferred_tools(backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("tool_search", {"query": "weather city"}, id="call_s")]),
                 Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_w")]))
    body = {"model": "m", "input": "weather in Oslo?", "tools": [*DEFERRED, {"type": "tool_search"}]}
    final = check_stream(stream_raw(parley_server.base_url, body))
    search, output, call = final.output
    assert (search.type, search.execution, search.arguments) == ("tool_search_call", "server", {"query": "weather city"})
    assert output.type == "tool_search_output" and [t.name for t in output.tools] == ["get_weather"]
    assert (call.type, call.name) == ("function_call", "get_weather")
    first, second = backend.requests[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["tool_search"]  # deferred tools hidden at first
    assert {t["function"]["name"] for t in second["tools"]} == {"get_weather", "tool_search"}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_s", "content": "Loaded tools: get_weather."}


def test_client_tool_search_returns_the_call_and_accepts_the_output(backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("tool_search", {"query": "refund"}, id="call_c")]))
    body = {"model": "m", "input": "refund invoice 7", "store": False,
            "tools": [*DEFERRED, {"type": "tool_search", "execution": "client"}]}
    final = check_stream(stream_raw(parley_server.base_url, body))
    [search] = final.output
    assert (search.type, search.execution, search.call_id) == ("tool_search_call", "client", "call_c")
    # The client answers with the tools to load, replaying the conversation as Codex does.
    backend.push(Reply(tool_calls=[ToolCall("billing__refund", {}, id="call_r")]))
    replay = [{"role": "user", "content": "refund invoice 7"}, json.loads(search.model_dump_json()),
              {"type": "tool_search_output", "call_id": "call_c", "execution": "client", "tools": [DEFERRED[1]]}]
    final = check_stream(stream_raw(parley_server.base_url, {**body, "input": replay}))
    [call] = final.output
    assert (call.name, call.namespace) == ("refund", "billing")
    request = backend.requests[-1]
    assert "billing__refund" in {t["function"]["name"] for t in request["tools"]}
    assert request["messages"][1]["tool_calls"][0]["function"]["name"] == "tool_search"
    assert request["messages"][2]["content"] == "Loaded tools: billing."


NATIVE = [{"type": "shell", "environment": {"type": "local"}}, {"type": "apply_patch"}, {"type": "local_shell"}]


def test_native_client_tools_become_their_items_and_outputs_come_back(client, backend, parley_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("shell", {"commands": ["ls", "pwd"], "timeout_ms": 5000}),
                                   ToolCall("apply_patch", {"type": "create_file", "path": "a.txt", "diff": "+hi"}),
                                   ToolCall("local_shell", {"command": ["echo", "x"], "working_directory": "/tmp"})]))
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "do it", "tools": NATIVE,
                                                 "tool_choice": {"type": "shell"}})
    check_stream(events)
    assert backend.requests[-1]["tool_choice"] == {"type": "function", "function": {"name": "shell"}}
    assert sorted(t["function"]["name"] for t in backend.requests[-1]["tools"]) == ["apply_patch", "local_shell",
                                                                                     "shell"]
    shell, patch, local = events[-1].response.output
    assert shell.type == "shell_call" and shell.action.commands == ["ls", "pwd"] and shell.action.timeout_ms == 5000
    assert [e.command for e in events if e.type == "response.shell_call_command.done"] == ["ls", "pwd"]
    assert patch.type == "apply_patch_call" and (patch.operation.type, patch.operation.path, patch.operation.diff) \
        == ("create_file", "a.txt", "+hi")
    assert local.type == "local_shell_call" and local.action.command == ["echo", "x"]
    backend.push(Reply(text="Done."))
    done = client.responses.create(model="m", previous_response_id=events[-1].response.id, tools=NATIVE, input=[
        {"type": "shell_call_output", "call_id": shell.call_id, "output": [
            {"stdout": "a.txt\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
            {"stdout": "/tmp\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]},
        {"type": "apply_patch_call_output", "call_id": patch.call_id, "status": "completed", "output": "created"},
        {"type": "local_shell_call_output", "id": local.call_id, "output": "x\n"}])
    assert done.output_text == "Done."
    answers = {m["tool_call_id"]: m["content"] for m in backend.requests[-1]["messages"] if m["role"] == "tool"}
    assert answers == {shell.call_id: "exit code 0\nstdout:\na.txt\n\nstderr:\n\n\nexit code 0\nstdout:\n/tmp\n\nstderr:\n",
                       patch.call_id: "completed: created", local.call_id: "x\n"}


def test_a_hosted_shell_environment_is_checked_before_the_model_runs(client, backend) -> None:
    for environment, error, param in (
            ({"type": "container_reference", "container_id": "cntr_missing"}, openai.NotFoundError,
             "tools[0].environment.container_id"),
            ({"type": "container_auto", "skills": [{"type": "skill_reference", "skill_id": "s"}]},
             openai.NotFoundError, "tools[0].environment.skills[0].skill_id"),
            ({"type": "container_auto", "network_policy": {"type": "allowlist", "allowed_domains": ["a.com"]}},
             openai.BadRequestError, "tools[0].environment.network_policy"),
            ({"type": "somewhere_else"}, openai.BadRequestError, "tools[0].environment")):
        with pytest.raises(error) as info:
            client.responses.create(model="m", input="x", tools=[{"type": "shell", "environment": environment}])
        assert info.value.body["param"] == param, environment
    assert backend.requests == []


def test_replayed_reasoning_text_reaches_upstreams_that_take_reasoning_only(client, backend, scripted_server,
                                                                            tmp_path) -> None:
    from parley.testing import ParleyProcess

    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [],
                 "content": [{"type": "reasoning_text", "text": "Earth is the third planet."}]}
    replay = [{"role": "user", "content": "Which planet?"}, reasoning,
              {"role": "assistant", "content": "Earth."}, {"role": "user", "content": "Sure?"}]
    client.responses.create(model="m", input=replay)
    assert "reasoning_content" not in backend.requests[-1]["messages"][1]  # a default upstream takes none
    config = tmp_path / "parley.yaml"
    config.write_text(f"upstreams:\n  - name: r\n    url: {scripted_server.url}\n    models: ['*']\n"
                      "    replay_reasoning: true\n")
    with ParleyProcess("--config", str(config), "--db", f"sqlite:///{tmp_path / 'p.db'}") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as taking:
        taking.responses.create(model="m", input=replay)
    assert backend.requests[-1]["messages"][1] == {"role": "assistant", "content": "Earth.",
                                                   "reasoning_content": "Earth is the third planet."}
