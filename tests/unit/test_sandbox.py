"""The bwrap sandbox by itself: a session's kernel keeps its values, runs shell commands, and is isolated the
same way in both of its modes (as root: no user namespace, the kernel drops to a user of its own; otherwise a
user namespace); and the workspace is read back without following links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parley.sandbox import workspace
from parley.sandbox.base import Limits
from parley.sandbox.bwrap import BwrapSandbox, BwrapSession



@pytest.fixture(params=["own-user", "user-namespace"])
async def session(request, tmp_path):
    sandbox = BwrapSandbox(tmp_path / "containers")
    if request.param == "user-namespace":
        root = tmp_path / "containers" / "cntr_unit"
        root.mkdir(parents=True)
        opened = BwrapSession("cntr_unit", root, Limits(call_timeout_s=30), None)
        await opened.start()
    else:
        if os.getuid() != 0:
            pytest.skip("a user of its own per container needs a root server")
        opened = await sandbox.open("cntr_unit", Limits(call_timeout_s=30))
    yield opened
    await opened.close()


@pytest.mark.anyio
async def test_values_persist_and_commands_run_in_the_workspace(session) -> None:
    assert (await session.python("value = 21 * 2")).logs == ""
    assert (await session.python("value")).logs == "42\n"
    await session.python("open('/mnt/data/out.txt', 'w').write('hi')")
    result = await session.shell("pwd; cat out.txt; echo oops >&2; exit 3", 10, 1000)
    assert (result.stdout, result.stderr, result.exit_code) == ("/mnt/data\nhi", "oops\n", 3)
    assert [f.path for f in await session.files()] == ["/mnt/data/out.txt"]


@pytest.mark.anyio
async def test_a_command_past_its_time_is_killed_with_its_group(session) -> None:
    result = await session.shell("sleep 100 & sleep 100", 0.5, 1000)
    assert result.exit_code is None
    assert session.alive and (await session.python("print('still here')")).logs == "still here\n"


@pytest.mark.anyio
async def test_the_host_is_out_of_reach_in_both_modes(session, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host")
    check = ("import socket\nout = []\n"
             f"for path in ({str(secret)!r}, '/etc/shadow'):\n"
             "    try:\n        open(path).read(); out.append('read ' + path)\n    except OSError:\n        pass\n"
             "try:\n    socket.create_connection(('127.0.0.1', 5432), timeout=2); out.append('connected')\n"
             "except OSError:\n    pass\n"
             f"try:\n    open({str(tmp_path / 'written')!r}, 'w'); out.append('wrote')\nexcept OSError:\n    pass\n"
             "print(out)")
    assert (await session.python(check)).logs == "[]\n"
    assert not (tmp_path / "written").exists()


def test_workspace_paths_stay_inside() -> None:
    assert workspace.relative("/mnt/data/a/b.csv") == "a/b.csv"
    assert workspace.relative("notes.txt") == "notes.txt"
    for bad in ("/etc/passwd", "../x", "/mnt/data/../../etc/passwd", "a/\x00", "/mnt/data", "."):
        with pytest.raises(ValueError):
            workspace.relative(bad)


def test_a_scan_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "kept.txt").write_text("x")
    (root / "file-link").symlink_to(outside / "secret")
    (root / "dir-link").symlink_to(outside)
    assert [f.path for f in workspace.scan(root)] == ["/mnt/data/dir/kept.txt"]
    with pytest.raises(OSError):
        workspace.read(root, "/mnt/data/file-link", 100)
    with pytest.raises(OSError):
        workspace.read(root, "/mnt/data/dir-link/secret", 100)
    workspace.write(root, "/mnt/data/dir/new.txt", b"new", None)
    assert (root / "dir" / "new.txt").read_bytes() == b"new"
    with pytest.raises(OSError):
        workspace.write(root, "/mnt/data/dir-link/planted", b"x", None)
    assert not (outside / "planted").exists()


def test_a_server_installed_under_tmp_runs_code_in_the_sandbox(tmp_path) -> None:
    """The sandbox's /tmp is its own: a Python environment that lives under the host's /tmp is mounted over it,
    not hidden by it (a venv made in /tmp, as a fresh clone there has)."""
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = ("import asyncio, pathlib, sys\n"
              "from parley.sandbox.bwrap import BwrapSandbox\nfrom parley.sandbox.base import Limits\n"
              "async def main():\n"
              f"    session = await BwrapSandbox(pathlib.Path({str(tmp_path / 'containers')!r})).open('cntr_t', Limits())\n"
              "    print((await session.python('import sys; print(sys.prefix)')).logs, end='')\n"
              "    await session.close()\n"
              "asyncio.run(main())\n")
    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(src), "PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"{venv}\n"
