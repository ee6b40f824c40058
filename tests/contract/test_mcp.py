"""MCP tools run by Parley itself, against real MCP servers from the official SDK."""

from __future__ import annotations

import json

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer
from parley.testing.server import free_port
from tests.contract.helpers import stream_raw


def mcp_tool(url: str, **extra) -> dict:
    """An MCP tool as the seed sends it: without require_approval (the server's default, "never", applies)."""
    return {"type": "mcp", "server_label": "localmcp", "server_url": url, **extra}


BOILING = [Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice", "celcius": True})]),
           Reply(text="The boiling point of polyjuice is -100°C.")]


@pytest.fixture(scope="module")
def seed_mcp():
    with MCPTestServer("sse") as server:
        yield server


@pytest.fixture(scope="module")
def chain_mcp():
    with MCPTestServer("streamable-http", tools="all") as server:
        yield server


def test_seed_mcp_scenario_including_401_then_success(client, backend) -> None:
    with MCPTestServer("sse") as server:
        backend.push(*BOILING)
        response = client.responses.create(model="m", input="What is the boiling point of polyjuice?",
                                           tools=[mcp_tool(server.url)], stream=False)
    assert len(response.output) >= 3
    listing, call, message = response.output[:3]
    assert listing.type == "mcp_list_tools" and listing.server_label == "localmcp"
    assert {t.name for t in listing.tools} == {"get_boiling_point", "greet_everyone"}
    assert call.type == "mcp_call" and call.name == "get_boiling_point"
    assert json.loads(call.arguments) == {"liquid_name": "polyjuice", "celcius": True}
    assert call.error is None and "-100" in call.output
    assert "boiling point" in message.content[0].text.lower()
    assert backend.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": backend.requests[1]["messages"][-2]
                                                   ["tool_calls"][0]["id"], "content": "-100"}
    with MCPTestServer("sse", auth_token="test-token") as server:
        tools = [mcp_tool(server.url)]
        with pytest.raises(openai.AuthenticationError):
            client.responses.create(model="m", input="What is the boiling point of polyjuice?", tools=tools)
        backend.push(*BOILING)
        tools[0]["headers"] = {"Authorization": "Bearer test-token"}
        response = client.responses.create(model="m", input="What is the boiling point of polyjuice?", tools=tools)
        assert len(response.output) >= 3 and "-100" in response.output[1].output
        backend.push(*BOILING)
        response = client.responses.create(model="m", input="again", tools=[
            mcp_tool(server.url, authorization="test-token")])
        assert "-100" in response.output[1].output


def test_mcp_streaming_events_and_grammar(seed_mcp, backend, parley_server) -> None:
    backend.push(*BOILING)
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "boiling point of polyjuice?",
                                                 "tools": [mcp_tool(seed_mcp.url)]})
    final = check_stream(events)
    kinds = [e.type for e in events]
    for expected in ("response.mcp_list_tools.in_progress", "response.mcp_list_tools.completed",
                     "response.mcp_call.in_progress", "response.mcp_call_arguments.delta",
                     "response.mcp_call_arguments.done", "response.mcp_call.completed"):
        assert expected in kinds, expected
    assert [i.type for i in final.output] == ["mcp_list_tools", "mcp_call", "message"]


@pytest.mark.parametrize("stream", [False, True])
def test_multi_step_chain(chain_mcp, backend, parley_server, client, stream) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})]),
                 Reply(tool_calls=[ToolCall("get_user_permissions", {"user_id": "user_1"})]),
                 Reply(tool_calls=[ToolCall("check_file_access", {"user_id": "user_1", "filename": "a.txt"})]),
                 Reply(text="Alice may read a.txt."))
    body = {"model": "m", "input": "Can alice read a.txt?", "tools": [mcp_tool(chain_mcp.url)]}
    if stream:
        final = check_stream(stream_raw(parley_server.base_url, body))
    else:
        final = client.responses.create(**body)
    calls = [i for i in final.output if i.type == "mcp_call"]
    assert [c.output for c in calls] == ["user_1", '["read", "write"]', "user_1 may read a.txt"]
    assert final.output[-1].type == "message" and final.status == "completed"
    assert len(backend.requests) == 4
    assert final.usage.input_tokens == 40  # summed over the four backend calls


def test_parallel_calls_in_one_step(chain_mcp, backend, client) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"}),
                                   ToolCall("get_experiment_id", {"experiment_name": "boiling"})]),
                 Reply(text="done"))
    final = client.responses.create(model="m", input="ids?", tools=[mcp_tool(chain_mcp.url)])
    assert [i.output for i in final.output if i.type == "mcp_call"] == ["user_1", "exp_42"]
    assert [m["role"] for m in backend.requests[1]["messages"]][-3:] == ["assistant", "tool", "tool"]


