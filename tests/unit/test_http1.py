"""Parley's upstream HTTP/1.1 client (parley.backends.http1) against real servers on loopback, one per test,
each answering the way the test writes (plain TCP, and TLS with a certificate made here)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest

from parley.backends.http1 import (HIGH_WATER, ConnectFailed, Dropped, Malformed, Pool, ReadTimeout,
                                   UpstreamError)

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A TCP server on 127.0.0.1 that runs ``handler`` for each connection, counting connections and noting
    each one's end (the client's close)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.handler, self.tls, self.host = handler, tls, host
        self.connections = 0
        self.closed = asyncio.Event()  # a connection was closed by the client

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
            await reader.read()  # until the client closes
            self.closed.set()
        except (ConnectionError, ssl.SSLError):
            self.closed.set()
        finally:
            writer.close()

    def pool(self, scheme: str = "http", read_timeout_s: float = 30.0, keepalive_s: float = 30.0) -> Pool:
        return Pool(f"{scheme}://127.0.0.1:{self.port}/v1", connect_timeout_s=5.0, read_timeout_s=read_timeout_s,
                    keepalive_s=keepalive_s)


async def request_head(reader: asyncio.StreamReader) -> bytes:
    """A request's head and its body (Content-Length), as one string of bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def answer(body: bytes, *headers: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), b"".join(h + b"\r\n" for h in headers),
                                                                   body)


async def test_a_kept_alive_connection_serves_the_next_request() -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(3):
            seen.append(await request_head(reader))
            writer.write(answer(b'{"n": %d}' % n))

    async with Server(serve) as server:
        pool = server.pool()
        for n in range(3):
            connection = await pool.request("POST", "/v1/chat/completions", {"Authorization": "Bearer k"}, b"{}")
            assert (connection.status, await connection.read(1000)) == (200, b'{"n": %d}' % n)
            connection.release()
        assert server.connections == 1
        assert seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in seen[0]
        assert b"\r\nAuthorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b"Content-Length: 2\r\n\r\n{}")
        pool.close()
        await server.closed.wait()


async def test_a_chunked_body_comes_in_the_pieces_its_reads_bring() -> None:
    go_on = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n, w")
        await go_on.wait()
        writer.write(b"\r\n4\r\norld\r\n0\r\n\r\n")

    async with Server(serve) as server:
        connection = await server.pool().request("GET", "/v1/models", {})
        pieces = []
        async for piece in connection.chunks():
            pieces.append(piece)
            go_on.set()
        assert b"".join(pieces) == b"hello, world" and len(pieces) >= 2
        connection.release()
        assert not connection.closed  # kept for the next request


async def test_a_body_without_a_length_ends_with_the_connection_which_is_not_reused() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ndata: one\n\ndata: two\n\n")
        await writer.drain()
        writer.close()

    async with Server(serve) as server:
        pool = server.pool()
        connection = await pool.request("GET", "/v1/models", {})
        assert await connection.read(1000) == b"data: one\n\ndata: two\n\n"
        connection.release()
        assert connection.closed
        again = await pool.request("GET", "/v1/models", {})
        assert await again.read(1000) == b"data: one\n\ndata: two\n\n"
        assert server.connections == 2


async def test_an_idle_connection_is_closed_after_the_keep_alive() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(answer(b"ok"))

    async with Server(serve) as server:
        connection = await server.pool(keepalive_s=0.05).request("GET", "/v1/models", {})
        assert await connection.read(10) == b"ok"
        connection.release()
        await server.closed.wait()  # the pool closed it, idle


async def test_a_connection_closed_without_an_answer_is_dropped_and_one_closed_while_idle_is_not_reused() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        if server.connections == 1:
            writer.write(answer(b"ok"))  # then closed, though the answer did not say so
            await writer.drain()
        writer.close()  # (the second connection closes at the request: a server closing a kept-alive connection)

    async with Server(serve) as server:
        pool = server.pool()
        first = await pool.request("GET", "/v1/models", {})
        assert await first.read(10) == b"ok"
        first.release()
        while pool._idle:  # the server's close, seen while idle
            await asyncio.sleep(0.01)
        with pytest.raises(Dropped):  # a new connection, closed with no answer
            await pool.request("GET", "/v1/models", {})
        assert server.connections == 2


async def test_a_silent_upstream_times_out_and_a_body_cut_short_is_dropped() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    async with Server(silent) as server:
        pool, answered = server.pool(read_timeout_s=0.2), []
        with pytest.raises(ReadTimeout):  # (on a busy machine the timeout may even come before the headers)
            answered.append(await pool.request("GET", "/v1/models", {}))
            async for _ in answered[0].chunks():
                pass
        for connection in answered:
            connection.release()
            assert connection.closed
        await server.closed.wait()  # closed, not kept

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
        await writer.drain()
        writer.transport.abort()

    async with Server(cut) as server:
        connection = await server.pool().request("GET", "/v1/models", {})
        with pytest.raises(Dropped):
            await connection.read(1000)


