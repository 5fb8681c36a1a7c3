"""SQLite: a large write transaction's own memory kept off the process's heap, and handed back
when it ends.

Connections are opened (warehouse/engine.py) with temporary storage in memory (the API's key
lists and small sorts never touch disk) and a page cache of engine.CACHE_KIB each. In a large write
the temporary storage grows with the write: a relation part's temporary table of 200,000
changed records, its sorts and ephemeral indexes held about 0.8 GB more of SQLite's memory at
1M records, which made `residence_links` the whole run's peak (2.5 GiB, 1.3 GB of it SQLite's
own: measured with sqlite3_memory_used beside the process's RSS). `bounded(conn)` wraps such a
transaction: its temporary storage goes to files (SQLite's temporary folder, through the
system's file cache, not this process's heap); its page cache is larger for the write
(LARGE_CACHE_KIB: the indexes it inserts into stay in memory rather than being written to the
WAL again and again), and afterwards the connection gives that cache up (`PRAGMA
shrink_memory`) and the freed pages go back to the system (core.memory). A pooled connection
would otherwise keep it for as long as the process lives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from core.memory import release_freed_memory
from warehouse.bulk import scoped_pragmas, sqlite_file

LARGE_CACHE_KIB = 200_000


@contextmanager
def bounded(conn: sa.Connection) -> Iterator[None]:
    """Around a large write transaction on `conn` (begun and ended inside the block: SQLite
    changes where temporary storage lives only outside a transaction, and drops the temporary
    tables when it does). Nothing elsewhere than on a SQLite file."""
    if sqlite_file(conn) is None:
        yield
        return
    try:
        with scoped_pragmas(conn, temp_store="FILE", cache_size=-LARGE_CACHE_KIB):
            yield
    finally:
        if not conn.invalidated:
            conn.connection.dbapi_connection.execute("PRAGMA shrink_memory")
        release_freed_memory()