def test_allowed_tools_are_the_only_ones_listed_and_offered(chain_mcp, backend, client) -> None:
    response = client.responses.create(model="m", input="hi", tools=[
        mcp_tool(chain_mcp.url, allowed_tools=["get_user_id", "check_file_access"])])
    assert {t.name for t in response.output[0].tools} == {"get_user_id", "check_file_access"}
    offered = {t["function"]["name"] for t in backend.requests[0]["tools"]}
    assert offered == {"get_user_id", "check_file_access"}


def test_approval_approve_and_deny(chain_mcp, backend, client) -> None:
    tools = [mcp_tool(chain_mcp.url, require_approval="always")]
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "bob"})]))
    first = client.responses.create(model="m", input="bob's id?", tools=tools)
    request = first.output[-1]
    assert request.type == "mcp_approval_request" and request.name == "get_user_id"
    assert first.status == "completed" and not [i for i in first.output if i.type == "mcp_call"]
    backend.push(Reply(text="Bob is user_2."))
    second = client.responses.create(model="m", previous_response_id=first.id, tools=tools, input=[
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    call = second.output[0]
    assert call.type == "mcp_call" and call.output == "user_2" and call.approval_request_id == request.id
    assert second.output_text == "Bob is user_2."
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})]), Reply(text="Not allowed."))
    third = client.responses.create(model="m", input="alice's id?", tools=tools)
    fourth = client.responses.create(model="m", previous_response_id=third.id, tools=tools, input=[
        {"type": "mcp_approval_response", "approval_request_id": third.output[-1].id, "approve": False}])
    assert not [i for i in fourth.output if i.type == "mcp_call"]
    assert backend.requests[-1]["messages"][-1]["content"] == "The user declined to run this tool call."


def test_each_approval_answers_the_call_it_was_stored_with(chain_mcp, backend, client) -> None:
    # Two identical calls wait for approval; the client approves the second only. Each answer reaches the
    # chat call its request stood for (stored with it), whatever the names and arguments.
    tools = [mcp_tool(chain_mcp.url, require_approval="always")]
    same = {"username": "bob"}
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", same, id="call_one"), ToolCall("get_user_id", same,
                                                                                           id="call_two")]))
    first = client.responses.create(model="m", input="bob twice", tools=tools)
    one, two = [i for i in first.output if i.type == "mcp_approval_request"]
    backend.push(Reply(text="ok"))
    second = client.responses.create(model="m", previous_response_id=first.id, tools=tools, input=[
        {"type": "mcp_approval_response", "approval_request_id": one.id, "approve": False},
        {"type": "mcp_approval_response", "approval_request_id": two.id, "approve": True}])
    assert [(i.type, i.approval_request_id) for i in second.output if i.type == "mcp_call"] == [("mcp_call", two.id)]
    answers = {m["tool_call_id"]: m["content"] for m in backend.requests[-1]["messages"] if m["role"] == "tool"}
    assert answers == {"call_one": "The user declined to run this tool call.", "call_two": "user_2"}


def test_an_operator_can_make_approval_the_default(seed_mcp, scripted_server, backend, tmp_path) -> None:
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{tmp_path / 'a.db'}",
                       "--mcp-require-approval", "always") as server, \
            openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as strict:
        backend.push(BOILING[0])
        held = strict.responses.create(model="m", input="boiling?", tools=[mcp_tool(seed_mcp.url)])
        backend.push(*BOILING)
        ran = strict.responses.create(model="m", input="boiling?", tools=[mcp_tool(seed_mcp.url,
                                                                                   require_approval="never")])
    assert [i.type for i in held.output] == ["mcp_list_tools", "mcp_approval_request"]
    assert "require_approval" not in held.tools[0].model_dump(exclude_none=True)  # echoed as sent
    assert [i.type for i in ran.output] == ["mcp_list_tools", "mcp_call", "message"]


def test_approval_filter_by_tool_name(chain_mcp, backend, client) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "bob"})]),
                 Reply(tool_calls=[ToolCall("get_user_permissions", {"user_id": "user_2"})]))
    response = client.responses.create(model="m", input="x", tools=[mcp_tool(
        chain_mcp.url, require_approval={"never": {"tool_names": ["get_user_id"]}})])
    assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]