async def test_a_body_read_slower_than_it_comes_stops_the_socket_and_arrives_whole() -> None:
    body = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(answer(body))

    async with Server(serve) as server:
        connection = await server.pool().request("GET", "/v1/models", {})
        while not connection._paused and connection._held < len(body):  # nothing is read
            await asyncio.sleep(0.01)
        assert connection._paused and HIGH_WATER < connection._held < len(body)  # stopped past the high water
        assert await connection.read(len(body) + 1) == body


async def test_a_gzip_body_is_decoded_and_an_unknown_encoding_refused() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(answer(gzip.compress(b'{"data": []}'), b"Content-Encoding: gzip"))
        await request_head(reader)
        writer.write(answer(b"...", b"Content-Encoding: br"))

    async with Server(serve) as server:
        pool = server.pool()
        connection = await pool.request("GET", "/v1/models", {})
        assert await connection.read(1000) == b'{"data": []}'
        connection.release()
        with pytest.raises(Malformed, match="'br'"):
            await pool.request("GET", "/v1/models", {})


async def test_an_informational_answer_is_passed_over() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + answer(b"ok", b"X-Answer: 1"))

    async with Server(serve) as server:
        connection = await server.pool().request("GET", "/v1/models", {})
        assert (connection.status, connection.headers.get("x-answer")) == (200, "1")
        assert "link" not in connection.headers  # (the 103's header)
        assert await connection.read(10) == b"ok"
        connection.release()
        assert not connection.closed


async def test_a_header_that_would_break_the_request_is_not_sent() -> None:
    async with Server(request_head) as server:
        pool = server.pool()
        for headers in ({"Authorization": "Bearer k\r\nX-Admin: 1"}, {"Bad Name": "v"}, {"X": "\n"}):
            with pytest.raises(ValueError):
                await pool.request("GET", "/v1/models", headers)
        assert server.connections == 0


@pytest.mark.parametrize("reply", [b"SPAM / 1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000 + b"\r\n\r\n"])
async def test_what_is_not_http_or_has_too_many_headers_is_malformed(reply: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(reply)

    async with Server(serve) as server:
        with pytest.raises(Malformed):
            await server.pool().request("GET", "/v1/models", {})


async def test_a_refused_connection_fails_to_connect() -> None:
    async with Server(request_head) as server:
        pool = server.pool()
    with pytest.raises(ConnectFailed):  # (the server is closed)
        await pool.request("GET", "/v1/models", {})


async def test_a_request_given_up_closes_its_connection() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")

    async with Server(serve) as server:
        pool = server.pool()
        connection = await pool.request("GET", "/v1/models", {})

        async def read() -> None:
            async for _ in connection.chunks():
                pass

        task = asyncio.ensure_future(read())
        while not connection._waiter:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        connection.release()
        await server.closed.wait()
        assert pool._idle == []


async def test_a_host_name_is_resolved_once_for_the_connections_made_after_it() -> None:
    found = await asyncio.get_running_loop().getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)
    address = found[0][4][0]  # (where the pool's own lookup will connect first)
    answer_now = asyncio.Event()
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await request_head(reader))
        await answer_now.wait()
        writer.write(answer(b"ok"))

    async with Server(serve, host=address) as server:
        pool = Pool(f"http://localhost:{server.port}/v1", connect_timeout_s=5.0, read_timeout_s=30.0,
                    keepalive_s=30.0)
        first = asyncio.ensure_future(pool.request("GET", "/v1/models", {}))
        while server.connections < 1:
            await asyncio.sleep(0.01)
        assert pool._resolved is not None and pool._resolved[1] == address
        stamp = pool._resolved[0]
        second = asyncio.ensure_future(pool.request("GET", "/v1/models", {}))  # the first holds its connection
        while server.connections < 2:
            await asyncio.sleep(0.01)
        answer_now.set()
        for connection in await asyncio.gather(first, second):
            assert await connection.read(10) == b"ok"
            connection.release()
        assert pool._resolved[0] == stamp  # the second connection used the first's lookup
        assert all(b"\r\nHost: localhost:%d\r\n" % server.port in head for head in heads)  # (the name, as written)


def _certificate(tmp_path) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for 127.0.0.1, and the certificate's file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parley test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


async def test_https_verifies_the_certificate_against_the_trusted_store(tmp_path, monkeypatch) -> None:
    context, cert_file = _certificate(tmp_path)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(answer(b"secret"))

    async with Server(serve, tls=context) as server:
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted
            await server.pool("https").request("GET", "/v1/models", {})
        monkeypatch.setenv("SSL_CERT_FILE", cert_file)  # (what ssl.create_default_context() trusts)
        connection = await server.pool("https").request("GET", "/v1/models", {})
        assert await connection.read(100) == b"secret"
        connection.release()


def test_only_http_urls_make_a_pool() -> None:
    with pytest.raises(ValueError):
        Pool("ftp://example.com/v1", 1, 1, 1)
    pool = Pool("https://api.example.com/v1/", 1, 1, 1)
    assert (pool.host, pool.port, pool.authority, pool.prefix) == ("api.example.com", 443, b"api.example.com", "/v1")
    assert issubclass(Dropped, UpstreamError)
