"""Skills through a real ``parley serve`` and the ``openai`` SDK: upload (a folder's files or a zip), versions,
content, hostile uploads refused, and a skill mounted read-only into the containers that name it (the hosted
shell's ``container_auto``, and a container made with ``skills``)."""

from __future__ import annotations

import io
import stat
import zipfile

import openai
import pytest

from parley.testing import ParleyProcess, Reply, ScriptedBackend, ToolCall
from parley.testing.strict import strict_client

SKILL_MD = b"---\nname: csv-tools\ndescription: Summarise CSV files with the bundled script.\n---\n\nRun scripts/summary.py.\n"
SCRIPT = b"import sys\nprint('rows:', sum(1 for _ in open(sys.argv[1])) - 1)\n"


def shell_model(request: dict) -> Reply:
    last = request["messages"][-1]
    if last["role"] == "tool":
        return Reply(text=last["content"])
    commands = last["content"].split("\n")[1:]
    return Reply(tool_calls=[ToolCall("shell", {"commands": commands})])


@pytest.fixture(scope="module")
def skill_backend():
    with ScriptedBackend(shell_model) as backend:
        yield backend


@pytest.fixture(scope="module")
def sk(skill_backend, tmp_path_factory):
    folder = tmp_path_factory.mktemp("skills")
    with ParleyProcess("--upstream", skill_backend.url, "--db", f"sqlite:///{folder / 'p.db'}", "--sandbox", "bwrap",
                       "--containers-dir", str(folder / "containers")) as server, \
            strict_client(server.base_url) as client:
        yield client


def zipped(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return out.getvalue()


def test_a_skill_and_its_versions_round_trip(sk) -> None:
    skill = sk.skills.create(files=[("csv-tools/SKILL.md", SKILL_MD), ("csv-tools/scripts/summary.py", SCRIPT)])
    assert (skill.name, skill.default_version, skill.latest_version) == ("csv-tools", "1", "1")
    assert skill.description == "Summarise CSV files with the bundled script."
    assert sk.skills.retrieve(skill.id).id == skill.id and skill.id in [s.id for s in sk.skills.list().data]
    with zipfile.ZipFile(io.BytesIO(sk.skills.content.retrieve(skill.id).read())) as archive:
        assert sorted(archive.namelist()) == ["csv-tools/SKILL.md", "csv-tools/scripts/summary.py"]
    second = sk.skills.versions.create(skill.id, files=[("skill.zip", zipped({
        "SKILL.md": SKILL_MD.replace(b"bundled script", b"new script"), "scripts/summary.py": SCRIPT}))], default=True)
    assert second.version == "2" and second.skill_id == skill.id
    assert sk.skills.retrieve(skill.id).default_version == "2"
    assert [v.version for v in sk.skills.versions.list(skill.id).data] == ["2", "1"]
    paged = sk.skills.versions.list(skill.id, limit=1)  # the SDK pages on with after=<last_id>
    assert [v.version for v in paged] == ["2", "1"]
    assert sk.skills.versions.retrieve("1", skill_id=skill.id).description.endswith("bundled script.")
    with pytest.raises(openai.BadRequestError):
        sk.skills.versions.delete("2", skill_id=skill.id)  # the default one
    assert sk.skills.versions.delete("1", skill_id=skill.id).deleted
    assert sk.skills.update(skill.id, default_version="2").default_version == "2"
    assert sk.skills.delete(skill.id).deleted
    with pytest.raises(openai.NotFoundError):
        sk.skills.retrieve(skill.id)


@pytest.mark.parametrize("files, why", [
    ([("notes.txt", b"no skill here")], "SKILL.md"),
    ([("SKILL.md", b"# no front matter\n")], "front matter"),
    ([("SKILL.md", SKILL_MD), ("../escape.py", b"x")], "not a path inside a skill"),
    ([("skill.zip", zipped({"SKILL.md": SKILL_MD}, links={"link": "/etc/shadow"}))], "links"),
    ([("skill.zip", zipped({"SKILL.md": SKILL_MD, "bomb.bin": b"\0" * (60 * 1024 * 1024)}))], "at most"),
    ([("skill.zip", b"PK\x03\x04 not really a zip")], "not a zip"),
])
def test_a_hostile_or_broken_upload_is_a_400_that_says_why(sk, files, why) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sk.skills.create(files=files)
    assert info.value.code == "invalid_skill" and why in info.value.message


def test_a_skill_is_mounted_read_only_where_the_shell_is_told(sk, skill_backend) -> None:
    skill = sk.skills.create(files=[("SKILL.md", SKILL_MD), ("scripts/summary.py", SCRIPT)])
    tools = [{"type": "shell", "environment": {"type": "container_auto", "skills": [
        {"type": "skill_reference", "skill_id": skill.id}]}}]
    response = sk.responses.create(model="m", tools=tools, input="run\nprintf 'a\\n1\\n2\\n' > data.csv\n"
                                   "python3 /mnt/skills/csv-tools/scripts/summary.py data.csv\n"
                                   "touch /mnt/skills/csv-tools/planted")
    results = response.output[1].output
    assert results[1].stdout == "rows: 2\n"
    assert results[2].outcome.exit_code != 0 and "Read-only" in results[2].stderr
    offered = skill_backend.requests[-2]["tools"][0]["function"]
    assert "csv-tools (/mnt/skills/csv-tools): Summarise CSV files" in offered["description"]
    container = sk.containers.create(name="with skills", skills=[
        {"type": "skill_reference", "skill_id": skill.id, "version": "1"}])
    listed = sk.responses.create(model="m", input="run\nls /mnt/skills/csv-tools", tools=[
        {"type": "shell", "environment": {"type": "container_reference", "container_id": container.id}}])
    assert listed.output[1].output[0].stdout == "SKILL.md\nscripts\n"
    with pytest.raises(openai.NotFoundError) as info:
        sk.containers.create(name="x", skills=[{"type": "skill_reference", "skill_id": "skill_missing"}])
    assert info.value.body["param"] == "skills[0].skill_id"
    with pytest.raises(openai.BadRequestError) as info:
        sk.responses.create(model="m", input="run\nls", tools=[{"type": "shell", "environment": {
            "type": "container_auto", "skills": [{"type": "inline", "name": "x", "description": "y",
                                                   "source": {"type": "base64", "media_type": "application/zip",
                                                              "data": ""}}]}}])
    assert info.value.body["param"] == "tools[0].environment.skills[0].type"
