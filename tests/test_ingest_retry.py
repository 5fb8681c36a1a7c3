"""A drop rejected because of a config mistake is read again once the config is fixed, and only then."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from connectors import ingest
from connectors.config import StationConfig, load_stations
from connectors.ingest import BatchOutcome, ingest_station
from scenario_network import COLUMNS, network_with_csv_station, write_drop
from warehouse import Warehouse
from warehouse import schema as s

SID = "s9001"
MISSPELLED = {("姓明" if k == "姓名" else k): v for k, v in COLUMNS.items()}  # 姓名 typed as 姓明
ROWS = [
    {"local_id": f"x{i}", "name": name, "sex": "男", "birth_date": "1990-01-02", "id_number": "11010519900102001X",
     "phone": "13812345678", "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号", "area_code": "500106001",
     "source_updated_at": "2026-11-01 08:00:00"}
    for i, name in enumerate(["张伟", "李娜", "王芳"])
]
REPEATED = {**ROWS[0], "name": "张伟伟"}  # the same local id again: quarantined, the rest loads


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    net = network_with_csv_station(tmp_path / "net", stations=1, persons=20, seed=11, station_id=SID)
    write_drop(net, SID, [*ROWS, REPEATED])
    return net


def configure(root: Path, columns: dict[str, str]) -> StationConfig:
    """Rewrite the station's mapping in stations.yaml, as a data engineer would, and load it."""
    path = root / "stations.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    next(s for s in config["stations"] if s["id"] == SID)["sources"][0]["columns"] = columns
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return load_stations(path).station(SID)


def warehouse(url: str, root: Path) -> Warehouse:
    store = Warehouse(url).migrate()
    store.sync_stations({"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                        for s in load_stations(root / "stations.yaml").stations)
    return store


def run(store: Warehouse, station: StationConfig, root: Path) -> BatchOutcome:
    [outcome] = ingest_station(store, station, base_dir=root, data_dir=root / "data")
    return outcome


def test_fixed_mapping_loads_the_rejected_drop(warehouse_url: str, root: Path) -> None:
    store = warehouse(warehouse_url, root)
    rejected = run(store, configure(root, MISSPELLED), root)
    assert rejected.status == "rejected" and not rejected.retried
    assert "residents.csv" in rejected.error and "姓明" in rejected.error  # file and field
    kept = Path(store.quarantine_rows([SID])["stored_path"][0])
    assert kept.read_bytes() == (root / SID / "residents.csv").read_bytes()

    again = run(store, configure(root, MISSPELLED), root)  # same config: no rework
    assert (again.status, again.retried) == ("skipped", False)

    fixed = run(store, configure(root, COLUMNS), root)
    assert (fixed.status, fixed.retried, fixed.batch_id) == ("loaded", True, rejected.batch_id)
    assert (fixed.rows_read, fixed.rows_loaded, fixed.rows_quarantined) == (4, 3, 1)
    assert "retried after a config change" in fixed.summary()
    batches = store.batches([SID])
    assert batches.select("batch_id", "status").rows() == [(rejected.batch_id, "loaded")]
    q = store.quarantine_rows([SID])
    assert q["row_number"].to_list() == [5] and "duplicate local id" in q["reason"][0]  # the file-level row is gone
    assert store.count("raw_records", [SID]) == store.count("person_records", [SID]) == 3
    assert store.reconciliation([SID])["balanced"].all()
    assert kept.read_bytes() == (root / SID / "residents.csv").read_bytes()  # the copy stays

    done = run(store, configure(root, COLUMNS), root)
    assert (done.status, done.retried) == ("skipped", False)
    assert store.count("raw_records", [SID]) == 3 and store.batches([SID]).height == 1


def test_retry_that_fails_keeps_the_rejected_attempt(
    warehouse_url: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = warehouse(warehouse_url, root)
    rejected = run(store, configure(root, MISSPELLED), root)
    before, version = store.quarantine_rows([SID]), store.station_versions()[SID]

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed mid-load")

    monkeypatch.setattr(ingest, "standardise_source", crash)
    with pytest.raises(RuntimeError, match="killed mid-load"):
        run(store, configure(root, COLUMNS), root)
    assert store.batch_state(rejected.batch_id)[0] == "rejected"
    assert store.quarantine_rows([SID]).equals(before)
    assert store.count("raw_records", [SID]) == 0
    assert store.station_versions()[SID] == version  # a failed ingest claims nothing new

    monkeypatch.undo()
    fixed = run(store, configure(root, COLUMNS), root)
    assert (fixed.status, fixed.retried, fixed.rows_loaded) == ("loaded", True, 3)


def test_retry_rejected_again_records_the_new_config(warehouse_url: str, root: Path) -> None:
    store = warehouse(warehouse_url, root)
    run(store, configure(root, MISSPELLED), root)
    other = {("现地址" if k == "现住址" else k): v for k, v in COLUMNS.items()}  # fixed one, broke another
    second = run(store, configure(root, other), root)
    assert (second.status, second.retried) == ("rejected", True) and "现地址" in second.error
    q = store.quarantine_rows([SID])
    assert q.height == 1 and "现地址" in q["reason"][0]  # replaced, not added to
    assert run(store, configure(root, other), root).status == "skipped"


def test_loaded_drop_is_not_reread_when_config_changes(warehouse_url: str, root: Path) -> None:
    store = warehouse(warehouse_url, root)
    assert run(store, configure(root, COLUMNS), root).status == "loaded"
    narrower = {k: v for k, v in COLUMNS.items() if v != "phone"}
    outcome = run(store, configure(root, narrower), root)
    assert (outcome.status, outcome.retried) == ("skipped", False)
    assert store.count("raw_records", [SID]) == 3 and store.batches([SID]).height == 1


def test_replacing_a_rejected_attempt_clears_what_hangs_off_it(warehouse_url: str, root: Path) -> None:
    """A rejected batch gets no validation, score or hold; should one exist anyway, the retry
    replaces it with the attempt, or the quality pass would take the new rows as validated."""
    store = warehouse(warehouse_url, root)
    batch = run(store, configure(root, MISSPELLED), root).batch_id
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with store.transaction() as conn:
        conn.execute(s.validation_runs.insert().values(
            run_id="r1", suite="raw_records", data_asset="raw", entity_type="person", station_id=SID,
            batch_id=batch, success=False, evaluated=1, successful=0, started_at=now, finished_at=now))
        conn.execute(s.validation_results.insert().values(
            run_id="r1", expectation_id="e1", expectation_type="x", dimension="validity", success=False))
        conn.execute(s.batch_holds.insert().values(batch_id=batch, station_id=SID, reason="x", held_at=now))
    assert run(store, configure(root, COLUMNS), root).retried
    with store.engine.connect() as conn:
        left = [conn.scalar(sa.select(sa.func.count()).select_from(t))
                for t in (s.validation_runs, s.validation_results, s.batch_holds)]
    assert left == [0, 0, 0]
