"""Warehouse locks under real contention: other processes (subprocess), other threads, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from warehouse.locks import WarehouseBusy, warehouse_lock

ROOT = Path(__file__).resolve().parents[1]

# A holder in another process: takes the lock without waiting, says "held", and keeps it until a
# line arrives on stdin (or it is killed).
HOLDER = """
import sys
import sqlalchemy as sa
from warehouse.locks import warehouse_lock
url, name, mode, purpose = sys.argv[1:5]
engine = sa.create_engine(url)
with warehouse_lock(engine, name, shared=mode == "shared", wait=False, purpose=purpose):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


class Holder:
    def __init__(self, url: str, name: str = "pipeline", mode: str = "exclusive", purpose: str = "holder"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, url, name, mode, purpose],
            cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.pid = self.proc.pid

    def wait_held(self) -> Holder:
        line = self.proc.stdout.readline()
        assert line.strip() == "held", self.proc.stderr.read()
        return self

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.release()
        self.proc.communicate(timeout=10)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.communicate(timeout=10)


@pytest.fixture()
def engine(warehouse_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(warehouse_url)
    yield engine
    engine.dispose()


def held_elsewhere(engine: sa.Engine, name: str = "pipeline", shared: bool = False) -> str | None:
    """Try the lock from another thread of this process (which must not count as re-entry):
    None if it was free, else the WarehouseBusy message."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with warehouse_lock(engine, name, shared=shared, wait=False):
                outcome.append(None)
        except WarehouseBusy as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(10)
    return outcome[0]


def test_exclusive_excludes_another_process_until_it_releases(engine: sa.Engine, warehouse_url: str) -> None:
    holder = Holder(warehouse_url, purpose="nightly-run").wait_held()
    try:
        with pytest.raises(WarehouseBusy) as busy, warehouse_lock(engine, wait=False):
            pytest.fail("acquired a lock another process holds")
        assert "nightly-run" in str(busy.value) and f"pid {holder.pid}" in str(busy.value)
        assert busy.value.lock_name == "pipeline" and busy.value.holders in str(busy.value)

        # Other names on the same warehouse are independent.
        with warehouse_lock(engine, "migrate", wait=False), warehouse_lock(engine, "station:s0001", wait=False):
            pass

        started = time.monotonic()
        heard: list[str] = []
        with pytest.raises(WarehouseBusy, match="nightly-run"), warehouse_lock(engine, timeout=0.4, on_wait=heard.append):
            pytest.fail("acquired a lock another process holds")
        assert 0.4 <= time.monotonic() - started < 2
        assert len(heard) == 1 and f"pid {holder.pid}" in heard[0] and "exclusive" in heard[0]

        # Waiting without a timeout: the holder is told to let go once we have started waiting.
        heard.clear()

        def let_go(description: str) -> None:
            heard.append(description)
            holder.release()

        with warehouse_lock(engine, timeout=10, on_wait=let_go, purpose="second"):
            assert holder.proc.wait(10) == 0
            assert held_elsewhere(engine) is not None
        assert len(heard) == 1 and "nightly-run" in heard[0]
    finally:
        holder.finish()


def test_shared_holders_coexist_and_exclude_exclusive(engine: sa.Engine, warehouse_url: str) -> None:
    reader = Holder(warehouse_url, mode="shared", purpose="reader").wait_held()
    try:
        with warehouse_lock(engine, shared=True, wait=False):  # shared + shared
            message = held_elsewhere(engine)  # exclusive is refused, naming every shared holder
            assert message is not None and "shared" in message
            assert f"pid {reader.pid}" in message and f"pid {os.getpid()}" in message

        with pytest.raises(WarehouseBusy, match="reader"), warehouse_lock(engine, wait=False):
            pass
        heard: list[str] = []

        def let_go(description: str) -> None:
            heard.append(description)
            reader.release()

        with warehouse_lock(engine, timeout=10, on_wait=let_go):
            assert reader.proc.wait(10) == 0
        assert len(heard) == 1 and "reader" in heard[0] and "shared" in heard[0]
    finally:
        reader.finish()

    writer = Holder(warehouse_url, purpose="writer").wait_held()
    try:  # shared waits for an exclusive holder
        with pytest.raises(WarehouseBusy, match="writer"), warehouse_lock(engine, shared=True, timeout=0.3):
            pass
    finally:
        writer.finish()
    with warehouse_lock(engine, shared=True, wait=False):
        pass


def test_killed_holder_releases_the_lock(engine: sa.Engine, warehouse_url: str) -> None:
    holder = Holder(warehouse_url, purpose="doomed").wait_held()
    holder.kill()
    started = time.monotonic()
    with warehouse_lock(engine, shared=True, timeout=5):
        assert time.monotonic() - started < 2
        # The dead holder is not described as holding anything (SQLite: its record is stale).
        message = held_elsewhere(engine)
        assert message is not None and f"pid {os.getpid()}" in message
        assert "doomed" not in message and f"pid {holder.pid}" not in message


def test_reentrant_within_a_thread_but_threads_exclude_each_other(engine: sa.Engine) -> None:
    with warehouse_lock(engine, purpose="run"):
        with warehouse_lock(engine, wait=False), warehouse_lock(engine, shared=True, wait=False):
            pass
        # The nested blocks exited; the outer hold remains, against another thread as well.
        message = held_elsewhere(engine)
        assert message is not None and f"enteronce run pid {os.getpid()}" in message
        assert held_elsewhere(engine, shared=True) is not None
        assert held_elsewhere(engine, "quality") is None  # another name is independent
    assert held_elsewhere(engine) is None

    with warehouse_lock(engine, shared=True):
        with warehouse_lock(engine, shared=True, wait=False):
            pass
        assert held_elsewhere(engine, shared=True) is None
        with pytest.raises(RuntimeError, match="programming error"), warehouse_lock(engine, wait=False):
            pass
        assert held_elsewhere(engine) is not None  # still held shared after the refused upgrade
    assert held_elsewhere(engine) is None


def test_in_memory_sqlite_needs_no_lock() -> None:
    engine = sa.create_engine("sqlite://")
    with warehouse_lock(engine, wait=False):
        assert held_elsewhere(engine) is None


def test_other_dialects_fall_back_to_a_machine_local_lock_file() -> None:
    engine = sa.create_engine("mysql+pymysql://someone:s3cret@db.example/warehouse")  # never connects
    with warehouse_lock(engine, purpose="run"):
        message = held_elsewhere(engine)
        assert message is not None and f"enteronce run pid {os.getpid()}" in message
        assert "s3cret" not in message and "db.example/warehouse" in message
    assert held_elsewhere(engine) is None
