"""How a streamed response's frames are written, seen on the wire: the HTTP chunks of the response (one per
write the server made), read from a raw socket.  When one read from the upstream brings several chunks, their
events go out in one write; when the upstream has sent only part of its answer, what it sent is written at once."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from parley.testing import ParleyProcess, Reply
from parley.testing.grammar import check_stream

EVENTS = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module", params=["true", "false"], ids=["relay", "translator"])
def server(scripted_server, tmp_path_factory, request):
    """A server with the text relay (the default), and one without it (``--text-relay false``)."""
    folder = tmp_path_factory.mktemp("writes")
    with ParleyProcess("--upstream", scripted_server.url, "--db", f"sqlite:///{folder / 'p.db'}",
                       "--text-relay", request.param) as running:
        yield running


class HttpChunks:
    """A streamed ``POST /v1/responses`` on a raw socket, read one HTTP chunk (one server write) at a time."""

    def __init__(self, port: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), head

    def _until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            received = self.sock.recv(65536)
            assert received, "the connection closed early"
            self.buffer += received
        found, self.buffer = self.buffer.split(end, 1)
        return found

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            received = self.sock.recv(65536)
            assert received, "the connection closed early"
            self.buffer += received
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found

    def __iter__(self) -> Iterator[list[dict]]:
        """Each HTTP chunk's events, as JSON objects, until the last chunk."""
        while True:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                return
            data = self._exactly(size)
            assert self._exactly(2) == b"\r\n"
            yield [json.loads(frame.split(b"\ndata: ", 1)[1]) for frame in data.split(b"\n\n") if frame.strip()]

    def close(self) -> None:
        self.sock.close()


def test_the_chunks_of_one_upstream_read_go_out_in_one_write(server, backend) -> None:
    backend.push(Reply(text="one two three four five six seven", chunk_size=4, together=True))
    stream = HttpChunks(server.port, {"model": "m", "input": "count", "stream": True})
    writes = list(stream)
    stream.close()
    deltas_per_write = [sum(e["type"] == "response.output_text.delta" for e in events) for events in writes]
    assert max(deltas_per_write) >= 2, deltas_per_write
    events = [EVENTS.validate_python(e) for events in writes for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = check_stream(events)
    assert final.output_text == "one two three four five six seven"


def test_what_the_upstream_sent_so_far_is_written_at_once(server, backend) -> None:
    backend.push(Reply(text="abcdefgh", chunk_size=2, pause_after=2))
    stream = HttpChunks(server.port, {"model": "m", "input": "spell", "stream": True})
    seen: list[dict] = []
    for events in stream:
        seen += events
        if any(e["type"] == "response.output_text.delta" for e in events):
            break  # the first piece arrived while the upstream still holds the rest
    assert [e["delta"] for e in seen if e["type"] == "response.output_text.delta"] == ["ab"]
    backend.resume()
    for events in stream:
        seen += events
    stream.close()
    final = check_stream([EVENTS.validate_python(e) for e in seen])
    assert final.output_text == "abcdefgh"
