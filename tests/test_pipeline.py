"""End to end on a simulated network: Dagster assets, the drop sensor, the CLI, idempotency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from connectors.simulate import simulate_network
from feeds.config import load_subscriptions
from feeds.files import subscribers_behind
from pipelines.cli import app
from pipelines.definitions import defs
from pipelines.project import Project
from pipelines.runner import RunFailed, materialize_project, stations_with_work
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.quality import QualityStore
from warehouse.store import BatchLoad

STATIONS, PERSONS, SEED = 12, 6000, 1


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("net")
    return simulate_network(out, stations=STATIONS, persons=PERSONS, seed=SEED)


@pytest.fixture(scope="module")
def network(simulation) -> Path:
    return simulation.out


def fresh_copy(network: Path, tmp_path: Path) -> Path:
    target = tmp_path / "net"
    shutil.copytree(network, target)
    return target


def snapshot(store: Warehouse) -> dict[str, list[tuple]]:
    """Everything a run leaves in the warehouse, minus timestamps, in a stable order."""
    out = {}
    with store.engine.connect() as conn:
        for table, cols in {
            "batches": ["batch_id", "status", "rows_read", "rows_loaded", "rows_quarantined", "content_hash"],
            "raw_records": ["batch_id", "row_number", "record_key", "row_hash", "payload"],
            "quarantine": ["batch_id", "row_number", "field", "reason", "original"],
            "person_records": ["record_key", "name_norm", "id_number", "id_valid", "birth_date", "address"],
            "organisation_records": ["record_key", "name_norm", "credit_code", "credit_code_valid"],
        }.items():
            t = s.metadata.tables[table]
            rows = conn.execute(sa.select(*[t.c[c] for c in cols])).all()
            out[table] = sorted(tuple(r) for r in rows)
    return out


def test_definitions_load_without_warnings() -> None:
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import pipelines.definitions as d; d.defs.resolve_job_def('ingest_station')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_run_loads_every_row_exactly_once_and_rerun_changes_nothing(simulation, tmp_path: Path) -> None:
    net = fresh_copy(simulation.out, tmp_path)
    project = Project.load(net)
    results = materialize_project(project, project.station_ids)
    # one run over the range of every station, then resolution and publication, the feeds, the quality
    # pass, the feeds again (the pass opened correction tasks: their events), the report
    assert [r.success for r in results] == [True] * 6
    assert [r.dagster_run.tags.get("enteronce/stage") for r in results] == [
        "ingest", "publication", "feeds", "publication", "feeds", "publication"]
    store = Warehouse(project.warehouse_url)
    assert subscribers_behind(store, [sub.id for sub in load_subscriptions(project.config_dir).subscribers])[1] == []

    recon = store.reconciliation()
    assert recon.height >= STATIONS
    assert recon["balanced"].all()
    batches = store.batches()
    # every record the simulator wrote (truth covers broken rows too) was read exactly once
    truth = pl.read_csv(net / "truth.csv")
    assert int(batches["rows_read"].sum()) == truth.height
    assert store.count("raw_records") + store.count("quarantine") == truth.height
    with store.engine.connect() as conn:
        loaded_keys = set(conn.execute(sa.select(s.raw_records.c.record_key)).scalars())
    # the rows the simulator broke (truncated, extra field) are the ones in quarantine
    assert simulation.broken_record_keys
    assert int(batches["rows_quarantined"].sum()) >= len(simulation.broken_record_keys)
    assert not loaded_keys & set(simulation.broken_record_keys)
    assert loaded_keys <= set(truth["record_key"].to_list())

    # one materialisation per station partition; the range's totals with each station's own figures
    ingest = results[0]
    raw = [m for m in ingest.asset_materializations_for_node("station_records") if m.asset_key == dg.AssetKey("raw_records")]
    assert sorted(m.partition for m in raw) == sorted(project.station_ids)
    meta = raw[0].metadata
    assert meta["rows_read"].value == truth.height
    per_station = meta["stations"].value
    assert sorted(per_station) == sorted(project.station_ids)
    assert sum(v["rows_read"] for v in per_station.values()) == truth.height
    assert batches.group_by("station_id").agg(pl.col("rows_read").sum()).sort("station_id").rows() == sorted(
        (k, v["rows_read"]) for k, v in per_station.items())
    person = next(m for m in ingest.asset_materializations_for_node("station_records")
                  if m.asset_key == dg.AssetKey("person_records"))
    assert "fill_rate" in person.metadata
    checks = {(c.asset_key.to_user_string(), c.check_name): c for c in ingest.get_asset_check_evaluations()}
    assert checks["raw_records", "rows_reconciled"].passed is True  # the suites run here too; they may find faults
    # the suites ran over the range: a validation run per batch, every station's latest batches judged
    runs = QualityStore(store).runs(suite="raw_records")
    assert checks["raw_records", "raw_suite"].metadata["batches_validated"].value == runs.height
    assert set(runs["station_id"].to_list()) == set(project.station_ids)
    persons = checks["person_records", "standardised_suite"]
    failing = persons.metadata["failing_stations"].value
    assert persons.passed == (failing == []) and set(failing) <= set(project.station_ids)
    below = persons.metadata["below_threshold"].value
    assert {k.split(" ", 1)[0] for k in below} == set(failing)

    resolution = results[1]
    entities = {m.asset_key.to_user_string(): m for m in resolution.asset_materializations_for_node("resolve_persons")}
    assert entities["person_entities"].metadata["records"].value == store.count("person_records")
    checks = [(c.asset_key.to_user_string(), c.check_name, c.passed) for c in resolution.get_asset_check_evaluations()]
    assert sorted(c for c in checks if c[1] == "one_valid_id_per_entity") == [
        ("dwelling_entities", "one_valid_id_per_entity", True),
        ("organisation_entities", "one_valid_id_per_entity", True), ("person_entities", "one_valid_id_per_entity", True)]
    golden = {m.asset_key.to_user_string(): m for m in resolution.asset_materializations_for_node("publish_persons")}
    assert golden["person_golden_records"].metadata["created"].value == len(
        set(store.resolution_store("person", "person_records").membership()["entity_id"].to_list()))
    assert golden["person_change_events"].metadata["events_written"].value > 0

    # every subscriber of the simulated subscriptions.yaml got its first feed (a snapshot)
    subscribers = {s.id for s in load_subscriptions(project.config_dir).subscribers}
    assert len(subscribers) == STATIONS + 1
    assert {d.name for d in (project.data_dir / "outbox").iterdir() if any(d.glob("snapshot_*.manifest.json"))} == subscribers
    # the open correction tasks reach the station they are addressed to (stations take theirs), no one else
    with store.engine.connect() as conn:
        open_tasks = {(r.station_id, r.task_id) for r in conn.execute(
            sa.text("SELECT station_id, task_id FROM correction_tasks WHERE status = 'open'"))}
    # a station's latest word on each task: its snapshot, then the events after it (the quality pass
    # runs after the first feed build and closes some of the tasks the station checks opened)
    latest: dict[tuple[str, str], dict] = {}
    for d in (project.data_dir / "outbox").iterdir():
        for f in d.glob("*.jsonl"):
            for line in map(json.loads, f.read_text(encoding="utf-8").splitlines()):
                key = (d.name, line["entity_id"])
                if line["entity_type"] == "correction_task" and (key not in latest
                                                                 or line["version"] > latest[key]["version"]):
                    latest[key] = line
    delivered = {k for k, line in latest.items() if (line.get("after") or line.get("record"))["status"] == "open"}
    assert open_tasks and delivered == open_tasks

    before = snapshot(store)
    again = materialize_project(project, project.station_ids)
    assert all(r.success for r in again)
    assert snapshot(store) == before


def test_failed_run_rerun_equals_one_clean_run(network: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # four stations' ingests: the failure comes at the third write, mid-run, as with all twelve
    clean_net = fresh_copy(network, tmp_path / "clean")
    clean = Project.load(clean_net)
    some = clean.station_ids[:4]
    materialize_project(clean, some, resolve=False)

    net = fresh_copy(network, tmp_path / "flaky")
    project = Project.load(net)
    calls = {"n": 0}
    original = BatchLoad.upsert_records

    def flaky(self, entity_type, frame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("connection lost")
        return original(self, entity_type, frame)

    monkeypatch.setattr(BatchLoad, "upsert_records", flaky)
    with pytest.raises(RunFailed, match="RuntimeError: connection lost"):
        materialize_project(project, some, resolve=False)
    monkeypatch.setattr(BatchLoad, "upsert_records", original)
    materialize_project(project, some, resolve=False)
    assert snapshot(Warehouse(project.warehouse_url)) == snapshot(Warehouse(clean.warehouse_url))


def test_a_station_that_cannot_be_read_holds_no_other_station_of_its_range_back(network: Path, tmp_path: Path) -> None:
    """One run over a range of stations: a station whose source cannot be read at all (its SQL
    table is missing) fails the range's `drops_readable` check, named with the reason, and every
    other station of the range is loaded and validated."""
    net = fresh_copy(network, tmp_path)
    config = yaml.safe_load((net / "stations.yaml").read_text(encoding="utf-8"))
    config["stations"].insert(1, {
        "id": "s9002", "name": "故障派出所", "jurisdiction": ["500199001"],
        "sources": [{"name": "residents", "entity": "person", "kind": "sql", "url": "sqlite:///broken.sqlite",
                     "table": "no_such_table", "watermark": "gxsj", "columns": {"rybh": "local_id"}}]})
    (net / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    sa.create_engine(f"sqlite:///{net / 'broken.sqlite'}").connect().close()
    project = Project.load(net)
    (ingest,) = materialize_project(project, project.station_ids, resolve=False)

    assert ingest.success
    checks = {c.check_name: c for c in ingest.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("raw_records")}
    assert checks["drops_readable"].passed is False
    assert list(checks["drops_readable"].metadata["unreadable_stations"].value) == ["s9002"]
    assert "no_such_table" in checks["drops_readable"].metadata["unreadable_stations"].value["s9002"]
    store = Warehouse(project.warehouse_url)
    others = [sid for sid in project.station_ids if sid != "s9002"]
    assert sorted(store.batches()["station_id"].unique().to_list()) == sorted(others)
    assert set(QualityStore(store).runs(suite="raw_records")["station_id"].to_list()) == set(others)
    assert stations_with_work(project, project.station_ids) == ["s9002"]  # tried again by the next run


def test_sensor_registers_stations_and_launches_only_new_drops(network: Path, tmp_path: Path, monkeypatch) -> None:
    net = fresh_copy(network, tmp_path)
    monkeypatch.setenv("ENTERONCE_CONFIG", str(net))
    from pipelines.definitions import project_resource
    from pipelines.sensors import station_drops_sensor

    instance = dg.DagsterInstance.ephemeral()
    resources = {"project": project_resource()}

    def evaluate(cursor: str | None = None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            return station_drops_sensor(ctx)

    first = evaluate()
    project = Project.load(net)
    # every station's first drops: one run over the range of them all
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == project.station_ids
    (request,) = first.run_requests
    assert request.partition_key is None
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == (
        project.station_ids[0], project.station_ids[-1])
    assert request.run_key.startswith(f"{project.station_ids[0]}..{project.station_ids[-1]}:")

    assert evaluate(first.cursor).run_requests == []

    target, source = next(
        (st, src) for st in project.stations.stations for src in st.sources if src.kind != "sql"
    )
    drop = net / source.path
    stat = drop.stat()
    os.utime(drop, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # a new drop arrives
    third = evaluate(first.cursor)
    assert [r.partition_key for r in third.run_requests] == [target.id]
    assert third.run_requests[0].run_key.startswith(f"{target.id}:")


def test_stations_with_work_are_cut_into_consecutive_ranges() -> None:
    from pipelines.partitions import consecutive_ranges

    order = [f"s{i}" for i in range(10)]
    assert consecutive_ranges(order, {"s1", "s2", "s3", "s5", "s9", "elsewhere"}) == [["s1", "s2", "s3"], ["s5"], ["s9"]]
    assert consecutive_ranges(order, set(order), limit=4) == [order[:4], order[4:8], order[8:]]
    assert consecutive_ranges(order, set()) == []


def test_sensor_follows_what_the_cli_ingested_and_config_changes(network: Path, tmp_path: Path, monkeypatch) -> None:
    """Drops that `enteronce run` loaded launch nothing, even in a Dagster instance that never saw
    them; editing a station's stations.yaml entry is a new version of that station."""
    net = fresh_copy(network, tmp_path)
    monkeypatch.setenv("ENTERONCE_CONFIG", str(net))
    from pipelines.definitions import project_resource
    from pipelines.sensors import station_drops_sensor

    project = Project.load(net)
    materialize_project(project, project.station_ids, resolve=False)
    instance = dg.DagsterInstance.ephemeral()

    def evaluate(cursor: str | None = None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources={"project": project_resource()},
                                     cursor=cursor) as ctx:
            return station_drops_sensor(ctx)

    first = evaluate()
    assert first.run_requests == []
    config = yaml.safe_load((net / "stations.yaml").read_text(encoding="utf-8"))
    config["stations"][2]["name"] += "（新）"
    (net / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert [r.partition_key for r in evaluate(first.cursor).run_requests] == [config["stations"][2]["id"]]


def test_definitions_have_partitioned_assets_check_and_sensor() -> None:
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw_records", "person_records", "organisation_records", "person_candidate_pairs",
            "person_scored_pairs", "person_entities", "organisation_entities"} <= keys
    assert repo.get_sensor_def("station_drops_sensor") is not None
    assert defs.resolve_job_def("ingest_station").partitions_def.name == "stations"  # inferred from the assets


