"""warehouse.reports on SQLite and PostgreSQL: every aggregate the report reads, checked against
the same figures computed independently (Polars) from the rows that were inserted."""

from __future__ import annotations

import json

import polars as pl
import pytest

import warehouse.reports as reports
from fixtures.report_warehouse import synthetic_network
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.bulk import insert_frame
from warehouse.reports import read_report_frames


@pytest.fixture()
def filled(warehouse_url: str):
    store = Warehouse(warehouse_url).migrate()
    rows = synthetic_network(6, 3, records_per_station=30, seed=3)
    with store.transaction() as conn:
        for name, frame in rows.items():
            insert_frame(conn, s.metadata.tables[name], frame)
    yield store, rows
    store.dispose()


def test_report_frames_match_the_rows(filled):
    store, rows = filled
    frames = read_report_frames(store)

    st = frames["stations"].sort("station_id")
    expected = rows["batches"].group_by("station_id").agg(pl.len().alias("batches"), pl.col("rows_read").sum()).sort("station_id")
    assert st["station_id"].to_list() == expected["station_id"].to_list()
    assert st["batches"].to_list() == expected["batches"].to_list() == [3] * 6
    assert st["rows_read"].to_list() == expected["rows_read"].to_list()
    assert st["name"].to_list() == rows["stations"].sort("station_id")["name"].to_list()
    assert st["last_batch_at"].dtype == pl.Datetime("us", "UTC")
    assert st["last_batch_at"].to_list() == rows["batches"].group_by("station_id").agg(
        pl.col("started_at").max()).sort("station_id")["started_at"].to_list()

    assert frames["scores"].height == rows["station_scores"].height
    assert frames["scores"]["batch_at"].null_count() == 0

    runs = rows["validation_runs"]
    latest = runs.sort("started_at").group_by("station_id", "suite", "data_asset", "entity_type").last()
    assert sorted(frames["runs"]["run_id"]) == sorted(latest["run_id"])
    results = rows["validation_results"]
    failing = results.filter(~pl.col("success") & pl.col("run_id").is_in(latest["run_id"].implode()))
    got = frames["failures"].select("run_id", "expectation_id").sort("run_id", "expectation_id")
    assert got.rows() == failing.select("run_id", "expectation_id").sort("run_id", "expectation_id").rows()
    assert got.height > 0  # the synthetic network does have failures
    if frames["failures"].height:
        samples = json.loads(frames["failures"]["sample_rows"][0])
        assert all({"record_key", "value"} <= set(r) for r in samples)

    tasks = rows["correction_tasks"]
    assert frames["task_times"].height == tasks.height
    assert sorted(frames["tasks"]["task_id"]) == sorted(tasks["task_id"])
    holds = rows.get("batch_holds")
    assert frames["holds"].height == (holds.height if holds is not None else 0)


def test_linkage_and_access_aggregates(filled):
    store, rows = filled
    frames = read_report_frames(store)
    link = frames["linkage"].row(0, named=True)
    pairs = rows["scored_pairs"]
    judgements = rows["judgements"].sort("judgement_id").unique(["left_id", "right_id"], keep="last")
    review = pairs.filter(pl.col("decision") == "review")
    refused = pairs.filter(pl.col("review_reason").is_not_null())
    queue = pl.concat([review, refused]).unique(["left_id", "right_id"])
    assert refused.height and (refused["decision"] == "match").all()
    assert link == {
        "entity_type": "person", "records": rows["entity_membership"].height,
        "entities_active": rows["entities"].height, "entities_retired": 0,
        "match_pairs": pairs.filter(pl.col("decision") == "match").height, "review_pairs": review.height,
        "pending_reviews": queue.join(judgements, on=["left_id", "right_id"], how="anti").height,
        "refused_pairs": refused.height,
    }
    shown = frames["refused"]
    assert shown.height == refused.join(judgements, on=["left_id", "right_id"], how="anti").height
    assert shown["review_reason"].str.starts_with("refused by the ID guard").all()
    sizes = rows["entity_membership"].group_by("entity_id").len().group_by("len").agg(pl.len().alias("n")).sort("len")
    assert frames["cluster_sizes"].select("size", "entities").rows() == sizes.rows()

    judged = judgements.join(pairs.select("left_id", "right_id", "decision"), on=["left_id", "right_id"])
    expected = judged.group_by("decision", "verdict").len().sort("decision", "verdict")
    assert frames["judged"].select("decision", "verdict", "pairs").rows() == expected.rows()

    deliveries = rows["feed_deliveries"]
    subs = frames["subscribers"]
    assert subs.height == deliveries["subscriber_id"].n_unique()
    assert int(subs["deliveries"].sum()) == deliveries.height
    assert int(subs["entities"].sum()) == int(deliveries["entity_count"].sum())
    policy = frames["field_policies"]
    assert policy.height == 1 and json.loads(policy["fields"][0]) == json.loads(deliveries["fields"][0])
    assert int(policy["deliveries"][0]) == deliveries.height
    recent = frames["recent_deliveries"]["delivered_at"].to_list()
    assert recent == sorted(recent, reverse=True) and len(recent) == deliveries.height


def test_task_listing_keeps_the_newest_per_station_and_status(filled, monkeypatch):
    store, rows = filled
    monkeypatch.setattr(reports, "TASKS_LISTED", 2)
    frames = read_report_frames(store)
    listed = frames["tasks"]
    assert listed.group_by("station_id", "status").len()["len"].max() <= 2
    newest = (rows["correction_tasks"].sort("opened_at", descending=True)
              .group_by("station_id", "status", maintain_order=True).head(2))
    assert sorted(listed["task_id"]) == sorted(newest["task_id"])
    assert frames["task_times"].height == rows["correction_tasks"].height  # durations still cover all
