"""The remote sandbox against a real ``jupyter kernelgateway`` process on loopback: containers as the gateway's
kernels, reached by every instance (two ``parley serve`` processes on one PostgreSQL database, with data
directories of their own, as on two hosts), so a container's variables survive whichever instance runs it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.server import free_port

CODE = re.compile(r"```python\n(.*?)```", re.S)
SHELL = re.compile(r"```sh\n(.*?)```", re.S)
PROGRAM = re.compile(r"```js\n(.*?)```", re.S)
TOKEN = "gateway-token-5a1e"


def running_model(request: dict) -> Reply:
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=last["content"].split("\n")[0])
    program = PROGRAM.search(last["content"])
    if program:
        return Reply(tool_calls=[ToolCall("program", {"code": program.group(1)})])
    commands = SHELL.search(last["content"])
    if commands:
        return Reply(tool_calls=[ToolCall("shell", {"commands": commands.group(1).splitlines()})])
    return Reply(tool_calls=[ToolCall("code_interpreter", {"code": CODE.search(last["content"]).group(1)})])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A Kernel Gateway with a token, ready when its API answers."""
    port = free_port()
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
                                    f"--KernelGatewayApp.port={port}", f"--KernelGatewayApp.auth_token={TOKEN}",
                                    "--JupyterWebsocketPersonality.list_kernels=True"],
                                   stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:  # stopped however the fixture ends, a start that never became ready included
        deadline = time.monotonic() + 100
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/api", headers={"Authorization": f"token {TOKEN}"}, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the kernel gateway did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def runner():
    with ScriptedBackend(running_model) as backend:
        yield backend


def instance(runner, db: str, gateway: str, data: Path, *extra: str) -> ParleyProcess:
    return ParleyProcess("--upstream", runner.url, "--db", db, "--data-dir", str(data), "--sandbox", "kernel_gateway",
                         "--kernel-gateway-url", gateway, "--kernel-gateway-token", TOKEN,
                         "--kernel-gateway-workdir", str(data.parent / "kernels" / "{container}"), *extra)


def run(client: openai.OpenAI, container_id: str, code: str) -> str:
    return client.responses.create(model="m", input=f"```python\n{code}\n```", tools=[
        {"type": "code_interpreter", "container": container_id}]).output_text


def test_containers_on_a_kernel_gateway_are_shared_by_every_instance(runner, gateway, own_postgres_url,
                                                                     tmp_path) -> None:
    with instance(runner, own_postgres_url, gateway, tmp_path / "a") as a, \
            instance(runner, own_postgres_url, gateway, tmp_path / "b") as b, \
            openai.OpenAI(base_url=a.base_url, api_key="x", max_retries=0) as on_a, \
            openai.OpenAI(base_url=b.base_url, api_key="x", max_retries=0) as on_b:
        assert httpx.get(a.base_url.removesuffix("/v1") + "/ready").json()["sandbox"] == {
            "name": "kernel_gateway", "available": True}
        container = on_a.containers.create(name="remote").id
        on_a.containers.files.create(container, file=("in.txt", b"uploaded\n"))
        assert run(on_a, container, "x = 41\nprint(open('in.txt').read().strip())") == "uploaded"
        assert run(on_b, container, "x + 1") == "42", "the other instance reached the same kernel"
        assert run(on_a, container, "open('out.txt', 'w').write('from the kernel')\nx + 2") == "43"
        [written] = [f for f in on_b.containers.files.list(container).data if f.path == "/mnt/data/out.txt"]
        assert written.source == "assistant"
        assert on_b.containers.files.content.retrieve(written.id, container_id=container).read() == b"from the kernel"
        listing = on_b.responses.create(model="m", input="```sh\nls\necho oops >&2; exit 4\n```", tools=[
            {"type": "shell", "environment": {"type": "container_reference", "container_id": container}}])
        assert [(o.stdout, o.stderr, o.outcome.exit_code) for o in listing.output[1].output] == [
            ("in.txt\nout.txt\n", "", 0), ("", "oops\n", 4)]
        figure = on_b.responses.create(model="m", input="```python\nimport matplotlib.pyplot as plt\n"
                                       "plt.plot([1, 2])\nplt.show()\n```", tools=[
            {"type": "code_interpreter", "container": container}], include=["code_interpreter_call.outputs"])
        assert [o.type for o in figure.output[0].outputs] == ["logs", "image"]
        assert len(kernels(gateway)) == 1, "one kernel for the container, whichever instance ran it"
        on_a.containers.delete(container)
        assert kernels(gateway) == [], "deleting the container deleted its kernel"


def kernels(gateway: str) -> list[dict]:
    return httpx.get(f"{gateway}/api/kernels", headers={"Authorization": f"token {TOKEN}"}).json()


def test_a_call_past_its_time_restarts_the_kernel(runner, gateway, tmp_path) -> None:
    with instance(runner, f"sqlite:///{tmp_path / 'p.db'}", gateway, tmp_path / "c", "--code-timeout-s", "3") as c, \
            openai.OpenAI(base_url=c.base_url, api_key="x", max_retries=0) as client:
        container = client.containers.create(name="slow").id
        run(client, container, "kept = 1")
        assert run(client, container, "while True:\n    pass").startswith("The code ran longer than 3 seconds")
        assert run(client, container, "'kept' in globals()") == "False"
        client.containers.delete(container)


def test_a_program_runs_in_a_kernel_of_its_own_and_goes_on_after_the_clients_output(runner, gateway,
                                                                                      tmp_path) -> None:
    tools = [{"type": "function", "name": "double", "parameters": {"type": "object"},
              "allowed_callers": ["programmatic"]}, {"type": "programmatic_tool_calling"}]
    with instance(runner, f"sqlite:///{tmp_path / 'p.db'}", gateway, tmp_path / "d") as d, \
            openai.OpenAI(base_url=d.base_url, api_key="x", max_retries=0) as client:
        first = client.responses.create(model="m", tools=tools, input="```js\nreturn 'twice 21 is ' + "
                                        "await tools.double({n: 21});\n```")
        assert [i.type for i in first.output][:2] == ["program", "function_call"], first.output
        program, call = first.output
        assert program.type == "program" and call.caller.caller_id == program.call_id
        done = client.responses.create(model="m", tools=tools, previous_response_id=first.id, input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "42"}])
        assert done.output[0].type == "program_output" and done.output[0].result == "twice 21 is 42"
        assert done.output_text == "twice 21 is 42"
        assert kernels(gateway) == [], "each run's kernel was removed after it"
