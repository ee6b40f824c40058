"""Containers, the code_interpreter tool and the hosted shell through a real ``parley serve`` with the bwrap
sandbox: the Containers API round trip, Python run server-side in a container's persistent process (values
kept between calls), figures as image outputs, files the code writes cited and downloadable, shell commands
run in a container; streamed and not, stored, retrieved, chained and replayed; on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import re

import httpx
import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.grammar import check_stream
from parley.testing.strict import strict_client

CODE = re.compile(r"```python\n(.*?)```", re.S)
SHELL = re.compile(r"```sh\n(.*?)```", re.S)


def coding_model(request: dict) -> Reply:
    """Runs the code block of the user's message; then answers with the first line of the output it got back
    (and a link to the first file the code wrote)."""
    last = request["messages"][-1]
    if last["role"] == "tool":
        output = last["content"]
        files = re.findall(r"/mnt/data/[^\s,]+", output)
        link = f" Download it: [data](sandbox:{files[0]})." if files else ""
        return Reply(text=f"Result: {output.splitlines()[0]}.{link}", chunk_size=5)
    text = last["content"] if isinstance(last["content"], str) else " ".join(
        p.get("text", "") for p in last["content"])
    block, commands = CODE.search(text), SHELL.search(text)
    if commands:
        timeout = re.search(r"within (\d+) ms", text)
        return Reply(tool_calls=[ToolCall("shell", {"commands": commands.group(1).splitlines(), **(
            {"timeout_ms": int(timeout.group(1))} if timeout else {})})])
    return Reply(tool_calls=[ToolCall("code_interpreter", {"code": block.group(1)})]) if block else \
        Reply(text="Nothing to run.")


@pytest.fixture(scope="module")
def ci_backend():
    with ScriptedBackend(coding_model) as backend:
        yield backend


@pytest.fixture(scope="module")
def ci_server(ci_backend, db_url, tmp_path_factory):
    with ParleyProcess("--upstream", ci_backend.url, "--db", db_url, "--sandbox", "bwrap",
                       "--containers-dir", str(tmp_path_factory.mktemp("containers"))) as server:
        yield server


@pytest.fixture(scope="module")
def ci(ci_server):
    with strict_client(ci_server.base_url) as official:
        yield official


def ask(code: str) -> str:
    return f"Run this:\n```python\n{code}\n```"


def test_containers_and_their_files_round_trip(ci) -> None:
    container = ci.containers.create(name="work", expires_after={"anchor": "last_active_at", "minutes": 30},
                                     memory_limit="1g")
    assert container.id.startswith("cntr_") and container.status == "running" and container.name == "work"
    assert container.expires_after.minutes == 30 and container.memory_limit == "1g"
    assert ci.containers.retrieve(container.id).id == container.id
    assert container.id in [c.id for c in ci.containers.list(name="work").data]
    uploaded = ci.containers.files.create(container.id, file=("notes.txt", b"hello from the user\n"))
    assert uploaded.path == "/mnt/data/notes.txt" and uploaded.bytes == 20 and uploaded.source == "user"
    stored = ci.files.create(file=("table.csv", b"a,b\n1,2\n"), purpose="user_data")
    copied = ci.containers.files.create(container.id, file_id=stored.id)
    assert copied.path == "/mnt/data/table.csv" and copied.bytes == 8
    assert {f.id for f in ci.containers.files.list(container.id).data} == {uploaded.id, copied.id}
    assert ci.containers.files.retrieve(uploaded.id, container_id=container.id).path == "/mnt/data/notes.txt"
    assert ci.containers.files.content.retrieve(copied.id, container_id=container.id).read() == b"a,b\n1,2\n"
    assert stored.id in [f.id for f in ci.files.list().data]
    assert all(f.purpose != "container" for f in ci.files.list().data), "a container file's bytes are not a file"
    ci.containers.files.delete(uploaded.id, container_id=container.id)
    assert [f.id for f in ci.containers.files.list(container.id).data] == [copied.id]
    ci.containers.delete(container.id)
    with pytest.raises(openai.NotFoundError):
        ci.containers.retrieve(container.id)
    with pytest.raises(openai.NotFoundError):
        ci.containers.files.list("cntr_nope")


def test_bad_container_requests_are_400s_that_name_the_field(ci) -> None:
    for body, param in (({"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["a.com"]}},
                         "network_policy"),
                        ({"name": "x", "memory_limit": "2g"}, "memory_limit"),
                        ({"name": "x", "memory_limit": "64g"}, "memory_limit"),
                        ({"name": "x", "expires_after": {"anchor": "created_at", "minutes": 5}}, "expires_after.anchor"),
                        ({"name": "x", "file_ids": ["file_missing"]}, "file_ids[0]"),
                        ({"name": "x", "skills": [{"type": "skill_reference", "skill_id": "s"}]}, "skills[0].skill_id")):
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as info:
            ci.post("/containers", body=body, cast_to=httpx.Response)
        assert info.value.body["param"] == param, body
    with pytest.raises(openai.BadRequestError) as info:
        ci.responses.create(model="m", input="x", tools=[{"type": "code_interpreter", "container": {
            "type": "auto", "network_policy": {"type": "allowlist", "allowed_domains": ["a.com"]}}}])
    assert info.value.body["param"] == "tools[0].container.network_policy"
    with pytest.raises(openai.NotFoundError) as info:
        ci.responses.create(model="m", input="x", tools=[{"type": "code_interpreter", "container": "cntr_none"}])
    assert info.value.body["param"] == "tools[0].container"


def test_a_response_computes_keeps_a_variable_and_is_stored(ci) -> None:
    container = ci.containers.create(name="calc")
    tool = {"type": "code_interpreter", "container": container.id}
    first = ci.responses.create(model="m", input=ask("total = sum(range(10**6))\ntotal"), tools=[tool],
                                include=["code_interpreter_call.outputs"])
    call, message = first.output
    assert call.type == "code_interpreter_call" and call.status == "completed" and call.container_id == container.id
    assert call.code == "total = sum(range(10**6))\ntotal\n"
    assert call.outputs[0].type == "logs" and call.outputs[0].logs == "499999500000\n"
    assert first.output_text == "Result: 499999500000."
    second = ci.responses.create(model="m", input=ask("print(total + 1)"), tools=[tool])
    assert second.output[0].outputs is None, "outputs come only when included"
    assert second.output_text == "Result: 499999500001."
    assert ci.responses.retrieve(first.id).output[0].outputs[0].logs == "499999500000\n"


def test_the_stream_has_the_code_interpreter_events_in_order(ci) -> None:
    with ci.responses.stream(model="m", input=ask("x = 6 * 7\nprint(x)"), tools=[
            {"type": "code_interpreter", "container": {"type": "auto"}}], tool_choice={"type": "code_interpreter"},
            include=["code_interpreter_call.outputs"]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_stream(events)
    kinds = [e.type for e in events if "code_interpreter" in e.type or e.type.startswith("response.output_item")]
    assert kinds[:3] == ["response.output_item.added", "response.code_interpreter_call.in_progress",
                         "response.code_interpreter_call_code.delta"]
    assert kinds[kinds.index("response.code_interpreter_call_code.done"):][:4] == [
        "response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
        "response.code_interpreter_call.completed", "response.output_item.done"]
    code = "".join(e.delta for e in events if e.type == "response.code_interpreter_call_code.delta")
    assert code == "x = 6 * 7\nprint(x)\n" == final.output[0].code
    assert final.output[0].outputs[0].logs == "42\n" and final.output_text == "Result: 42."
    assert ci.responses.retrieve(final.id).output[0].container_id == final.output[0].container_id


def test_a_figure_comes_back_as_a_png_image(ci) -> None:
    response = ci.responses.create(model="m", input=ask(
        "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')"), tools=[
        {"type": "code_interpreter", "container": {"type": "auto"}}], include=["code_interpreter_call.outputs"])
    images = [o for o in response.output[0].outputs if o.type == "image"]
    assert len(images) == 1 and images[0].url.startswith("data:image/png;base64,")
    assert base64.b64decode(images[0].url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_written_csv_is_cited_and_downloadable(ci) -> None:
    response = ci.responses.create(model="m", input=ask(
        "import pandas as pd\npd.DataFrame({'n': [1, 2, 3]}).to_csv('/mnt/data/numbers.csv', index=False)\n"
        "print('saved')"), tools=[{"type": "code_interpreter", "container": {"type": "auto"}}])
    call, message = response.output
    text = response.output_text
    assert text == "Result: saved. Download it: [data](sandbox:/mnt/data/numbers.csv)."
    [annotation] = message.content[0].annotations
    assert annotation.type == "container_file_citation" and annotation.container_id == call.container_id
    assert annotation.filename == "numbers.csv"
    assert text[annotation.start_index:annotation.end_index] == "[data](sandbox:/mnt/data/numbers.csv)"
    record = ci.containers.files.retrieve(annotation.file_id, container_id=call.container_id)
    assert record.path == "/mnt/data/numbers.csv" and record.source == "assistant"
    content = ci.containers.files.content.retrieve(annotation.file_id, container_id=call.container_id).read()
    assert content == b"n\n1\n2\n3\n"


def test_deletions_reach_the_store_and_the_workspace_both_ways(ci) -> None:
    container = ci.containers.create(name="deletions").id
    tool = {"type": "code_interpreter", "container": container}
    kept = ci.containers.files.create(container, file=("kept.txt", b"k"))
    ci.containers.files.create(container, file=("doomed.txt", b"d"))
    run = ci.responses.create(model="m", input=ask("import os\nos.remove('/mnt/data/doomed.txt')\n"
                                                   "sorted(os.listdir('/mnt/data'))"), tools=[tool])
    assert run.output_text == "Result: ['kept.txt']."
    assert [f.path for f in ci.containers.files.list(container).data] == ["/mnt/data/kept.txt"]
    ci.containers.files.delete(kept.id, container_id=container)
    after = ci.responses.create(model="m", input=ask("import os\nsorted(os.listdir('/mnt/data'))"), tools=[tool])
    assert after.output_text == "Result: []."


def test_a_file_larger_than_max_file_bytes_stays_in_the_workspace_only(ci) -> None:
    container = ci.containers.create(name="big").id
    tool = {"type": "code_interpreter", "container": container}
    ci.responses.create(model="m", input=ask("open('/mnt/data/big.bin', 'wb').write(b'x' * (25 * 1024 ** 2))\n"
                                             "open('/mnt/data/small.txt', 'w').write('small')"), tools=[tool])
    assert [f.path for f in ci.containers.files.list(container).data] == ["/mnt/data/small.txt"]
    assert ci.responses.create(model="m", input=ask("import os\nos.path.getsize('/mnt/data/big.bin')"),
                               tools=[tool]).output_text == "Result: 26214400."


def test_auto_reuses_the_conversations_container_when_chained_and_replayed(ci, ci_backend) -> None:
    tool = {"type": "code_interpreter", "container": {"type": "auto"}}
    first = ci.responses.create(model="m", input=ask("secret = 'kept'"), tools=[tool])
    chained = ci.responses.create(model="m", input=ask("print(secret)"), tools=[tool],
                                  previous_response_id=first.id)
    assert chained.output[0].container_id == first.output[0].container_id
    assert chained.output_text == "Result: kept."
    sent = ci_backend.requests[-1]["messages"]
    assert any(m["role"] == "tool" and m["content"].startswith("(no output)") for m in sent), \
        "the first call's output is in the chained history"
    replayed = ci.responses.create(model="m", tools=[tool], input=[
        {"role": "user", "content": ask("secret = 'kept'")}, *[i.model_dump(exclude_none=True) for i in first.output],
        {"role": "user", "content": ask("print(secret * 2)")}])
    assert replayed.output[0].container_id == first.output[0].container_id
    assert replayed.output_text == "Result: keptkept."
    calls = [c for m in ci_backend.requests[-1]["messages"] for c in m.get("tool_calls") or []]
    assert json.loads(calls[0]["function"]["arguments"]) == {"code": "secret = 'kept'\n"}


def test_an_error_comes_back_to_the_model(ci, ci_server) -> None:
    failed = ci.responses.create(model="m", input=ask("1 / 0"), tools=[
        {"type": "code_interpreter", "container": {"type": "auto"}}], include=["code_interpreter_call.outputs"])
    assert "ZeroDivisionError: division by zero" in failed.output[0].outputs[0].logs
    assert failed.output[0].status == "completed"
    assert httpx.get(f"{ci_server.base_url.removesuffix('/v1')}/ready").json()["sandbox"] == {
        "name": "bwrap", "available": True}


def test_a_call_past_its_time_is_stopped_and_the_container_answers_after(ci_backend, tmp_path) -> None:
    with ParleyProcess("--upstream", ci_backend.url, "--db", f"sqlite:///{tmp_path / 'p.db'}", "--sandbox", "bwrap",
                       "--code-timeout-s", "2", "--containers-dir", str(tmp_path / "containers")) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        container = client.containers.create(name="slow")
        tool = {"type": "code_interpreter", "container": container.id}
        client.responses.create(model="m", input=ask("kept = 1"), tools=[tool])
        slow = client.responses.create(model="m", input=ask("while True:\n    pass"), tools=[tool],
                                       include=["code_interpreter_call.outputs"])
        assert "ran longer than 2 seconds" in slow.output[0].outputs[0].logs
        after = client.responses.create(model="m", input=ask("print('kept' in globals())"), tools=[tool])
        assert after.output_text == "Result: False.", "a fresh process answers after a timeout"


def sh(*commands: str) -> str:
    return "Run these:\n```sh\n" + "\n".join(commands) + "\n```"


def test_the_hosted_shell_runs_commands_in_a_container(ci) -> None:
    container = ci.containers.create(name="shell")
    ci.containers.files.create(container.id, file=("data.txt", b"three\nlines\nhere\n"))
    tool = {"type": "shell", "environment": {"type": "container_reference", "container_id": container.id}}
    with ci.responses.stream(model="m", input=sh("wc -l data.txt", "echo oops >&2; exit 3"), tools=[tool]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_stream(events)
    call, output, message = final.output
    assert call.type == "shell_call" and call.status == "completed"
    assert call.action.commands == ["wc -l data.txt", "echo oops >&2; exit 3"]
    assert call.environment.type == "container_reference" and call.environment.container_id == container.id
    assert output.type == "shell_call_output" and output.call_id == call.call_id
    assert [(o.stdout, o.stderr, o.outcome.type, o.outcome.exit_code) for o in output.output] == [
        ("3 data.txt\n", "", "exit", 0), ("", "oops\n", "exit", 3)]
    kinds = [e.type for e in events]
    assert kinds.count("response.shell_call_command.done") == 2
    assert kinds.count("response.shell_call_output_content.done") == 2
    assert final.output_text == "Result: exit code 0."
    stored = ci.responses.retrieve(final.id)
    assert [i.type for i in stored.output] == ["shell_call", "shell_call_output", "message"]


def test_a_shell_command_past_its_timeout_is_reported_as_such(ci) -> None:
    response = ci.responses.create(model="m", input=sh("sleep 30", "echo after") + " within 300 ms", tools=[
        {"type": "shell", "environment": {"type": "container_auto"}}])
    output = response.output[1]
    assert output.output[0].outcome.type == "timeout"
    assert output.output[1].outcome.type == "timeout" and "Not run" in output.output[1].stderr


def test_container_auto_keeps_one_container_per_conversation_and_shares_it(ci) -> None:
    tool = {"type": "shell", "environment": {"type": "container_auto"}}
    first = ci.responses.create(model="m", input=sh("echo built > artifact.txt"), tools=[tool])
    container_id = first.output[0].environment.container_id
    second = ci.responses.create(model="m", input=sh("cat artifact.txt"), tools=[tool], previous_response_id=first.id)
    assert second.output[0].environment.container_id == container_id
    assert second.output[1].output[0].stdout == "built\n"
    third = ci.responses.create(model="m", input=ask("print(open('/mnt/data/artifact.txt').read().strip())"),
                                tools=[{"type": "code_interpreter", "container": container_id}])
    assert third.output_text == "Result: built."
    assert "/mnt/data/artifact.txt" in [f.path for f in ci.containers.files.list(container_id).data]


@pytest.mark.parametrize("how", ["--sandbox none", "auto without bubblewrap"])
def test_without_a_sandbox_code_is_refused_with_what_to_install(ci_backend, tmp_path, how) -> None:
    args, env = (["--sandbox", "none"], {}) if how == "--sandbox none" else ([], {"PATH": str(tmp_path)})
    asked = len(ci_backend.requests)
    with ParleyProcess("--upstream", ci_backend.url, "--db", f"sqlite:///{tmp_path / 'p.db'}", *args,
                       env=env) as server, openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        ready = httpx.get(server.base_url.removesuffix("/v1") + "/ready").json()["sandbox"]
        assert ready["available"] is False and ready["name"] == "none"
        expected = "--sandbox none" if how == "--sandbox none" else "apt-get install bubblewrap"
        assert expected in ready["reason"]
        for tools, param in (([{"type": "code_interpreter", "container": {"type": "auto"}}], "tools[0].container"),
                             ([{"type": "shell", "environment": {"type": "container_auto"}}], "tools[0].environment")):
            with pytest.raises(openai.BadRequestError) as info:
                client.responses.create(model="m", input=ask("print(1)"), tools=tools)
            assert info.value.code == "sandbox_unavailable" and info.value.body["param"] == param
            assert expected in info.value.message and "never runs it unsandboxed" in info.value.message
        with pytest.raises(openai.BadRequestError) as info:
            client.containers.create(name="x")
        assert info.value.code == "sandbox_unavailable"
    assert len(ci_backend.requests) == asked, "the model was never called"
