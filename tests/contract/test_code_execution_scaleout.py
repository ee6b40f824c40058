"""Containers across instances on one PostgreSQL database: a container created through one instance is used
through another; on one host the instance holding its session answers for it (its variables survive), and when
that instance is gone, or the other is on another host, the container moves with its files."""

from __future__ import annotations

import re

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall

CODE = re.compile(r"```python\n(.*?)```", re.S)


def running_model(request: dict) -> Reply:
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=last["content"].split("\n")[0])  # the output's first line
    return Reply(tool_calls=[ToolCall("code_interpreter", {"code": CODE.search(last["content"]).group(1)})])


@pytest.fixture(scope="module")
def runner():
    with ScriptedBackend(running_model) as backend:
        yield backend


def instance(runner: ScriptedBackend, db: str, containers: str) -> ParleyProcess:
    return ParleyProcess("--upstream", runner.url, "--db", db, "--sandbox", "bwrap", "--containers-dir", containers)


def run(client: openai.OpenAI, container_id: str, code: str) -> str:
    return client.responses.create(model="m", input=f"```python\n{code}\n```", tools=[
        {"type": "code_interpreter", "container": container_id}]).output_text


def test_a_container_is_used_through_another_instance_and_moves_when_its_holder_stops(
        runner, own_postgres_url, tmp_path) -> None:
    shared = str(tmp_path / "containers")
    with instance(runner, own_postgres_url, shared) as first, \
            openai.OpenAI(base_url=first.base_url, api_key="x", max_retries=0) as one:
        container = one.containers.create(name="shared").id
        with instance(runner, own_postgres_url, shared) as second, \
                openai.OpenAI(base_url=second.base_url, api_key="x", max_retries=0) as two:
            assert two.containers.retrieve(container).name == "shared"
            assert run(two, container, "x = 41\nopen('/mnt/data/kept.txt', 'w').write('on disk')\nx") == "41"
            assert run(one, container, "x + 1") == "42", "the holder answered through the other instance"
            assert run(two, container, "x + 2") == "43"
            assert [f.path for f in one.containers.files.list(container).data] == ["/mnt/data/kept.txt"]
        # the holder is gone: the container moves here with its files, not its variables
        assert run(one, container, "print('x' in globals(), open('/mnt/data/kept.txt').read())") == "False on disk"
        assert run(one, container, "y = 1\ny") == "1"


def test_an_instance_on_another_host_takes_the_container_over_with_its_files(runner, own_postgres_url,
                                                                             tmp_path) -> None:
    with instance(runner, own_postgres_url, str(tmp_path / "host-a")) as a, \
            instance(runner, own_postgres_url, str(tmp_path / "host-b")) as b, \
            openai.OpenAI(base_url=a.base_url, api_key="x", max_retries=0) as on_a, \
            openai.OpenAI(base_url=b.base_url, api_key="x", max_retries=0) as on_b:
        container = on_a.containers.create(name="travels").id
        run(on_a, container, "import pandas as pd\npd.DataFrame({'v': [1, 2]}).to_csv('/mnt/data/t.csv', index=False)")
        assert run(on_b, container, "print(open('/mnt/data/t.csv').read().split())") == "['v', '1', '2']"
        assert run(on_a, container, "print(sorted(__import__('os').listdir('/mnt/data')))") == "['t.csv']"
