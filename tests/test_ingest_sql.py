"""A station whose system is a SQL database (MariaDB here) is read incrementally by watermark."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.config import SourceConfig, StationConfig
from connectors.ingest import ingest_station
from warehouse import Warehouse

pytestmark = pytest.mark.mariadb


def _station(url: str) -> StationConfig:
    source = SourceConfig(
        name="residents", entity="person", kind="sql", url=url, table="ry_jbxx", watermark="gxsj",
        columns={"rybh": "local_id", "xm": "name", "sfzh": "id_number", "csrq": "birth_date", "gxsj": "source_updated_at"},
    )
    return StationConfig(id="s7", name="朝天门派出所", jurisdiction=("500103002",), sources=(source,))


def _rows(start: int, n: int, day: int) -> list[dict]:
    return [
        {"rybh": f"r{i}", "xm": "張偉" if i % 2 else "李娜", "sfzh": "11010519900102001X", "csrq": "19900102",
         "gxsj": dt.datetime(2026, 11, day, 8, 0, i % 60)}
        for i in range(start, start + n)
    ]


def test_incremental_reads_from_mariadb(mariadb_url: str, warehouse_url: str, tmp_path: Path) -> None:
    source_db = sa.create_engine(mariadb_url)
    md = sa.MetaData()
    table = sa.Table(
        "ry_jbxx", md,
        sa.Column("rybh", sa.String(32), primary_key=True), sa.Column("xm", sa.String(32)),
        sa.Column("sfzh", sa.String(32)), sa.Column("csrq", sa.String(16)), sa.Column("gxsj", sa.DateTime),
    )
    md.create_all(source_db)
    with source_db.begin() as conn:
        conn.execute(table.insert(), _rows(0, 50, 1))

    store = Warehouse(warehouse_url).migrate()
    store.sync_stations([{"station_id": "s7", "name": "x", "jurisdiction": ["500103002"]}])
    st = _station(mariadb_url)

    [first] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path)
    assert (first.status, first.rows_read, first.rows_loaded) == ("loaded", 50, 50)
    assert "password" not in first.ref and "ry_jbxx" in first.ref

    [nothing] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path)
    assert nothing.status == "unchanged"

    with source_db.begin() as conn:
        conn.execute(table.insert(), _rows(50, 7, 2))
        conn.execute(table.update().where(table.c.rybh == "r1").values(xm="张伟", gxsj=dt.datetime(2026, 11, 3)))
    [second] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path)
    assert (second.status, second.rows_read) == ("loaded", 8)
    assert store.count("raw_records") == 58
    assert store.count("person_records") == 57  # r1 updated in place, its history in raw
    assert store.watermark("s7", "residents").startswith("2026-11-03")
    with store.engine.connect() as conn:
        name = conn.execute(sa.text("SELECT name_norm FROM person_records WHERE record_key = 's7:r1'")).scalar()
    assert name == "张伟"
    assert store.reconciliation(["s7"])["balanced"].all()
    source_db.dispose()
