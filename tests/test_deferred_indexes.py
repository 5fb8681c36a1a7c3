"""A SQLite insert far larger than its table builds the table's indexes after it
(warehouse.bulk.indexes_built_after), inside the same transaction: the indexes are back after
the insert, a unique one still refuses duplicates, and a failed build takes the insert with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import warehouse.bulk as bulk
from warehouse import Warehouse
from warehouse.bulk import indexes_built_after

UNIQUE = "uq_change_events_event_id"


def _indexes(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                     "AND tbl_name = 'change_events' AND sql IS NOT NULL").all())


def _insert(conn: sa.Connection, first: int, n: int, *, event_ids=None) -> None:
    ids = event_ids or [f"e{i}" for i in range(first, first + n)]
    conn.execute(sa.text(
        "INSERT INTO change_events (seq, event_id, entity_type, entity_id, op, version, changed_fields, sources, "
        "occurred_at) VALUES (:seq, :eid, 'person', :ent, 'create', 1, '[]', '[]', '2026-12-07 00:00:00')"),
        [{"seq": first + i, "eid": e, "ent": f"P{first + i}"} for i, e in enumerate(ids)])


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bulk, "DEFERRED_INDEX_ROWS", 10)
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    yield wh
    wh.dispose()


def test_a_large_insert_into_a_small_table_builds_its_indexes_after(store: Warehouse) -> None:
    with store.engine.connect() as conn:
        declared = _indexes(conn)
    assert set(declared) == {UNIQUE, "ix_change_events_entity_id"}
    with store.engine.begin() as conn:
        with indexes_built_after(conn, "change_events", 50):
            assert _indexes(conn) == {}  # dropped for the insert
            _insert(conn, 1, 50)
        assert _indexes(conn) == declared
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        plan = " ".join(r[-1] for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT seq FROM change_events WHERE event_id = 'e7'").all())
        assert UNIQUE in plan
        with pytest.raises(sa.exc.IntegrityError):  # the unique index holds again
            _insert(conn, 100, 1, event_ids=["e7"])


def test_a_build_that_fails_takes_the_insert_with_it(store: Warehouse) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn, \
            indexes_built_after(conn, "change_events", 20):
        _insert(conn, 1, 20, event_ids=[f"e{i % 19}" for i in range(20)])  # one event id twice
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM change_events").scalar() == 0
        assert set(_indexes(conn)) == {UNIQUE, "ix_change_events_entity_id"}


def test_a_table_that_holds_more_than_it_gets_keeps_its_indexes(store: Warehouse) -> None:
    with store.engine.begin() as conn:
        _insert(conn, 1, 30)
    with store.engine.begin() as conn:
        declared = _indexes(conn)
        with indexes_built_after(conn, "change_events", 20):
            assert _indexes(conn) == declared  # kept: maintaining them costs less than rebuilding
            _insert(conn, 31, 20)
        with indexes_built_after(conn, "change_events", 5):  # below the threshold
            assert _indexes(conn) == declared
