"""Station scorecards: a 0-100 score per station, batch and dimension, its trend, a ranking.

Pure Polars over stored validation results, so the report and the CLI compute the same figures.

An expectation's score is the share of rows that met it (100 - unexpected_percent); one without
a row count (an aggregate) scores 100 when it succeeded and 0 when it failed. A dimension's
score is the mean over its expectations, so a batch with 3% invalid IDs scores 97 on that
expectation rather than 0, and a station is ranked by how much of its data is good, not by how
many thresholds it tripped. Freshness decays linearly from 100 at the configured maximum age to
0 at twice that age.
"""

from __future__ import annotations

import polars as pl

from quality.suites import DIMENSIONS

SCORE_SCHEMA = {"station_id": pl.String, "entity_type": pl.String, "batch_id": pl.String,
                "dimension": pl.String, "score": pl.Float64}


def expectation_score() -> pl.Expr:
    return (
        pl.when(pl.col("unexpected_percent").is_not_null())
        .then(100.0 - pl.col("unexpected_percent").clip(0.0, 100.0))
        .when(pl.col("success"))
        .then(100.0)
        .otherwise(0.0)
    )


def batch_scores(results: pl.DataFrame) -> pl.DataFrame:
    """Per station, entity type, batch and dimension: the mean expectation score.

    `results`: station_id, entity_type, batch_id, dimension, success, unexpected_percent (one
    row per expectation result of the batch's station-level suites).
    """
    if results.height == 0:
        return pl.DataFrame(schema=SCORE_SCHEMA)
    return (
        results.filter(pl.col("batch_id").is_not_null() & pl.col("station_id").is_not_null())
        .with_columns(expectation_score().alias("score"))
        .group_by("station_id", "entity_type", "batch_id", "dimension")
        .agg(pl.col("score").mean().round(2))
        .select(list(SCORE_SCHEMA))
        .sort("station_id", "entity_type", "batch_id", "dimension")
    )


def freshness_scores(last_drops: pl.DataFrame, *, now, max_age_days: float) -> pl.DataFrame:
    """Per station and entity type, at its latest batch: 100 up to `max_age_days`, falling
    linearly to 0 at twice that. `last_drops`: station_id, entity_type, batch_id, started_at."""
    if last_drops.height == 0:
        return pl.DataFrame(schema=SCORE_SCHEMA)
    return last_drops.with_columns(age_days(now).alias("age")).select(
        "station_id", "entity_type", "batch_id", pl.lit("freshness").alias("dimension"),
        (100.0 * (2.0 - pl.col("age") / max_age_days)).clip(0.0, 100.0).round(2).alias("score"),
    )


def age_days(now) -> pl.Expr:
    """Days from `started_at` to `now`, fractional."""
    return (pl.lit(now).cast(pl.Datetime("us", "UTC")) - pl.col("started_at")).dt.total_seconds() / 86400.0


def trend(scores: pl.DataFrame, batches: pl.DataFrame) -> pl.DataFrame:
    """Each score beside the same station's previous batch's, in the order the batches came.

    `batches`: batch_id, started_at. Adds `started_at`, `previous` and `change` (null for a
    station's first batch).
    """
    ordered = scores.join(batches.select("batch_id", "started_at"), on="batch_id", how="left").sort(
        "station_id", "entity_type", "dimension", "started_at", "batch_id")
    keys = ["station_id", "entity_type", "dimension"]
    return ordered.with_columns(pl.col("score").shift(1).over(keys).alias("previous")).with_columns(
        (pl.col("score") - pl.col("previous")).round(2).alias("change"))


def latest(scores: pl.DataFrame, batches: pl.DataFrame) -> pl.DataFrame:
    """Each station's latest score per entity type and dimension."""
    return (trend(scores, batches)
            .group_by("station_id", "entity_type", "dimension", maintain_order=True)
            .agg(pl.col("score").last(), pl.col("change").last(), pl.col("batch_id").last()))


def ranking(scores: pl.DataFrame, batches: pl.DataFrame) -> pl.DataFrame:
    """Stations ranked by their overall score: the mean of their latest dimension scores (each
    dimension first averaged over entity types), best first; ties share a rank."""
    if scores.height == 0:
        return pl.DataFrame(schema={"rank": pl.UInt32, "station_id": pl.String, "overall": pl.Float64,
                                    **{d: pl.Float64 for d in DIMENSIONS}})
    per_dim = (latest(scores, batches).group_by("station_id", "dimension")
               .agg(pl.col("score").mean()))
    wide = per_dim.pivot(on="dimension", index="station_id", values="score")
    for d in DIMENSIONS:
        if d not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(d))
    overall = per_dim.group_by("station_id").agg(pl.col("score").mean().round(2).alias("overall"))
    return (wide.join(overall, on="station_id")
            .with_columns(pl.col("overall").rank(method="min", descending=True).alias("rank"))
            .select("rank", "station_id", "overall", *[pl.col(d).round(2) for d in DIMENSIONS])
            .sort("rank", "station_id"))