def test_chained_turn_reuses_the_listing(seed_mcp, backend, client) -> None:
    tools = [mcp_tool(seed_mcp.url)]
    first = client.responses.create(model="m", input="hi", tools=tools)
    assert first.output[0].type == "mcp_list_tools"
    backend.push(*BOILING)
    second = client.responses.create(model="m", input="boiling?", tools=tools, previous_response_id=first.id)
    assert [i.type for i in second.output] == ["mcp_call", "message"]


def test_tool_error_becomes_mcp_call_error(chain_mcp, backend, client) -> None:
    backend.push(Reply(tool_calls=[ToolCall("fail_always", {"reason": "testing"})]), Reply(text="It failed."))
    response = client.responses.create(model="m", input="x", tools=[mcp_tool(chain_mcp.url)])
    call = response.output[1]
    assert call.status == "failed" and call.output is None
    assert "tool failed on purpose" in json.dumps(call.error.model_dump())
    assert response.status == "completed" and response.output_text == "It failed."


def test_unreachable_server_is_a_clear_error_without_hanging(backend, client, parley_server) -> None:
    url = f"http://127.0.0.1:{free_port()}/sse"
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model="m", input="x", tools=[mcp_tool(url)])
    assert info.value.status_code == 424 and "Cannot connect" in info.value.message
    events = stream_raw(parley_server.base_url, {"model": "m", "input": "x", "tools": [mcp_tool(url)]})
    check_stream(events)
    assert "response.mcp_list_tools.failed" in [e.type for e in events]
    assert events[-1].type == "response.failed"


def test_invented_tool_name_comes_back_as_a_function_call(seed_mcp, backend, client) -> None:
    backend.push(Reply(tool_calls=[ToolCall("no_such_tool", {})]))
    response = client.responses.create(model="m", input="x", tools=[mcp_tool(seed_mcp.url)])
    assert response.output[-1].type == "function_call" and response.output[-1].name == "no_such_tool"


def test_credentials_are_redacted_and_never_logged(backend, client, parley_server) -> None:
    with MCPTestServer("sse", auth_token="s3cret-token-value") as server:
        backend.push(*BOILING)
        response = client.responses.create(model="m", input="x", tools=[mcp_tool(
            server.url, headers={"Authorization": "Bearer s3cret-token-value"})])
        assert "-100" in response.output[1].output
        backend.push(*BOILING)
        response2 = client.responses.create(model="m", input="x", tools=[mcp_tool(
            server.url, authorization="s3cret-token-value")])
        assert "-100" in response2.output[1].output
    for r in (response, response2):
        echoed = json.dumps(r.model_dump())
        stored = json.dumps(client.responses.retrieve(r.id).model_dump())
        assert "s3cret-token-value" not in echoed and "s3cret-token-value" not in stored
    assert response.tools[0].headers == {"Authorization": "<redacted>"}
    assert "s3cret-token-value" not in parley_server.log()


def test_url_credentials_are_redacted_in_responses_and_logs(seed_mcp, backend, client, parley_server) -> None:
    url = seed_mcp.url.replace("http://", "http://mcpuser:url-s3cret@")
    backend.push(*BOILING)
    response = client.responses.create(model="m", input="x", tools=[mcp_tool(url)])
    assert "-100" in response.output[1].output
    assert response.tools[0].server_url == seed_mcp.url.replace("http://", "http://<redacted>@")
    for shown in (response.model_dump_json(), client.responses.retrieve(response.id).model_dump_json()):
        assert "url-s3cret" not in shown
    unreachable = "http://mcpuser:url-s3cret@127.0.0.1:9/sse"
    with pytest.raises(openai.APIStatusError) as info:
        client.responses.create(model="m", input="x", tools=[mcp_tool(unreachable)])
    assert "url-s3cret" not in json.dumps(info.value.body)
    assert "url-s3cret" not in parley_server.log()


