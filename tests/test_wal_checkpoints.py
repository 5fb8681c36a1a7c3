"""A large write's WAL checkpoint runs after its commit, in the background (warehouse.checkpoints):
the commit returns with its pages in the WAL only, every reader sees them, and the checkpoint
that follows copies them all into the database file; in a process that exits at once and in a
forked child too."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from warehouse import Warehouse, checkpoints

ROWS = 12_000  # rows of about 2 KB: some 24 MB, past the automatic checkpoint's 1,000 pages of 16 KB


def _fill(conn, tag: str) -> None:
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS scratch (tag TEXT, n INTEGER, body TEXT)")
    # INSERT first: Python's sqlite3 opens the transaction before a statement that starts with it
    conn.exec_driver_sql("INSERT INTO scratch WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                         "WHERE n < ?) SELECT ?, n, hex(randomblob(1000)) FROM c", (ROWS, tag))


def _count(path: Path, tag: str) -> int:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT count(*) FROM scratch WHERE tag = ?", (tag,)).fetchone()[0]


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames of it checkpointed), from a PASSIVE checkpoint that copies
    nothing new once the background one is done."""
    with sqlite3.connect(path) as c:
        _busy, log, done = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log, done


@pytest.fixture()
def store(tmp_path) -> Warehouse:
    return Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()


def test_a_large_commit_leaves_its_checkpoint_to_the_background_and_it_follows(store, tmp_path, monkeypatch):
    path = tmp_path / "w.sqlite"
    checkpoints.wait(store.engine)
    asked: list[checkpoints._Checkpointer] = []
    monkeypatch.setattr(checkpoints._Checkpointer, "request", lambda self: asked.append(self))

    # an ordinary transaction checkpoints in its own COMMIT: the database file takes the rows
    size = path.stat().st_size
    with store.transaction() as conn:
        _fill(conn, "inline")
    assert path.stat().st_size > size + ROWS * 1000
    assert asked == []

    size = path.stat().st_size
    with store.transaction(large=True) as conn:
        _fill(conn, "large")
    assert len(asked) == 1
    assert path.stat().st_size == size  # the rows are in the WAL only ...
    assert _count(path, "large") == ROWS  # ... and committed: another connection reads them
    monkeypatch.undo()
    asked[0].request()
    assert checkpoints.wait(store.engine, timeout=30)
    assert path.stat().st_size > size + ROWS * 1000
    busy, log, done = asked[0].last
    assert busy == 0 and log > 1000 and done == log


def test_the_connection_checkpoints_as_before_after_a_large_transaction_even_a_failed_one(store):
    with pytest.raises(RuntimeError):
        with store.transaction(large=True) as conn:
            _fill(conn, "rolled back")
            raise RuntimeError("stop")
    with store.engine.connect() as conn:  # the pool's one connection, handed out again
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert conn.exec_driver_sql("SELECT count(*) FROM scratch").scalar() == 0
    assert checkpoints.wait(store.engine, timeout=30)


def _write_and_exit(url: str) -> None:
    """A process that commits a large transaction and ends at once."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_wal_checkpoints import _fill
        from warehouse import Warehouse
        with Warehouse({url!r}).transaction(large=True) as conn:
            _fill(conn, "child")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_process_that_exits_right_after_a_large_commit_still_checkpoints_it(store, tmp_path):
    path = tmp_path / "w.sqlite"
    holder = sqlite3.connect(path)  # so the child's close is not the last one (which would checkpoint anyway)
    holder.execute("SELECT 1 FROM sqlite_master").fetchall()
    size = path.stat().st_size
    _write_and_exit(store.url)
    assert path.stat().st_size > size + ROWS * 1000  # copied into the file before the process ended
    log, done = _wal_frames(path)
    assert log == done
    holder.close()
    # a warehouse only the child opens: its last connection's close removes the WAL (the
    # checkpoints' connection is closed at exit)
    alone = tmp_path / "alone.sqlite"
    _write_and_exit(f"sqlite:///{alone}")
    assert not Path(f"{alone}-wal").exists()
    assert _count(alone, "child") == ROWS


def _child_writes(url: str, out) -> None:
    store = Warehouse(url)
    with store.transaction(large=True) as conn:
        _fill(conn, "forked")
    out.send(checkpoints.wait(store.engine, timeout=30))


def test_a_forked_child_runs_its_own_checkpoints(store):
    with store.transaction(large=True) as conn:  # the parent's thread exists before the fork
        _fill(conn, "parent")
    assert checkpoints.wait(store.engine, timeout=30)
    parent, child = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(target=_child_writes, args=(store.url, child))
    proc.start()
    assert parent.poll(60) and parent.recv() is True  # without its own thread it would wait in vain
    proc.join(30)


def test_nothing_is_deferred_on_postgresql(pg_url):
    store = Warehouse(pg_url).migrate()
    with store.transaction(large=True) as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (n integer)")
        conn.exec_driver_sql("INSERT INTO scratch SELECT generate_series(1, 10)")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM scratch").scalar() == 10
    assert checkpoints._file(store.engine) is None and checkpoints.wait(store.engine, timeout=0)
    store.engine.dispose()
