"""SQLite's WAL checkpoints, copied on a thread of their own rather than in a request's commit.

In WAL mode a commit appends to the write-ahead log, and SQLite by default copies the log back into the database
file (a checkpoint) inside whichever commit finds the log past 1,000 pages: 5 ms or so on the project's 2-core
machine, in one stored response in a hundred or so, and in the wait of every write queued behind it: it was about
half of what a stored non-streamed response's p99 added over an unstored one's (``bench/README.md``,
"Checkpoints off the commit").

So the store's writing connection does not checkpoint (``wal_autocheckpoint=0``) and truncates the log when it
starts it again (``journal_size_limit=0``: the log file's size is what it holds).  After each commit the writing
thread looks at that size (one ``stat``); past :data:`CHECKPOINT_BYTES` it wakes the checkpointer, whose
connection copies the log back beside the writer (a passive checkpoint: what no reader still needs).  The log
can start again only at a write that begins with every frame copied, which the writes that went on during the
copy prevent; so once the checkpointer has copied all it found, the writing thread copies the few frames
written since itself, after its next commit (under a millisecond), and the write after that starts the log
again.  (Without that, the log grew past 180 MiB in 15 s of steady writes.)  No copy is asked for while one
runs.  A copy that a reader's older snapshot cut short is asked for again after a later commit, as SQLite's own
would be.
"""

from __future__ import annotations

import logging
import os
import threading

import sqlalchemy as sa

log = logging.getLogger("parley.store")
CHECKPOINT_BYTES = 4 << 20  # SQLite's own point: 1,000 pages of 4 KiB
WRITER_PRAGMAS = ("PRAGMA wal_autocheckpoint=0", "PRAGMA journal_size_limit=0")
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"


def applies(url: sa.URL) -> bool:
    """Whether a SQLite URL names a file whose log the checkpointer can find (not memory, not a ``file:`` URI):
    elsewhere SQLite checkpoints in the commit, as it does by default."""
    return url.database not in (None, "", ":memory:") and not url.query.get("uri")


class Checkpointer:
    """Checkpoints of the SQLite file that ``writer`` (the store's one writing engine) writes, the bulk of each
    copied on a thread started at the first one needed."""

    def __init__(self, writer: sa.Engine, threshold: int = CHECKPOINT_BYTES) -> None:
        self._writer = writer
        self._path = str(writer.url.database)
        self._wal = self._path + "-wal"
        self._connect = writer.dialect.dbapi.connect
        self._failures = 0  # copies that failed (the first is logged as a warning, the rest at debug level)
        self.threshold = threshold
        self.copies = 0  # the checkpointer's copies, whole or cut short
        self.finished = 0  # the writer's copies of what was written during a whole one
        self._copied = False  # the checkpointer's last copy found nothing it could not copy
        self._wake = threading.Event()
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def idle(self) -> bool:
        """Whether no copy is asked for or running."""
        return not self._wake.is_set() and not self._busy

    def after_commit(self) -> None:
        """On the writing thread, after a commit: finish a whole copy, or ask for one once the log has reached the
        threshold.  Never raises: the commit stands whatever happens here."""
        try:
            if self._copied:
                self._copied = False
                self._finish()
                return
            if self._wake.is_set() or self._busy or self._closing or os.stat(self._wal).st_size < self.threshold:
                return
            with self._lock:
                if self._thread is None and not self._closing:
                    self._thread = threading.Thread(target=self._run, name="parley-sqlite-checkpoint", daemon=True)
                    self._thread.start()
            self._wake.set()
        except Exception as exc:  # no log (yet), or the file gone: a later commit looks again
            log.debug("checkpoint of %s not asked for: %s", self._path, exc)

    def _finish(self) -> None:
        with self._writer.connect() as conn:
            conn.connection.driver_connection.execute(CHECKPOINT).fetchall()
        self.finished += 1

    def _run(self) -> None:
        conn = None  # opened at the first copy, and again after a copy that could not open it (out of files)
        try:
            while True:
                self._wake.wait()
                if self._closing:
                    return
                self._busy = True
                self._wake.clear()
                try:
                    if conn is None:
                        conn = self._connect(self._path, check_same_thread=False)
                    busy, frames, copied = conn.execute(CHECKPOINT).fetchone()
                    self._copied = busy == 0 and frames > 0 and copied == frames
                except Exception as exc:  # another process's checkpoint, or no file to open: a later commit asks again
                    (log.debug if self._failures else log.warning)("checkpoint of %s not run: %s", self._path, exc)
                    self._failures += 1
                self.copies += 1
                self._busy = False
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