def test_a_background_request_is_encrypted_at_rest_and_dropped_when_it_ends(seed_mcp, backend, client,
                                                                           db_url) -> None:
    import asyncio
    import time

    import sqlalchemy as sa

    from parley.store.sql import open_store
    from parley.store.tables import background

    def kept(response_id: str) -> str:
        async def read() -> str:
            store = await open_store(db_url)
            try:
                return await store.run(lambda conn: conn.execute(sa.select(background.c.request).where(
                    background.c.response_id == response_id)).scalar_one())
            finally:
                await store.close()
        return asyncio.run(read())

    backend.hold()
    backend.push(*BOILING)
    queued = client.responses.create(model="m", input="x", background=True, tools=[mcp_tool(
        seed_mcp.url, headers={"X-Api-Key": "hdr-s3cret"}, authorization="auth-s3cret")])
    backend.wait_for_requests(1)  # it runs
    while_running = kept(queued.id)
    assert while_running and "s3cret" not in while_running
    backend.release()
    deadline = time.monotonic() + 30
    while client.responses.retrieve(queued.id).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.responses.retrieve(queued.id).status == "completed"
    deadline = time.monotonic() + 30
    while kept(queued.id):  # (dropped just after the final state is written)
        assert time.monotonic() < deadline, "the ended response's request was kept"
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_max_tool_calls_over_the_cap_ends_incomplete_and_the_chain_goes_on(chain_mcp, backend, client,
                                                                           parley_server, stream) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"}),
                                   ToolCall("get_user_id", {"username": "bob"})]))
    body = {"model": "m", "input": "ids?", "tools": [mcp_tool(chain_mcp.url)], "max_tool_calls": 1}
    if stream:
        events = stream_raw(parley_server.base_url, {**body, "stream": True})
        response = check_stream(events)
        assert events[-1].type == "response.incomplete"
    else:
        response = client.responses.create(**body)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_messages"
    assert [i.output for i in response.output if i.type == "mcp_call"] == ["user_1"]  # bob's call was not run
    assert len(backend.requests) == 1  # the model is not called again past the cap
    assert client.responses.retrieve(response.id).status == "incomplete"
    # The stored chat answers the call that was not run, so a chained turn is valid and can go on.
    backend.push(Reply(text="Only alice was looked up."))
    follow = client.responses.create(model="m", input="go on", previous_response_id=response.id)
    assert follow.status == "completed" and follow.output_text == "Only alice was looked up."
    tool_messages = [m for m in backend.requests[-1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages][0] == "user_1"
    assert tool_messages[1]["content"].startswith("This tool call was not run")


def test_max_tool_calls_reached_exactly_then_the_model_answers(chain_mcp, backend, client) -> None:
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})]), Reply(text="user_1."))
    response = client.responses.create(model="m", input="id?", tools=[mcp_tool(chain_mcp.url)], max_tool_calls=1)
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == "user_1." and response.max_tool_calls == 1
    assert "tools" in backend.requests[-1]  # tools stay offered; only a call past the cap ends the response


def test_iteration_bound_ends_incomplete(chain_mcp, backend, client, parley_server) -> None:
    # The server runs with the default bound of 10 model calls; a model that calls a tool on each of them
    # has its tenth step's calls run, and the response ends incomplete instead of calling the model again.
    backend.push(*[Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})])] * 10)
    response = client.responses.create(model="m", input="loop", tools=[mcp_tool(chain_mcp.url)])
    assert len(backend.requests) == 10
    assert len([i for i in response.output if i.type == "mcp_call"]) == 10
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_messages"
    # Nine steps with calls and then an answer stay within the bound.
    backend.push(*[Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})])] * 9, Reply(text="Enough."))
    response = client.responses.create(model="m", input="loop", tools=[mcp_tool(chain_mcp.url)])
    assert response.status == "completed" and response.output_text == "Enough."


def test_independent_calls_of_one_step_run_concurrently(chain_mcp, backend, client) -> None:
    # Each tool answers "met" only while the other runs too; run one after the other, both say "alone".
    import secrets

    token = secrets.token_hex(8)
    backend.push(Reply(tool_calls=[ToolCall("rendezvous_a", {"token": token}),
                                   ToolCall("rendezvous_b", {"token": token})]), Reply(text="ok"))
    response = client.responses.create(model="m", input="x", tools=[mcp_tool(chain_mcp.url)])
    assert [i.output for i in response.output if i.type == "mcp_call"] == ["met", "met"]


def test_one_session_per_server_per_response_and_tools_listed_once(backend, client) -> None:
    with MCPTestServer("sse", tools="all") as server:
        backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "alice"})]),
                     Reply(tool_calls=[ToolCall("get_user_permissions", {"user_id": "user_1"})]),
                     Reply(text="done"))
        client.responses.create(model="m", input="x", tools=[mcp_tool(server.url)])
        sse_streams = [r for r in server.log.requests if r == ("GET", "/sse")]
        assert len(sse_streams) == 1  # one SSE session carried the listing and both calls
        # The first connection tried Streamable HTTP (a POST to /sse) and fell back to SSE; the transport
        # is remembered for the URL, so the next response goes straight to SSE.
        posts_before = sum(1 for r in server.log.requests if r == ("POST", "/sse"))
        assert posts_before == 1
        client.responses.create(model="m", input="y", tools=[mcp_tool(server.url)])
        assert sum(1 for r in server.log.requests if r == ("POST", "/sse")) == posts_before


