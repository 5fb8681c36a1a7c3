"""Station versions a drop sensor can trust across Dagster instances, and the warehouse's own id."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.config import SourceConfig, StationConfig
from core.errors import SourceError
from connectors.ingest import ingest_station
from connectors.versions import current_version, station_version, with_entries
from warehouse import Warehouse
from warehouse import schema as s

COLUMNS = {"人员编号": "local_id", "姓名": "name"}


def station(*extra: SourceConfig, columns: dict[str, str] = COLUMNS) -> StationConfig:
    residents = SourceConfig(name="residents", entity="person", kind="csv", path="drop.csv", columns=columns)
    return StationConfig(id="s1", name="解放碑派出所", jurisdiction=("500103",), sources=(residents, *extra))


def drop(root: Path, rows: int = 3) -> Path:
    path = root / "drop.csv"
    path.write_text("人员编号,姓名\n" + "".join(f"r{i},张伟\n" for i in range(rows)), encoding="utf-8")
    return path


def warehouse(url: str) -> Warehouse:
    store = Warehouse(url).migrate()
    store.sync_stations([{"station_id": sid, "name": sid, "jurisdiction": ["5001"]} for sid in ("s1", "s2")])
    return store


def organisations_sql(url: str, columns: dict[str, str]) -> SourceConfig:
    return SourceConfig(name="organisations", entity="organisation", kind="sql", url=url, table="dw",
                        watermark="gxsj", columns=columns)


def test_version_follows_config_and_drops(tmp_path: Path) -> None:
    path = drop(tmp_path)
    base = station()
    first = station_version(base, tmp_path)
    assert station_version(station(), tmp_path) == first  # same config, same files: same version
    renamed = base.model_copy(update={"name": "解放碑派出所（新）"})
    assert station_version(renamed, tmp_path) != first  # any edit of the station's entry counts
    remapped = station(columns={**COLUMNS, "联系电话": "phone"})
    assert station_version(remapped, tmp_path) != first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    assert station_version(base, tmp_path) != first


def test_a_version_that_cannot_be_taken_is_one_per_error(tmp_path: Path) -> None:
    """What the drop sensor and `enteronce run` compare: with entries, or unreadable per distinct error."""
    drop(tmp_path)
    ok, error = current_version(station(), tmp_path, None)
    assert (ok, error) == (station_version(station(), tmp_path), None)
    assert current_version(station(), tmp_path, "e1")[0] == with_entries(ok, "e1") != ok
    broken = station(organisations_sql(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}", {"dwbh": "local_id", "dwmc": "name"}))
    first, error = current_version(broken, tmp_path, None)
    assert first.startswith("unreadable-") and error is not None
    assert current_version(broken, tmp_path, None)[0] == first  # the same error: the same version


def test_record_and_read_station_versions(warehouse_url: str) -> None:
    store = warehouse(warehouse_url)
    assert store.station_versions() == {}
    store.record_station_version("s1", "v1")
    store.record_station_version("s1", "v2")  # the latest ingest wins
    store.record_station_version("s9", "v1")  # a station never synced: left alone
    assert store.station_versions() == {"s1": "v2"}
    with store.engine.connect() as conn:
        at = conn.scalar(sa.select(s.stations.c.drops_version_at).where(s.stations.c.station_id == "s1"))
    assert at is not None
    store.sync_stations([{"station_id": "s1", "name": "新名字", "jurisdiction": ["5001"]}])
    assert store.station_versions() == {"s1": "v2"}  # syncing names does not forget what was ingested


def test_ingest_records_the_version_it_started_with(warehouse_url: str, tmp_path: Path) -> None:
    path = drop(tmp_path)
    store, st = warehouse(warehouse_url), station()
    started = station_version(st, tmp_path)

    def a_new_drop_lands_meanwhile(_what: str, _rows: int) -> None:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    [outcome] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path / "data",
                               progress=a_new_drop_lands_meanwhile)
    assert outcome.status == "loaded"
    assert store.station_versions() == {"s1": started}
    assert station_version(st, tmp_path) != started  # so a sensor still sees something new

    [again] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert again.status == "skipped"  # skipped is final too: the version is recorded
    assert store.station_versions() == {"s1": station_version(st, tmp_path)}


def test_rejected_drop_records_the_version(warehouse_url: str, tmp_path: Path) -> None:
    (tmp_path / "drop.csv").write_bytes(b"")
    store, st = warehouse(warehouse_url), station()
    [outcome] = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert outcome.status == "rejected"
    assert store.station_versions() == {"s1": station_version(st, tmp_path)}


def test_failing_ingest_records_nothing(warehouse_url: str, tmp_path: Path) -> None:
    drop(tmp_path)
    systems = sa.create_engine(f"sqlite:///{tmp_path / 'systems.sqlite'}")
    with systems.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE dw (dwbh TEXT, dwmc TEXT, gxsj TEXT)")
        conn.exec_driver_sql("INSERT INTO dw VALUES ('o1', '重庆某某有限公司', '2026-11-01 08:00:00')")
    systems.dispose()
    store = warehouse(warehouse_url)
    # a config problem only reading finds: the table lacks a mapped column (the version needs none)
    broken = station(organisations_sql("sqlite:///systems.sqlite", {"dwbh": "local_id", "dwmcc": "name"}))
    with pytest.raises(SourceError, match="dwmcc"):
        ingest_station(store, broken, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert store.station_versions() == {}
    fixed = station(organisations_sql("sqlite:///systems.sqlite", {"dwbh": "local_id", "dwmc": "name"}))
    assert [o.status for o in ingest_station(store, fixed, base_dir=tmp_path, data_dir=tmp_path / "data")] == [
        "skipped", "loaded"]  # residents were loaded by the failed run already: their batch committed
    assert store.station_versions() == {"s1": station_version(fixed, tmp_path)}


def test_version_that_cannot_be_computed_raises_before_reading(warehouse_url: str, tmp_path: Path) -> None:
    drop(tmp_path)
    store = warehouse(warehouse_url)
    gone = station(organisations_sql("sqlite:///absent.sqlite", {"dwbh": "local_id"}))
    with pytest.raises(SourceError, match="database file not found"):
        ingest_station(store, gone, base_dir=tmp_path, data_dir=tmp_path / "data")
    assert not (tmp_path / "absent.sqlite").exists()  # no empty database left where the station's should be
    assert store.count("batches") == 0 and store.station_versions() == {}


def test_warehouse_id_is_made_once_and_kept(warehouse_url: str, tmp_path: Path) -> None:
    store = Warehouse(warehouse_url).migrate()
    first = store.warehouse_id()
    assert len(first) == 32 and int(first, 16) >= 0
    store.dispose()
    reopened = Warehouse(warehouse_url).migrate()  # migrating again is a no-op: the same id
    assert reopened.warehouse_id() == first
    other = Warehouse(f"sqlite:///{tmp_path / 'other.sqlite'}").migrate()
    assert other.warehouse_id() != first