def test_cli_run_prints_summary(network: Path, tmp_path: Path) -> None:
    net = fresh_copy(network, tmp_path)
    result = CliRunner().invoke(app, ["run", "--config", str(net)])
    assert result.exit_code == 0, result.output
    assert "reconciled" in result.output
    assert f"{STATIONS} stations" in result.output
    assert "quarantined" in result.output
    assert "correction tasks:" in result.output

    # again: no station has anything new, so no station run is made (the summary is the warehouse's)
    again = CliRunner().invoke(app, ["run", "--config", str(net)])
    assert again.exit_code == 0, again.output
    assert f"0 of {STATIONS} stations have new drops" in again.output and f"{STATIONS} stations" in again.output
    project = Project.load(net)
    assert stations_with_work(project, project.station_ids) == []
    # a station's export that changes, and a batch whose checks never ran, each make work again
    victim = next(st for st in project.stations.stations if any(src.kind == "csv" for src in st.sources))
    export = net / next(src.path for src in victim.sources if src.kind == "csv")
    os.utime(export, ns=(export.stat().st_atime_ns, export.stat().st_mtime_ns + 10**9))
    store = Warehouse(project.warehouse_url)
    other = next(sid for sid in project.station_ids if sid != victim.id)
    with store.engine.begin() as conn:
        batch = conn.scalar(sa.select(s.batches.c.batch_id).where(s.batches.c.station_id == other,
                                                                s.batches.c.status == "loaded").limit(1))
        conn.execute(s.validation_runs.delete().where(s.validation_runs.c.batch_id == batch))
    assert stations_with_work(project, project.station_ids) == sorted([victim.id, other],
                                                                      key=project.station_ids.index)
    store.dispose()

    # evaluate: whole values when piped (no "…"), JSON and CSV for scripts
    truth = net / "truth.csv"
    table = CliRunner().invoke(app, ["evaluate", "--config", str(net), "--truth", str(truth)])
    assert table.exit_code == 0 and "…" not in table.output and "exact F1" in table.output
    doc = json.loads(CliRunner().invoke(app, ["evaluate", "--config", str(net), "--truth", str(truth),
                                              "--format", "json"]).output)
    overall = doc["scopes"][0]
    assert overall["scope"] == "overall" and 0 < overall["pairwise_f1"] <= 1
    assert doc["truth_without_entity"]["total"] == overall["ignored_not_clustered"]
    csv_out = CliRunner().invoke(app, ["evaluate", "--config", str(net), "--truth", str(truth), "--format", "csv"])
    frame = pl.read_csv(csv_out.stdout.encode())
    assert frame["scope"][0] == "overall" and frame["pairwise_f1"][0] == overall["pairwise_f1"]

    # a judgement on a key that does not exist is refused, not stored as a verdict about nobody
    store = Warehouse(Project.load(net).warehouse_url)
    keys = store.resolution_store("person", "person_records").membership()["record_key"].head(2).to_list()
    bad = CliRunner().invoke(app, ["review", "judge", "--config", str(net), keys[0], "s0001:nobody", "same",
                                   "--reviewer", "li"])
    assert bad.exit_code == 2 and "no person record with key 's0001:nobody'" in bad.output
    same = CliRunner().invoke(app, ["review", "judge", "--config", str(net), keys[0], keys[0], "same",
                                    "--reviewer", "li"])
    assert same.exit_code == 2 and "two different records" in same.output
    assert store.resolution_store("person", "person_records").judgements().height == 0
    store.dispose()


