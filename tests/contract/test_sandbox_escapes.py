"""Model-written code trying to get out, against a real ``parley serve`` with the bwrap sandbox: each attempt
fails inside the container, the server stays healthy, and the next call of the container still runs.

Every assertion here is one that code run without the sandbox would break (the host's files, the database,
the server's keys and ports are all reachable from an unsandboxed process): the tests fail if the sandbox is
taken away.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall

CODE = re.compile(r"```python\n(.*?)```", re.S)
KEY_A, KEY_B = "sk-escape-tenant-a-4f1c", "sk-escape-tenant-b-77d2"
UPSTREAM_SECRET = "sk-upstream-secret-93ab"


def running_model(request: dict) -> Reply:
    """Runs the user's code block, then answers with the whole output it got back."""
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=last["content"])
    return Reply(tool_calls=[ToolCall("code_interpreter", {"code": CODE.search(last["content"]).group(1)})])


@pytest.fixture(scope="module")
def escape_backend():
    with ScriptedBackend(running_model) as backend:
        yield backend


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("escape-host")


@pytest.fixture(scope="module")
def escape_server(escape_backend, host):
    with ParleyProcess("--upstream", escape_backend.url, "--db", f"sqlite:///{host / 'parley.db'}",
                       "--data-dir", str(host), "--sandbox", "bwrap", "--code-timeout-s", "5",
                       "--container-disk-mb", "64",
                       "--containers-dir", str(host / "containers"),
                       env={"PARLEY_API_KEYS": f"{KEY_A}=alice,{KEY_B}=bob",
                            "PARLEY_UPSTREAM_API_KEY": UPSTREAM_SECRET}) as server:
        yield server


def client_for(server: ParleyProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def alice(escape_server):
    with client_for(escape_server, KEY_A) as client:
        yield client


@pytest.fixture(scope="module")
def container(alice):
    return alice.containers.create(name="target").id


def run(client: openai.OpenAI, container_id: str, code: str) -> str:
    """The output of ``code`` run in the container (logs, as the model got them)."""
    response = client.responses.create(model="m", input=f"```python\n{code}\n```", tools=[
        {"type": "code_interpreter", "container": container_id}], include=["code_interpreter_call.outputs"])
    call = response.output[0]
    assert call.type == "code_interpreter_call", response.output
    return "".join(o.logs for o in call.outputs or [] if o.type == "logs")


def healthy(server: ParleyProcess, client: openai.OpenAI, container_id: str) -> None:
    """The server answers, and the container runs code again."""
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=10).json()["status"] == "ok"
    assert run(client, container_id, "print(6 * 7)") == "42\n"


def attempt(code: str) -> str:
    """Code that reports what happened: OK and what it got, or the error's name."""
    body = "\n".join("    " + line for line in code.splitlines())
    return f"try:\n{body}\n    print('OK', repr(result)[:200])\nexcept Exception as exc:\n    print('DENIED', type(exc).__name__)"


def test_the_hosts_secret_files_cannot_be_read(alice, container, host, escape_server) -> None:
    assert (host / "parley.db").exists()
    for path in ("/etc/shadow", str(host / "parley.db"), str(host / "reasoning.key"), "/proc/1/environ",
                 "/root/.bash_history"):
        output = run(alice, container, attempt(f"result = open({path!r}, 'rb').read()"))
        assert output.startswith("DENIED"), (path, output)
    healthy(escape_server, alice, container)


def test_the_servers_environment_and_keys_are_not_visible(alice, container, escape_server) -> None:
    found = run(alice, container, "import os, glob\ntext = repr(dict(os.environ))\n"
                "for p in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
                "    try:\n        text += open(p, 'rb').read().decode(errors='replace')\n"
                "    except Exception:\n        pass\n"
                f"print([k for k in ({KEY_A!r}, {KEY_B!r}, {UPSTREAM_SECRET!r}, 'PARLEY_') if k in text])")
    assert found == "[]\n"
    pids = run(alice, container, "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))")
    assert int(pids) <= 3, "only the sandbox's own processes are visible"
    healthy(escape_server, alice, container)


def test_another_containers_workspace_cannot_be_reached(alice, container, host, escape_server) -> None:
    other = alice.containers.create(name="other").id
    run(alice, other, "open('/mnt/data/secret.txt', 'w').write('the other container')")
    assert (host / "containers" / other / "secret.txt").exists()
    for path in (str(host / "containers" / other / "secret.txt"), f"/mnt/data/../{other}/secret.txt",
                 f"/mnt/{other}/secret.txt"):
        assert run(alice, container, attempt(f"result = open({path!r}).read()")).startswith("DENIED"), path
    run(alice, container, "import os\nos.symlink('/etc/hostname', '/mnt/data/link')")
    names = [f.path for f in alice.containers.files.list(container).data]
    assert "/mnt/data/link" not in names, "a link is never followed out of the workspace"
    healthy(escape_server, alice, container)


def test_nothing_outside_the_workspace_can_be_written(alice, container, host, escape_server) -> None:
    for path in (str(host / "pwned"), "/usr/pwned", "/etc/pwned", "/opt/parley/kernel.py"):
        output = run(alice, container, attempt(f"result = open({path!r}, 'w').write('x')"))
        assert output.startswith("DENIED"), (path, output)
    assert not (host / "pwned").exists()
    assert run(alice, container, "open('/tmp/scratch', 'w').write('ok')\nprint(open('/tmp/scratch').read())") == "ok\n"
    healthy(escape_server, alice, container)


