"""Warehouse schema, migrations and bulk paths, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from warehouse import Warehouse
from warehouse import schema as s


def _store(url: str) -> Warehouse:
    store = Warehouse(url).migrate()
    store.sync_stations([{"station_id": "s1", "name": "解放碑派出所", "jurisdiction": ["500103001"]}])
    return store


def _open_batch(store: Warehouse, conn, batch_id: str = "s1/residents/abc") -> None:
    store.start_batch(conn, {
        "batch_id": batch_id, "station_id": "s1", "source_name": "residents", "entity_type": "person",
        "source_kind": "csv", "source_ref": "s1/residents.csv", "content_hash": batch_id[-3:] * 4,
        "status": "loading",
    })


def test_migrate_is_idempotent_and_reaches_head(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0001"
        names = set(sa.inspect(conn).get_table_names())
    assert {"stations", "batches", "raw_records", "quarantine", "person_records", "organisation_records"} <= names
    store.sync_stations([{"station_id": "s1", "name": "新名字", "jurisdiction": ["5001"]}])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(s.stations.c.name)).scalars().all() == ["新名字"]


def test_bulk_raw_quarantine_and_reconciliation(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    raw = pl.DataFrame({
        "batch_id": ["s1/residents/abc"] * 3, "row_number": [2, 3, 5], "station_id": ["s1"] * 3,
        "entity_type": ["person"] * 3, "local_id": ["a", "b", "c"], "record_key": ["s1:a", "s1:b", "s1:c"],
        "row_hash": ["h1", "h2", "h3"], "payload": ['{"姓名":"张伟"}', '{"姓名":"李娜"}', '{"姓名":null}'],
    })
    bad = pl.DataFrame({
        "batch_id": ["s1/residents/abc"], "station_id": ["s1"], "row_number": [4], "field": ["人员编号"],
        "reason": ["missing local id"], "original": ['{"姓名":"王芳"}'],
    })
    with store.transaction() as conn:
        _open_batch(store, conn)
        assert store.append_raw(conn, raw) == 3
        assert store.append_quarantine(conn, bad) == 1
        store.finish_batch(conn, "s1/residents/abc", status="loaded", rows_read=4, rows_loaded=3, rows_quarantined=1)
    recon = store.reconciliation(["s1"])
    assert recon.select("raw_stored", "quarantine_stored", "balanced").row(0) == (3, 1, True)
    assert store.batch_status("s1/residents/abc") == "loaded"
    q = store.quarantine_rows(["s1"])
    assert q.select("row_number", "field", "original").row(0) == (4, "人员编号", '{"姓名":"王芳"}')

    # counters that disagree with what is stored are caught
    with store.transaction() as conn:
        store.finish_batch(conn, "s1/residents/abc", rows_read=5)
    assert store.reconciliation(["s1"])["balanced"].to_list() == [False]


def test_rerun_of_a_batch_clears_its_leftovers(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    row = pl.DataFrame({
        "batch_id": ["s1/residents/abc"], "row_number": [2], "station_id": ["s1"], "entity_type": ["person"],
        "local_id": ["a"], "record_key": ["s1:a"], "row_hash": ["h"], "payload": ["{}"],
    })
    for _ in range(2):
        with store.transaction() as conn:
            _open_batch(store, conn)
            store.append_raw(conn, row)
    assert store.count("raw_records") == 1


def test_record_upsert_keeps_one_current_row_and_types_round_trip(warehouse_url: str) -> None:
    store = _store(warehouse_url)

    def record(name: str, batch: str) -> pl.DataFrame:
        return pl.DataFrame({
            "record_key": ["s1:a"], "station_id": ["s1"], "local_id": ["a"], "batch_id": [batch],
            "row_number": [2], "row_hash": ["h"], "name": [name], "birth_date": [dt.date(1990, 1, 2)],
            "id_valid": [True], "source_updated_at": [dt.datetime(2026, 11, 1, 8, 30)],
        })

    with store.transaction() as conn:
        store.upsert_records(conn, "person", record("張偉", "b1"))
    with store.transaction() as conn:
        store.upsert_records(conn, "person", record("张伟", "b2"))
    t = s.person_records
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.name, t.c.batch_id, t.c.birth_date, t.c.id_valid, t.c.source_updated_at)).all()
    assert rows == [("张伟", "b2", dt.date(1990, 1, 2), True, dt.datetime(2026, 11, 1, 8, 30))]
    profile = store.record_profile("person", ["name", "birth_date", "phone"], ["s1"])
    assert profile["rows"] == 1
    assert profile["fill_rate"] == {"name": 1.0, "birth_date": 1.0, "phone": 0.0}


def test_watermarks(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    assert store.watermark("s1", "residents") is None
    with store.transaction() as conn:
        store.set_watermark(conn, "s1", "residents", "2026-11-01 08:00:00")
    with store.transaction() as conn:
        store.set_watermark(conn, "s1", "residents", "2026-11-02 08:00:00")
    assert store.watermark("s1", "residents") == "2026-11-02 08:00:00"
