"""Resolution runs against a real warehouse: accuracy, incremental = full, judgements, stable ids."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from connectors.config import load_stations
from connectors.ingest import ingest_station
from connectors.simulate import simulate_network
from entity_resolution.config import load_resolution
from entity_resolution.evaluation import pairwise_metrics
from entity_resolution.resolve import distinct_valid, guard_records
from entity_resolution.service import needed_columns, run_resolution
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
    # the guard's flag is derived (id_trusted: not an upgraded 15-digit number, ...): checked on the records
    guard = guard_records(rs.records(needed_columns(SETTINGS)), SETTINGS)
    assert rs.conflicting_entities(distinct_valid(SETTINGS), records=guard).height == 0

    ids_before = rs.membership().sort("record_key")
    again = resolve(store)
    assert again.mode == "unchanged"
    assert rs.membership().sort("record_key").equals(ids_before)

    # an incremental run's clustering reads the match edges around a drop by key: the same edges
    # as every match edge filtered to those records, on either side
    every = rs.edges("match", weights=False).select("left_id", "right_id", "match_probability")
    some = pl.concat([every["left_id"].head(40), every["right_id"].tail(40), pl.Series(["nobody:1"])])
    around = rs.match_edges_touching(some)
    want = every.filter(pl.col("left_id").is_in(some.implode()) | pl.col("right_id").is_in(some.implode()))
    assert around.height == want.height > 40
    assert around.sort("left_id", "right_id").equals(want.sort("left_id", "right_id"))
    assert rs.match_edges_touching(pl.Series([], dtype=pl.String)).height == 0


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


# --- refused pairs wait in the review queue with the reason ------------------------------------


def _review_cli(network: Path, url: str) -> dict:
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    out = CliRunner().invoke(app, ["review", "--config", str(network), "--warehouse", url, "--format", "json",
                                   "--limit", "100000"])
    assert out.exit_code == 0, out.output
    table = CliRunner().invoke(app, ["review", "--config", str(network), "--warehouse", url, "--limit", "5"])
    assert table.exit_code == 0 and "reason" in table.output and "…" not in table.output, table.output
    return json.loads(out.stdout)


def _queued(rs, a: str, b: str) -> list[str]:
    a, b = sorted((a, b))
    q = rs.review_queue()
    return q.filter((pl.col("left_id") == a) & (pl.col("right_id") == b))["review_reason"].to_list()


def test_refused_pairs_wait_in_review_with_the_reason(network: Path, warehouse_url: str) -> None:

    from entity_resolution.standardise.id_numbers import id_check_char
    from warehouse import schema as s

    store = warehouse_with(network, warehouse_url)
    resolve(store)
    rs = store.resolution_store("person", "person_records")
    recs = rs.records(["id_number", "id_valid", "phone", "birth_date", "name_norm"])
    members = rs.membership().join(recs, on="record_key")
    # an entity of two records with the same valid ID, phone and birth date: give one another valid ID
    pair = (members.filter(pl.col("id_valid") & pl.col("phone").is_not_null() & pl.col("birth_date").is_not_null())
            .group_by("entity_id").agg(pl.col("record_key").sort(), pl.col("id_number").n_unique().alias("ids"),
                                       pl.col("phone").n_unique().alias("phones"), pl.len().alias("n"))
            .filter((pl.col("n") == 2) & (pl.col("ids") == 1) & (pl.col("phones") == 1))
            .sort("entity_id").row(0, named=True))
    x, y = pair["record_key"]
    old_id = recs.filter(pl.col("record_key") == x)["id_number"][0]
    body = old_id[:14] + ("111" if old_id[14:17] != "111" else "222")
    other = pl.select(pl.lit(body).alias("b")).select(pl.col("b") + id_check_char(pl.col("b"))).item()
    t = s.person_records
    with store.transaction() as conn:
        conn.execute(t.update().where(t.c.record_key == x).values(id_number=other, id_valid=True, row_hash="changed"))
    step = resolve(store)
    assert step.mode == "incremental" and step.refused >= 1
    [reason] = _queued(rs, x, y)
    assert reason == "refused by the ID guard: both records carry a different valid ID number (id_number)"
    doc = _review_cli(network, warehouse_url)
    assert any({p["left_id"], p["right_id"]} == {x, y} and p["reason"] == reason for p in doc["pairs"])
    assert doc["pairs"][0]["reason"]  # refused pairs come first

    # a 'different' judgement cuts a chain: the edge it refuses waits with the judged records named
    chains = rs.membership().group_by("entity_id").agg(pl.col("record_key").sort(), pl.len().alias("n")).filter(
        pl.col("n") >= 3).sort("entity_id")
    a, *_, c = chains.row(0, named=True)["record_key"]
    rs.add_judgement(a, c, "different", "auditor-1", "two people")
    resolve(store)
    queue = rs.review_queue()
    refused = queue.filter(pl.col("review_reason") == f"refused by a judgement: reviewer judged {a} and {c} different")
    assert refused.height >= 1
    doc = _review_cli(network, warehouse_url)
    assert any(p["reason"] == refused["review_reason"][0] for p in doc["pairs"])
    # the pair judged directly never waits; judging a refused edge takes it out of the queue
    assert _queued(rs, a, c) == []
    left, right = refused.row(0, named=True)["left_id"], refused.row(0, named=True)["right_id"]
    rs.add_judgement(left, right, "different", "auditor-1", "checked")
    assert _queued(rs, left, right) == []
    rs.add_judgement(x, y, "different", "auditor-1", "checked")
    assert _queued(rs, x, y) == []

    # the next full run agrees: the same refusals (the judged one aside) and the same entities
    resolve(store)
    incremental = rs.review_queue().filter(pl.col("review_reason").is_not_null()).select(
        "left_id", "right_id", "review_reason").sort("left_id", "right_id")
    before = partition(store)
    resolve(store, full=True, retrain=False)
    full = rs.review_queue().filter(pl.col("review_reason").is_not_null()).select(
        "left_id", "right_id", "review_reason").sort("left_id", "right_id")
    assert partition(store) == before
    assert incremental.equals(full)


def test_a_refusal_that_no_longer_holds_loses_its_reason(network: Path, tmp_path: Path) -> None:
    store = warehouse_with(network, f"sqlite:///{tmp_path / 'w.sqlite'}", cache_dir=tmp_path / "cache")
    resolve(store)
    rs = store.resolution_store("person", "person_records")
    chains = rs.membership().group_by("entity_id").agg(pl.col("record_key").sort(), pl.len().alias("n")).filter(
        pl.col("n") >= 3).sort("entity_id")
    a, *_, c = chains.row(0, named=True)["record_key"]
    rs.add_judgement(a, c, "different", "auditor-1", "two people")
    resolve(store)
    by_judgement = pl.col("review_reason").str.starts_with("refused by a judgement")
    assert rs.edges("match").filter(by_judgement).height >= 1
    rs.add_judgement(a, c, "same", "auditor-2", "one person after all")
    resolve(store)
    assert rs.edges("match").filter(by_judgement).height == 0
    assert rs.review_queue().filter(pl.col("review_reason").str.starts_with("refused by a judgement")).height == 0


def test_membership_cache_survives_another_types_run(network: Path, tmp_path: Path) -> None:
    """A drop resolves dwellings, then persons: the person membership cached by the last person run
    is still good after a dwelling run (it once was keyed by any type's latest run, and read whole
    again every time)."""
    import datetime as dt
    import json

    from warehouse import schema as s

    cache = tmp_path / "cache"
    store = warehouse_with(network, f"sqlite:///{tmp_path / 'w.sqlite'}", ["s0001", "s0002"], cache_dir=cache)
    resolve(store)
    rs = store.resolution_store("person", "person_records")
    cached = rs.membership()
    manifest = (cache / "person-membership" / "manifest.json").read_text(encoding="utf-8")
    other = rs.next_seq()
    with store.transaction() as conn:  # another type's run, later than the person run
        conn.execute(s.resolution_runs.insert().values(seq=other, entity_type="dwelling", mode="incremental",
                                                        records_considered=0, stats={},
                                                        started_at=dt.datetime.now(dt.timezone.utc)))
    again = store.resolution_store("person", "person_records").membership()
    assert (cache / "person-membership" / "manifest.json").read_text(encoding="utf-8") == manifest  # a hit
    assert again.sort("record_key").equals(cached.sort("record_key"))
    # and a person run after it still moves the cache on with what it wrote
    ingest_station(store, next(st for st in load_stations(network / "stations.yaml").stations if st.id == "s0003"),
                   base_dir=network, data_dir=network / "data")
    step = resolve(store)
    assert step.mode == "incremental"
    meta = json.loads((cache / "person-membership" / "manifest.json").read_text(encoding="utf-8"))["meta"]
    assert meta == rs.next_seq() - 1 != other
    fresh = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").resolution_store("person", "person_records").membership()
    assert store.resolution_store("person", "person_records").membership().sort("record_key").equals(
        fresh.sort("record_key"))


def test_record_cache_holds_what_resolution_and_publication_read(network: Path, tmp_path: Path) -> None:
    """Resolution and golden records read different columns of the same records: resolution's
    read caches the golden columns too, so the first publication finds them there; a reader
    asking for columns the cache lacks widens it (it once held one reader's columns, and each
    would have replaced it in turn); later batches are appended with every column it holds; and
    each read equals the table's."""
    import json

    from entity_resolution.service import golden_columns
    from warehouse import schema as s

    cache = tmp_path / "cache"
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    store = warehouse_with(network, url, ["s0001", "s0002"], cache_dir=cache)
    manifest = cache / "person-records" / "manifest.json"
    resolve(store)
    rs, gs = store.resolution_store("person", "person_records"), store.golden_store("person", "person_records")
    written = manifest.read_text()

    def table(columns: list[str]) -> pl.DataFrame:  # the same read without a cache
        return Warehouse(url).resolution_store("person", "person_records").records(columns)

    resolution_columns, publication_columns = needed_columns(SETTINGS), golden_columns(SETTINGS)
    assert {"address", "source_updated_at"} <= set(publication_columns) - set(resolution_columns)
    published = gs.records(publication_columns)
    assert manifest.read_text() == written  # a hit: resolution cached them
    assert published.sort("record_key").equals(table(publication_columns).sort("record_key"))
    gs.records(["phone_kind", *publication_columns])  # asked by nobody before: a miss
    assert "phone_kind" not in resolution_columns and manifest.read_text() != written
    widened_to = manifest.read_text()
    assert rs.records(resolution_columns).columns[:4] == ["record_key", "station_id", "row_hash", "batch_id"]
    assert gs.records(publication_columns).equals(published)
    assert manifest.read_text() == widened_to  # hits for both again

    ingest_station(store, next(st for st in load_stations(network / "stations.yaml").stations if st.id == "s0003"),
                   base_dir=network, data_dir=network / "data")
    grown = rs.records(resolution_columns)  # the new batch, appended as a delta with every column
    assert len(json.loads(manifest.read_text())["deltas"]) == 1
    for columns, got in ((resolution_columns, grown), (publication_columns, gs.records(publication_columns)),
                         (["phone_kind"], gs.records(["phone_kind"]))):
        want = table(columns)
        assert got.columns == want.columns
        assert got.sort("record_key").equals(want.sort("record_key"))
    with store.engine.connect() as conn:
        assert grown.height == conn.scalar(sa.select(sa.func.count()).select_from(s.person_records))
