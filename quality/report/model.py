"""What the report says, computed from the warehouse's frames: pure Polars, no HTML, no SQL.

Kept apart from the templates so that the figures an auditor reads (a station's score, its rank,
how long its correction tasks stay open, the estimated precision of links) are tested as numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl

DIMENSIONS = ["completeness", "validity", "consistency", "uniqueness", "freshness"]
Z95 = 1.959963984540054
# Fewer judgements than this and no precision is estimated: the share and its interval would say
# little. At 30 judgements with 27 same, the 95 % Wilson interval still spans 74-97 %; at 10 with
# 9 same it spans 60-98 %, and one "different" judgement reads as "0 % precision (0-79 %)".
# Thirty is also the usual floor for treating a sample proportion as approximately normal.
MIN_JUDGEMENTS = 30


def _when() -> pl.Expr:
    """A score's place in time: its batch's start, else when it was computed."""
    return pl.coalesce("batch_at", "computed_at")


def latest_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """Each station's current score per dimension: the latest batch's, averaged over entity types."""
    if scores.height == 0:
        return pl.DataFrame(schema={"station_id": pl.String, "dimension": pl.String, "score": pl.Float64})
    latest = (scores.sort(_when(), "batch_id")
              .group_by("station_id", "entity_type", "dimension", maintain_order=True).last())
    return latest.group_by("station_id", "dimension").agg(pl.col("score").mean()).sort("station_id", "dimension")


def station_table(stations: pl.DataFrame, scores: pl.DataFrame, runs: pl.DataFrame, failures: pl.DataFrame,
                  task_times: pl.DataFrame, holds: pl.DataFrame) -> pl.DataFrame:
    """One row per station: its score (mean of its current dimension scores), one column per
    dimension, its rank (1 = best; stations without scores are unranked), open and closed tasks,
    held batches, failing expectations and batch counts."""
    wide = latest_scores(scores).pivot(on="dimension", index="station_id", values="score") \
        if scores.height else pl.DataFrame(schema={"station_id": pl.String})
    for dim in DIMENSIONS:
        if dim not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(dim))
    wide = wide.select("station_id", *DIMENSIONS).with_columns(
        pl.mean_horizontal(DIMENSIONS).alias("score"))
    tasks = task_times.group_by("station_id").agg(
        (pl.col("status") == "open").sum().alias("open_tasks"),
        (pl.col("status") == "closed").sum().alias("closed_tasks"))
    held = holds.filter(pl.col("released_at").is_null()).group_by("station_id").agg(pl.len().alias("held_batches"))
    failing = failures.filter(pl.col("station_id").is_not_null()).group_by("station_id").agg(
        pl.len().alias("failing_expectations"))
    failed_runs = runs.filter(pl.col("station_id").is_not_null()).group_by("station_id").agg(
        (~pl.col("success")).sum().alias("failed_runs"), pl.len().alias("runs"))
    counts = ["open_tasks", "closed_tasks", "held_batches", "failing_expectations", "failed_runs", "runs"]
    table = (stations.join(wide, on="station_id", how="left")
             .join(tasks, on="station_id", how="left").join(held, on="station_id", how="left")
             .join(failing, on="station_id", how="left").join(failed_runs, on="station_id", how="left")
             .with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts))
    return (table.with_columns(pl.col("score").rank("min", descending=True).cast(pl.Int64).alias("rank"))
            .sort(pl.col("rank").is_null(), "rank", "station_id"))


def dimension_averages(table: pl.DataFrame) -> pl.DataFrame:
    """The network's mean per dimension over stations that have a score for it."""
    return pl.DataFrame({
        "dimension": DIMENSIONS,
        "average": [table[d].mean() if table.height else None for d in DIMENSIONS],
        "stations": [table[d].drop_nulls().len() for d in DIMENSIONS],
    })


