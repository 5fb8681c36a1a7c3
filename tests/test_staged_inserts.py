"""Large inserts of a large write transaction on SQLite go through scratch files filled by ADBC
(warehouse.bulk.staged_inserts): the rows that land are exactly those Python's sqlite3 writes,
for every column kind, upserts and temporary tables included; nothing is left attached or on
disk after the transaction, and a rollback writes nothing."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from warehouse import Warehouse, bulk
from warehouse import schema as s

NOW = dt.datetime(2026, 12, 6, 9, 30, 1, 123456, tzinfo=dt.UTC)


def _versions(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame({
        "entity_id": [f"P{i:08d}" for i in range(n)],
        "version": [1 + i % 3 for i in range(n)],
        "entity_type": ["person"] * n,
        "op": ["create"] * n,
        "record": [f'{{"name_norm":"张{tag}{i}","dwelling_id":null}}' for i in range(n)],
        "provenance": ["[]"] * n,
        "changed_fields": ['["name_norm"]' if i % 2 else "[]" for i in range(n)],
        "sources": ['[{"station_id":"s0001"}]'] * n,
        "valid_from": [NOW] * n,
        "valid_to": [None if i % 2 else NOW for i in range(n)],
    })


def _golden(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame({
        "entity_id": [f"P{i:08d}" for i in range(n)], "entity_type": ["person"] * n, "version": [1] * n,
        "status": ["active"] * n, "area_code": [None if i % 5 == 0 else "500107" for i in range(n)],
        "record": [f'{{"name_norm":"{tag}{i}"}}' for i in range(n)], "provenance": ["[]"] * n,
        "updated_at": [NOW] * n,
    })


def _read(store: Warehouse, table: sa.Table) -> list[tuple]:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()


def _stages_left(tmp_path) -> list:
    return [p for p in tmp_path.iterdir() if ".stage-" in p.name]


@pytest.fixture()
def staged(monkeypatch):
    monkeypatch.setattr(bulk, "STAGED_INSERT_ROWS", 10)


def test_staged_rows_equal_those_sqlite3_binds_for_every_column_kind(tmp_path, staged):
    plain = Warehouse(f"sqlite:///{tmp_path / 'plain.sqlite'}").migrate()
    via_stage = Warehouse(f"sqlite:///{tmp_path / 'staged.sqlite'}").migrate()
    for store, large in ((plain, False), (via_stage, True)):
        with store.transaction(large=large) as conn:
            bulk.insert_frame(conn, s.golden_versions, _versions(500, "a"))
            bulk.insert_frame(conn, s.golden_records, _golden(500, "old"))
            bulk.insert_frame(conn, s.golden_records, _golden(300, "new"), replace=True)  # an upsert
            if large:
                assert len(conn.info[bulk._STAGES]) == 3  # each of them went through a scratch file
    for table in (s.golden_versions, s.golden_records):
        assert _read(via_stage, table) == _read(plain, table)
    rows = _read(via_stage, s.golden_records)
    assert rows[0].record == '{"name_norm":"new0"}' and rows[400].record == '{"name_norm":"old400"}'
    assert rows[0].updated_at == NOW.replace(tzinfo=None) or rows[0].updated_at == NOW
    with via_stage.engine.connect() as conn:
        # every stage detached (the temporary schema shows only once it is used again)
        assert {r[1] for r in conn.exec_driver_sql("PRAGMA database_list")} <= {"main", "temp"}
    assert _stages_left(tmp_path) == []


def test_a_temporary_table_and_more_inserts_than_attachable_files_all_land(tmp_path, staged):
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    temp = sa.Table("_scratch_changes", sa.MetaData(), sa.Column("entity_id", sa.String, primary_key=True),
                    sa.Column("n", sa.Integer), prefixes=["TEMPORARY"])
    with store.transaction(large=True) as conn:
        conn.exec_driver_sql('DROP TABLE IF EXISTS "_scratch_changes"')
        temp.create(conn)
        bulk.insert_frame(conn, temp, pl.DataFrame({"entity_id": [f"E{i}" for i in range(50)], "n": range(50)}))
        assert conn.execute(sa.select(sa.func.sum(temp.c.n))).scalar() == sum(range(50))
        for part in range(bulk.MAX_STAGES + 2):  # past the attach limit: the rest bind row by row
            bulk.insert_frame(conn, s.golden_versions, _versions(20, str(part)).with_columns(
                pl.col("version") + 10 * part))
    assert len(_read(store, s.golden_versions)) == 20 * (bulk.MAX_STAGES + 2)
    assert _stages_left(tmp_path) == []


def test_a_rolled_back_transaction_writes_nothing_and_leaves_no_scratch_file(tmp_path, staged):
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    with pytest.raises(RuntimeError):
        with store.transaction(large=True) as conn:
            bulk.insert_frame(conn, s.golden_versions, _versions(100, "x"))
            assert _stages_left(tmp_path)
            raise RuntimeError("stop")
    assert _read(store, s.golden_versions) == []
    assert _stages_left(tmp_path) == []
    with store.engine.connect() as conn:
        assert bulk._STAGES not in conn.info


def test_small_inserts_and_ordinary_transactions_bind_rows_as_before(tmp_path):
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    stage = bulk.sqlite_stage(store.engine)
    with store.transaction() as conn:
        assert bulk._STAGES not in conn.info
        with pytest.raises(RuntimeError, match="large=True"):  # nothing would detach it afterwards
            bulk.attach_stage(conn, stage)
    stage.close()
    with store.transaction(large=True) as conn:
        bulk.insert_frame(conn, s.golden_versions, _versions(bulk.STAGED_INSERT_ROWS - 1, "y"))
        assert conn.info[bulk._STAGES] == []
