"""Warehouse schema, migrations and bulk paths, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from warehouse import Warehouse
from warehouse import schema as s
from warehouse.bulk import IN_LIST_MAX, in_keys, insert_frame, read_bulk
from warehouse.engine import alembic_config

HEADER = {
    "batch_id": "s1/residents/abc", "station_id": "s1", "source_name": "residents", "entity_type": "person",
    "source_kind": "csv", "source_ref": "s1/residents.csv", "content_hash": "abc", "status": "loading",
}
RAW = pl.DataFrame({
    "batch_id": ["s1/residents/abc"] * 3, "row_number": [2, 3, 5], "station_id": ["s1"] * 3,
    "entity_type": ["person"] * 3, "local_id": ["a", "b", "c"], "record_key": ["s1:a", "s1:b", "s1:c"],
    "row_hash": ["h1", "h2", "h3"], "payload": ['{"姓名":"张伟"}', '{"姓名":"李娜"}', '{"姓名":null}'],
})
BAD = pl.DataFrame({
    "batch_id": ["s1/residents/abc"], "station_id": ["s1"], "row_number": [4], "field": ["人员编号"],
    "reason": ["missing local id"], "original": ['{"姓名":"王芳"}'],
})


def _store(url: str) -> Warehouse:
    store = Warehouse(url).migrate()
    store.sync_stations([{"station_id": "s1", "name": "解放碑派出所", "jurisdiction": ["500103001"]}])
    return store


def _record(name: str, batch: str) -> pl.DataFrame:
    return pl.DataFrame({
        "record_key": ["s1:a"], "station_id": ["s1"], "local_id": ["a"], "batch_id": [batch],
        "row_number": [2], "row_hash": ["h"], "name": [name], "birth_date": [dt.date(1990, 1, 2)],
        "id_valid": [True], "source_updated_at": [dt.datetime(2026, 11, 1, 8, 30)],
    })


def test_migrate_is_idempotent_and_reaches_head(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == ScriptDirectory.from_config(alembic_config()).get_current_head()
        names = set(sa.inspect(conn).get_table_names())
    assert {"stations", "batches", "raw_records", "quarantine", "person_records", "organisation_records"} <= names
    store.sync_stations([{"station_id": "s1", "name": "新名字", "jurisdiction": ["5001"]}])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(s.stations.c.name)).scalars().all() == ["新名字"]


def test_batch_loads_atomically_and_reconciles(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    with store.load_batch(HEADER) as load:
        assert load.append_raw(RAW.head(2)) == 2
        assert load.append_raw(RAW.tail(1)) == 1  # chunks of one batch accumulate
        assert load.append_quarantine(BAD) == 1
        load.upsert_records("person", _record("张伟", HEADER["batch_id"]))
        load.finish(status="loaded", rows_read=4, rows_loaded=3, rows_quarantined=1)
    recon = store.reconciliation(["s1"])
    assert recon.select("raw_stored", "quarantine_stored", "balanced").row(0) == (3, 1, True)
    assert store.batch_state("s1/residents/abc")[0] == "loaded"
    q = store.quarantine_rows(["s1"])
    assert q.select("row_number", "field", "original").row(0) == (4, "人员编号", '{"姓名":"王芳"}')
    with store.engine.connect() as conn:
        payloads = conn.execute(sa.select(s.raw_records.c.payload).order_by(s.raw_records.c.row_number)).scalars().all()
    assert payloads == RAW["payload"].to_list()


def test_failed_batch_leaves_nothing_and_rerun_is_clean(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    with pytest.raises(RuntimeError):
        with store.load_batch(HEADER) as load:
            load.append_raw(RAW)
            load.upsert_records("person", _record("张伟", HEADER["batch_id"]))
            raise RuntimeError("disk full")
    assert store.batch_state(HEADER["batch_id"]) is None
    assert store.count("raw_records") == store.count("person_records") == 0
    for _ in range(2):  # the same batch twice: the second replaces the first, nothing doubles
        with store.load_batch(HEADER) as load:
            load.append_raw(RAW)
            load.finish(status="loaded", rows_read=3, rows_loaded=3)
    assert store.count("raw_records") == 3
    assert store.reconciliation(["s1"])["balanced"].all()


def test_counters_that_disagree_with_storage_are_caught(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    with store.load_batch(HEADER) as load:
        load.append_raw(RAW)
        load.finish(status="loaded", rows_read=5, rows_loaded=3)  # two rows unaccounted for
    assert store.reconciliation(["s1"])["balanced"].to_list() == [False]


def test_record_upsert_keeps_one_current_row_and_types_round_trip(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    for name, batch in (("張偉", "b1"), ("张伟", "b2")):
        with store.load_batch({**HEADER, "batch_id": batch, "content_hash": batch}) as load:
            load.upsert_records("person", _record(name, batch))
            load.finish(status="loaded")
    t = s.person_records
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.name, t.c.batch_id, t.c.birth_date, t.c.id_valid, t.c.source_updated_at)).all()
    assert rows == [("张伟", "b2", dt.date(1990, 1, 2), True, dt.datetime(2026, 11, 1, 8, 30))]
    profile = store.record_profile("person", ["name", "birth_date", "phone"], ["s1"])
    assert profile["rows"] == 1
    assert profile["fill_rate"] == {"name": 1.0, "birth_date": 1.0, "phone": 0.0}


def test_watermark_commits_with_its_batch(warehouse_url: str) -> None:
    store = _store(warehouse_url)
    assert store.watermark("s1", "residents") is None
    for i, mark in enumerate(("2026-11-01 08:00:00", "2026-11-02 08:00:00")):
        with store.load_batch({**HEADER, "batch_id": f"b{i}", "content_hash": f"h{i}"}) as load:
            load.set_watermark("s1", "residents", mark)
    assert store.watermark("s1", "residents") == "2026-11-02 08:00:00"
    with pytest.raises(RuntimeError):
        with store.load_batch({**HEADER, "batch_id": "b9", "content_hash": "h9"}) as load:
            load.set_watermark("s1", "residents", "2026-12-31 00:00:00")
            raise RuntimeError("boom")
    assert store.watermark("s1", "residents") == "2026-11-02 08:00:00"


def test_in_keys_gives_the_same_rows_as_an_in_list_beyond_its_size(warehouse_url: str) -> None:
    """Short key sets go as an IN list, long ones through a temporary key table: same rows."""
    store = _store(warehouse_url)
    t = s.judgements
    with store.transaction() as conn:
        insert_frame(conn, t, pl.DataFrame({
            "entity_type": "person", "left_id": [f"k{i:05d}" for i in range(IN_LIST_MAX + 100)], "right_id": "x",
            "verdict": "same", "reviewer": "t", "judged_at": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)}))
    wanted = [f"k{i:05d}" for i in range(IN_LIST_MAX + 50)] + ["absent"]  # not the last 50
    with store.engine.connect() as conn:
        long = set(conn.scalars(sa.select(t.c.left_id).where(in_keys(conn, t.c.left_id, wanted))))
        short = set(conn.scalars(sa.select(t.c.left_id).where(in_keys(conn, t.c.left_id, wanted[:10]))))
    assert len(wanted) > IN_LIST_MAX
    assert long == set(wanted) - {"absent"} and short == set(wanted[:10])


def test_a_bulk_read_leaves_its_connection_as_it_was(warehouse_url: str) -> None:
    """read_bulk streams its own statement only. On PostgreSQL a connection left streaming sent
    the next statement through a server-side cursor, and a long key list's CREATE TEMP TABLE
    failed there ("DECLARE ... CURSOR FOR CREATE"): resolution's match edges around a large
    change (read one side, then the other by key) stopped a 1M-record run."""
    store = _store(warehouse_url)
    t = s.judgements
    keys = [f"k{i:05d}" for i in range(IN_LIST_MAX + 100)]
    with store.transaction() as conn:
        insert_frame(conn, t, pl.DataFrame({
            "entity_type": "person", "left_id": keys, "right_id": "x", "verdict": "same", "reviewer": "t",
            "judged_at": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)}))
    with store.engine.connect() as conn:
        first = read_bulk(conn, sa.select(t.c.left_id).where(in_keys(conn, t.c.left_id, keys)),
                          schema={"left_id": pl.String}, rows=1000)
        assert "stream_results" not in conn.get_execution_options()
        again = read_bulk(conn, sa.select(t.c.left_id).where(in_keys(conn, t.c.left_id, keys[50:])),
                          schema={"left_id": pl.String}, rows=1000)
    assert first.height == len(keys) and set(again["left_id"]) == set(keys[50:])


def test_a_large_write_gets_planner_statistics_before_the_next_step(warehouse_url: str) -> None:
    """refresh_statistics (called after every pipeline step) ANALYZEs on PostgreSQL the tables a
    step changed beyond autovacuum's threshold, and only those: the planner then chooses index
    lookups for a drop's few keys in a table of millions (without statistics it scanned it)."""
    store = _store(warehouse_url)
    t = s.judgements
    with store.transaction() as conn:
        insert_frame(conn, t, pl.DataFrame({
            "entity_type": "person", "left_id": [f"k{i:05d}" for i in range(3000)], "right_id": "x",
            "verdict": "same", "reviewer": "t", "judged_at": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)}))
        if store.dialect == "postgresql":  # the server counts a session's changes when it next reports them
            conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    if store.dialect != "postgresql":
        assert store.refresh_statistics() == []  # SQLite plans without them
        return
    assert "judgements" in store.refresh_statistics()
    with store.engine.connect() as conn:
        stats = conn.exec_driver_sql("SELECT last_analyze IS NOT NULL, n_mod_since_analyze FROM pg_stat_user_tables "
                                     "WHERE relname = 'judgements'").one()
        estimate = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'judgements'").scalar()
    assert stats == (True, 0) and estimate == 3000
    assert "judgements" not in store.refresh_statistics()  # nothing changed since
