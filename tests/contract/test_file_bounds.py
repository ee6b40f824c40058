"""Files that inflate or run long cost a worker process, never the server: a real ``parley serve`` whose own
peak memory is watched (``VmHWM``) while a DOCX bomb goes into a vector store and into an ``input_file``, and
while a large text file is indexed.  (Timings, such as how ``/health`` answers meanwhile, are measured by
``bench/tenants.py``, not asserted here.)"""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import openai
import pytest

from parley.testing import ParleyProcess
from tests.files_fixtures import docx_bomb

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# What the server process may grow by while it hands these files to workers: the bytes it holds (a few MB)
# and the chunks and vectors it gets back; an extraction or chunking in its own memory takes gigabytes.
GROWTH_BOUND_KB = 300 * 1024


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _poll_file(client: openai.OpenAI, store_id: str, file_id: str, limit_s: float = 240) -> object:
    deadline = time.monotonic() + limit_s
    while (done := client.vector_stores.files.retrieve(file_id=file_id, vector_store_id=store_id)).status \
            == "in_progress":
        assert time.monotonic() < deadline, "the file stayed in_progress"
        time.sleep(0.2)
    return done


@pytest.fixture
def server(backend, tmp_path) -> ParleyProcess:
    with ParleyProcess("--upstream", backend.url, "--db", f"sqlite:///{tmp_path / 'bounds.db'}") as server:
        yield server


def test_a_docx_bomb_fails_its_vector_store_file_without_the_servers_memory(server) -> None:
    pid = server.process.pid
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120) as client:
        client.models.list()  # the server has served a request: its resting size
        resting = _kb(pid, "VmRSS")
        bomb = docx_bomb(inflated_mb=200)  # 200 MB of XML, about 280 KB on the wire
        uploaded = client.files.create(file=("report.docx", bomb), purpose="assistants")
        store = client.vector_stores.create(name="bombed", file_ids=[uploaded.id])
        done = _poll_file(client, store.id, uploaded.id)
        assert done.status == "failed" and done.last_error.code == "invalid_file"
        assert "report.docx" in done.last_error.message and "bytes of text" in done.last_error.message
        assert _kb(pid, "VmHWM") - resting < GROWTH_BOUND_KB
        # the server goes on serving, and an ordinary file next to the bomb is indexed
        fine = client.files.create(file=("fine.txt", b"Herons nest in the reeds."), purpose="assistants")
        assert _poll_file(client, store.id, client.vector_stores.files.create(
            vector_store_id=store.id, file_id=fine.id).id).status == "completed"


def test_a_docx_bomb_as_input_file_is_a_400_naming_the_part(server, backend) -> None:
    pid = server.process.pid
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120) as client:
        client.models.list()
        resting = _kb(pid, "VmRSS")
        bomb = base64.b64encode(docx_bomb(inflated_mb=1000)).decode()  # 1 GB of XML
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", input=[{"role": "user", "content": [
                {"type": "input_text", "text": "Summarize."},
                {"type": "input_file", "filename": "big.docx", "file_data": f"data:{DOCX_TYPE};base64,{bomb}"}]}])
        error = info.value.body
        assert error["param"] == "input[0].content[1]" and error["code"] == "file_too_large", error
        assert backend.requests == []  # nothing went upstream
        assert _kb(pid, "VmHWM") - resting < GROWTH_BOUND_KB


def test_a_large_text_file_is_indexed_outside_the_server(server) -> None:
    rng = random.Random(7)
    words = ["heron", "reed", "estuary", "tide", "marsh", "egret", "mudflat", "pelican", "dune", "lagoon"]
    text = " ".join(f"{rng.choice(words)}{rng.randrange(1000)}" for _ in range(700_000)).encode()  # about 7 MB
    pid = server.process.pid
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120) as client:
        client.models.list()
        resting = _kb(pid, "VmRSS")
        uploaded = client.files.create(file=("marsh.txt", text), purpose="assistants")
        store = client.vector_stores.create(name="marsh", file_ids=[uploaded.id])
        done = _poll_file(client, store.id, uploaded.id)
        assert done.status == "completed", done.last_error
        assert client.vector_stores.retrieve(store.id).file_counts.completed == 1
        assert _kb(pid, "VmHWM") - resting < GROWTH_BOUND_KB


def test_a_file_past_max_file_tokens_is_refused_by_its_token_count(backend, tmp_path) -> None:
    args = ("--upstream", backend.url, "--db", f"sqlite:///{tmp_path / 't.db'}", "--max-file-tokens", "1000")
    with ParleyProcess(*args) as server, \
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60) as client:
        short = " ".join(["word"] * 500).encode()  # under 1,000 tokens, under 8,000 bytes
        long = " ".join(["word"] * 1500).encode()  # over 1,000 tokens, still under 8,000 bytes
        store = client.vector_stores.create(name="tokens")
        for name, data, status in (("short.txt", short, "completed"), ("long.txt", long, "failed")):
            uploaded = client.files.create(file=(name, data), purpose="assistants")
            done = _poll_file(client, store.id, client.vector_stores.files.create(
                vector_store_id=store.id, file_id=uploaded.id).id)
            assert done.status == status, (name, done.last_error)
        assert "more than 1000 tokens" in done.last_error.message
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="m", input=[{"role": "user", "content": [
                {"type": "input_file", "filename": "long.txt",
                 "file_data": "data:text/plain;base64," + base64.b64encode(long).decode()}]}])
        assert info.value.body["code"] == "file_too_large" and "1000 tokens" in info.value.body["message"]
