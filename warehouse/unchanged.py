"""Reads a long-running reader may keep while the warehouse has not changed.

The feed API reads the same few rows for every page: the caller's token, and the subscriber's
mark and block keys. Read through SQLAlchemy each time, they were about half of its event loop's
time per page (py-spy, 20 clients). SQLite says whether anything was committed since a
connection last looked: `PRAGMA data_version` changes when another connection (of this process
or any other) commits, and the connection's own `total_changes` when it writes itself. So rows
read on a connection stay true for as long as both are as they were; this module keeps them in
the connection's `info` (it lives as long as the pooled DBAPI connection), under that version.

Any commit anywhere empties the connection's memory, which is what keeps it correct without
knowing which tables a commit touched. It pays off because a busy API's own commits (its audit
journal's, feeds/journal.py) come at most every tenth of a second while pages come a thousand a
second, and because after a commit a page reads only its subscriber's mark again (the blocks'
keys are kept per mark: warehouse.deliveries). On PostgreSQL the same memory is kept per
process, and trusted by a page that has passed its listener's barrier (warehouse.notices: every
commit that changed those rows before the page's request was heard). Elsewhere, and with a
driver other than Python's sqlite3, nothing is kept: they are read each time.

`Reader` opens its connection only when something must be read, so a page whose rows are all
kept checks nothing out of the pool (on PostgreSQL a checkout alone pings the server); under
`memory_only()` it refuses to read at all (NotKept), which is how the API's event loop tries a
page without waiting on a database across a socket.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
from collections.abc import Iterator

import sqlalchemy as sa

from warehouse.notices import MAX_ENTRIES, listener_of

_KEY = "enteronce.unchanged"
_MEMORY_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("enteronce_memory_only", default=False)


class NotKept(Exception):
    """Under memory_only(): what was asked for is not kept, and would have to be read."""


@contextlib.contextmanager
def memory_only() -> Iterator[None]:
    """Within, what is kept is trusted and nothing is read: a Reader raises NotKept instead of
    connecting. For a caller that has just passed its listener's barrier (warehouse.notices)."""
    token = _MEMORY_ONLY.set(True)
    try:
        yield
    finally:
        _MEMORY_ONLY.reset(token)


class Reader:
    """A connection to `engine`, opened on first use (`conn()`), and the memory of reads kept
    for it (`kept(kind)`)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._conn: sa.Connection | None = None

    def conn(self) -> sa.Connection:
        if self._conn is None:
            if _MEMORY_ONLY.get():  # reading now would wait on the database
                raise NotKept
            self._conn = self.engine.connect()
        return self._conn

    def kept(self, kind: str) -> tuple[dict | None, bool]:
        """(memory, trusted): where to keep what is read next (None: nothing is kept), and whether
        what it holds may be used now. On SQLite, the connection's memory, always trusted; on
        PostgreSQL with a listener, the process's, trusted under memory_only() (after a barrier)
        and filled from any thread; elsewhere none."""
        listener = listener_of(self.engine)
        if listener is not None:
            return listener.kept(kind), _MEMORY_ONLY.get()
        if self.engine.dialect.name != "sqlite":
            return None, False
        kept = unchanged_reads(self.conn(), kind)
        return kept, kept is not None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def unchanged_reads(conn: sa.Connection, kind: str) -> dict | None:
    """The connection's memory of `kind` reads, valid now: emptied when the database changed
    since it was filled. Fill it after this call (what is read then is at least this new), and
    only with what was read on this connection. None on a database that is not SQLite, and in a
    transaction that wrote."""
    if conn.dialect.name != "sqlite":
        return None
    dbapi = conn.connection.dbapi_connection
    if not isinstance(dbapi, sqlite3.Connection):  # PRAGMA data_version and total_changes are sqlite3's
        return None
    if dbapi.in_transaction:  # its own writes, not committed yet: what is read may be rolled back
        return None
    version = (dbapi.execute("PRAGMA data_version").fetchone()[0], dbapi.total_changes)
    held = conn.info.get(_KEY)
    if held is None or held[0] != version:
        held = conn.info[_KEY] = (version, {})
    kept = held[1].get(kind)
    if kept is None or len(kept) >= MAX_ENTRIES:
        kept = held[1][kind] = {}
    return kept
