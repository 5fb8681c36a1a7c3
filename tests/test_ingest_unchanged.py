"""A whole export sent again: the rows the warehouse already holds are counted, not stored again."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import sqlalchemy as sa

from connectors.config import SourceConfig, StationConfig
from connectors.ingest import ingest_station
from warehouse import Warehouse

HEADER = "人员编号,姓名,性别,出生日期,公民身份号码,联系电话"
ROWS = [
    "r1,张伟,男,1990-01-02,11010519900102001X,13812345678",
    "r2,李娜,女,1985-03-04,110105198503040024,13912345678",
    "r3,王芳,女,1990-02-03,500103199002030028,",
]
COLUMNS = {"人员编号": "local_id", "姓名": "name", "性别": "sex", "出生日期": "birth_date",
           "公民身份号码": "id_number", "联系电话": "phone"}


def station(columns: dict | None = None) -> StationConfig:
    source = SourceConfig(name="residents", entity="person", kind="csv", path="drops/*.csv",
                          columns=columns or COLUMNS)
    return StationConfig(id="s1", name="解放碑派出所", jurisdiction=("500103",), sources=(source,))


def drop(tmp_path: Path, name: str, rows: list[str]) -> None:
    (tmp_path / "drops").mkdir(exist_ok=True)
    (tmp_path / "drops" / name).write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")


def ingest(store: Warehouse, tmp_path: Path, st: StationConfig | None = None):
    return [o for o in ingest_station(store, st or station(), base_dir=tmp_path, data_dir=tmp_path / "data")
            if o.status == "loaded"]


def records(store: Warehouse) -> dict[str, tuple[str, str]]:
    with store.engine.connect() as conn:
        return {k: (b, p) for k, b, p in conn.execute(sa.text(
            "SELECT record_key, batch_id, phone FROM person_records ORDER BY record_key"))}


def new_store(url: str) -> Warehouse:
    store = Warehouse(url).migrate()
    store.sync_stations([{"station_id": "s1", "name": "x", "jurisdiction": ["500103"]}])
    return store


def test_a_whole_export_again_stores_only_what_changed(tmp_path: Path, warehouse_url: str) -> None:
    store = new_store(warehouse_url)
    drop(tmp_path, "d1.csv", ROWS)
    [first] = ingest(store, tmp_path)
    assert (first.rows_read, first.rows_loaded, first.rows_unchanged) == (3, 3, 0)

    # the next day's export: r2's phone changed, r4 is new, r1 and r3 are as they were
    changed = ROWS[1].replace("13912345678", "13700000000")
    drop(tmp_path, "d2.csv", [ROWS[0], changed, ROWS[2], "r4,赵六,男,1970-05-06,,13600000000"])
    [second] = ingest(store, tmp_path)
    assert (second.rows_read, second.rows_loaded, second.rows_quarantined, second.rows_unchanged) == (4, 2, 0, 2)
    assert "unchanged 2" in second.summary()

    now = records(store)
    assert now["s1:r1"][0] == now["s1:r3"][0] == first.batch_id  # lineage: still the row that brought them
    assert now["s1:r2"] == (second.batch_id, "13700000000")
    assert now["s1:r4"][0] == second.batch_id
    raw = store.engine.connect().execute(sa.text(
        "SELECT local_id FROM raw_records WHERE batch_id = :b ORDER BY row_number"), {"b": second.batch_id}).scalars()
    assert list(raw) == ["r2", "r4"]

    recon = store.reconciliation(["s1"]).sort("batch_id")
    assert recon["balanced"].all()
    assert recon.filter(pl.col("batch_id") == second.batch_id).select(
        "rows_read", "raw_stored", "rows_unchanged").row(0) == (4, 2, 2)
    assert store.batches(["s1"]).filter(pl.col("batch_id") == second.batch_id)["rows_unchanged"].item() == 2

    # a counter that claims an unchanged row that was not there does not reconcile
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE batches SET rows_unchanged = 3 WHERE batch_id = :b"), {"b": second.batch_id})
    assert not store.reconciliation(["s1"]).filter(pl.col("batch_id") == second.batch_id)["balanced"].item()


def test_a_changed_mapping_or_a_held_batch_reads_every_row_again(tmp_path: Path) -> None:
    store = new_store(f"sqlite:///{tmp_path / 'w.sqlite'}")
    drop(tmp_path, "d1.csv", ROWS)
    [first] = ingest(store, tmp_path)

    # the same rows under another mapping standardise differently: nothing is taken as unchanged
    no_phone = {k: v for k, v in COLUMNS.items() if v != "phone"}
    drop(tmp_path, "d2.csv", ROWS[::-1])  # other bytes: a new drop
    [second] = ingest(store, tmp_path, station(no_phone))
    assert (second.rows_loaded, second.rows_unchanged) == (3, 0)
    assert records(store)["s1:r1"] == (second.batch_id, None)

    # a held batch's records are not current for anyone: the next drop that carries them loads them
    assert store.batch_state(second.batch_id)[0] == "loaded"
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO batch_holds (batch_id, station_id, reason, held_at) "
                             "VALUES (:b, 's1', 'test', CURRENT_TIMESTAMP)"), {"b": second.batch_id})
    drop(tmp_path, "d3.csv", [ROWS[1], ROWS[0], ROWS[2]])
    [third] = ingest(store, tmp_path, station(no_phone))
    assert (third.rows_loaded, third.rows_unchanged) == (3, 0)
    # and once that drop is in, the same rows again are unchanged
    drop(tmp_path, "d4.csv", [*ROWS, ROWS[0].replace("r1", "r5")])
    [fourth] = ingest(store, tmp_path, station(no_phone))
    assert (fourth.rows_read, fourth.rows_loaded, fourth.rows_unchanged) == (4, 1, 3)
    assert store.reconciliation(["s1"])["balanced"].all()


def test_unchanged_rows_through_the_quality_pass_and_publication(tmp_path_factory, tmp_path: Path) -> None:
    """Through validation, resolution, publication and the quality pass: a task on a bad value
    the station sends again unchanged stays open, the changed record alone gets its event, and an
    export that repeats every row is a batch that loads, validates and changes nothing."""
    from quality.config import QualityConfig
    from scenario_network import network_with_csv_station
    from test_quality_pipeline import ID_B, Network, bad_check_digit, disagreeing_rows, row
    from warehouse.golden import events

    base = network_with_csv_station(tmp_path_factory.mktemp("unet"), stations=1, persons=60, seed=11)
    net = Network(base, f"sqlite:///{tmp_path / 'w.sqlite'}", QualityConfig(max_invalid_id_rate=0.5, data_docs=False))
    a, c1, c2, c3 = disagreeing_rows()
    b = row("B1", name="欧阳娜娜", sex="女", birth_date="1988-03-04", id_number=bad_check_digit(ID_B), phone="13700002222")
    net.drop([a, b, c1, c2, c3])
    net.cycle()
    assert ("s9001:B1", "id_number", "expectation") in net.open_tasks()
    seq = net.store.max_event_seq()

    # the next export: A1 moved its phone, everything else as it was
    net.drop([{**a, "phone": "13600009999", "source_updated_at": "2026-11-25 09:00:00"}, b, c1, c2, c3])
    net.cycle()
    batch = net.store.batches(["s9001"]).sort("started_at")[-1].row(0, named=True)
    assert (batch["rows_read"], batch["rows_loaded"], batch["rows_unchanged"]) == (5, 1, 4)
    assert ("s9001:B1", "id_number", "expectation") in net.open_tasks()  # still wrong, still open
    persons = events(net.store, after=seq).filter(pl.col("entity_type") == "person")
    a_entity = net.rs.membership().filter(pl.col("record_key") == "s9001:A1")["entity_id"].item()
    assert persons["entity_id"].to_list() == [a_entity] and persons["op"].to_list() == ["update"]
    assert net.qs.runs(["s9001"]).filter(pl.col("batch_id") == batch["batch_id"]).height == 2  # raw and standardised

    # the same rows in another order: new bytes, nothing new
    seq, open_before = net.store.max_event_seq(), net.open_tasks()
    net.drop([c3, c2, c1, b, {**a, "phone": "13600009999", "source_updated_at": "2026-11-25 09:00:00"}])
    net.cycle()
    batch = net.store.batches(["s9001"]).sort("started_at")[-1].row(0, named=True)
    assert (batch["status"], batch["rows_loaded"], batch["rows_unchanged"]) == ("loaded", 0, 5)
    assert net.store.max_event_seq() == seq and net.open_tasks() == open_before
    assert net.store.reconciliation(["s9001"])["balanced"].all()
