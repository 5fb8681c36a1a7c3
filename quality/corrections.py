"""Correction tasks back to the source (信息智能核录、任务精准推送), as pure Polars.

Two things become a task routed to the station that owns the record:
(a) a failed row-level expectation on the station's record (an ID number failing its check
    digit, a stated birth date that differs from the ID's, ...), and
(b) a station's value that disagrees with the golden record's surviving value.
A task closes by itself when a later look at that record (its station's next drop, or the next
pass over its entity) no longer finds the problem. Task ids are deterministic, so finding the
same problem again is the same task.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl

from quality.suites import SuiteSpec

CANDIDATE_SCHEMA = {
    "task_id": pl.String, "station_id": pl.String, "record_key": pl.String, "entity_type": pl.String,
    "entity_id": pl.String, "field": pl.String, "station_value": pl.String, "expected_value": pl.String,
    "reason": pl.String, "source": pl.String, "opened_batch": pl.String,
}


def task_id(station_id: str, record_key: str, field: str, kind: str) -> str:
    return hashlib.sha256(f"{station_id}|{record_key}|{field}|{kind}".encode()).hexdigest()[:40]


def _task_ids() -> pl.Expr:
    """`task_id` over the frame's station_id, record_key, field and kind, as `task_id()` does."""
    return pl.concat_str(["station_id", "record_key", "field", "kind"], separator="|").map_elements(
        lambda k: hashlib.sha256(k.encode()).hexdigest()[:40], return_dtype=pl.String)


def _text(frame: pl.DataFrame, column: str) -> pl.Expr:
    if column not in frame.columns:
        return pl.lit(None, pl.String)
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return pl.col(column).dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return pl.col(column).cast(pl.String)


def expectation_tasks(failures: pl.DataFrame, records: pl.DataFrame, suite: SuiteSpec, *,
                      station_id: str, batch_id: str) -> pl.DataFrame:
    """Tasks for the failing rows of row-level expectations that name a field to correct.

    `failures` is quality.validate's (expectation_id, key, value); `records` the batch's
    standardised records (record_key plus the fields the tasks read, entity_id if known).
    """
    specs = [e for e in suite.expectations if e.task is not None]
    if not specs or failures.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    parts = []
    for spec in specs:
        keys = failures.filter(pl.col("expectation_id") == spec.id).select(pl.col("key").alias("record_key")).unique()
        if keys.height == 0:
            continue
        rows = records.join(keys, on="record_key", how="semi")
        reason = pl.lit(spec.task.reason)
        if spec.task.field == "id_number" and "id_issue" in rows.columns:
            reason = pl.when(pl.col("id_issue").is_not_null()).then(
                pl.concat_str([reason, pl.lit(": "), pl.col("id_issue")])).otherwise(reason)
        parts.append(rows.select(
            pl.lit(station_id).alias("station_id"), "record_key",
            pl.lit(suite.entity_type).alias("entity_type"),
            (pl.col("entity_id") if "entity_id" in rows.columns else pl.lit(None, pl.String)).alias("entity_id"),
            pl.lit(spec.task.field).alias("field"),
            _text(rows, spec.task.field).alias("station_value"),
            (_text(rows, spec.task.expected_column) if spec.task.expected_column else pl.lit(None, pl.String))
            .alias("expected_value"),
            reason.alias("reason"),
            pl.lit("expectation").alias("source"),
            pl.lit(f"expectation:{spec.id}").alias("kind"),
            pl.lit(batch_id).alias("opened_batch"),
        ))
    if not parts:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    out = pl.concat(parts, how="vertical_relaxed").with_columns(_task_ids().alias("task_id"))
    return out.select(list(CANDIDATE_SCHEMA)).unique("task_id", keep="first").sort("task_id")


def golden_disagreements(members: pl.DataFrame, golden: pl.DataFrame, fields: list[str], *,
                         entity_type: str) -> pl.DataFrame:
    """Member records whose value of a configured field differs from the golden record's.

    `members`: entity_id, record_key, station_id, batch_id and the fields; `golden`: entity_id
    and the same fields (surviving values). Values are compared as text; a missing value on
    either side is no disagreement (missing data is completeness, not a correction).
    """
    fields = [f for f in fields if f in members.columns and f in golden.columns]
    if not fields or members.height == 0 or golden.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    mine = members.select("entity_id", "record_key", "station_id", "batch_id",
                          *[_text(members, f).alias(f) for f in fields]).unpivot(
        index=["entity_id", "record_key", "station_id", "batch_id"], on=fields, variable_name="field",
        value_name="station_value")
    theirs = golden.select("entity_id", *[_text(golden, f).alias(f) for f in fields]).unpivot(
        index="entity_id", on=fields, variable_name="field", value_name="expected_value")
    diff = mine.join(theirs, on=["entity_id", "field"]).filter(
        pl.col("station_value").is_not_null() & pl.col("expected_value").is_not_null()
        & (pl.col("station_value") != pl.col("expected_value")))
    return diff.with_columns(
        pl.lit(entity_type).alias("entity_type"),
        pl.concat_str([pl.col("field"), pl.lit(" differs from the golden record's surviving value")]).alias("reason"),
        pl.lit("golden_disagreement").alias("source"),
        pl.concat_str([pl.lit("golden:"), pl.col("field")]).alias("kind"),
        pl.col("batch_id").alias("opened_batch"),
    ).with_columns(_task_ids().alias("task_id")).select(list(CANDIDATE_SCHEMA)).sort("task_id")


def reconcile(found: pl.DataFrame, open_tasks: pl.DataFrame, examined: pl.Series, *, source: str,
              batch_of: pl.DataFrame | None = None, now: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What to open and what to close, given what a pass found among the records it examined.

    Opens every found task that is not open already; closes every open task of this `source`
    on an examined record that the pass no longer finds. `batch_of` (record_key, batch_id) names
    the batch that fixed it (the record's current batch).
    """
    open_ids = open_tasks["task_id"] if open_tasks.height else pl.Series("task_id", [], pl.String)
    to_open = found.filter(~pl.col("task_id").is_in(open_ids.implode())).with_columns(
        pl.lit(now).alias("opened_at"))
    gone = open_tasks.filter(
        (pl.col("source") == source) & pl.col("record_key").is_in(examined.implode())
        & ~pl.col("task_id").is_in(found["task_id"].implode()))
    closed = gone.select("task_id", "record_key")
    if batch_of is not None and batch_of.height:
        closed = closed.join(batch_of.select("record_key", pl.col("batch_id").alias("closed_batch")).unique("record_key"),
                             on="record_key", how="left")
    else:
        closed = closed.with_columns(pl.lit(None, pl.String).alias("closed_batch"))
    return to_open, closed.with_columns(pl.lit(now).alias("closed_at")).select("task_id", "closed_at", "closed_batch")
