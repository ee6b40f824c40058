"""Conformance scenarios any Responses endpoint can be checked against.

Each scenario takes a :class:`Context` and returns normally (pass), raises
:class:`Skip` with a reason, or raises ``AssertionError`` (fail).  Every Response body and
SSE event the scenarios receive goes through :class:`parley.testing.strict.ValidatingTransport`,
so it is parsed strictly with the SDK's own types.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai

from parley.testing.grammar import check_stream
from parley.testing.mcp_server import MCPTestServer
from parley.testing.strict import stream_raw
from parley.verify.base import Context, Skip, expect as _expect

__all__ = ["SCENARIOS", "Context", "Skip"]
from parley.verify.socket_scenarios import steering, websocket

LLAMA_IMAGE = "https://upload.wikimedia.org/wikipedia/commons/f/f7/Llamas%2C_Vernagt-Stausee%2C_Italy.jpg"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Get current temperature for a location.",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"], "additionalProperties": False}, "strict": True}



def basic(ctx: Context) -> None:
    response = ctx.client.responses.create(model=ctx.model, input="Which planet do humans live on?")
    _expect("earth" in response.output_text.lower(), f"no 'earth' in {response.output_text!r}")
    retrieved = ctx.client.responses.retrieve(response.id)
    _expect(retrieved.output_text == response.output_text, "the retrieved text differs from the created one")
    following = ctx.client.responses.create(model=ctx.model, input="Repeat your previous response in all caps.",
                                            previous_response_id=response.id)
    _expect("EARTH" in following.output_text, f"the chained turn did not see the history: {following.output_text!r}")


def streaming(ctx: Context) -> None:
    events = list(ctx.client.responses.create(model=ctx.model, input="Which planet do humans live on?",
                                              stream=True))
    _expect(events[0].type == "response.created", "the first event is not response.created")
    _expect(events[0].response.status == "in_progress", "response.created is not in_progress")
    _expect(events[-1].type == "response.completed", f"the last event is {events[-1].type}")
    _expect(events[-1].response.id == events[0].response.id, "the response id changed during the stream")
    _expect("earth" in events[-1].response.output_text.lower(), "no 'earth' in the streamed answer")
    retrieved = ctx.client.responses.retrieve(events[0].response.id)
    _expect(retrieved.output_text == events[-1].response.output_text, "the retrieved text differs from the stream")


def incremental(ctx: Context) -> None:
    events = list(ctx.client.responses.create(model=ctx.model, input="Which planet do humans live on?",
                                              stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    _expect(len([d for d in deltas if d]) > 0, "no non-empty output_text.delta events")
    _expect(events[0].response.output_text == "", "response.created already carries text")
    final = events[-1].response.output_text
    _expect("".join(deltas).strip() == final.strip(), "the deltas do not add up to the final text")


def multi_turn(ctx: Context) -> None:
    previous = None
    for question in ("Which planet do humans live on?", "What is the name of the planet from your previous response?"):
        response = ctx.client.responses.create(model=ctx.model, input=question, previous_response_id=previous)
        _expect("earth" in response.output_text.lower(), f"no 'earth' in {response.output_text!r}")
        previous = response.id


def function_tool(ctx: Context) -> None:
    response = ctx.client.responses.create(model=ctx.model, input="What's the weather like in San Francisco?",
                                           tools=[WEATHER_TOOL])
    _expect(len(response.output) >= 1, "no output")
    calls = [item for item in response.output if item.type == "function_call"]
    _expect(len(calls) == 1 and calls[0].name == "get_weather", f"expected one get_weather call: {response.output}")
    _expect(calls[0].status == "completed", "the function_call is not completed")
    json.loads(calls[0].arguments)
    follow = ctx.client.responses.create(
        model=ctx.model, previous_response_id=response.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}])
    _expect(follow.status == "completed" and follow.output_text, "no answer after the function_call_output")


def _image_turn(ctx: Context, question: str, previous: str | None = None, image: bool = True) -> openai.types.responses.Response:
    content: list[dict[str, str]] = [{"type": "input_text", "text": question}]
    if image:
        content.append({"type": "input_image", "image_url": LLAMA_IMAGE})
    return ctx.client.responses.create(model=ctx.model, input=[{"role": "user", "content": content}],
                                       previous_response_id=previous)


def image(ctx: Context) -> None:
    response = _image_turn(ctx, "Identify the type of animal in this image. Answer in one word.")
    _expect("llama" in response.output_text.lower(), f"no 'llama' in {response.output_text!r}")


def multi_turn_image(ctx: Context) -> None:
    first = _image_turn(ctx, "What type of animal is in this image? Answer in one word.")
    _expect("llama" in first.output_text.lower(), f"no 'llama' in {first.output_text!r}")
    second = _image_turn(ctx, "What country do you find this animal primarily in?", first.id, image=False)
    _expect("peru" in second.output_text.lower(), f"no 'peru' in {second.output_text!r}")


def web_search(ctx: Context) -> None:
    if not ctx.search_available:
        raise Skip("the endpoint has no web search provider reachable for this run")
    response = ctx.client.responses.create(model=ctx.model, tools=[{"type": "web_search"}],
                                           input="How many experts does the Llama 4 Maverick model have?")
    _expect(len(response.output) > 1, "expected a web_search_call and a message")
    _expect(response.output[0].type == "web_search_call" and response.output[0].status == "completed",
            f"the first item is {response.output[0].type}")
    message = response.output[1]
    _expect(message.type == "message" and message.status == "completed" and message.role == "assistant",
            "the second item is not a completed assistant message")
    _expect("128" in response.output_text, f"no '128' in {response.output_text!r}")
    follow = ctx.client.responses.create(model=ctx.model, input="Repeat your previous response in all caps.",
                                         previous_response_id=response.id)
    _expect("128" in follow.output_text, "the turn after web search lost the answer")


def mcp(ctx: Context) -> None:
    if not ctx.loopback:
        raise Skip("the endpoint is not on this machine, so it cannot reach the loopback MCP server")
    question = "What is the boiling point of polyjuice?"
    with MCPTestServer("sse") as server:
        tools = [{"type": "mcp", "server_label": "localmcp", "server_url": server.url, "require_approval": "never"}]
        response = ctx.client.responses.create(model=ctx.model, input=question, tools=tools)
        _expect(len(response.output) >= 3, f"expected list, call, message: {[i.type for i in response.output]}")
        listing, call, message = response.output[:3]
        _expect(listing.type == "mcp_list_tools" and listing.server_label == "localmcp", "no mcp_list_tools first")
        names = {t["name"] if isinstance(t, dict) else t.name for t in listing.tools}
        _expect(names == {"get_boiling_point", "greet_everyone"}, f"listed {names}")
        _expect(call.type == "mcp_call" and call.name == "get_boiling_point", "no get_boiling_point mcp_call")
        _expect(json.loads(call.arguments) == {"liquid_name": "polyjuice", "celcius": True}, "wrong arguments")
        _expect(call.error is None and "-100" in (call.output or ""), f"call output {call.output!r}")
        _expect("boiling point" in message.content[0].text.lower(), "the answer does not mention the boiling point")
        follow = ctx.client.responses.create(model=ctx.model, input="Repeat your previous response in all caps.",
                                             previous_response_id=response.id, tools=tools)
        _expect("-100" in follow.output_text, "the turn after the MCP call lost its result")
    with MCPTestServer("sse", auth_token="test-token") as server:
        tools = [{"type": "mcp", "server_label": "localmcp", "server_url": server.url, "require_approval": "never"}]
        try:
            ctx.client.responses.create(model=ctx.model, input=question, tools=tools)
            raise AssertionError("an MCP server answering 401 did not make the request fail with 401")
        except openai.AuthenticationError:
            pass
        tools[0]["headers"] = {"Authorization": "Bearer test-token"}
        response = ctx.client.responses.create(model=ctx.model, input=question, tools=tools)
        _expect(len(response.output) >= 3, "the authorised MCP request did not call the tool")


def stream_grammar(ctx: Context) -> None:
    events = stream_raw(ctx.base_url, {"model": ctx.model, "input": "Which planet do humans live on?"}, ctx.headers)
    final = check_stream(events)
    retrieved = httpx.get(f"{ctx.base_url}/responses/{final.id}", headers=ctx.headers, timeout=60).json()
    _expect(retrieved["output"] == json.loads(final.model_dump_json())["output"],
            "the retrieved output differs from the streamed one")


def retrieve_delete_input_items(ctx: Context) -> None:
    response = ctx.client.responses.create(model=ctx.model, input=[
        {"role": "user", "content": "Which planet do humans live on?"},
        {"role": "user", "content": "Answer in one word."}])
    items = list(ctx.client.responses.input_items.list(response.id, order="asc"))
    _expect([i.type for i in items] == ["message", "message"], f"input_items: {[i.type for i in items]}")
    _expect(items[0].content[0].text == "Which planet do humans live on?", "input_items lost the text")
    first_page = ctx.client.responses.input_items.list(response.id, order="asc", limit=1)
    _expect(len(first_page.data) == 1 and first_page.has_more, "limit=1 did not page")
    ctx.client.responses.delete(response.id)
    try:
        ctx.client.responses.retrieve(response.id)
        raise AssertionError("a deleted response is still retrievable")
    except openai.NotFoundError:
        pass


def _error_body(response: httpx.Response, status: int) -> dict[str, object]:
    _expect(response.status_code == status, f"expected HTTP {status}, got {response.status_code}")
    error = response.json().get("error")
    _expect(isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error),
            f"not OpenAI's error shape: {response.text[:200]}")
    return error  # type: ignore[return-value]


def error_unknown_id(ctx: Context) -> None:
    _error_body(httpx.get(f"{ctx.base_url}/responses/resp_doesnotexist", headers=ctx.headers, timeout=30), 404)


def error_bad_parameter(ctx: Context) -> None:
    response = httpx.post(f"{ctx.base_url}/responses", headers=ctx.headers, timeout=30,
                          json={"model": ctx.model, "input": "hi", "temperature": "hot"})
    error = _error_body(response, 400)
    _expect(error["param"] == "temperature", f"param is {error['param']!r}, not 'temperature'")


def error_unknown_previous_response(ctx: Context) -> None:
    response = httpx.post(f"{ctx.base_url}/responses", headers=ctx.headers, timeout=30,
                          json={"model": ctx.model, "input": "hi", "previous_response_id": "resp_doesnotexist"})
    error = _error_body(response, 400)
    _expect(error["code"] == "previous_response_not_found", f"code is {error['code']!r}")
    _expect(error["param"] == "previous_response_id", f"param is {error['param']!r}")


def replay(ctx: Context) -> None:
    """The output sent back as input without previous_response_id, then an item_reference to a stored item."""
    question = {"role": "user", "content": "What's the weather like in San Francisco?"}
    first = ctx.client.responses.create(model=ctx.model, input=[question], tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    _expect(len(calls) == 1, f"expected one function_call: {first.output}")
    replayed = [item.model_dump(exclude_none=True) for item in first.output]
    second = ctx.client.responses.create(model=ctx.model, tools=[WEATHER_TOOL], input=[
        question, *replayed, {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C and sunny"}])
    _expect(second.status == "completed" and second.output_text, "no answer after replaying the output as input")
    answer = next(item for item in second.output if item.type == "message")
    third = ctx.client.responses.create(model=ctx.model, input=[
        {"type": "item_reference", "id": answer.id}, {"role": "user", "content": "Repeat that in all caps."}])
    _expect(third.status == "completed" and third.output_text, "no answer after an item_reference")


def logprobs(ctx: Context) -> None:
    response = ctx.client.responses.create(model=ctx.model, input="Which planet do humans live on?", top_logprobs=2,
                                           include=["message.output_text.logprobs"])
    part = next(item for item in response.output if item.type == "message").content[0]
    _expect(bool(part.logprobs), "no logprobs on the output_text part")
    _expect(all(len(lp.top_logprobs) <= 2 for lp in part.logprobs), "more top_logprobs than asked for")
    events = stream_raw(ctx.base_url, {"model": ctx.model, "input": "Which planet do humans live on?",
                                       "include": ["message.output_text.logprobs"]}, ctx.headers)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    _expect(any(e.logprobs for e in deltas), "no logprobs on the output_text.delta events")


def shell_apply_patch(ctx: Context) -> None:
    tools = [{"type": "shell", "environment": {"type": "local"}}, {"type": "apply_patch"}]
    response = ctx.client.responses.create(model=ctx.model, input="List the files here.", tools=tools,
                                           tool_choice={"type": "shell"})
    shells = [item for item in response.output if item.type == "shell_call"]
    _expect(len(shells) >= 1 and shells[0].action.commands, f"expected a shell_call with commands: {response.output}")
    follow = ctx.client.responses.create(model=ctx.model, previous_response_id=response.id, tools=tools, input=[
        {"type": "shell_call_output", "call_id": shells[0].call_id, "output": [
            {"stdout": "README.md\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]}])
    _expect(follow.status == "completed", "no answer after the shell_call_output")
    patch = ctx.client.responses.create(model=ctx.model, input="Create hello.txt saying Hello.", tools=tools,
                                        tool_choice={"type": "apply_patch"})
    patches = [item for item in patch.output if item.type == "apply_patch_call"]
    _expect(len(patches) >= 1 and patches[0].operation.path, f"expected an apply_patch_call: {patch.output}")


def input_file(ctx: Context) -> None:
    import base64

    data = base64.b64encode(b"The secret word is llama.").decode()
    response = ctx.client.responses.create(model=ctx.model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is the secret word in the file?"},
        {"type": "input_file", "filename": "note.txt", "file_data": f"data:text/plain;base64,{data}"}]}])
    _expect("llama" in response.output_text.lower(), f"no 'llama' in {response.output_text!r}")


def code_interpreter(ctx: Context) -> None:
    """Python run server-side in a container: the call, its logs, the answer from them, and a chained turn."""
    tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]
    try:
        response = ctx.client.responses.create(
            model=ctx.model, input="Use Python to add up the whole numbers below one million.", tools=tools,
            tool_choice={"type": "code_interpreter"}, include=["code_interpreter_call.outputs"])
    except openai.BadRequestError as exc:
        if (exc.body or {}).get("code") == "sandbox_unavailable":
            raise Skip(f"the endpoint runs no code: {(exc.body or {}).get('message')}") from None
        raise
    calls = [item for item in response.output if item.type == "code_interpreter_call"]
    _expect(len(calls) >= 1 and calls[0].status == "completed", f"expected a completed call: {response.output}")
    _expect(bool(calls[0].container_id) and bool(calls[0].code), "the call has no container or code")
    logs = "".join(o.logs for c in calls for o in c.outputs or [] if o.type == "logs")
    _expect("499999500000" in logs, f"the call's logs do not hold the sum: {logs[:200]!r}")
    _expect("499999500000" in response.output_text.replace(",", ""), f"the answer: {response.output_text!r}")
    container = ctx.client.containers.retrieve(calls[0].container_id)
    _expect(container.status == "running", f"the call's container is {container.status}")
    follow = ctx.client.responses.create(model=ctx.model, input="Repeat your previous response in all caps.",
                                         previous_response_id=response.id, tools=tools)
    _expect("499999500000" in follow.output_text.replace(",", ""), "the chained turn lost the result")


def computer_use(ctx: Context) -> None:
    """A client-run computer call (the GA ``computer`` tool), answered with a screenshot, then the answer."""
    tools = [{"type": "computer"}]
    response = ctx.client.responses.create(model=ctx.model, input="Click the search box and type llamas.",
                                           tools=tools, tool_choice={"type": "computer"})
    calls = [item for item in response.output if item.type == "computer_call"]
    _expect(len(calls) == 1 and calls[0].status == "completed", f"expected one computer_call: {response.output}")
    _expect(bool(calls[0].actions or calls[0].action), "the computer_call has no action")
    _expect(calls[0].pending_safety_checks == [], f"unexpected safety checks: {calls[0].pending_safety_checks}")
    screenshot = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
                  "hKmMIQAAAABJRU5ErkJggg==")
    follow = ctx.client.responses.create(model=ctx.model, previous_response_id=response.id, tools=tools, input=[
        {"type": "computer_call_output", "call_id": calls[0].call_id,
         "output": {"type": "computer_screenshot", "image_url": screenshot}}])
    _expect(follow.status == "completed" and any(item.type in ("message", "computer_call") for item in follow.output),
            f"no answer after the screenshot: {follow.output}")


def image_generation(ctx: Context) -> None:
    """An image made server-side (streamed, with a partial image), then edited in a chained turn."""
    import base64

    tools = [{"type": "image_generation", "partial_images": 1}]
    try:
        with ctx.client.responses.stream(model=ctx.model, input="Draw a llama on a hill.", tools=tools,
                                         tool_choice={"type": "image_generation"}) as stream:
            events = list(stream)
            response = stream.get_final_response()
    except openai.BadRequestError as exc:
        if (exc.body or {}).get("code") == "image_generation_not_configured":
            raise Skip(f"the endpoint makes no images: {(exc.body or {}).get('message')}") from None
        raise
    calls = [item for item in response.output if item.type == "image_generation_call"]
    _expect(len(calls) == 1 and calls[0].status == "completed" and bool(calls[0].result),
            f"expected one completed image_generation_call: {response.output}")
    _expect(base64.b64decode(calls[0].result).startswith((b"\x89PNG", b"RIFF", b"\xff\xd8\xff", b"GIF8", b"<svg")),
            "the result is not a PNG, WebP, JPEG, GIF or SVG image")
    kinds = [e.type for e in events]
    _expect("response.image_generation_call.partial_image" in kinds, "no partial_image event was streamed")
    follow = ctx.client.responses.create(model=ctx.model, previous_response_id=response.id, tools=tools,
                                         input="Now draw the same llama at night.")
    _expect(follow.status == "completed", f"the chained turn is {follow.status}")


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "basic": basic,
    "streaming": streaming,
    "incremental": incremental,
    "multi_turn": multi_turn,
    "function_tool": function_tool,
    "image": image,
    "multi_turn_image": multi_turn_image,
    "web_search": web_search,
    "mcp": mcp,
    "stream_grammar": stream_grammar,
    "retrieve_delete_input_items": retrieve_delete_input_items,
    "error_unknown_id": error_unknown_id,
    "error_bad_parameter": error_bad_parameter,
    "error_unknown_previous_response": error_unknown_previous_response,
    "replay": replay,
    "logprobs": logprobs,
    "shell_apply_patch": shell_apply_patch,
    "input_file": input_file,
    "code_interpreter": code_interpreter,
    "computer_use": computer_use,
    "image_generation": image_generation,
    "websocket": websocket,
    "steering": steering,
}
