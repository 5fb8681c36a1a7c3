"""The frames the suites validate, shaped from what the warehouse hands over (pure Polars)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from core.entity_types import load_entity_types
from entity_resolution.standardise.id_numbers import with_id_number
from quality.scorecards import age_days



def decode_golden(active: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """entity_id plus the named fields decoded from the golden `record` JSON (text values;
    `birth_date` as a date)."""
    dtype = pl.Struct({f: pl.String for f in fields})
    out = active.select("entity_id", pl.col("record").str.json_decode(dtype).alias("_r")).unnest("_r")
    if "birth_date" in out.columns:
        out = out.with_columns(pl.col("birth_date").str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False))
    return out


def golden_frame(active: pl.DataFrame, entity_type: str, *, today: dt.date) -> pl.DataFrame:
    """Active golden records ready for the golden suite: for persons, the surviving ID number's
    validity recomputed (GB 11643) and `valid_id_number` (the number when valid, else null), so
    uniqueness is judged over valid numbers only."""
    frame = decode_golden(active, next(t for t in load_entity_types() if t.name == entity_type).golden_fields)
    if entity_type != "person":
        return frame
    checked = with_id_number(frame.lazy().select(pl.col("id_number").alias("_raw")), pl.col("_raw"), today=today)
    valid = checked.select("id_valid").collect()
    return frame.with_columns(pl.when(pl.col("id_number").is_not_null()).then(valid["id_valid"]).alias("id_valid")).with_columns(
        pl.when(pl.col("id_valid")).then(pl.col("id_number")).alias("valid_id_number"))


def freshness_frame(last_drops: pl.DataFrame, *, now: dt.datetime) -> pl.DataFrame:
    """One row per station and entity type with the age of its last drop, in days."""
    return last_drops.select(
        pl.concat_str(["station_id", "entity_type"], separator="/").alias("station_key"),
        "station_id", "entity_type", "batch_id", age_days(now).round(3).alias("age_days"))


def invalid_codes(records: pl.DataFrame, entity_type: str,
                  code_spec: tuple[str, str] | None = None) -> tuple[int, int]:
    """(invalid, given): identifying codes (ID numbers, credit codes: the registered type's
    `code`, or `code_spec` = (column, validity flag)) that fail their check, among the ones given;
    (0, 0) for a type without one."""
    if code_spec is None:
        spec = next((t.code for t in load_entity_types() if t.name == entity_type), None)
        if spec is None:
            return 0, 0
        code_spec = (spec.column, spec.valid_flag)
    code, valid = code_spec
    given = records.filter(pl.col(code).is_not_null() & pl.col(valid).is_not_null())
    return int((~given[valid]).sum()), given.height

