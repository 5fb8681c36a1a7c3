"""SQLite: a large write's WAL checkpoint moved off the step that wrote it.

In WAL mode a commit appends its pages to the `-wal` file; a checkpoint later copies them into
the database file. By default the connection that commits runs that checkpoint itself, inside
COMMIT, whenever the WAL holds more than 1,000 pages. After a first publication of a million
records (about 3 GB written) that is about 10 s for which the step waits, though its rows are
committed and every reader already sees them.

`deferred(conn)` wraps one large write transaction: the automatic checkpoint is off on that
connection until its commit, and then a thread of this process (one per database file) runs a
PASSIVE checkpoint on a connection of its own, while the caller goes on (in `enteronce run`, the
next step computes while the disk copies). This is what SQLite's documentation suggests for
applications that would rather not checkpoint on a writer's time ("Application-Initiated
Checkpoints", https://www.sqlite.org/wal.html). PASSIVE waits for no reader and no writer.

Nothing depends on the checkpoint for correctness: the WAL holds the committed data. If the
process ends first, it still waits for the checkpoint that is running or asked for (atexit);
killed, it leaves the frames to the next commit's automatic checkpoint or the last connection's
close, as SQLite always does. Small transactions keep the automatic checkpoint: a background
checkpoint after every journal row of the feed API would only add fsyncs.

It shortens the step that wrote, not the work: on two busy cores the copy slows whatever runs
beside it by about as much (README, "Measured: the whole `enteronce run`").
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from warehouse.bulk import scoped_pragmas, sqlite_file

log = logging.getLogger(__name__)


class _Checkpointer:
    """One thread per database file: a PASSIVE checkpoint each time it is asked (requests that
    arrive while one runs are served by one more)."""

    def __init__(self, path: str):
        self.path = path
        self._asked = threading.Condition()
        self._requested = 0  # requests so far
        self._served = 0  # requests covered by a finished checkpoint
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, frames checkpointed)
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name=f"wal-checkpoint:{os.path.basename(path)}",
                                        daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._asked:
            self._requested += 1
            self._asked.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """True once every checkpoint asked for so far has run."""
        with self._asked:
            target = self._requested
            return self._asked.wait_for(lambda: self._served >= target, timeout)

    def _run(self) -> None:
        while True:
            with self._asked:
                self._asked.wait_for(lambda: self._requested > self._served)
                target = self._requested
            try:
                self.last = self._checkpoint()
            except Exception as e:  # noqa: BLE001 - never fatal: the next commit's automatic checkpoint does it
                log.warning("background checkpoint of %s failed: %s", self.path, e)
            with self._asked:
                self._served = target
                self._asked.notify_all()

    def _checkpoint(self) -> tuple[int, int, int]:
        # One connection, held open until the process ends (`close`): closing it here could make
        # it the database's last connection, whose close removes the WAL and shm files at a
        # moment nobody chose (a copy of the folder running then loses them mid-way).
        started = time.perf_counter()
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            result = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            self.close_connection()
            raise
        log.debug("checkpoint of %s: %s in %.2f s", self.path, result, time.perf_counter() - started)
        return result

    def close_connection(self) -> None:
        """Once no checkpoint runs (at exit): so that the last connection's close can remove
        the WAL, as it would without this thread."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_CHECKPOINTERS: dict[str, _Checkpointer] = {}
_LOCK = threading.Lock()


def _file(engine: sa.Engine) -> str | None:
    path = sqlite_file(engine)
    return None if path is None else os.path.abspath(path)


def _checkpointer(path: str) -> _Checkpointer:
    with _LOCK:
        found = _CHECKPOINTERS.get(path)
        if found is None:
            found = _CHECKPOINTERS[path] = _Checkpointer(path)
        return found


@contextmanager
def deferred(conn: sa.Connection) -> Iterator[None]:
    """Around a large write transaction on `conn` (begun and committed inside the block): its
    commit does not checkpoint; a background checkpoint is asked for after it. Nothing
    elsewhere than on a SQLite file."""
    path = _file(conn.engine)
    if path is None:
        yield
        return
    try:
        with scoped_pragmas(conn, wal_autocheckpoint=0):
            yield
    finally:
        _checkpointer(path).request()


def wait(engine: sa.Engine, timeout: float | None = None) -> bool:
    """Until the background checkpoints asked for on the engine's database have run (True), or
    `timeout` seconds; at once where there is none."""
    path = _file(engine)
    with _LOCK:
        found = _CHECKPOINTERS.get(path) if path else None
    return True if found is None else found.wait(timeout)


def _wait_all() -> None:
    """At exit: the checkpoints asked for run to their end, so the process leaves no WAL for
    the next writer to copy on its own time."""
    with _LOCK:
        pending = list(_CHECKPOINTERS.values())
    for c in pending:
        c.wait()
        c.close_connection()


_INHERITED: list[_Checkpointer] = []


def _forget_in_child() -> None:
    """A forked child has none of the parent's threads: it starts its own when it asks. The
    parent's checkpointers (and their connections) are kept, never used nor closed: SQLite
    connections must not cross a fork."""
    global _LOCK
    _INHERITED.extend(_CHECKPOINTERS.values())
    _CHECKPOINTERS.clear()
    _LOCK = threading.Lock()


atexit.register(_wait_all)
os.register_at_fork(after_in_child=_forget_in_child)