def test_cli_bad_config_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "stations.yaml").write_text("stations:\n  - id: s1\n    name: x\n    jurisdiction: [5001]\n    sources: []\n")
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path)])
    assert result.exit_code == 2
    assert "stations.yaml" in result.output
    assert "Traceback" not in result.output


def test_a_rejected_drop_is_kept_and_others_load(network: Path, tmp_path: Path) -> None:
    net = fresh_copy(network, tmp_path)
    project = Project.load(net)
    victim_station, victim = next(
        (st, src) for st in project.stations.stations for src in st.sources if src.kind in {"csv", "tsv"}
    )
    path = net / victim.path
    path.write_bytes(b"\x00\x01\x02\xff" * 500)
    other = next(st.id for st in project.stations.stations if st.id != victim_station.id)
    results = materialize_project(project, [victim_station.id, other], resolve=False)  # it and one beside it
    assert all(r.success for r in results)
    store = Warehouse(project.warehouse_url)
    batches = store.batches()
    rejected = batches.filter(pl.col("status") == "rejected")
    assert rejected["station_id"].to_list() == [victim_station.id]
    assert str(path) in rejected["error"][0]
    q = store.quarantine_rows([victim_station.id]).filter(pl.col("stored_path").is_not_null())
    kept = Path(q["stored_path"][0])
    assert kept.read_bytes() == path.read_bytes()
    assert set(batches.filter(pl.col("status") == "loaded")["station_id"]) >= {other}
