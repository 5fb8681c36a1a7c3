"""Dwellings end to end: a simulated network's housing registers through `enteronce run` (the
runner), on SQLite and PostgreSQL: dwelling records, entities with H ids, golden records, change
events, `enteronce evaluate --entity dwelling`, and station feeds that carry the dwellings of
their area (and those they registered themselves) with the owner's ID masked."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from connectors.simulate import simulate_network
from entity_resolution.evaluation import pairwise_metrics
from feeds.config import load_subscriptions
from pipelines.cli import app
from pipelines.project import Project
from pipelines.runner import materialize_project

STATIONS, PERSONS, SEED = 6, 1200, 5


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory):
    return simulate_network(tmp_path_factory.mktemp("dw_net"), stations=STATIONS, persons=PERSONS, seed=SEED)


def _copy(src: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "net"
    shutil.copytree(src, target)
    return target


def test_housing_registers_run_end_to_end(simulation, tmp_path: Path, warehouse_url: str) -> None:
    net = _copy(simulation.out, tmp_path)
    project = Project.load(net, warehouse_url)
    results = materialize_project(project, project.station_ids)
    assert all(r.success for r in results)
    store = project.open_warehouse()
    try:
        truth = pl.read_csv(net / "truth.csv", schema_overrides={"record_key": pl.String, "entity_id": pl.String})
        dw_truth = truth.filter(pl.col("entity_id").str.starts_with("H"))
        assert dw_truth.height == simulation.dwelling_records > simulation.dwellings > 0
        assert store.count("dwelling_records") == dw_truth.height  # no broken rows in a run this small

        rs = store.resolution_store("dwelling", "dwelling_records")
        members = rs.membership().select("record_key", pl.col("entity_id").alias("cluster_key"))
        assert members.height == dw_truth.height
        assert members["cluster_key"].str.starts_with("H").all()
        metrics = pairwise_metrics(members, dw_truth)
        # re-registrations with another address form and neighbours' registers are linked, and no
        # two rooms are merged
        assert metrics["tp"] > 0 and metrics["precision"] >= 0.99 and metrics["recall"] >= 0.97, metrics

        with store.engine.connect() as conn:
            golden = conn.execute(sa.text(
                "SELECT entity_id, area_code, record FROM golden_records WHERE entity_type = 'dwelling'")).all()
            created = conn.scalar(sa.text(
                "SELECT COUNT(*) FROM change_events WHERE entity_type = 'dwelling' AND op = 'create'"))
            members_by_station = conn.execute(sa.text(
                "SELECT entity_id, station_id FROM entity_membership m JOIN dwelling_records r "
                "ON r.record_key = m.record_key WHERE m.entity_type = 'dwelling'")).all()
        assert len(golden) == members["cluster_key"].n_unique() == created
        record = json.loads(golden[0].record)
        assert {"address", "addr_room", "owner_name_norm", "owner_id_number", "use", "occupants"} <= set(record)
        assert all(g.area_code and len(g.area_code) == 12 for g in golden)

        out = CliRunner().invoke(app, ["evaluate", "--config", str(net), "--warehouse", warehouse_url,
                                       "--truth", str(net / "truth.csv"), "--entity", "dwelling", "--format", "json"])
        assert out.exit_code == 0, out.output
        report = json.loads(out.stdout)
        assert report["entity_type"] == "dwelling" and report["scopes"][0]["pairwise_f1"] >= 0.98

        _station_feeds_carry_their_dwellings(project, golden, members_by_station)
    finally:
        store.dispose()


def _station_feeds_carry_their_dwellings(project: Project, golden, members_by_station) -> None:
    area = {g.entity_id: g.area_code for g in golden}
    registered: dict[str, set[str]] = {}
    for entity_id, station_id in members_by_station:
        registered.setdefault(station_id, set()).add(entity_id)
    stations = [s for s in load_subscriptions(project.config_dir).subscribers if s.kind == "station"]
    assert len(stations) == STATIONS
    seen_other_area = 0
    for sub in stations:
        lines = [json.loads(line) for f in sorted((project.data_dir / "outbox" / sub.id).glob("*.jsonl"))
                 for line in f.read_text(encoding="utf-8").splitlines()]
        dwellings = [d for d in lines if d.get("entity_type") == "dwelling"]
        ids = {d["entity_id"] for d in dwellings}
        in_area = {e for e, code in area.items() if code.startswith(tuple(sub.scope.area_codes))}
        # every dwelling of its area, and nothing outside it but what it registered itself
        assert in_area <= ids
        assert ids <= in_area | registered.get(sub.station_id, set())
        seen_other_area += len(ids - in_area)
        for d in dwellings:
            fields = d.get("record") or d.get("fields") or d
            owner_id = fields.get("owner_id_number")
            if owner_id:
                assert "*" in owner_id and owner_id[:6].isdigit(), owner_id  # masked like persons' IDs
            assert "owner_name_norm" in fields and "address" in fields
    # neighbours' registers: some stations see a dwelling of another area they registered
    assert seen_other_area > 0
