"""One writer at a time per warehouse: named locks that live with the warehouse itself.

A CLI `enteronce run`, the Dagster daemon's runs and a migration may start at the same moment, in
different processes and (on PostgreSQL) on different hosts. A lock in Python memory would protect
none of that, so the lock is held where every writer necessarily meets: the database server for
PostgreSQL, a lock file next to the database file for SQLite.

Waiting is done by polling a non-blocking try-lock, never by blocking inside the server or the
kernel: that is what lets `timeout` and `on_wait` work, and lets a waiter say who it is waiting for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

try:  # POSIX only; the warehouse runs on Linux, and only file locks need it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WarehouseBusy", "warehouse_lock"]

# Short enough that a waiter notices a release promptly, long enough that many waiters polling a
# PostgreSQL server cost it nothing worth measuring.
POLL_SECONDS = 0.25
# PostgreSQL silently truncates application_name beyond NAMEDATALEN - 1 bytes; truncating ourselves
# keeps the cut on a character boundary.
_APP_NAME_BYTES = 63


class WarehouseBusy(Exception):
    """The lock could not be had in time. The message names the holders, so an operator can tell a
    long-running run from a stuck one without digging through process lists."""

    def __init__(self, lock_name: str, warehouse: str, mode: str, holders: str):
        self.lock_name = lock_name
        self.warehouse = warehouse
        self.mode = mode
        self.holders = holders
        super().__init__(f"warehouse lock {lock_name!r} on {warehouse} is busy ({mode} wanted): {holders}")


class _Handle(Protocol):
    def try_acquire(self) -> bool: ...
    def describe(self) -> str: ...
    def release(self) -> None: ...


@dataclass
class _Held:
    mode: str
    handle: _Handle
    depth: int = 1


# Re-entrancy is per (process, thread): ops of an in-process Dagster run execute in the thread of
# the CLI that already holds "pipeline" exclusively, and must pass straight through. Other threads
# are deliberately *not* let through: each opens its own lock file descriptor / PostgreSQL session,
# and flock (per open file description) and advisory locks (per session) make those exclude each
# other exactly as separate processes would, shared and exclusive modes included. A worker thread
# spawned under a hold must therefore not take the same lock itself (it would wait for its parent);
# the parent holds it on its behalf. The pid is part of the key so a forked child never believes it
# holds its parent's locks.
_registry: dict[tuple[int, str, str, int], _Held] = {}
_registry_lock = threading.Lock()
_forked_leftovers: list[object] = []


def _after_fork_in_child() -> None:
    """A forked child inherits the parent's lock descriptors and sessions. File descriptors are
    closed (without LOCK_UN, which would release the parent's lock too) so a lock does not outlive
    its holder because some child lingers; PostgreSQL connections are kept referenced but unused,
    as closing or collecting them would end the parent's session and with it the parent's lock."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for held in _registry.values():
        if isinstance(held.handle, _FileLock):
            held.handle.forget()
        else:
            _forked_leftovers.append(held.handle)
    _registry.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def warehouse_lock(
    engine: sa.Engine,
    name: str = "pipeline",
    *,
    shared: bool = False,
    wait: bool = True,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    purpose: str = "",
) -> Iterator[None]:
    """Hold the lock `name` on the warehouse behind `engine` for the duration of the block.

    Exclusive holders exclude everyone; shared holders exclude only exclusive ones. `wait=False`
    (or `timeout` seconds of waiting) raises WarehouseBusy naming the holders; `on_wait` hears that
    description once, before the first wait, so a CLI can tell its user why nothing happens.
    `purpose` ("run", "migrate", ...) is what other waiters will be told this holder is doing.

    PostgreSQL: session-level advisory locks on a dedicated connection (its own NullPool engine, so
    the caller's pool is untouched and the session is never handed to anyone else while it holds
    the lock); a killed process's session ends and the server releases its locks. SQLite: flock on
    `<db file>.locks/<name>.lock`, released by the kernel when the process dies; in-memory databases are
    private to their process and need no lock. Other dialects: a flock file in the system temp
    directory named after the URL, which protects one machine only, not other hosts.

    Re-entrant within one thread (see the registry note above): a nested acquire under this
    thread's exclusive hold, or a shared one under its shared hold, is granted at once; the lock is
    released when the outermost block exits.
    """
    backend = _backend(engine)
    if backend is None:
        yield
        return
    identity, open_handle = backend
    mode = "shared" if shared else "exclusive"
    key = (os.getpid(), identity, name, threading.get_ident())

    with _registry_lock:
        held = _registry.get(key)
        if held is not None:
            if held.mode == "shared" and not shared:
                raise RuntimeError(
                    f"programming error: warehouse lock {name!r} on {identity} is already held shared by "
                    "this thread; upgrading to exclusive would deadlock with the other shared holders "
                    "(take it exclusively from the outset)"
                )
            held.depth += 1
    if held is not None:
        try:
            yield
        finally:
            with _registry_lock:
                held.depth -= 1
        return

    handle = open_handle(name, shared, purpose)
    entry: _Held | None = None
    try:
        _acquire(handle, name, identity, mode, wait=wait, timeout=timeout, on_wait=on_wait)
        entry = _Held(mode, handle)
        with _registry_lock:
            _registry[key] = entry
        yield
    finally:
        if entry is not None:
            with _registry_lock:
                if _registry.get(key) is entry:
                    del _registry[key]
        handle.release()


def _acquire(
    handle: _Handle,
    name: str,
    identity: str,
    mode: str,
    *,
    wait: bool,
    timeout: float | None,
    on_wait: Callable[[str], None] | None,
) -> None:
    if handle.try_acquire():
        return
    if not wait or (timeout is not None and timeout <= 0):
        raise WarehouseBusy(name, identity, mode, handle.describe())
    deadline = None if timeout is None else time.monotonic() + timeout
    if on_wait is not None:
        on_wait(handle.describe())
    while True:
        pause = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
        if pause > 0:
            time.sleep(pause)
        if handle.try_acquire():
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise WarehouseBusy(name, identity, mode, handle.describe())


# -- backends ------------------------------------------------------------------------------------
_Opener = Callable[[str, bool, str], _Handle]


def _backend(engine: sa.Engine) -> tuple[str, _Opener] | None:
    """(warehouse identity, handle factory), or None when there is nothing to protect. The
    identity keys re-entrancy, so two engines on one warehouse must produce the same one."""
    url = engine.url
    dialect = engine.dialect.name
    if dialect == "sqlite":
        db = _sqlite_path(url)
        if db is None:
            return None
        return str(db), lambda name, shared, purpose: _FileLock(db, name, shared, purpose)
    if dialect == "postgresql":
        host = url.host or str(url.query.get("host") or "local socket")
        identity = f"{host}:{url.port or 5432}/{url.database or ''}"
        return identity, lambda name, shared, purpose: _PgLock(url, name, shared, purpose)
    safe_url = url.set(password=None).render_as_string(hide_password=True)
    base = Path(tempfile.gettempdir()) / f"enteronce-{hashlib.sha256(safe_url.encode()).hexdigest()[:16]}"
    return safe_url, lambda name, shared, purpose: _FileLock(base, name, shared, purpose)


def _sqlite_path(url: sa.URL) -> Path | None:
    db = url.database or ""
    if str(url.query.get("uri", "")).lower() in {"true", "1"} and db.startswith("file:"):
        db = db[len("file:") :].split("?", 1)[0]
        if str(url.query.get("mode", "")) == "memory":
            return None
    if db in {"", ":memory:"} or db.startswith(":memory:"):
        return None
    return Path(db).expanduser().resolve()


def _safe_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    # "", "." or ".." would point the sidecar folder at its parent.
    return safe if safe.strip(".") else safe.replace(".", "_") + "_"


def _who(purpose: str, pid: int, host: str) -> str:
    return " ".join(["enteronce", *([purpose] if purpose else []), "pid", str(pid), "on", host])


def _clock(when: dt.datetime) -> str:
    local = when.astimezone()
    fmt = "%H:%M:%S" if local.date() == dt.datetime.now().astimezone().date() else "%Y-%m-%d %H:%M:%S"
    return local.strftime(fmt)


class _FileLock:
    """flock on `<base>.locks/<name>.lock` plus a holder record in `<base>.locks/<name>/`: one
    folder beside the database for every lock of it (a station lock each is hundreds of files).

    flock locks belong to the open file description, so every acquisition opens the file afresh
    (threads then exclude each other like processes do) and the kernel drops the lock when the
    holder dies. The lock file itself is never deleted: unlinking it while another process waits on
    its descriptor would let two holders lock two different files. The records exist only to say
    who holds the lock; records of dead processes are ignored and cleaned up.
    """

    def __init__(self, base: Path, name: str, shared: bool, purpose: str):
        if fcntl is None:  # pragma: no cover - Windows
            raise RuntimeError("warehouse file locks need fcntl.flock (POSIX)")
        safe = _safe_name(name)
        folder = base.with_name(f"{base.name}.locks")
        self.path = folder / f"{safe}.lock"
        self.records = folder / safe
        self.shared = shared
        self.purpose = purpose
        self.pid = os.getpid()
        self.record: Path | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)

    def try_acquire(self) -> bool:
        assert self.fd is not None
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            self._write_record()
        except OSError:  # the lock is what matters; a missing record only makes descriptions vaguer
            self.record = None
        return True

    def _write_record(self) -> None:
        self.records.mkdir(parents=True, exist_ok=True)
        if not self.shared:  # holding it exclusively, every other record is necessarily stale
            for stale in self.records.glob("*.json"):
                stale.unlink(missing_ok=True)
        self.record = self.records / f"{self.pid}-{secrets.token_hex(4)}.json"
        tmp = self.record.with_name(f".{self.record.stem}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": self.pid,
                    "host": socket.gethostname(),
                    "purpose": self.purpose,
                    "mode": "shared" if self.shared else "exclusive",
                    "since": dt.datetime.now(dt.UTC).isoformat(),
                }
            ),
            encoding="utf-8",
        )
        os.replace(tmp, self.record)  # readers never see half a record

    def describe(self) -> str:
        here = socket.gethostname()
        holders = []
        for path in sorted(self.records.glob("*.json")):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
                pid, host = int(rec["pid"]), str(rec["host"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if host == here and not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            text = f"{_who(str(rec.get('purpose') or ''), pid, host)} ({rec.get('mode', '?')})"
            try:
                text += f" since {_clock(dt.datetime.fromisoformat(rec['since']))}"
            except (KeyError, TypeError, ValueError):
                pass
            holders.append(text)
        if not holders:
            return f"held by a process that left no holder record (starting up, or another tool) on {self.path}"
        return "held by " + "; ".join(holders)

    def release(self) -> None:
        if os.getpid() != self.pid:  # a forked child's copy: the parent still holds the lock
            return
        if self.record is not None:  # record first, so no live holder ever lacks one
            self.record.unlink(missing_ok=True)
            self.record = None
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor of the description drops the flock
            self.fd = None

    def forget(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.record = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _advisory_keys(name: str) -> tuple[int, int]:
    """Two int32 keys for pg_try_advisory_lock(int, int). Derived from a cryptographic hash, not
    hash(), whose per-process salt would give every process a different lock."""
    return struct.unpack(">ii", hashlib.sha256(f"enteronce:{name}".encode()).digest()[:8])


_HOLDERS_SQL = sa.text(
    """
    SELECT l.pid, l.mode, a.application_name, a.usename, a.client_addr, a.state_change
    FROM pg_locks AS l
    LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = CAST(CAST(:classid AS bigint) AS oid)
      AND l.objid = CAST(CAST(:objid AS bigint) AS oid)
      AND l.objsubid = 2
    ORDER BY l.pid
    """
)


class _PgLock:
    """A session-level advisory lock on a connection of its own.

    The connection is in AUTOCOMMIT so no transaction stays open for the whole run (which would
    hold back vacuum), and it is the lock: the server releases the lock when the session ends, so a
    killed holder frees it as soon as the server notices the dead socket. Its application_name says
    who holds the lock, which is how waiters describe holders: pg_locks knows only backend pids.
    After the lock is taken nothing more runs on the connection, so pg_stat_activity.state_change
    tells when it was taken.
    """

    def __init__(self, url: sa.URL, name: str, shared: bool, purpose: str):
        self.keys = _advisory_keys(name)
        self.shared = shared
        self.pid = os.getpid()
        self.held = False
        app = _who(purpose, self.pid, socket.gethostname()).encode()[:_APP_NAME_BYTES].decode(errors="ignore")
        self.engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            self.conn = self.engine.connect()
            self.conn.execute(sa.text("SELECT set_config('application_name', :app, false)"), {"app": app})
        except BaseException:
            self.engine.dispose()
            raise

    def _call(self, fn: str) -> bool:
        suffix = "_shared" if self.shared else ""
        sql = sa.text(f"SELECT pg_{fn}{suffix}(CAST(:k1 AS integer), CAST(:k2 AS integer))")
        return bool(self.conn.scalar(sql, {"k1": self.keys[0], "k2": self.keys[1]}))

    def try_acquire(self) -> bool:
        self.held = self._call("try_advisory_lock")
        return self.held

    def describe(self) -> str:
        # pg_locks shows the two int keys as oids, i.e. unsigned.
        params = {"classid": self.keys[0] & 0xFFFFFFFF, "objid": self.keys[1] & 0xFFFFFFFF}
        holders = []
        for pid, mode, app, user, addr, since in self.conn.execute(_HOLDERS_SQL, params):
            kind = "shared" if mode == "ShareLock" else "exclusive"
            if app and app.startswith("enteronce"):
                text = f"{app} ({kind})"
                if since is not None:
                    text += f" since {_clock(since)}"
            else:  # someone else's session (psql, another tool) took our key
                text = f"PostgreSQL backend pid {pid} ({kind}; user {user}, application {app or '?'!r}"
                text += f", client {addr})" if addr else ")"
            holders.append(text)
        if not holders:
            return "held by a session that has just released it (or is not visible to this user)"
        return "held by " + "; ".join(holders)

    def release(self) -> None:
        if os.getpid() != self.pid:  # a forked child's copy: closing it would end the parent's session
            return
        try:
            if self.held:
                self._call("advisory_unlock")
        except sa.exc.DBAPIError:
            pass  # the session is gone, and with it the lock
        finally:
            self.held = False
            self.conn.close()
            self.engine.dispose()
