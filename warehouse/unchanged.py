"""Reads a long-running reader may keep while an SQLite warehouse has not changed.

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
keys are kept per mark: warehouse.deliveries). On other databases, and with a driver other than
Python's sqlite3, nothing is kept (None): they are read each time.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

_KEY = "enteronce.unchanged"
MAX_ENTRIES = 10_000  # per connection and kind: unknown token ids cannot grow it past this


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
