"""Real client libraries against a real ``parley serve``: the openai SDK's helpers, the OpenAI
Agents SDK and LangChain."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from parley.testing import Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer


class Person(BaseModel):
    name: str
    age: int


def test_stream_helper_context_manager(client, backend) -> None:
    backend.push(Reply(text="Streaming through the helper.", chunk_size=4))
    texts = []
    with client.responses.stream(model="m", input="hi") as stream:
        events = []
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()
    check_stream(events)
    assert "".join(texts) == final.output_text == "Streaming through the helper."


def test_parse_with_a_pydantic_model(client, backend) -> None:
    backend.push(Reply(text='{"name": "Ada", "age": 36}'))
    response = client.responses.parse(model="m", input="Who?", text_format=Person)
    assert response.output_parsed == Person(name="Ada", age=36)
    sent = backend.requests[-1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["properties"].keys() == {"name", "age"}


@pytest.mark.anyio
async def test_async_client_create_and_stream(parley_server, backend) -> None:
    client = openai.AsyncOpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0)
    response = await client.responses.create(model="m", input="async hi")
    assert response.output_text == "You said: async hi"
    stream = await client.responses.create(model="m", input="async stream", stream=True)
    events = [event async for event in stream]
    check_stream(events)
    assert events[-1].response.output_text == "You said: async stream"
    await client.close()


# -- OpenAI Agents SDK --------------------------------------------------------------------


@pytest.fixture
async def agents_model(parley_server):
    from agents import OpenAIResponsesModel, set_tracing_disabled

    set_tracing_disabled(True)  # tracing would export to OpenAI's servers
    client = openai.AsyncOpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0)
    yield OpenAIResponsesModel(model="m", openai_client=client)
    await client.close()


def _weather_agent(model):
    from agents import Agent, function_tool

    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"It is sunny in {city}."

    return Agent(name="weather", instructions="Answer weather questions.", tools=[get_weather], model=model)


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_agents_sdk_function_tool(agents_model, backend, streamed) -> None:
    from agents import Runner

    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
                 Reply(text="The agent says: sunny in Paris."))
    agent = _weather_agent(agents_model)
    if streamed:
        result = Runner.run_streamed(agent, "Weather in Paris?")
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds
    else:
        result = await Runner.run(agent, "Weather in Paris?")
    assert result.final_output == "The agent says: sunny in Paris."
    tool_message = backend.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "It is sunny in Paris."


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_agents_sdk_hosted_mcp_tool(agents_model, backend, streamed) -> None:
    from agents import Agent, HostedMCPTool, Runner

    with MCPTestServer("streamable-http") as server:
        backend.push(Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice"})]),
                     Reply(text="Polyjuice boils at -100 degrees."))
        agent = Agent(name="chemist", instructions="Use the tools.", model=agents_model, tools=[HostedMCPTool(
            tool_config={"type": "mcp", "server_label": "chem", "server_url": server.url,
                         "require_approval": "never"})])
        if streamed:
            result = Runner.run_streamed(agent, "Boiling point of polyjuice?")
            [event async for event in result.stream_events()]
        else:
            result = await Runner.run(agent, "Boiling point of polyjuice?")
    assert result.final_output == "Polyjuice boils at -100 degrees."
    assert backend.requests[1]["messages"][-1]["content"] == "-100"


# -- LangChain -----------------------------------------------------------------------------


@pytest.fixture
def chat_model(parley_server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="m", base_url=parley_server.base_url, api_key="x", use_responses_api=True,
                      max_retries=0)


def test_langchain_plain_call(chat_model, backend) -> None:
    backend.push(Reply(text="Hello from LangChain."))
    message = chat_model.invoke("Say hello")
    assert message.text == "Hello from LangChain."


def test_langchain_tool_call_and_result(chat_model, backend) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"sunny in {city}"

    bound = chat_model.bind_tools([get_weather])
    backend.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Rome"})]), Reply(text="Rome is sunny."))
    first = bound.invoke([HumanMessage("Weather in Rome?")])
    assert first.tool_calls[0]["name"] == "get_weather" and first.tool_calls[0]["args"] == {"city": "Rome"}
    result = get_weather.invoke(first.tool_calls[0]["args"])
    final = bound.invoke([HumanMessage("Weather in Rome?"), first,
                          ToolMessage(result, tool_call_id=first.tool_calls[0]["id"])])
    assert final.text == "Rome is sunny."
    assert backend.requests[-1]["messages"][-1] == {"role": "tool", "tool_call_id": first.tool_calls[0]["id"],
                                                    "content": "sunny in Rome"}
    assert json.loads(backend.requests[-1]["messages"][-2]["tool_calls"][0]["function"]["arguments"]) == \
        {"city": "Rome"}


@pytest.mark.anyio
async def test_agents_sdk_shell_and_apply_patch_tools_run_a_full_turn(agents_model, backend, tmp_path) -> None:
    from agents import (Agent, ApplyPatchResult, ApplyPatchTool, Runner, ShellCallOutcome, ShellCommandOutput,
                        ShellResult, ShellTool)

    ran: list[list[str]] = []

    async def shell(request) -> ShellResult:  # the SDK's executor: runs nothing here, answers as a shell would
        commands = list(request.data.action.commands)
        ran.append(commands)
        return ShellResult(output=[ShellCommandOutput(stdout=f"ran {c}\n", stderr="", command=c,
                                                      outcome=ShellCallOutcome(type="exit", exit_code=0))
                                   for c in commands])

    class Editor:
        def __init__(self) -> None:
            self.files: dict[str, str] = {}

        def create_file(self, operation) -> ApplyPatchResult:
            self.files[operation.path] = operation.diff or ""
            return ApplyPatchResult(status="completed", output=f"created {operation.path}")

        def update_file(self, operation) -> ApplyPatchResult:
            return ApplyPatchResult(status="failed", output="not expected")

        def delete_file(self, operation) -> ApplyPatchResult:
            return ApplyPatchResult(status="failed", output="not expected")

    editor = Editor()
    backend.push(Reply(tool_calls=[ToolCall("shell", {"commands": ["ls"]})]),
                 Reply(tool_calls=[ToolCall("apply_patch", {"type": "create_file", "path": "notes.md",
                                                            "diff": "+# Notes"})]),
                 Reply(text="Listed and wrote notes.md."))
    agent = Agent(name="coder", instructions="Use the tools.", model=agents_model,
                  tools=[ShellTool(executor=shell, environment={"type": "local"}), ApplyPatchTool(editor=editor)])
    result = await Runner.run(agent, "List the files, then write notes.md.")
    assert result.final_output == "Listed and wrote notes.md."
    assert ran == [["ls"]] and editor.files == {"notes.md": "+# Notes"}
    tools_sent = {t["function"]["name"] for t in backend.requests[0]["tools"]}
    assert tools_sent == {"shell", "apply_patch"}
    answers = [m["content"] for m in backend.requests[-1]["messages"] if m["role"] == "tool"]
    assert answers[0].startswith("exit code 0\nstdout:\nran ls") and answers[1] == "completed: created notes.md"


@pytest.mark.anyio
async def test_agents_sdk_computer_tool_runs_a_turn_with_a_fake_computer(agents_model, backend) -> None:
    from agents import Agent, AsyncComputer, ComputerTool, Runner

    done: list[tuple] = []

    class FakeComputer(AsyncComputer):  # records the actions; its screen is one white pixel
        async def screenshot(self) -> str:
            done.append(("screenshot",))
            return "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

        async def click(self, x, y, button) -> None:
            done.append(("click", x, y, button))

        async def type(self, text) -> None:
            done.append(("type", text))

        async def double_click(self, x, y) -> None: ...
        async def scroll(self, x, y, scroll_x, scroll_y) -> None: ...
        async def wait(self) -> None: ...
        async def move(self, x, y) -> None: ...
        async def keypress(self, keys) -> None: ...
        async def drag(self, path) -> None: ...

    backend.push(Reply(tool_calls=[ToolCall("computer", {"actions": [
                     {"type": "click", "button": "left", "x": 5, "y": 6}, {"type": "type", "text": "hi"}]})]),
                 Reply(text="Clicked and typed."))
    agent = Agent(name="operator", instructions="Use the computer.", model=agents_model,
                  tools=[ComputerTool(computer=FakeComputer())])
    result = await Runner.run(agent, "Click the box and type hi.")
    assert result.final_output == "Clicked and typed."
    assert done[:2] == [("click", 5, 6, "left"), ("type", "hi")] and done[-1] == ("screenshot",)
    assert backend.requests[0]["tools"][0]["function"]["name"] == "computer"
    last = backend.requests[-1]["messages"][-1]
    assert last["role"] == "user" and last["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.anyio
async def test_agents_sdk_keeps_history_itself_and_sends_hosted_tool_items_back(agents_model, backend) -> None:
    from agents import Agent, HostedMCPTool, Runner

    with MCPTestServer("streamable-http") as server:
        backend.push(Reply(tool_calls=[ToolCall("get_boiling_point", {"liquid_name": "polyjuice"})]),
                     Reply(text="Polyjuice boils at -100 degrees."), Reply(text="That is -148 Fahrenheit."))
        agent = Agent(name="chemist", instructions="Use the tools.", model=agents_model, tools=[HostedMCPTool(
            tool_config={"type": "mcp", "server_label": "chem", "server_url": server.url})])
        first = await Runner.run(agent, "Boiling point of polyjuice?")
        history = first.to_input_list()  # the SDK's own history: the mcp_list_tools and mcp_call items included
        assert {"mcp_list_tools", "mcp_call"} <= {item.get("type") for item in history}
        second = await Runner.run(agent, [*history, {"role": "user", "content": "And in Fahrenheit?"}])
    assert second.final_output == "That is -148 Fahrenheit."
    messages = backend.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert messages[2]["tool_calls"][0]["function"]["name"] == "get_boiling_point" and messages[3]["content"] == "-100"


@pytest.mark.anyio
async def test_agents_sdk_file_search_tool_runs_a_turn_and_sends_its_item_back(agents_model, parley_server,
                                                                             backend) -> None:
    from agents import Agent, FileSearchTool, Runner

    with openai.OpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0) as client:
        store = client.vector_stores.create(name="handbook")
        done = client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=("leave.md", b"Employees get 27 days of paid leave each year."))
        assert done.status == "completed"
    backend.push(Reply(tool_calls=[ToolCall("file_search", {"queries": ["paid leave days"]})]),
                 Reply(text="You get 27 days [1]."), Reply(text="That is over five weeks."))
    agent = Agent(name="hr", instructions="Answer from the handbook.", model=agents_model,
                  tools=[FileSearchTool(vector_store_ids=[store.id], max_num_results=3, include_search_results=True)])
    first = await Runner.run(agent, "How much paid leave do I get?")
    assert first.final_output == "You get 27 days [1]."
    assert "27 days of paid leave" in backend.requests[-1]["messages"][-1]["content"]
    history = first.to_input_list()
    assert "file_search_call" in {item.get("type") for item in history}
    second = await Runner.run(agent, [*history, {"role": "user", "content": "In weeks?"}])
    assert second.final_output == "That is over five weeks."
    replayed = backend.requests[-1]["messages"]
    assert [m["role"] for m in replayed][-4:] == ["assistant", "tool", "assistant", "user"]
    assert "27 days of paid leave" in replayed[-3]["content"]


@pytest.mark.anyio
async def test_agents_sdk_conversations_session_keeps_a_conversation_across_runs(agents_model, parley_server,
                                                                               backend) -> None:
    from agents import Agent, Runner
    from agents.memory import OpenAIConversationsSession

    client = openai.AsyncOpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0)
    try:
        session = OpenAIConversationsSession(openai_client=client)
        agent = Agent(name="assistant", instructions="Be brief.", model=agents_model)
        backend.push(Reply(text="Nice to meet you, Ada."), Reply(text="Your name is Ada."))
        await Runner.run(agent, "My name is Ada.", session=session)
        second = await Runner.run(agent, "What is my name?", session=session)
        assert second.final_output == "Your name is Ada."
        sent = [(m["role"], m["content"]) for m in backend.requests[-1]["messages"]]
        assert sent[-3:] == [("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada."),
                             ("user", "What is my name?")]
        items = await session.get_items()
        assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
        conversation = await client.conversations.retrieve(await session._get_session_id())
        assert conversation.object == "conversation"
        popped = await session.pop_item()
        assert popped["role"] == "assistant" and len(await session.get_items()) == 3
        await session.clear_session()
        with pytest.raises(openai.NotFoundError):
            await client.conversations.retrieve(conversation.id)
    finally:
        await client.close()


@pytest.mark.anyio
async def test_agents_sdk_compaction_session_compacts_through_parley(agents_model, parley_server, backend,
                                                                     tmp_path) -> None:
    from agents import Agent, Runner, SQLiteSession
    from agents.memory import OpenAIResponsesCompactionSession

    client = openai.AsyncOpenAI(base_url=parley_server.base_url, api_key="x", max_retries=0)
    try:
        session = OpenAIResponsesCompactionSession(
            "ada", SQLiteSession("ada", str(tmp_path / "session.db")), client=client, model="gpt-4.1",
            should_trigger_compaction=lambda context: len(context["compaction_candidate_items"]) >= 2)
        agent = Agent(name="assistant", instructions="Be brief.", model=agents_model)
        backend.push("Nice to meet you, Ada.", "Paris is lovely.", "The user is Ada and lives in Paris.",
                     "You live in Paris.")
        await Runner.run(agent, "My name is Ada.", session=session)
        await Runner.run(agent, "I live in Paris.", session=session)  # two answers: the session compacts
        compact_request = backend.requests[2]
        assert compact_request["model"] == "gpt-4.1" and "I live in Paris." in compact_request["messages"][1]["content"]
        items = await session.get_items()
        assert [item.get("type", "message") for item in items] == ["message", "message", "compaction"]
        third = await Runner.run(agent, "Where do I live?", session=session)
        assert third.final_output == "You live in Paris."
        sent = [(m["role"], m["content"]) for m in backend.requests[-1]["messages"]]
        assert sent[-2][0] == "assistant" and sent[-2][1].endswith("The user is Ada and lives in Paris.")
        assert sent[-1] == ("user", "Where do I live?")
    finally:
        await client.close()


@pytest.mark.anyio
async def test_agents_sdk_code_interpreter_and_hosted_shell_tools_run_a_turn(agents_model, backend) -> None:
    from agents import Agent, CodeInterpreterTool, Runner, ShellTool

    backend.push(Reply(tool_calls=[ToolCall("code_interpreter", {"code": "answer = 6 * 7\nprint(answer)"})]),
                 Reply(tool_calls=[ToolCall("shell", {"commands": ["echo from the shell"]})]),
                 Reply(text="42, and the shell said hello."),
                 Reply(tool_calls=[ToolCall("code_interpreter", {"code": "print(answer + 1)"})]),
                 Reply(text="43."))
    agent = Agent(name="analyst", instructions="Compute with the tools.", model=agents_model, tools=[
        CodeInterpreterTool(tool_config={"type": "code_interpreter", "container": {"type": "auto"}}),
        ShellTool(environment={"type": "container_auto"})])
    first = await Runner.run(agent, "What is six times seven?")
    assert first.final_output == "42, and the shell said hello."
    tool_messages = [m["content"] for m in backend.requests[2]["messages"] if m["role"] == "tool"]
    assert tool_messages[0] == "42\n" and tool_messages[1].startswith("exit code 0\nstdout:\nfrom the shell\n")
    history = first.to_input_list()
    assert {"code_interpreter_call", "shell_call", "shell_call_output"} <= {item.get("type") for item in history}
    second = await Runner.run(agent, [*history, {"role": "user", "content": "And plus one?"}])
    assert second.final_output == "43."
    assert [m["content"] for m in backend.requests[-1]["messages"] if m["role"] == "tool"][-1] == "43\n", \
        "the replayed conversation kept its container and its variable"
