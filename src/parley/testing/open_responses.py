"""The Open Responses compliance checks, run from Python against any Responses endpoint.

The public suite (openresponses/openresponses, ``bin/compliance-test.ts``) runs on Bun and fetches its schemas
from GitHub; this module makes the same eleven requests with the same pass conditions, so the checks run
where only the package registries can be reached: each body is validated by the Open Responses required
fields and the ``openai`` SDK's types (:mod:`parley.testing.strict`), plus the points where the suite's schema
is stricter than the SDK's (below), then checked for what the test asks (output present, status
``completed``, the item type it names, the streamed function call's events).  ``file-search`` and
``offline-web-search`` are the suite's optional tests: they run when given a vector store id and
``offline_web_search=True``.

:func:`scripted_reply` is a stand-in model for the scripted backend that answers the suite's prompts.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from parley.testing.scripted import Reply, ToolCall, last_user_text
from parley.testing.strict import parse_sse, validate_response

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Get the current weather for a location",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}}
# a 1x1 PNG (the suite sends a small icon as a data URL)
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAA"
       "BJRU5ErkJggg==")


def small_pdf(title: str) -> str:
    """A one-page PDF without a cross-reference table (as the suite's fixture is), as a data URL."""
    import base64

    stream = f"BT /F1 12 Tf 72 72 Td ({title}) Tj ET".encode()
    body = (b"%%PDF-1.1\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] "
            b"/Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n4 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\n"
            b"endobj\n5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\ntrailer\n"
            b"<< /Root 1 0 R >>\n%%%%EOF" % (len(stream), stream))
    return "data:application/pdf;base64," + base64.b64encode(body).decode()


def _user(content: Any) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": content}


@dataclass
class Case:
    id: str
    steps: list[Callable[[Any], dict[str, Any]]]  # each request to send, given the answer to the one before
    expect_type: str | None = None
    streaming: bool = False
    completed: bool = True
    optional: str | None = None  # the option that enables an optional test


def _then(body: dict[str, Any]) -> list[Callable[[Any], dict[str, Any]]]:
    """One request."""
    return [lambda _: body]


def _round_trip(previous: dict[str, Any]) -> dict[str, Any]:
    call = next(item for item in previous["output"] if item["type"] == "function_call")
    return {"model": previous["model"], "tools": [WEATHER_TOOL], "input": [
        _user("Use the weather tool to get the temperature in San Francisco."), call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": json.dumps({"temperature_f": 64})}]}


def cases(model: str, vector_store_id: str | None) -> list[Case]:
    weather = {"model": model, "input": [_user("What's the weather like in San Francisco?")], "tools": [WEATHER_TOOL]}
    return [
        Case("basic-response", _then({"model": model, "input": [_user("Say hello in exactly 3 words.")]})),
        Case("streaming-response", _then({"model": model, "input": [_user("Count from 1 to 5.")]}), streaming=True),
        Case("system-prompt", _then({"model": model, "input": [
            {"type": "message", "role": "system", "content": "You are a pirate. Always respond in pirate speak."},
            _user("Say hello.")]})),
        Case("tool-calling", _then(weather), expect_type="function_call", completed=False),
        Case("tool-calling-streaming", _then(weather), expect_type="function_call", completed=False, streaming=True),
        Case("function-call-roundtrip", _then(
            {"model": model, "input": "Use the weather tool to get the temperature in San Francisco.",
             "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}}) + [_round_trip]),
        Case("image-input", _then({"model": model, "input": [_user([
            {"type": "input_text", "text": "What do you see in this image? Answer in one sentence."},
            {"type": "input_image", "image_url": PNG}])]})),
        Case("file-input", _then({"model": model, "input": [_user([
            {"type": "input_text", "text": "Read the attached file and answer with its title only."},
            {"type": "input_file", "filename": "fixture.pdf", "file_data": small_pdf("Title: Compliance Fixture")}])]})),
        Case("multi-turn", _then({"model": model, "input": [
            _user("My name is Alice."),
            {"type": "message", "role": "assistant", "content": "Hello Alice! How can I help you today?"},
            _user("What is my name?")]})),
        Case("previous-response-id", _then(
            {"model": model, "input": "Remember this code word: papaya. Reply with only OK."}) + [
            lambda previous: {"model": model, "previous_response_id": previous["id"],
                              "input": "What code word did I ask you to remember?"}]),
        Case("file-search", _then({
            "model": model, "input": "Search the configured vector store for relevant content and summarize one result.",
            "tools": [{"type": "file_search", "vector_store_ids": [vector_store_id or ""]}],
            "tool_choice": {"type": "file_search"}, "include": ["file_search_call.results"]}),
            expect_type="file_search_call", completed=False, optional="vector_store_id"),
        Case("offline-web-search", _then({
            "model": model, "input": "Find the most relevant cached result for OpenResponses.",
            "tools": [{"type": "web_search", "external_web_access": False}], "tool_choice": {"type": "web_search"},
            "include": ["web_search_call.action.sources"]}),
            expect_type="web_search_call", completed=False, optional="offline_web_search"),
    ]


def stricter_than_the_sdk(body: dict[str, Any]) -> list[str]:
    """Where the suite's schema asks more than the SDK's types: keys it lets be absent but never null, the
    results' vector store, and an echoed file_search tool's values in force."""
    errors = []
    for n, item in enumerate(body["output"]):
        if item["type"] == "web_search_call":
            action = item.get("action") or {}
            errors += [f"output.{n}.action.{key}: null" for key in ("queries", "sources")
                       if key in action and action[key] is None]
        if item["type"] == "file_search_call":
            errors += [f"output.{n}.results.{r}.vector_store_id: missing"
                       for r, result in enumerate(item.get("results") or []) if "vector_store_id" not in result]
    for n, tool in enumerate(body["tools"]):
        if tool["type"] == "file_search":
            errors += [f"tools.{n}.{key}: null" for key in ("max_num_results", "ranking_options")
                       if tool.get(key) is None]
    return errors


@dataclass
class Outcome:
    id: str
    status: str  # passed, failed, skipped
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _send(client: httpx.Client, body: dict[str, Any], streaming: bool) -> tuple[dict[str, Any], list[Any]]:
    """The final Response as it came over the wire (a dict: the schema checks tell an absent key from a null one,
    which the SDK's models do not) and, streamed, its events (validated strictly)."""
    if not streaming:
        answer = client.post("/responses", json=body)
        if answer.status_code != 200:
            raise AssertionError(f"HTTP {answer.status_code}: {answer.text}")
        final = answer.json()
        validate_response(final)
        return final, []
    with client.stream("POST", "/responses", json={**body, "stream": True}) as answer:
        text = answer.read().decode()
        if answer.status_code != 200:
            raise AssertionError(f"HTTP {answer.status_code}: {text}")
    events = parse_sse(text)
    if not events:
        raise AssertionError("No streaming events received")
    last = json.loads(text.rstrip().rsplit("\ndata: ", 1)[-1])
    if not isinstance(last.get("response"), dict):
        raise AssertionError("the stream did not end with a response")
    return last["response"], events


def _check(case: Case, body: dict[str, Any], events: list[Any]) -> list[str]:
    errors = stricter_than_the_sdk(body)
    if not body["output"]:
        errors.append("Response has no output items")
    if case.completed and body["status"] != "completed":
        errors.append(f"Expected status completed but got {body['status']}")
    if case.expect_type and not any(item["type"] == case.expect_type for item in body["output"]):
        errors.append(f"Expected output item of type {case.expect_type} but none found")
    if case.streaming and case.expect_type == "function_call":
        kinds = [(e.type, getattr(getattr(e, "item", None), "type", None)) for e in events]
        for needed in [("response.output_item.added", "function_call"), ("response.function_call_arguments.delta",
                       None), ("response.function_call_arguments.done", None),
                       ("response.output_item.done", "function_call")]:
            if needed not in kinds:
                errors.append(f"Missing {needed[0]} event" + (f" with {needed[1]} item" if needed[1] else ""))
    return errors


def run_suite(base_url: str, *, api_key: str = "none", model: str = "any", vector_store_id: str | None = None,
              offline_web_search: bool = False, timeout: float = 120.0) -> list[Outcome]:
    """Each test against ``base_url`` (up to ``/v1``), in order."""
    options = {"vector_store_id": vector_store_id, "offline_web_search": offline_web_search}
    outcomes = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout) as client:
        for case in cases(model, vector_store_id):
            if case.optional and not options[case.optional]:
                outcomes.append(Outcome(case.id, "skipped", [f"needs {case.optional}"]))
                continue
            started, body, events = time.monotonic(), None, []
            try:
                for step in case.steps:
                    body, events = _send(client, step(body), case.streaming)
                assert body is not None
                errors = _check(case, body, events)
            except AssertionError as exc:
                errors = [str(exc)[:2000]]
            outcomes.append(Outcome(case.id, "failed" if errors else "passed", errors, time.monotonic() - started))
    return outcomes


def scripted_reply(request: dict[str, Any]) -> Reply:
    """The scripted backend's answers to the suite's prompts: the tool a request forces or asks for, then an
    answer from its result."""
    messages = request["messages"]
    if messages[-1]["role"] == "tool":
        return Reply(text="From the tool: " + (messages[-1]["content"] or "").splitlines()[0][:200])
    forced = (request.get("tool_choice") or {}) if isinstance(request.get("tool_choice"), dict) else {}
    name = (forced.get("function") or {}).get("name")
    question = last_user_text(request)
    offered = {tool["function"]["name"] for tool in request.get("tools") or []}
    if name is None and "weather" in question.lower() and "get_weather" in offered:
        name = "get_weather"
    arguments = {"get_weather": {"location": "San Francisco, CA"}, "file_search": {"queries": [question]},
                 "web_search": {"query": "OpenResponses"}}
    if name in arguments:
        return Reply(tool_calls=[ToolCall(name, arguments[name])])
    history = " ".join(str(m.get("content")) for m in messages)
    if "code word did I ask" in question:
        return Reply(text="papaya" if "papaya" in history else "I do not know.")
    if "my name" in question.lower():
        return Reply(text="Your name is Alice." if "Alice" in history else "I do not know.")
    return Reply(text=f"Ahoy! You said: {question[:200]}", chunk_size=4)


@contextlib.contextmanager
def scripted_stack(db_url: str, *extra: str) -> Iterator[tuple[str, str]]:
    """``parley serve`` over the scripted backend (:func:`scripted_reply`) and the loopback search service, with
    a vector store holding one file and the web search cache holding what one live search found: the base URL
    and the vector store's id."""
    from parley.testing.scripted import ScriptedBackend
    from parley.testing.search_server import Document, SearchTestServer
    from parley.testing.server import ParleyProcess

    corpus = [Document("OpenResponses", "https://www.openresponses.example/",
                       "OpenResponses is an open specification of the Responses API with a compliance suite.")]
    with ScriptedBackend(scripted_reply) as backend, SearchTestServer(corpus) as search, ParleyProcess(
            "--upstream", backend.url, "--db", db_url, "--web-search", f"searxng:{search.url}", *extra) as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            file_id = client.post("/files", data={"purpose": "assistants"}, files={
                "file": ("handbook.md", b"# Handbook\n\nThe office opens at nine and closes at five.")}).json()["id"]
            store = client.post("/vector_stores", json={"name": "suite", "file_ids": [file_id]}).json()
            while store["file_counts"]["in_progress"]:
                time.sleep(0.05)  # (polling the ingestion job's progress)
                store = client.get(f"/vector_stores/{store['id']}").json()
            assert store["file_counts"]["completed"] == 1, store
            live = client.post("/responses", json={"model": "m", "input": "Look up OpenResponses on the web.",
                                                   "tools": [{"type": "web_search"}],
                                                   "tool_choice": {"type": "web_search"}})
            assert live.status_code == 200 and live.json()["output"][0]["status"] == "completed", live.text
        yield server.base_url, store["id"]
