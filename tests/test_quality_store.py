"""Quality results in the warehouse, on SQLite and PostgreSQL: runs and results, scores, holds,
and correction-task events in the outbox (gap-free seq, idempotent, deterministic ids)."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from quality.corrections import CANDIDATE_SCHEMA, task_id
from quality.service import apply_tasks
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.golden import events
from warehouse.quality import QualityStore, held_batch_ids, task_event_id

NOW = dt.datetime(2026, 11, 26, 8, tzinfo=dt.timezone.utc)


def store(url: str) -> QualityStore:
    w = Warehouse(url).migrate()
    return QualityStore(w)


def candidate(record: str, field: str = "id_number", value: str = "123") -> dict:
    return {"task_id": task_id("s1", record, field, "expectation:validity.id_number"), "station_id": "s1",
            "record_key": record, "entity_type": "person", "entity_id": None, "field": field,
            "station_value": value, "expected_value": None, "reason": "ID number fails its check digit",
            "source": "expectation", "opened_batch": "s1/residents/b1"}


def opened(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=CANDIDATE_SCHEMA).with_columns(opened_at=pl.lit(NOW))


def closing(*ids: str, batch: str = "s1/residents/b2") -> pl.DataFrame:
    return pl.DataFrame({"task_id": list(ids), "closed_at": [NOW] * len(ids), "closed_batch": [batch] * len(ids)},
                        schema={"task_id": pl.String, "closed_at": pl.Datetime("us", "UTC"), "closed_batch": pl.String})


def test_runs_results_scores_and_holds_round_trip(warehouse_url: str) -> None:
    qs = store(warehouse_url)
    run = {"run_id": "r1", "suite": "person_records", "data_asset": "standardised", "entity_type": "person",
           "station_id": "s1", "batch_id": "s1/residents/b1", "success": False, "evaluated": 2, "successful": 1,
           "started_at": NOW, "finished_at": NOW, "data_docs_path": "/x/index.html"}
    results = pl.DataFrame([
        {"expectation_id": "validity.id_number", "expectation_type": "expect_column_values_to_be_in_set",
         "column_name": "id_valid", "dimension": "validity", "success": False, "element_count": 10,
         "unexpected_count": 1, "unexpected_percent": 10.0, "observed_value": None,
         "sample_rows": json.dumps([{"record_key": "s1:9", "value": "False"}])},
        {"expectation_id": "completeness.name", "expectation_type": "expect_column_values_to_not_be_null",
         "column_name": "name", "dimension": "completeness", "success": True, "element_count": 10,
         "unexpected_count": 0, "unexpected_percent": 0.0, "observed_value": None, "sample_rows": None},
    ])
    qs.save_run(run, results)
    qs.save_run(run, results)  # saving the same run again replaces it
    got = qs.results(["r1"]).sort("expectation_id")
    assert got.height == 2 and got["unexpected_percent"].to_list() == [0.0, 10.0]
    assert json.loads(got["sample_rows"][1]) == [{"record_key": "s1:9", "value": "False"}]
    runs = qs.runs(["s1"])
    assert runs.height == 1 and runs["success"].to_list() == [False] and runs["evaluated"][0] == 2

    scores = pl.DataFrame({"station_id": ["s1"], "entity_type": ["person"], "batch_id": ["s1/residents/b1"],
                           "dimension": ["validity"], "score": [90.0]})
    qs.save_scores(scores)
    qs.save_scores(scores.with_columns(score=pl.lit(95.0)))  # upsert on the four keys
    assert qs.scores()["score"].to_list() == [95.0]

    assert qs.hold("s1/residents/b1", "s1", "invalid ID numbers: 20%") is True
    assert qs.hold("s1/residents/b1", "s1", "again") is False
    assert held_batch_ids(qs.engine) == {"s1/residents/b1"}
    assert qs.release("s1/residents/b1") and held_batch_ids(qs.engine) == set()
    assert qs.holds()["reason"].to_list() == ["invalid ID numbers: 20%"]


def test_task_events_are_gap_free_idempotent_and_routed_by_station(warehouse_url: str) -> None:
    qs = store(warehouse_url)
    with qs.engine.begin() as conn:  # a golden event already in the outbox
        conn.execute(s.change_events.insert().values(
            seq=1, event_id="e-1", entity_type="person", entity_id="P1", op="create", version=1,
            changed_fields=[], before=None, after="{}", sources=[], occurred_at=NOW))
    a, b = candidate("s1:1"), candidate("s1:2")
    assert apply_tasks(qs, opened(a, b), closing()) == (2, 3)
    assert apply_tasks(qs, opened(a, b), closing()) == (0, 0)  # already open: nothing new
    assert apply_tasks(qs, opened(), closing(a["task_id"])) == (1, 4)
    assert apply_tasks(qs, opened(), closing(a["task_id"])) == (0, 0)  # already closed
    assert apply_tasks(qs, opened(a), closing()) == (1, 5)  # the problem came back: reopened

    out = events(qs.store).filter(pl.col("entity_type") == "correction_task")
    assert out["seq"].to_list() == [2, 3, 4, 5]
    assert out["op"].to_list() == ["create", "create", "retire", "update"]
    by_task = out.filter(pl.col("entity_id") == a["task_id"])
    assert by_task["version"].to_list() == [1, 2, 3]
    assert by_task["event_id"].to_list() == [task_event_id(a["task_id"], v) for v in (1, 2, 3)]
    closed = json.loads(by_task["after"][1])
    assert closed["status"] == "closed" and closed["station_id"] == "s1" and closed["record_key"] == "s1:1"
    assert closed["field"] == "id_number" and closed["station_value"] == "123" and closed["closed_at"]
    assert json.loads(by_task["before"][1])["status"] == "open"
    assert by_task["sources"][1] == [{"station_id": "s1", "record_key": "s1:1", "batch_id": "s1/residents/b2"}]

    tasks = qs.tasks(station_ids=["s1"]).sort("record_key")
    assert tasks["status"].to_list() == ["open", "open"]
    assert tasks.filter(pl.col("record_key") == "s1:1")["closed_at"][0] is None
    with qs.engine.connect() as conn:
        seqs = conn.scalars(sa.select(s.change_events.c.seq).order_by(s.change_events.c.seq)).all()
    assert seqs == list(range(1, 6))


def test_all_members_are_the_members_of_every_entity_of_the_type(warehouse_url: str) -> None:
    """The whole read a first load's golden pass takes gives what reading every entity's members
    by key gives: the same rows, typed alike; records of no entity and members of another type
    are left out."""
    qs = store(warehouse_url)
    t, m = qs.store.record_table("person"), s.entity_membership
    records = [{"record_key": f"s1:{i}", "station_id": "s1", "local_id": str(i), "batch_id": "s1/residents/b1",
                "row_number": i, "row_hash": f"h{i}", "name": f"名{i}", "sex": "MF"[i % 2],
                "birth_date": dt.date(1980, 1, 1) + dt.timedelta(days=i), "id_valid": i % 3 != 0,
                "phone": None if i % 4 == 0 else f"138{i:08d}"} for i in range(12)]
    members = [{"entity_type": "person", "record_key": f"s1:{i}", "entity_id": f"P{i // 3}", "row_hash": f"h{i}",
                "since_seq": 1, "updated_seq": 1} for i in range(10)]  # s1:10 and s1:11 belong to none
    members.append({"entity_type": "organisation", "record_key": "s1:0", "entity_id": "O1", "row_hash": "h",
                    "since_seq": 1, "updated_seq": 1})
    with qs.store.transaction() as conn:
        conn.execute(t.insert(), records)
        conn.execute(m.insert(), members)
    fields = ["name", "sex", "birth_date", "id_valid", "phone", "no_such_field"]
    whole = qs.all_members("person", fields)
    by_key = qs.members("person", [f"P{i}" for i in range(4)], fields)
    assert whole.height == 10 and qs.member_count("person") == 10
    assert whole.schema == by_key.schema
    assert_frame_equal(whole.sort("record_key"), by_key.sort("record_key"))
    assert whole.filter(pl.col("record_key").is_in(["s1:4", "s1:5"])).sort("record_key").to_dicts() == [
        {"entity_id": "P1", "record_key": "s1:4", "station_id": "s1", "batch_id": "s1/residents/b1", "name": "名4",
         "sex": "M", "birth_date": dt.date(1980, 1, 5), "id_valid": True, "phone": None},
        {"entity_id": "P1", "record_key": "s1:5", "station_id": "s1", "batch_id": "s1/residents/b1", "name": "名5",
         "sex": "F", "birth_date": dt.date(1980, 1, 6), "id_valid": True, "phone": "13800000005"}]


def test_active_golden_of_an_id_range_is_the_active_golden_of_its_ids(warehouse_url: str) -> None:
    """A dense pass's golden read by id range gives, for the ids from first to last, what the
    read by key list gives: active records of the type only, bounds included."""
    qs = store(warehouse_url)
    rows = [{"entity_id": f"P{i:03d}", "entity_type": "person" if i % 5 else "dwelling", "version": 1,
             "status": "retired" if i % 7 == 0 else "active", "area_code": None, "record": json.dumps({"n": i}),
             "provenance": "{}", "updated_at": NOW} for i in range(1, 30)]
    with qs.store.transaction() as conn:
        conn.execute(s.golden_records.insert(), rows)
    ranged = qs.active_golden_between("person", "P004", "P021").sort("entity_id")
    by_key = qs.active_golden("person", [f"P{i:03d}" for i in range(4, 22)]).sort("entity_id")
    assert_frame_equal(ranged, by_key)
    assert ranged["entity_id"].to_list() == [f"P{i:03d}" for i in range(4, 22) if i % 5 and i % 7]
