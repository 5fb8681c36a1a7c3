"""A large write transaction keeps its temporary tables off the process's heap and gives its page
cache back when it ends (warehouse.sqlite_memory); a pipeline step's end closes the pooled
connections and returns the freed heap (Warehouse.release_memory). Measured with SQLite's own
count of the memory it holds (sqlite3_memory_used), the figure that made `residence_links` the
whole run's peak."""

from __future__ import annotations

import ctypes
import sys

import pytest

from warehouse import Warehouse, sqlite_memory
from warehouse.engine import CACHE_KIB

ROWS = 40_000  # rows of about 1 KB in a temporary table: some 40 MB
MB = 1 << 20


def _sqlite_memory_used():
    """sqlite3_memory_used() of the SQLite library Python's sqlite3 module runs on."""
    import _sqlite3

    try:
        fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (OSError, AttributeError):
        pytest.skip(f"sqlite3_memory_used is not reachable through ctypes on {sys.platform}")
    fn.restype = ctypes.c_int64
    return fn


def _temp_table(conn) -> None:
    conn.exec_driver_sql('DROP TABLE IF EXISTS temp."changes"')
    conn.exec_driver_sql('CREATE TEMP TABLE "changes" (n INTEGER PRIMARY KEY, body TEXT)')
    conn.exec_driver_sql('INSERT INTO temp."changes" WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 '
                         "FROM c WHERE n < ?) SELECT n, hex(randomblob(500)) FROM c", (ROWS,))
    conn.exec_driver_sql('SELECT count(*) FROM temp."changes" ORDER BY body').all()  # a sort of all of it


def test_a_large_transactions_temporary_table_is_not_held_in_memory(tmp_path):
    used = _sqlite_memory_used()
    grown = {}
    for large in (False, True):  # a warehouse each: a dropped in-memory table's pages stay with its connection
        store = Warehouse(f"sqlite:///{tmp_path / f'{large}.sqlite'}").migrate()
        with store.transaction(large=large) as conn:
            before = used()
            _temp_table(conn)
            grown[large] = used() - before
            conn.exec_driver_sql('DROP TABLE temp."changes"')
        store.dispose()
    assert grown[False] > 30 * MB  # the engine's default: temporary storage in memory
    assert grown[True] < 10 * MB  # through a temporary file, a small cache in front of it


def test_after_a_large_transaction_the_connection_is_as_before_and_its_cache_is_given_back(tmp_path):
    used = _sqlite_memory_used()
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    with store.transaction(large=True) as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (n INTEGER PRIMARY KEY, body TEXT)")
        conn.exec_driver_sql("INSERT INTO scratch WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                             "WHERE n < ?) SELECT n, hex(randomblob(500)) FROM c", (ROWS,))
        raw = conn.connection.dbapi_connection
        assert raw.execute("PRAGMA temp_store").fetchone()[0] == 1  # FILE
        assert raw.execute("PRAGMA cache_size").fetchone()[0] == -sqlite_memory.LARGE_CACHE_KIB
        during = used()
    assert raw.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY again, as the engine set it
    assert raw.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert used() < during - 20 * MB  # the written pages' cache given back with the transaction
    with store.engine.connect() as conn:  # the pooled connection works as before, temp tables too
        assert conn.exec_driver_sql("SELECT count(*) FROM scratch").scalar() == ROWS
        _temp_table(conn)
    store.dispose()


def test_release_memory_closes_the_pooled_connections_caches(tmp_path):
    used = _sqlite_memory_used()
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    with store.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE scratch (n INTEGER PRIMARY KEY, body TEXT)")
        conn.exec_driver_sql("INSERT INTO scratch WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
                             "WHERE n < ?) SELECT n, hex(randomblob(500)) FROM c", (ROWS,))
    with store.engine.connect() as conn:  # a full read fills this connection's page cache
        conn.exec_driver_sql("SELECT sum(length(body)) FROM scratch").scalar()
    cached = used()
    store.release_memory()
    assert used() < cached - 20 * MB
    with store.engine.connect() as conn:  # the engine opens a new connection on demand
        assert conn.exec_driver_sql("SELECT count(*) FROM scratch").scalar() == ROWS
    store.dispose()