def score_histogram(table: pl.DataFrame, width: int = 5) -> pl.DataFrame:
    """How many stations score in each band of `width` points (0-5, 5-10, ..., 95-100)."""
    bands = list(range(0, 100, width))
    scored = table.filter(pl.col("score").is_not_null())
    band = (pl.col("score") // width * width).clip(0, 100 - width).cast(pl.Int64).alias("band")
    counts = scored.group_by(band).agg(pl.len().alias("stations"))
    frame = pl.DataFrame({"band": bands}).join(counts, on="band", how="left").with_columns(
        pl.col("stations").fill_null(0).cast(pl.Int64))
    return frame.with_columns(pl.format("{}–{}", "band", pl.col("band") + width).alias("label"))


def trend(scores: pl.DataFrame) -> pl.DataFrame:
    """The trend charts' lines for every station at once: one row per (station, entity type,
    dimension) with its points (batch time, score, batch id) as lists in batch order. One
    group-by over the network instead of one per station page."""
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return (scores.with_columns(_when().alias("at"),
                                pl.col("dimension").replace_strict(order, default=len(order)).alias("_dim"))
            .sort("station_id", "entity_type", "_dim", "at", "batch_id")
            .group_by("station_id", "entity_type", "dimension", maintain_order=True)
            .agg("at", "score", "batch_id"))


def task_durations(task_times: pl.DataFrame, now: dt.datetime) -> pl.DataFrame:
    """Per station: how long closed tasks stayed open (median, longest) and how old open ones are
    (median, oldest), in days."""
    days = 86_400_000_000.0
    frame = task_times.with_columns(
        ((pl.col("closed_at") - pl.col("opened_at")).dt.total_microseconds() / days).alias("closed_days"),
        ((pl.lit(now, pl.Datetime("us", "UTC")) - pl.col("opened_at")).dt.total_microseconds() / days)
        .alias("open_days"),
    )
    closed = pl.col("status") == "closed"
    opened = pl.col("status") == "open"
    return frame.group_by("station_id").agg(
        pl.col("closed_days").filter(closed).median().alias("closed_median_days"),
        pl.col("closed_days").filter(closed).max().alias("closed_max_days"),
        pl.col("open_days").filter(opened).median().alias("open_median_days"),
        pl.col("open_days").filter(opened).max().alias("open_max_days"),
    ).sort("station_id")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float, float] | None:
    """Proportion with its Wilson score interval: honest at small n and at 0 % or 100 %, where the
    normal approximation gives an interval of width zero."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def precision_estimates(judged: pl.DataFrame, min_judged: int = MIN_JUDGEMENTS) -> pl.DataFrame:
    """Per entity type and model decision (match, review): pairs reviewers judged, how many they
    judged the same, and that share with its 95 % interval. For 'match' it is the estimated
    precision of automatic links; for 'review' the share of uncertain pairs that were true.
    With fewer than `min_judged` judgements share and interval are null (`needed` says how many
    it takes): too few to estimate."""
    rows = []
    for (entity_type, decision), group in judged.filter(pl.col("decision") != "none").group_by(
            "entity_type", "decision", maintain_order=True):
        n = int(group["pairs"].sum())
        same = int(group.filter(pl.col("verdict") == "same")["pairs"].sum())
        est = wilson(same, n) if n >= min_judged else None
        rows.append({"entity_type": entity_type, "decision": decision, "judged": n, "same": same,
                     "share": est[0] if est else None, "low": est[1] if est else None,
                     "high": est[2] if est else None, "needed": min_judged})
    schema = {"entity_type": pl.String, "decision": pl.String, "judged": pl.Int64, "same": pl.Int64,
              "share": pl.Float64, "low": pl.Float64, "high": pl.Float64, "needed": pl.Int64}
    return pl.DataFrame(rows, schema=schema).sort("entity_type", "decision")


def link_precision(precision: pl.DataFrame, min_judged: int = MIN_JUDGEMENTS) -> dict | None:
    """The headline: precision of automatic links over every entity type ('match' pairs judged),
    as {judged, same, needed, share, low, high}; share and interval null below `min_judged`.
    None when no match pair was judged."""
    links = precision.filter(pl.col("decision") == "match")
    n = int(links["judged"].sum()) if links.height else 0
    if n == 0:
        return None
    same = int(links["same"].sum())
    est = wilson(same, n) if n >= min_judged else None
    return {"judged": n, "same": same, "needed": min_judged, "share": est[0] if est else None,
            "low": est[1] if est else None, "high": est[2] if est else None}


def describe_precision(estimate: dict | None) -> str:
    """The headline in words, as the CLI prints it."""
    if estimate is None:
        return "no judgements yet"
    if estimate["share"] is None:
        return f"too few judgements ({estimate['judged']} of {estimate['needed']} needed)"
    return (f"{estimate['share'] * 100:.1f} % (95 % CI {estimate['low'] * 100:.1f}–{estimate['high'] * 100:.1f} %, "
            f"{estimate['judged']} judgements)")


def fields_by_level(field_policies: pl.DataFrame) -> pl.DataFrame:
    """Personal fields delivered, by masking level: deliveries and entities per (field, level).

    The audit log stores each delivery's field -> level map as JSON; the warehouse groups
    deliveries by that text, so there are only as many maps to parse here as field policies."""
    rows = []
    for policy in field_policies.iter_rows(named=True):
        try:
            fields = json.loads(policy["fields"] or "{}")
        except json.JSONDecodeError:
            fields = {}
        if isinstance(fields, str):  # stored as a JSON string inside JSON
            fields = json.loads(fields)
        for field, level in (fields or {}).items():
            rows.append({"field": field, "level": str(level), "deliveries": policy["deliveries"],
                         "entities": policy["entities"]})
    frame = pl.DataFrame(rows, schema={"field": pl.String, "level": pl.String, "deliveries": pl.Int64,
                                       "entities": pl.Int64})
    return frame.group_by("field", "level").agg(pl.col("deliveries").sum(), pl.col("entities").sum()).sort(
        "field", "level")


def parse_samples(text: str | None) -> list[dict]:
    """A failed expectation's sample rows ({record_key, value}), tolerant of a missing value."""
    if not text:
        return []
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        return [{"record_key": "", "value": text}]
    if not isinstance(rows, list):
        return [{"record_key": "", "value": rows}]
    return [r if isinstance(r, dict) else {"record_key": "", "value": r} for r in rows]


HELD_COLUMNS = {"entity_type": pl.String, "rate": pl.Float64, "threshold": pl.Float64, "records": pl.Int64}


def held_batches(holds: pl.DataFrame) -> pl.DataFrame:
    """The batches still held from publication, longest held first: station, batch, entity type,
    reason, measured rate and threshold (null for a hold without a rate, such as rows that do not
    reconcile), the records kept back, and since when. Frames from before rates were kept (no
    such columns) read as unknown rate and records."""
    frame = holds.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in HELD_COLUMNS.items()
                               if name not in holds.columns)
    return (frame.filter(pl.col("released_at").is_null())
            .select("station_id", "batch_id", "entity_type", "reason", "rate", "threshold", "records", "held_at")
            .sort("held_at", "station_id", "batch_id"))
