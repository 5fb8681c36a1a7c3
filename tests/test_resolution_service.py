"""Resolution runs against a real warehouse: accuracy, incremental = full, judgements, stable ids."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from connectors.config import load_stations
from connectors.ingest import ingest_station
from connectors.simulate import simulate_network
from entity_resolution.config import load_resolution
from entity_resolution.evaluation import pairwise_metrics
from entity_resolution.service import run_resolution
from warehouse import Warehouse

SETTINGS = load_resolution(None).entities["person"]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("net")
    simulate_network(out, stations=10, persons=4000, seed=11)
    return out


def warehouse_with(network: Path, url: str, station_ids: list[str] | None = None,
                   cache_dir: Path | None = None) -> Warehouse:
    stations = load_stations(network / "stations.yaml")
    store = Warehouse(url, cache_dir=cache_dir).migrate()
    store.sync_stations({"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                        for s in stations.stations)
    for st in stations.stations:
        if station_ids is None or st.id in station_ids:
            ingest_station(store, st, base_dir=network, data_dir=network / "data")
    return store


def resolve(store: Warehouse, **kwargs):
    return run_resolution(store.resolution_store("person", "person_records"), SETTINGS,
                          entity_type="person", prefix="P", **kwargs)


def partition(store: Warehouse) -> set[frozenset[str]]:
    members = store.resolution_store("person", "person_records").membership()
    return {frozenset(g["record_key"].to_list()) for g in members.partition_by("entity_id")}


def test_full_run_is_accurate_and_rerun_changes_nothing(network: Path, warehouse_url: str) -> None:
    store = warehouse_with(network, warehouse_url)
    first = resolve(store)
    assert first.mode == "full" and first.matches > 0
    rs = store.resolution_store("person", "person_records")
    members = rs.membership().select("record_key", pl.col("entity_id").alias("cluster_key"))
    truth = pl.read_csv(network / "truth.csv")
    metrics = pairwise_metrics(members, truth)
    assert metrics["precision"] >= 0.99 and metrics["recall"] >= 0.99, metrics
    assert rs.conflicting_entities([("id_number", "id_valid")]).height == 0

    ids_before = rs.membership().sort("record_key")
    again = resolve(store)
    assert again.mode == "unchanged"
    assert rs.membership().sort("record_key").equals(ids_before)


def test_incremental_equals_full_and_keeps_ids(network: Path, tmp_path: Path) -> None:
    stations = [s.id for s in load_stations(network / "stations.yaml").stations]
    early, late = stations[:6], stations[6:]
    # the incremental side keeps its Parquet cache of records and memberships; the full side reads
    # the warehouse only: both must agree
    inc = warehouse_with(network, f"sqlite:///{tmp_path / 'inc.sqlite'}", early, cache_dir=tmp_path / "cache")
    resolve(inc)
    rs = inc.resolution_store("person", "person_records")
    ids_early = rs.membership().select("record_key", "entity_id")
    for st in load_stations(network / "stations.yaml").stations:
        if st.id in late:
            ingest_station(inc, st, base_dir=network, data_dir=network / "data")
    step = resolve(inc)
    assert step.mode == "incremental"
    assert 0 < step.dirty < inc.count("person_records")

    full = warehouse_with(network, f"sqlite:///{tmp_path / 'full.sqlite'}")
    model = rs.model()
    # the same model for both: incremental runs reuse the stored one, so the full run must too
    from warehouse import schema as s
    import datetime as dt
    with full.transaction() as conn:
        conn.execute(s.resolution_models.insert().values(entity_type="person", settings_hash=model[0],
                                                          model=model[1], trained_at=dt.datetime.now(dt.timezone.utc)))
    resolve(full, full=True, retrain=False)
    assert partition(inc) == partition(full)

    # new records never rename an entity: every early record whose entity only grew keeps its id
    after = rs.membership().select("record_key", "entity_id")
    joined = ids_early.join(after, on="record_key", suffix="_after")
    renamed = joined.filter(pl.col("entity_id") != pl.col("entity_id_after"))
    merged = set(rs.engine.connect().exec_driver_sql(
        "SELECT entity_id FROM entities WHERE status = 'retired'").scalars())
    assert set(renamed["entity_id"].to_list()) <= merged  # only ids retired by a merge disappear


def test_judgements_override_the_model(network: Path, tmp_path: Path) -> None:
    store = warehouse_with(network, f"sqlite:///{tmp_path / 'w.sqlite'}", cache_dir=tmp_path / "cache")
    resolve(store)
    rs = store.resolution_store("person", "person_records")
    members = rs.membership()
    pair_entity = members.group_by("entity_id").agg(pl.col("record_key").sort()).filter(
        pl.col("record_key").list.len() == 2).row(0)
    entity_id, (a, b) = pair_entity
    rs.add_judgement(a, b, "different", "auditor-1", "two people: checked the household register")
    split = resolve(store)
    assert split.mode == "incremental"
    after = rs.membership()
    ea = after.filter(pl.col("record_key") == a)["entity_id"][0]
    eb = after.filter(pl.col("record_key") == b)["entity_id"][0]
    assert ea != eb and entity_id in (ea, eb)  # split: the id stays on one part

    rs.add_judgement(a, b, "same", "auditor-2", "same person after all")
    resolve(store)
    after = rs.membership()
    assert after.filter(pl.col("record_key") == a)["entity_id"][0] == after.filter(pl.col("record_key") == b)["entity_id"][0]
    # a full retrain still honours the judgement
    resolve(store, full=True)
    after = rs.membership()
    assert after.filter(pl.col("record_key") == a)["entity_id"][0] == after.filter(pl.col("record_key") == b)["entity_id"][0]
