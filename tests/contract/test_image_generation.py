"""The image_generation tool through the ``openai`` SDK and the Agents SDK, over the scripted backend's images
API: generation, partial images when streamed, edits of the user's image or of one made before (chained or
replayed), failures as failed calls, and the 400s."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.images import picture_of, png
from parley.testing.strict import stream_raw
from parley.testing.strict import strict_client

BLUE = "data:image/png;base64," + base64.b64encode(png(2, 2, (0, 0, 255))).decode()


@pytest.fixture(scope="module")
def images_server(scripted_server, db_url, tmp_path_factory):
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url, "--images-upstream", scripted_server.url,
                       "--images-model", "scripted-image") as server:
        yield server


@pytest.fixture
def images(images_server, backend):
    with strict_client(images_server.base_url) as client:
        yield client


def test_an_image_is_generated_stored_and_its_call_chained(images, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "a red fox"})]), Reply(text="Your fox."))
    response = images.responses.create(model="m", input="Draw a red fox.", tools=[
        {"type": "image_generation", "quality": "low", "size": "1024x1024"}])
    call, message = response.output
    assert (call.type, call.status, call.action) == ("image_generation_call", "completed", "generate")
    assert call.result == picture_of("a red fox") and call.revised_prompt == "A picture of a red fox"
    assert (call.quality, call.size, call.output_format) == ("low", "1024x1024", "png")
    assert message.content[0].text == "Your fox."
    sent = backend.images.requests[-1]
    assert (sent["endpoint"], sent["prompt"], sent["model"], sent["quality"]) == \
        ("generations", "a red fox", "scripted-image", "low")
    tool_message = backend.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and call.result not in tool_message["content"]
    assert images.responses.retrieve(response.id).output[0].result == call.result


def test_partial_images_stream_as_their_events(images, backend, images_server) -> None:
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "a lighthouse"})]), Reply(text="Done."))
    events = stream_raw(images_server.base_url, {"model": "m", "input": "Draw a lighthouse.", "tools": [
        {"type": "image_generation", "partial_images": 2}], "tool_choice": {"type": "image_generation"}})
    final = check_stream(events)
    kinds = [e.type for e in events if e.type.startswith("response.image_generation_call.")]
    assert kinds == ["response.image_generation_call.in_progress", "response.image_generation_call.generating",
                     "response.image_generation_call.partial_image", "response.image_generation_call.partial_image",
                     "response.image_generation_call.completed"]
    partials = [e for e in events if e.type.endswith("partial_image")]
    assert [p.partial_image_index for p in partials] == [0, 1]
    assert partials[0].partial_image_b64 == picture_of("a lighthouse", 2)
    assert final.output[0].result == picture_of("a lighthouse")
    assert backend.images.requests[-1]["stream"] is True and backend.images.requests[-1]["partial_images"] == 2
    assert backend.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "image_generation"}}


def test_the_users_image_is_edited_with_the_mask(images, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "the square, green", "edit": True})]),
                 Reply(text="Edited."))
    response = images.responses.create(model="m", tools=[{"type": "image_generation", "input_fidelity": "high",
                                                          "input_image_mask": {"image_url": BLUE}}], input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Make it green."},
                                     {"type": "input_image", "image_url": BLUE}]}])
    assert response.output[0].action == "edit" and response.output[0].status == "completed"
    sent = backend.images.requests[-1]
    assert sent["endpoint"] == "edits" and sent["input_fidelity"] == "high"
    assert [i["b64"] for i in sent["images"]] == [BLUE.split(",", 1)[1]] and sent["images"][0]["type"] == "image/png"
    assert sent["mask"]["b64"] == BLUE.split(",", 1)[1]
    edit = backend.requests[0]["tools"][0]["function"]["parameters"]["properties"]["edit"]
    assert edit["type"] == "boolean"


def test_an_image_made_before_is_edited_chained_or_replayed(images, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "a cat"})]), Reply(text="A cat."))
    tools = [{"type": "image_generation"}]
    first = images.responses.create(model="m", input="Draw a cat.", tools=tools)
    for follow in ({"previous_response_id": first.id, "input": "Give it a hat."},
                   {"input": [{"role": "user", "content": "Draw a cat."},
                              *[item.model_dump(exclude_none=True) for item in first.output],
                              {"role": "user", "content": "Give it a hat."}]}):
        backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "the cat, in a hat", "edit": True})]),
                     Reply(text="A cat in a hat."))
        second = images.responses.create(model="m", tools=tools, **follow)
        assert second.output[0].action == "edit" and second.output[0].status == "completed"
        sent = backend.images.requests[-1]
        assert sent["endpoint"] == "edits" and sent["images"][0]["b64"] == first.output[0].result
        calls = [m for m in backend.requests[-2]["messages"] if m.get("tool_calls")]
        assert json.loads(calls[0]["tool_calls"][0]["function"]["arguments"])["prompt"] == "a cat"


def test_a_refused_or_impossible_image_fails_its_call_not_the_response(images, backend) -> None:
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "refuse this"})]), Reply(text="Sorry."))
    response = images.responses.create(model="m", input="x", tools=[{"type": "image_generation"}])
    assert response.status == "completed" and response.output[0].status == "failed"
    assert response.output[0].result is None and "safety system" in backend.requests[-1]["messages"][-1]["content"]
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "p", "edit": True})]), Reply(text="No."))
    response = images.responses.create(model="m", input="x", tools=[{"type": "image_generation", "action": "edit"}])
    assert response.output[0].status == "failed" and "no image" in backend.requests[-1]["messages"][-1]["content"]


def test_bad_image_generation_requests_are_400s(images, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:  # a server without --images-upstream
        client.responses.create(model="m", input="x", tools=[{"type": "image_generation"}])
    assert info.value.code == "image_generation_not_configured" and "--images-upstream" in info.value.message
    bad = [({"type": "image_generation", "partial_images": 4}, "tools[0].partial_images"),
           ({"type": "image_generation", "size": "huge"}, "tools[0].size"),
           ({"type": "image_generation", "input_image_mask": {}}, "tools[0].input_image_mask"),
           ({"type": "image_generation", "input_image_mask": {"file_id": "file_nope"}},
            "tools[0].input_image_mask.file_id")]
    for tool, param in bad:
        with pytest.raises(openai.BadRequestError) as info:
            images.responses.create(model="m", input="x", tools=[tool])
        assert info.value.body["param"] == param, (tool, info.value.body)


@pytest.mark.anyio
async def test_the_agents_sdk_image_generation_tool_runs_a_turn(images_server, backend) -> None:
    from agents import Agent, ImageGenerationTool, OpenAIResponsesModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    backend.push(Reply(tool_calls=[ToolCall("image_generation", {"prompt": "a sunrise"})]), Reply(text="Sunrise."))
    async with openai.AsyncOpenAI(base_url=images_server.base_url, api_key="x", max_retries=0) as client:
        agent = Agent(name="painter", instructions="Draw.", model=OpenAIResponsesModel(model="m", openai_client=client),
                      tools=[ImageGenerationTool(tool_config={"type": "image_generation", "quality": "low"})])
        result = await Runner.run(agent, "Draw a sunrise.")
    assert result.final_output == "Sunrise."
    calls = [item.raw_item for item in result.new_items if getattr(item.raw_item, "type", "") == "image_generation_call"]
    assert len(calls) == 1 and calls[0].result == picture_of("a sunrise")
