"""SQLite's WAL checkpoints run on the checkpointer's thread (parley.store.checkpoints), never in a commit: the
writing connection does not checkpoint, the log is copied back once it passes the threshold, and the next commit
starts it again from nothing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import sqlalchemy as sa

from parley.store import open_store
from parley.store.checkpoints import applies

pytestmark = pytest.mark.anyio

ROW = "x" * 50_000


async def until(condition, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.01)


def wal_bytes(path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def notes(store) -> int:
    return await store.read(lambda conn: conn.execute(sa.text("SELECT count(*) FROM notes")).scalar())


async def write(store, text: str) -> None:
    await store.run(lambda conn: conn.execute(sa.text("INSERT INTO notes (body) VALUES (:b)"), {"b": text}))


async def test_the_log_is_copied_back_off_the_writer_and_started_again(tmp_path) -> None:
    path = tmp_path / "p.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        checkpoints = store.checkpoints
        assert checkpoints is not None
        checkpoints.threshold = wal_bytes(path) + 200_000  # the migrations' log and 200 KB
        await store.run(lambda conn: conn.execute(sa.text("CREATE TABLE notes (body TEXT)")))
        # the writing connection never checkpoints: left to it, the log would only grow
        assert await store.run(lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()) == 0
        for _ in range(3):  # 150 KB: under the threshold, nothing asked
            await write(store, ROW)
        assert checkpoints.idle() and checkpoints.copies == 0
        for _ in range(2):  # past it: the checkpointer copies the log back
            await write(store, ROW)
        await until(lambda: checkpoints.copies >= 1 and checkpoints.idle(), "a copy")
        size = wal_bytes(path)
        await write(store, "after")  # the writer copies what was written since
        assert checkpoints.finished == 1
        await write(store, "and after")  # the log starts again, truncated to this commit's pages
        assert wal_bytes(path) < 64 * 1024 < size
        assert await notes(store) == 7
    finally:
        await store.close()
    assert not [t for t in threading.enumerate() if t.name == "parley-sqlite-checkpoint"]


async def test_a_reader_holding_the_log_defers_the_restart_not_the_data(tmp_path) -> None:
    """A copy that a reader's older snapshot cuts short leaves the log as it is; later commits ask again and, once
    the reader is gone, the log starts again."""
    import sqlean

    path = tmp_path / "p.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        checkpoints = store.checkpoints
        await store.run(lambda conn: conn.execute(sa.text("CREATE TABLE notes (body TEXT)")))
        checkpoints.threshold = wal_bytes(path) + 100_000
        await write(store, ROW)
        reader = sqlean.connect(str(path))
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM notes").fetchone() == (1,)  # a snapshot of one row
        for _ in range(2):
            await write(store, ROW)
        await until(lambda: checkpoints.copies >= 1 and checkpoints.idle(), "a copy")
        await write(store, ROW)  # cut short: the writer has nothing to finish, and asks again
        assert checkpoints.finished == 0
        await until(lambda: checkpoints.copies >= 2 and checkpoints.idle(), "a second copy")
        assert reader.execute("SELECT count(*) FROM notes").fetchone() == (1,)
        reader.rollback()
        reader.close()
        await write(store, ROW)  # past the threshold still: a copy, which now copies everything
        await until(lambda: checkpoints.copies >= 3 and checkpoints.idle(), "a third copy")
        await write(store, "after")
        assert checkpoints.finished == 1
        await write(store, "and after")
        assert wal_bytes(path) < 64 * 1024
        assert await notes(store) == 7
    finally:
        await store.close()


async def test_the_writer_finishes_a_copy_made_while_it_wrote(tmp_path) -> None:
    """A write that began before the checkpointer's copy ended keeps the log from starting again; the writing
    thread copies that write's pages after its commit, and the next write starts the log again."""
    path = tmp_path / "p.db"
    store = await open_store(f"sqlite:///{path}")
    inside, go = threading.Event(), threading.Event()

    def slow_write(conn) -> None:
        conn.execute(sa.text("INSERT INTO notes (body) VALUES (:b)"), {"b": ROW})
        inside.set()
        assert go.wait(60)

    try:
        checkpoints = store.checkpoints
        checkpoints.threshold = 1 << 40  # nothing asked for while the log fills
        await store.run(lambda conn: conn.execute(sa.text("CREATE TABLE notes (body TEXT)")))
        for _ in range(3):
            await write(store, ROW)
        checkpoints.threshold = wal_bytes(path)
        writing = asyncio.ensure_future(store.run(slow_write))
        await until(inside.is_set, "the write to begin")
        checkpoints.after_commit()  # as the last commit would have: the checkpointer copies what is committed
        await until(lambda: checkpoints.copies == 1 and checkpoints.idle(), "a copy")
        go.set()
        await writing
        assert checkpoints.finished == 1
        await write(store, "after")
        assert wal_bytes(path) < 64 * 1024
        assert await notes(store) == 5
    finally:
        go.set()
        await store.close()


async def test_a_copy_that_cannot_open_its_connection_is_asked_for_again(tmp_path, caplog) -> None:
    """The checkpointer's connection could not be opened (a process out of file descriptors): the copy fails,
    the thread lives on, and a later commit's copy opens it and copies the log."""
    path = tmp_path / "p.db"
    store = await open_store(f"sqlite:///{path}")
    checkpoints = store.checkpoints
    opened = []

    def connect(*args, **kwargs):
        opened.append(args)
        if len(opened) == 1:
            raise OSError(24, "Too many open files")
        return real(*args, **kwargs)

    real, checkpoints._connect = checkpoints._connect, connect
    try:
        await store.run(lambda conn: conn.execute(sa.text("CREATE TABLE notes (body TEXT)")))
        checkpoints.threshold = wal_bytes(path) + 100_000
        for _ in range(2):
            await write(store, ROW)
        await until(lambda: checkpoints.copies == 1 and checkpoints.idle(), "the failed copy")
        assert "Too many open files" in caplog.text
        await write(store, ROW)  # the log is still past the threshold: asked for again
        await until(lambda: checkpoints.copies == 2 and checkpoints.idle(), "a second copy")
        assert len(opened) == 2
        await write(store, "after")
        assert checkpoints.finished == 1
        await write(store, "and after")
        assert wal_bytes(path) < 64 * 1024
    finally:
        await store.close()


def test_only_a_plain_file_has_its_checkpoints_off_the_commit() -> None:
    """A URI (``uri=true``) may name the file in ways the log's path cannot be made from, and memory has no log:
    SQLite checkpoints those in the commit, as by default."""
    assert applies(sa.make_url("sqlite:////var/lib/parley/p.db"))
    assert applies(sa.make_url("sqlite:///p.db?timeout=5"))
    assert not applies(sa.make_url("sqlite:///file:p.db?mode=rwc&uri=true"))
    assert not applies(sa.make_url("sqlite://"))
    assert not applies(sa.make_url("sqlite:///:memory:"))


async def test_a_database_in_memory_keeps_sqlite_s_own_checkpoints() -> None:
    store = await open_store("sqlite://")
    try:
        assert store.checkpoints is None
        assert await store.run(lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()) == 1000
    finally:
        await store.close()