def test_tool_choice_mcp_forces_the_first_step_only(seed_mcp, backend, client) -> None:
    backend.push(*BOILING)
    client.responses.create(model="m", input="x", tools=[mcp_tool(seed_mcp.url)],
                            tool_choice={"type": "mcp", "server_label": "localmcp", "name": "get_boiling_point"})
    assert backend.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_boiling_point"}}
    assert backend.requests[1]["tool_choice"] == "auto"


def test_allowed_tools_can_name_an_mcp_server_or_one_of_its_tools(seed_mcp, backend, client) -> None:
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    client.responses.create(model="m", input="x", tools=[weather, mcp_tool(seed_mcp.url)], tool_choice={
        "type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp", "server_label": "localmcp"}]})
    assert {t["function"]["name"] for t in backend.requests[-1]["tools"]} == {"get_boiling_point", "greet_everyone"}
    client.responses.create(model="m", input="x", tools=[weather, mcp_tool(seed_mcp.url)], tool_choice={
        "type": "allowed_tools", "mode": "auto",
        "tools": [{"type": "mcp", "server_label": "localmcp", "name": "greet_everyone"}, {"type": "function",
                                                                                          "name": "get_weather"}]})
    assert [t["function"]["name"] for t in backend.requests[-1]["tools"]] == ["get_weather", "greet_everyone"]


def _same_shape(messages: list[dict]) -> list[dict]:
    """Messages with tool call ids replaced by their order of appearance (a replay cannot know the backend's)."""
    ids: dict[str, str] = {}
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "id": ids.setdefault(c["id"], f"c{len(ids)}")} for c in m["tool_calls"]]
        if "tool_call_id" in m:
            m["tool_call_id"] = ids.setdefault(m["tool_call_id"], f"c{len(ids)}")
        out.append(m)
    return out


def _replayed(response) -> list[dict]:
    return [item.model_dump(exclude_none=True) for item in response.output]


def test_output_replayed_as_input_gives_the_history_chaining_gives(seed_mcp, backend, client) -> None:
    tools = [mcp_tool(seed_mcp.url)]
    backend.push(*BOILING)
    first = client.responses.create(model="m", input="boiling?", tools=tools)
    backend.push(Reply(text="ok"))
    client.responses.create(model="m", input="and now?", previous_response_id=first.id, tools=tools)
    chained = backend.requests[-1]["messages"]
    backend.push(Reply(text="ok"))
    replay = client.responses.create(model="m", tools=tools, input=[
        {"role": "user", "content": "boiling?"}, *_replayed(first), {"role": "user", "content": "and now?"}])
    assert _same_shape(backend.requests[-1]["messages"]) == _same_shape(chained)
    assert [i.type for i in replay.output] == ["message"]  # the replayed listing stands: no new listing


def test_an_approval_round_trip_replays_as_input(chain_mcp, backend, client) -> None:
    tools = [mcp_tool(chain_mcp.url, require_approval="always")]
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "bob"})]))
    asked = client.responses.create(model="m", input="bob's id?", tools=tools)
    approval = {"type": "mcp_approval_response", "approval_request_id": asked.output[-1].id, "approve": True}
    backend.push(Reply(text="Bob is user_2."))
    ran = client.responses.create(model="m", previous_response_id=asked.id, tools=tools, input=[approval])
    backend.push(Reply(text="ok"))
    client.responses.create(model="m", input="thanks", previous_response_id=ran.id, tools=tools)
    chained = backend.requests[-1]["messages"]
    backend.push(Reply(text="ok"))
    client.responses.create(model="m", tools=tools, input=[
        {"role": "user", "content": "bob's id?"}, *_replayed(asked), approval, *_replayed(ran),
        {"role": "user", "content": "thanks"}])
    assert _same_shape(backend.requests[-1]["messages"]) == _same_shape(chained)


def test_an_approval_request_answered_in_the_same_input_runs(chain_mcp, backend, client) -> None:
    tools = [mcp_tool(chain_mcp.url, require_approval="always")]
    backend.push(Reply(tool_calls=[ToolCall("get_user_id", {"username": "bob"})]))
    asked = client.responses.create(model="m", input="bob's id?", tools=tools, store=False)
    request = asked.output[-1]
    backend.push(Reply(text="Bob is user_2."))
    ran = client.responses.create(model="m", tools=tools, input=[
        {"role": "user", "content": "bob's id?"}, *_replayed(asked),
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    assert [(i.type, getattr(i, "approval_request_id", None)) for i in ran.output] == [
        ("mcp_call", request.id), ("message", None)]
    assert ran.output[0].output == "user_2"
