"""Scorecard maths: dimension scores, freshness decay, trend across batches, ranking."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from quality.scorecards import batch_scores, freshness_scores, ranking, trend

UTC = dt.timezone.utc


def results(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"station_id": pl.String, "entity_type": pl.String, "batch_id": pl.String,
                                      "dimension": pl.String, "success": pl.Boolean,
                                      "unexpected_percent": pl.Float64}, orient="row")


def test_dimension_score_is_the_mean_share_of_rows_meeting_each_expectation() -> None:
    frame = results([
        ("s1", "person", "b1", "validity", False, 3.0),   # 97
        ("s1", "person", "b1", "validity", True, 0.0),    # 100
        ("s1", "person", "b1", "validity", False, None),  # aggregate failed: 0
        ("s1", "person", "b1", "completeness", True, None),  # aggregate met: 100
        ("s1", "person", "b1", "uniqueness", False, 250.0),  # clipped to 0
    ])
    scores = {r["dimension"]: r["score"] for r in batch_scores(frame).iter_rows(named=True)}
    assert scores == {"validity": pytest.approx((97 + 100 + 0) / 3, abs=0.01), "completeness": 100.0,
                      "uniqueness": 0.0}


def test_freshness_is_full_up_to_the_max_age_then_falls_to_zero_at_twice_it() -> None:
    now = dt.datetime(2026, 11, 26, tzinfo=UTC)
    drops = pl.DataFrame({"station_id": ["a", "b", "c", "d"], "entity_type": ["person"] * 4, "batch_id": list("wxyz"),
                          "started_at": [now - dt.timedelta(days=d) for d in (1, 30, 45, 90)]},
                         schema_overrides={"started_at": pl.Datetime("us", "UTC")})
    scores = dict(freshness_scores(drops, now=now, max_age_days=30).select("station_id", "score").iter_rows())
    assert scores == {"a": 100.0, "b": 100.0, "c": 50.0, "d": 0.0}


def test_trend_and_ranking_follow_the_order_batches_arrived() -> None:
    t0 = dt.datetime(2026, 11, 1, tzinfo=UTC)
    batches = pl.DataFrame({"batch_id": ["a2", "a1", "b1"], "started_at": [t0 + dt.timedelta(days=2), t0, t0]},
                           schema_overrides={"started_at": pl.Datetime("us", "UTC")})
    scores = pl.DataFrame({
        "station_id": ["sa", "sa", "sa", "sa", "sb", "sb"],
        "entity_type": ["person"] * 6,
        "batch_id": ["a2", "a1", "a2", "a1", "b1", "b1"],
        "dimension": ["validity", "validity", "completeness", "completeness", "validity", "completeness"],
        "score": [90.0, 80.0, 100.0, 100.0, 96.0, 98.0],
    })
    t = trend(scores, batches).filter(pl.col("station_id") == "sa", pl.col("dimension") == "validity")
    assert t["batch_id"].to_list() == ["a1", "a2"]
    assert t["previous"].to_list() == [None, 80.0] and t["change"].to_list() == [None, 10.0]
    ranked = ranking(scores, batches)
    # sa's latest batch a2: (90 + 100) / 2 = 95; sb: (96 + 98) / 2 = 97
    assert ranked.select("rank", "station_id", "overall").rows() == [(1, "sb", 97.0), (2, "sa", 95.0)]
    assert ranked.filter(pl.col("station_id") == "sa")["validity"][0] == 90.0
    assert ranked["freshness"].is_null().all()