def test_no_network_reaches_the_host_or_the_metadata_service(alice, container, escape_server) -> None:
    with httpx.Client() as probe:  # what an unsandboxed process would reach: this server's own port
        assert probe.get(escape_server.base_url.removesuffix("/v1") + "/health").status_code == 200
    for address in (("127.0.0.1", 5432), ("127.0.0.1", escape_server.port), ("169.254.169.254", 80)):
        output = run(alice, container, attempt(
            f"import socket\nresult = socket.create_connection({address!r}, timeout=3)"))
        assert output.startswith("DENIED"), (address, output)
    assert run(alice, container, "import socket\nprint(socket.if_nameindex())") == "[(1, 'lo')]\n"
    healthy(escape_server, alice, container)


def test_a_fork_bomb_a_memory_bomb_and_an_endless_loop_are_contained(alice, container, escape_server) -> None:
    bomb = run(alice, container, "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                                 "            import time\n            time.sleep(60)\n            os._exit(0)\n"
                                 "        n += 1\nexcept OSError as exc:\n    print('stopped after', n, exc.errno)")
    assert bomb.startswith("stopped after") and int(bomb.split()[2]) < 200
    healthy(escape_server, alice, container)
    memory = run(alice, container, attempt("result = bytearray(8 * 1024 ** 3)"))
    assert memory == "DENIED MemoryError\n"
    many = run(alice, container, attempt("result = [bytearray(100 * 1024 ** 2) for _ in range(100)]"))
    assert many == "DENIED MemoryError\n"
    healthy(escape_server, alice, container)
    started = time.monotonic()
    loop = run(alice, container, "while True:\n    pass")
    assert "ran longer than 5 seconds" in loop and time.monotonic() - started < 60
    healthy(escape_server, alice, container)


def test_a_disk_hog_is_stopped_and_its_writes_undone(alice, escape_server, host) -> None:
    hog = alice.containers.create(name="hog").id
    run(alice, hog, "open('/mnt/data/kept.txt', 'w').write('stored before')")
    for code in ("open('/mnt/data/one.bin', 'wb').write(b'x' * (100 * 1024 ** 2))",
                 "for i in range(3):\n    open(f'/mnt/data/{i}.bin', 'wb').write(b'x' * (30 * 1024 ** 2))"):
        response = alice.responses.create(model="m", input=f"```python\n{code}\n```", tools=[
            {"type": "code_interpreter", "container": hog}])
        assert response.output[0].status == "failed" and "passed its 67108864 bytes" in response.output_text
        assert run(alice, hog, "import os\nprint(sorted(os.listdir('/mnt/data')))") == "['kept.txt']\n"
        assert [f.path for f in alice.containers.files.list(hog).data] == ["/mnt/data/kept.txt"]
    healthy(escape_server, alice, hog)


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def test_a_flood_of_output_is_cut_and_the_server_keeps_its_memory(alice, container, escape_server) -> None:
    run(alice, container, "print('warm')")
    peak = _peak_rss_kib(escape_server.process.pid)
    flood = run(alice, container, "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)")
    assert "[output truncated: 100000000 bytes in all" in flood and len(flood) < 100_000
    shell = run(alice, container, "import os\nstatus = os.system('head -c 100000000 /dev/zero | tr \"\\\\0\" y')")
    assert "[output truncated: 100000000 bytes in all" in shell
    assert _peak_rss_kib(escape_server.process.pid) - peak < 64 * 1024, "the output never reached the server whole"
    healthy(escape_server, alice, container)


def test_a_process_left_running_after_a_call_is_killed(alice, container, escape_server) -> None:
    run(alice, container, "import subprocess, os\nsubprocess.Popen(['sleep', '1000'])\n"
                          "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                          "        os.execvp('sleep', ['sleep', '999'])\n    os._exit(0)")
    left = run(alice, container, "import os\nprint([open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc')"
                                 " if p.isdigit() and 'sleep' in open(f'/proc/{p}/cmdline').read()])")
    assert left == "[]\n"
    host_sleepers = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) in ("sleep\x001000\x00",
                                                                                      "sleep\x00999\x00")]
    assert host_sleepers == []
    healthy(escape_server, alice, container)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_another_tenants_container_and_skill_are_not_found(alice, container, escape_server) -> None:
    skill = alice.skills.create(files=[("SKILL.md", b"---\nname: private\ndescription: Alice's own.\n---\n")]).id
    with client_for(escape_server, KEY_B) as bob:
        with pytest.raises(openai.NotFoundError):
            bob.skills.retrieve(skill)
        with pytest.raises(openai.NotFoundError):
            bob.containers.create(name="x", skills=[{"type": "skill_reference", "skill_id": skill}])
        assert skill not in [s.id for s in bob.skills.list().data]
        with pytest.raises(openai.NotFoundError):
            bob.containers.retrieve(container)
        with pytest.raises(openai.NotFoundError):
            bob.containers.files.list(container)
        with pytest.raises(openai.NotFoundError) as info:
            bob.responses.create(model="m", input="```python\nprint(1)\n```", tools=[
                {"type": "code_interpreter", "container": container}])
        assert info.value.body["param"] == "tools[0].container"
        assert container not in [c.id for c in bob.containers.list().data]
        with pytest.raises(openai.NotFoundError):
            bob.containers.delete(container)
    assert alice.containers.retrieve(container).status == "running"
    healthy(escape_server, alice, container)
