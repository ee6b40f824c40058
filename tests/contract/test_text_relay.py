"""The text relay (``--text-relay``, on by default) against the translator alone (``--text-relay false``): the
same recorded upstream streams through two servers give the same bytes, once ids and times are set aside,
and each follows the protocol's grammar."""

from __future__ import annotations

import re

import httpx
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from parley.testing import ParleyProcess, Reply
from parley.testing.grammar import check_stream
from parley.testing.recorded_streams import STREAMS

EVENTS = TypeAdapter(ResponseStreamEvent)
IDS = re.compile(rb"\b(?:resp|msg|fc|rs)_[0-9a-f]{16,}")
TIMES = re.compile(rb'"(created_at|completed_at)":\d+')


@pytest.fixture(scope="module")
def servers(scripted_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("relay")
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{folder / 'on.db'}") as on, \
            ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{folder / 'off.db'}",
                          "--text-relay", "false") as off:
        yield on, off


def normalized(body: bytes) -> bytes:
    """Each id replaced by its order of first appearance, timestamps by 0."""
    seen: dict[bytes, bytes] = {}
    body = IDS.sub(lambda m: seen.setdefault(m.group(0), b"id_%d" % len(seen)), body)
    return TIMES.sub(rb'"\1":0', body)


def streamed(server: ParleyProcess, backend, lines: list[str], extra: dict) -> bytes:
    backend.push(Reply(raw=lines))
    with httpx.stream("POST", f"{server.base_url}/responses", timeout=60,
                      json={"model": "m", "input": "hi", "stream": True, **extra}) as response:
        assert response.status_code == 200, response.read()
        return response.read()


def events(body: bytes) -> list:
    return [EVENTS.validate_json(frame.split(b"\ndata: ", 1)[1]) for frame in body.split(b"\n\n") if frame.strip()]


@pytest.mark.parametrize("name,lines,extra", STREAMS, ids=[name for name, _, _ in STREAMS])
def test_the_relay_writes_what_the_translator_writes(servers, backend, name, lines, extra) -> None:
    on, off = servers
    relayed, translated = streamed(on, backend, lines, extra), streamed(off, backend, lines, extra)
    assert normalized(relayed) == normalized(translated)
    final = check_stream(events(relayed))
    if name in ("broken", "cut"):
        assert final.status == "failed"
    else:
        assert final.status in ("completed", "incomplete") and final.output_text


def test_a_long_answer_read_in_pieces_is_the_same(servers, backend) -> None:
    """Many chunks, some reads bringing several (the relay's batches), some one."""
    text = "".join(f"w{i} " for i in range(300))
    bodies = []
    for server in servers:
        backend.push(Reply(text=text, chunk_size=3, together=True))
        with httpx.stream("POST", f"{server.base_url}/responses", timeout=60,
                          json={"model": "m", "input": "hi", "stream": True}) as response:
            bodies.append(response.read())
    assert normalized(bodies[0]) == normalized(bodies[1])
    found = events(bodies[0])
    assert check_stream(found).output_text == text
    assert [e.sequence_number for e in found] == list(range(len(found)))


def relayed_writes(server: ParleyProcess) -> float:
    """The server's ``parley_relayed_writes_total``: text written from the upstream's read callback."""
    found = re.search(r"^parley_relayed_writes_total (\S+)$", httpx.get(f"{server.url}/metrics").text, re.M)
    assert found, "the metric is exported"
    return float(found.group(1))


def test_text_that_comes_while_the_response_waits_is_written_from_the_upstream_read(servers, backend) -> None:
    """Once the client has the first delta, the response's task waits for the upstream (the paused reply): the
    text chunks that come after the pause are framed and written in the socket's read callback, with no task
    woken (counted by the metric), and the bytes are still the translator's."""
    bodies, writes = [], []
    for server in servers:
        before = relayed_writes(server)
        backend.push(Reply(text="abcdefghijkl", chunk_size=2, pause_after=2))
        with httpx.stream("POST", f"{server.base_url}/responses", timeout=60,
                          json={"model": "m", "input": "hi", "stream": True}) as response:
            body, reads = b"", response.iter_raw()
            for data in reads:
                body += data
                if b'"delta":"ab"' in body:
                    break
            backend.resume()
            for data in reads:
                body += data
        bodies.append(body)
        writes.append(relayed_writes(server) - before)
    assert normalized(bodies[0]) == normalized(bodies[1])
    found = events(bodies[0])
    assert check_stream(found).output_text == "abcdefghijkl"
    assert [e.sequence_number for e in found] == list(range(len(found)))
    assert writes[0] >= 1 and writes[1] == 0
