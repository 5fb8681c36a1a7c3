"""Per-warehouse state: outbox, caches, report and the Dagster instance belong to one warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.instance import INGEST_POOL, PUBLICATION_POOL, instance_home, open_instance, prepare_home
from core.errors import ConfigError
from pipelines.project import Project, state_folder_name

STATIONS = {"version": 1, "stations": [{"id": "s0001", "name": "解放碑派出所", "jurisdiction": ["500103001"],
                                        "sources": [{"name": "residents", "entity": "person", "kind": "csv",
                                                     "path": "s0001.csv", "columns": {"编号": "local_id"}}]}]}


@pytest.fixture()
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("ENTERONCE_WAREHOUSE_URL", "ENTERONCE_DATA_DIR", "ENTERONCE_INSTANCE_DB", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "stations.yaml").write_text(yaml.safe_dump(STATIONS, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_each_warehouse_has_its_own_state_folder(project_dir: Path) -> None:
    embedded = Project.load(project_dir)
    assert embedded.data_dir == embedded.data_root == project_dir / "data"
    other = Project.load(project_dir, "postgresql+psycopg://hub:s3cret@db.example:5433/enteronce")
    assert other.data_dir.parent == project_dir / "data" / "warehouses"
    assert other.data_dir.name.startswith("postgresql-db.example-5433-enteronce-")
    assert "s3cret" not in str(other.data_dir)
    assert state_folder_name("sqlite:////a/w.sqlite") != state_folder_name("sqlite:////b/w.sqlite")
    assert instance_home(other) == other.data_dir / "dagster_home"


def test_two_warehouses_never_share_an_outbox_and_a_replaced_one_is_set_aside(project_dir: Path) -> None:
    first = Project.load(project_dir)
    second = Project.load(project_dir, f"sqlite:///{project_dir / 'elsewhere.sqlite'}")
    store_a, store_b = first.open_warehouse(), second.open_warehouse()
    assert store_a.warehouse_id() != store_b.warehouse_id()
    assert first.data_dir != second.data_dir
    (first.data_dir / "outbox" / "s0001").mkdir(parents=True)
    (first.data_dir / "outbox" / "s0001" / "events_1-5.jsonl").write_text("old\n", encoding="utf-8")
    assert not (second.data_dir / "outbox").exists()
    old_id = store_a.warehouse_id()
    store_a.dispose()
    store_b.dispose()

    # the embedded warehouse is deleted and made anew: its seq starts at 1 again
    (first.data_dir / "warehouse.sqlite").unlink()
    fresh = first.open_warehouse()
    assert fresh.warehouse_id() != old_id
    assert not (first.data_dir / "outbox").exists()
    [retired] = (first.data_dir / "retired").iterdir()
    assert retired.name.startswith(old_id)
    assert (retired / "outbox" / "s0001" / "events_1-5.jsonl").read_text(encoding="utf-8") == "old\n"
    marker = json.loads((first.data_dir / "warehouse.json").read_text(encoding="utf-8"))
    assert marker["warehouse_id"] == fresh.warehouse_id()
    again = first.open_warehouse()  # same warehouse: nothing moves
    assert len(list((first.data_dir / "retired").iterdir())) == 1
    again.dispose()
    fresh.dispose()


def test_the_instance_is_written_once_with_the_repositorys_settings(project_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = Project.load(project_dir)
    home = prepare_home(project)
    config = yaml.safe_load((home / "dagster.yaml").read_text(encoding="utf-8"))
    assert config["telemetry"] == {"enabled": False} and "storage" not in config
    assert config["concurrency"]["pools"]["granularity"] == "run"
    stamp = (home / "dagster.yaml").stat().st_mtime_ns
    assert prepare_home(project) == home and (home / "dagster.yaml").stat().st_mtime_ns == stamp

    instance = open_instance(project)
    limits = {p.name: p.limit for p in instance.event_log_storage.get_pool_limits()}
    assert limits[INGEST_POOL] == 1 and limits[PUBLICATION_POOL] == 1  # SQLite: one writer
    instance.dispose()

    # the production profile's storage, kept by later commands that do not name it; its password
    # stays in the environment, never in the file
    monkeypatch.delenv("ENTERONCE_INSTANCE_DB_PASSWORD", raising=False)
    prepare_home(project, "postgresql+psycopg://dagster:pw-9f3@db:6432/dagster?sslmode=require")
    assert "pw-9f3" not in (home / "dagster.yaml").read_text(encoding="utf-8")
    prepare_home(project)
    storage = yaml.safe_load((home / "dagster.yaml").read_text(encoding="utf-8"))["storage"]
    assert storage == {"postgres": {"postgres_db": {
        "username": "dagster", "hostname": "db", "port": 6432, "db_name": "dagster", "scheme": "postgresql+psycopg2",
        "params": {"sslmode": "require"}, "password": {"env": "ENTERONCE_INSTANCE_DB_PASSWORD"}}}}
    monkeypatch.delenv("ENTERONCE_INSTANCE_DB_PASSWORD")
    with pytest.raises(ConfigError, match="ENTERONCE_INSTANCE_DB_PASSWORD"):
        prepare_home(project)  # a later command without the password is told what to set

    monkeypatch.setenv("DAGSTER_HOME", str(project_dir / "mine"))
    assert instance_home(project) == project_dir / "mine"  # the user's own instance is left alone
    assert prepare_home(project) == project_dir / "mine" and not (project_dir / "mine").exists()
