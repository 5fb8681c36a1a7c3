"""Reads that a drop makes for a few thousand entities search by key on SQLite, not by the type
index: a warehouse has no planner statistics there, and with an `entity_type = ?` beside the keys
SQLite took the type index and read every row of the type (at 1M records, 3 s for 5,500 golden
records instead of 0.05 s; the report's member counts 7.2 s instead of 1.5 s). The plan without
statistics does not depend on the rows, so an empty warehouse shows it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from warehouse import Warehouse
from warehouse.quality import QualityStore, task_areas
from warehouse.reports import _cluster_sizes

TYPE_INDEXES = ("ix_golden_records_entity_type_area_code", "ix_entity_membership_entity_type_updated_seq")


@pytest.fixture()
def store(tmp_path) -> Iterator[Warehouse]:
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    yield store
    store.dispose()


@contextmanager
def plans(store: Warehouse) -> Iterator[list[str]]:
    """The query plan of every SELECT run meanwhile (on the connection that runs it, so that its
    temporary key table exists)."""
    seen: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and not executemany:
            rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            seen.append("\n".join(r[-1] for r in rows))

    sa.event.listen(store.engine, "before_cursor_execute", explain)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", explain)


@pytest.mark.parametrize("keys", [3, 6000], ids=["in-list", "key-table"])
def test_golden_records_of_some_entities_are_read_by_entity_id(store: Warehouse, keys: int) -> None:
    with plans(store) as seen:
        QualityStore(store).active_golden("person", [f"P{i:06d}" for i in range(keys)])
    golden = [p for p in seen if "golden_records" in p]
    assert golden and all("sqlite_autoindex_golden_records_1 (entity_id=?)" in p for p in golden), golden
    assert not any(ix in p for p in golden for ix in TYPE_INDEXES), golden


def test_golden_records_of_an_id_range_are_read_along_the_primary_key(store: Warehouse) -> None:
    """A dense quality pass reads each part's golden records by its range of ids: along the
    primary key, never the type index (every golden record of the type for each part)."""
    with plans(store) as seen:
        QualityStore(store).active_golden_between("person", "P000100", "P000200")
    golden = [p for p in seen if "golden_records" in p]
    assert golden and all("sqlite_autoindex_golden_records_1 (entity_id>? AND entity_id<?)" in p for p in golden), golden
    assert not any(ix in p for p in golden for ix in TYPE_INDEXES), golden


def test_member_counts_of_the_report_go_along_the_entity_id_index(store: Warehouse) -> None:
    with plans(store) as seen, store.engine.connect() as conn:
        _cluster_sizes(conn)
    assert len(seen) == 1 and "COVERING INDEX ix_entity_membership_entity_id" in seen[0], seen
    assert not any(ix in seen[0] for ix in TYPE_INDEXES), seen


def test_what_a_quality_pass_reads_by_key_is_read_by_key(store: Warehouse) -> None:
    """The entities touched since a mark: the outbox from the mark's seq on (not walked whole
    along its entity id index); the entities of the records that tasks are about: by the
    membership's key (type, record key), not by a scan of every membership row."""
    with plans(store) as seen:
        QualityStore(store).touched_entities("person", 0, 10)
    events = [p for p in seen if "change_events" in p]
    assert events == ["SEARCH change_events USING INTEGER PRIMARY KEY (rowid>?)"], seen
    with plans(store) as seen, store.transaction() as conn:
        task_areas(conn, [{"task_id": "t1", "record_key": "s1:1", "entity_type": "person"},
                          {"task_id": "t2", "record_key": "s1:2", "entity_type": "dwelling"}], store.record_tables)
    members = [p for p in seen if "entity_membership" in p]
    assert len(members) == 2 and all("(entity_type=? AND record_key=?)" in p for p in members), seen


def test_records_of_new_batches_are_read_by_their_stations(store: Warehouse, tmp_path) -> None:
    """Resolution's records cache takes the records of batches loaded since: by station and batch
    (the station index), not by batch alone (a record table has no batch index: a scan of every
    record of the type)."""
    from warehouse import schema as s

    cached = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}", cache_dir=tmp_path / "cache")
    cached.sync_stations([{"station_id": "s1", "name": "s1", "jurisdiction": ["50"]}])
    records = cached.resolution_store("person", "person_records")
    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)

    def load(*numbers: int) -> None:
        with cached.transaction() as conn:
            conn.execute(s.batches.insert(), [
                {"batch_id": f"s1/r/{n}", "station_id": "s1", "source_name": "r", "entity_type": "person",
                 "source_kind": "csv", "source_ref": "r.csv", "content_hash": str(n), "status": "loaded",
                 "started_at": now} for n in numbers])

    load(1, 2)
    records.records(["name"])  # the first read fills the cache
    load(3)
    with plans(cached) as seen:
        records.records(["name"])
    person = [p for p in seen if "person_records" in p]
    assert len(person) == 1 and "USING INDEX ix_person_records_station_id (station_id=?)" in person[0], seen
    cached.dispose()


def test_a_snapshot_page_of_a_wide_scope_walks_the_entity_id_order(store: Warehouse) -> None:
    """A department's scope of many district prefixes: each page walks the golden records in
    entity id order from the page key and stops at the page's size, instead of reading every
    record of the type by the type index and sorting them, page after page."""
    from warehouse.feeds import PAGE_PARTS, FeedStore

    prefixes = [f"5001{n:02d}" for n in range(1, PAGE_PARTS + 3)]
    with plans(store) as seen:
        FeedStore(store).golden_in_scope(entity_types=["person"], area_prefixes=prefixes, after_entity="P0",
                                         limit=1000)
    golden = [p for p in seen if "golden_records" in p]
    assert golden == ["SEARCH golden_records USING INDEX sqlite_autoindex_golden_records_1 (entity_id>?)"], seen


@pytest.mark.parametrize("keys", [3, 6000], ids=["in-list", "key-table"])
def test_match_edges_around_some_records_are_read_by_their_ids(store: Warehouse, keys: int) -> None:
    """An incremental run's clustering reads the edges around a drop; by the decision index it
    would read every match edge of the type (351,000 at 1M: 1.2 s of a 10k drop)."""
    import polars as pl

    with plans(store) as seen:
        store.resolution_store("person", "person_records").match_edges_touching(
            pl.Series([f"s1:{i}" for i in range(keys)]))
    edges = [p for p in seen if "scored_pairs" in p]
    assert len(edges) == 2, seen
    assert "sqlite_autoindex_scored_pairs_1 (entity_type=? AND left_id=?)" in edges[0], edges
    assert "ix_scored_pairs_entity_type_right_id (entity_type=? AND right_id=?)" in edges[1], edges
    assert not any("decision" in p for p in edges), edges


def test_a_stations_reconciliation_counts_its_batches_rows_by_batch_id(store: Warehouse) -> None:
    """The ingest step's `rows_reconciled` check after a drop of three stations: a grouped count
    of every stored row read the whole raw table (1.3 s of a 10k drop into 1M, cache cold)."""
    with plans(store) as seen:
        store.reconciliation(["s1", "s2", "s3"])
    assert len(seen) == 1, seen
    assert "SEARCH raw_records USING COVERING INDEX sqlite_autoindex_raw_records_1 (batch_id=?)" in seen[0], seen
    assert "SEARCH quarantine USING INDEX ix_quarantine_batch_id (batch_id=?)" in seen[0], seen
    assert "SCAN raw_records" not in seen[0] and "SCAN quarantine" not in seen[0], seen
