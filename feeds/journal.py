"""The API's audit journal: an answer's audit row off the request's path, and never lost.

The audit logs (feed deliveries, front-desk accesses) are the record of who received which
personal data; an answer must not leave without its row being safe. Committing the row to the
warehouse before sending costs a transaction on the request's path. Instead the API appends the
row to a local journal file (one `write`, before the answer is returned: it survives the server
process dying at any point after that) and a writer thread commits what has accumulated in one
transaction, at most every COMMIT_EVERY (0.1 s), at once for flush() and close(). Rows of a
journal file that is still on disk when a server starts (a crash, a kill, the warehouse down at
shutdown) are committed then; each row carries a key that the warehouse keeps unique, so a file
replayed after its rows were committed writes nothing twice.

Files are `<folder>/<pid>-<ns>.jsonl`, one folder per audit log; a file takes rows across
commits until SEGMENT_BYTES. The process writing one holds an exclusive `flock` on it until it is
full, its rows are committed and the file is deleted, so another server
sharing the folder (two workers) never replays a live file. Without `fsync` (the default) a power
cut can lose what the writer had not committed yet (milliseconds under load);
`ENTERONCE_AUDIT_FSYNC=1` syncs each append, at the cost of a disk flush per answer.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from core.time import utcnow

log = logging.getLogger("enteronce")

FSYNC_ENV = "ENTERONCE_AUDIT_FSYNC"
JOURNAL_ENV = "ENTERONCE_AUDIT_JOURNAL"  # feeds.api.app_from_env: the folder, else no journal
RETRY_MIN, RETRY_MAX = 0.5, 30.0  # seconds between attempts while the warehouse refuses a commit
MAX_PENDING = 10_000  # rows waiting for their commit; beyond, answers are refused (memory, file size)
# A file takes rows across commits until it holds this much, then the next commit seals it: a new
# file per commit (create, lock, rename, then unlink) was a few percent of a busy server's loop.
# Its committed rows stay in it meanwhile, and a crash replays them as nothing (keys).
SEGMENT_BYTES = 4 * 2**20
# The writer commits at most this often (flush() and close() need not wait for it): every commit
# makes an SQLite API's connections read the rows they keep again (warehouse.unchanged), and
# larger batches cost less per row. The rows are safe in their file meanwhile.
COMMIT_EVERY = 0.1  # seconds


class JournalClosed(RuntimeError):
    pass


class JournalFull(RuntimeError):
    """The warehouse has refused the audit log's commits for so long that MAX_PENDING rows wait:
    no more answers leave until it takes them (the API answers 503)."""


class _Segment:
    """One journal file, locked by this process while it exists."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def create(cls, folder: Path) -> _Segment:
        path = folder / f"{os.getpid()}-{time.time_ns()}.jsonl"
        fresh = path.with_suffix(".new")  # locked before it has the name recovery looks for
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(fresh, path)
        return cls(path, fd)

    def retire(self) -> None:
        """The rows are committed: remove the file, then let go of it."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


class AuditJournal:
    """`record(rows)` returns once the rows are in the journal file; `flush()` waits until every
    row recorded so far is committed; `close()` commits the rest and stops the writer.

    `commit(rows, replay=...) -> int` is the warehouse side (FeedStore.record_deliveries,
    record_accesses): one transaction; with `replay` (recovery, and a retry after a failed commit,
    which may have landed) it skips rows whose `journal_key` it already holds; it says how many it
    wrote. `stamp` is the rows' time column, set when a row is recorded (when the answer left,
    not when its row was committed)."""

    def __init__(self, folder: Path | str, commit: Callable[..., int], *, stamp: str,
                 fsync: bool | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._commit = commit
        self.stamp = stamp
        self.fsync = os.environ.get(FSYNC_ENV) == "1" if fsync is None else fsync  # each append synced
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the writer waits here for rows
        self._done = threading.Condition(self._lock)  # flush() waits here for commits
        self._idle = False  # the writer waits for rows: the next record wakes it (only then)
        self._hurry = 0  # flush() calls waiting: the writer commits without waiting out COMMIT_EVERY
        self._pending: list[dict] = []
        self._segment: _Segment | None = None  # the file new rows go to
        self._segment_bytes = 0
        self._sealed: list[_Segment] = []  # files whose rows are pending, awaiting their commit
        self._recorded = self._committed = 0
        self._closing = False
        self.failures = 0  # commits the warehouse refused (retried)
        self.recovered = 0
        self._recovering = not self._try_recover()  # the warehouse away at start: tried again later
        self._thread = threading.Thread(target=self._run, name="audit-journal", daemon=True)
        self._thread.start()

    # -- the request's side ----------------------------------------------------------------------
    def record(self, rows: list[dict]) -> None:
        if not rows:
            return
        now = utcnow()
        rows = [{**r, "journal_key": os.urandom(16).hex(), self.stamp: now} for r in rows]
        data = b"".join(self._encode(r) + b"\n" for r in rows)
        with self._lock:
            if self._closing:
                raise JournalClosed("the audit journal is closed")
            if len(self._pending) >= MAX_PENDING:
                raise JournalFull(f"the audit log is not taking rows ({len(self._pending):,} waiting in "
                                  f"{self.folder.name}/); answers resume when it does")
            if self._segment is None:
                self._segment = _Segment.create(self.folder)
            os.write(self._segment.fd, data)  # O_APPEND: one write, whole lines
            self._segment_bytes += len(data)
            if self.fsync:
                os.fsync(self._segment.fd)
            self._pending.extend(rows)
            self._recorded += len(rows)
            if self._idle:  # a busy writer takes these with its next batch anyway
                self._idle = False
                self._work.notify()

    def _encode(self, row: dict) -> bytes:
        """One line: orjson writes the stamp as isoformat() would (a city page's thousand entity
        ids took json.dumps about a fifth of the API loop's time per page)."""
        return orjson.dumps(row)

    def _decode(self, line: str) -> dict:
        row = json.loads(line)
        row[self.stamp] = dt.datetime.fromisoformat(row[self.stamp])
        return row

    # -- the writer --------------------------------------------------------------------------------
    def _run(self) -> None:
        delay, retry = RETRY_MIN, False
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._idle = True
                    self._work.wait()
                self._idle = False
                if not self._pending:
                    return
                rows, self._pending = self._pending, []
                full = self._segment is not None and (self._segment_bytes >= SEGMENT_BYTES or self._closing)
                sealed = self._sealed + ([self._segment] if full else [])
                self._sealed = []
                if full:
                    self._segment, self._segment_bytes = None, 0
            began = time.monotonic()
            try:
                self._commit(rows, replay=retry)  # a commit that failed may have landed all the same
            except Exception as exc:  # the warehouse is away: the rows stay in their files and queue
                self.failures += 1
                with self._lock:
                    self._pending = rows + self._pending
                    self._sealed = sealed + self._sealed
                    if self._closing:
                        log.error("audit journal: %d audit row(s) left in %s for the next start: %s",
                                  len(self._pending), self.folder, exc)
                        return
                    log.warning("audit journal: commit of %d audit row(s) failed, retrying in %.1f s: %s",
                                len(rows), delay, exc)
                    self._work.wait(delay)
                delay, retry = min(delay * 2, RETRY_MAX), True
                continue
            delay, retry = RETRY_MIN, False
            for seg in sealed:
                seg.retire()
            with self._lock:
                self._committed += len(rows)
                self._done.notify_all()
            if self._recovering:
                self._recovering = not self._try_recover()
            with self._lock:
                self._work.wait_for(lambda: self._closing or self._hurry, COMMIT_EVERY - (time.monotonic() - began))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row recorded before the call is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._recorded
            self._hurry += 1
            self._work.notify()
            try:
                while self._committed < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._done.wait(min(left, 1.0))  # and look again whether the writer is still alive
            finally:
                self._hurry -= 1
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is recorded and stop; rows the warehouse would not take stay on disk for the
        next start (and the log says so)."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():  # still in a commit: its files stay locked until this process ends
            log.error("audit journal: the writer did not finish within %.0f s; what it has not "
                      "committed stays in %s for the next start", timeout, self.folder)
            return
        with self._lock:
            for seg in self._sealed + ([self._segment] if self._segment is not None else []):
                if self._pending:
                    os.close(seg.fd)  # unlocked, not removed: replayed by the next journal on the folder
                else:
                    seg.retire()  # a file that still took rows, all of them committed
            self._sealed, self._segment = [], None

    # -- a start after a crash ---------------------------------------------------------------------
    def _try_recover(self) -> bool:
        try:
            self.recovered += self.recover()
        except Exception as exc:
            log.warning("audit journal: the rows left in %s could not be committed yet: %s", self.folder, exc)
            return False
        return True

    def recover(self) -> int:
        """Commit the rows of journal files no live process holds; how many were new to the log.
        A line that does not parse (a write cut short by a crash) is reported, and the file kept
        as `.unreadable` beside its committed rows."""
        written = 0
        for path in sorted(self.folder.glob("*.jsonl")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # committed and removed by its owner meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live server's file
                if not path.exists():
                    continue
                rows, bad = [], []
                with os.fdopen(os.dup(fd), encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            rows.append(self._decode(line))
                        except (ValueError, KeyError, TypeError) as exc:
                            bad.append(f"line {n}: {exc}")
                written += self._commit(rows, replay=True) if rows else 0
                if bad:
                    kept = path.with_suffix(".unreadable")
                    path.rename(kept)
                    log.error("audit journal: %s has %d unreadable line(s) (%s); its other %d row(s) "
                              "are committed", kept, len(bad), "; ".join(bad[:3]), len(rows))
                else:
                    path.unlink()
            finally:
                os.close(fd)
        if written:
            log.warning("audit journal: committed %d audit row(s) left by an earlier server in %s",
                        written, self.folder)
        return written
