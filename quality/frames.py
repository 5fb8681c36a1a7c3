"""The frames the suites validate, shaped from what the warehouse hands over (pure Polars)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from core.entity_types import EntityType
from entity_resolution.standardise.id_numbers import with_id_number
from quality.corrections import valid_value
from quality.scorecards import age_days
from quality.suites import TypeQuality, type_quality


def decode_golden(active: pl.DataFrame, fields: list[str], entity_type: EntityType | None = None) -> pl.DataFrame:
    """entity_id plus the named fields decoded from the golden `record` JSON (text values; the
    fields `entity_type` declares as dates as dates)."""
    dtype = pl.Struct({f: pl.String for f in fields})
    out = active.select("entity_id", pl.col("record").str.json_decode(dtype).alias("_r")).unnest("_r")
    dates = [f for f in fields if entity_type is not None and f in entity_type.fields
             and entity_type.fields[f].type == "date"]
    if dates:
        out = out.with_columns(pl.col(f).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False) for f in dates)
    return out


def standardised_frame(records: pl.DataFrame, quality: TypeQuality) -> pl.DataFrame:
    """A batch's standardised records ready for a derived suite (quality.suites.derived_quality):
    the code standardisers (id_number, credit_code: they keep an invalid value in the field) flag
    a blank value false, which is completeness (a required field's `not null`), not validity and
    no correction task, so there the flag counts only where the field has a value. Other
    standardisers leave the flag null for a blank value already (and null the value they cannot
    use). Declared suites see the records as stored."""
    if quality.declared:
        return records
    blank = [(field, flag) for field, flag in quality.validity_flags.items()
             if quality.check(field).kind in ("id_number", "credit_code")
             and field in records.columns and flag in records.columns]
    if not blank:
        return records
    return records.with_columns(pl.when(pl.col(field).is_not_null()).then(pl.col(flag)).alias(flag)
                                for field, flag in blank)


def golden_frame(active: pl.DataFrame, entity_type: EntityType, *, today: dt.date,
                 quality: TypeQuality | None = None) -> pl.DataFrame:
    """Active golden records ready for the type's golden suite: its golden fields, and for its
    registered `code` (an ID number, a credit code) the surviving value's validity recomputed
    (`<valid_flag>`, by the check of the code's field: an ID number through the ID-number
    standardiser) and `valid_<code>` (the code when valid, else null), so uniqueness is judged
    over valid codes only."""
    return golden_validity(decode_golden(active, entity_type.golden_fields, entity_type), entity_type,
                           today=today, quality=quality)


def golden_validity(frame: pl.DataFrame, entity_type: EntityType, *, today: dt.date,
                    quality: TypeQuality | None = None) -> pl.DataFrame:
    """`golden_frame` of golden fields already decoded (quality.golden_cache keeps them between
    runs): validity depends on `today`, so it is recomputed on every run, never cached."""
    q = quality or type_quality(entity_type)
    code, flag = q.code_column, q.code_flag
    if code is None or flag is None or code not in frame.columns:
        return frame
    check = q.check(code)
    if check.kind == "id_number":
        checked = with_id_number(frame.lazy().select(pl.col(code).alias("_raw")), pl.col("_raw"), today=today)
        valid = checked.select("id_valid").collect()["id_valid"]
    else:
        valid = frame.select(valid_value(code, pl.col(code), today=today, check=check))[code]
    return frame.with_columns(pl.when(pl.col(code).is_not_null()).then(valid).alias(flag)).with_columns(
        pl.when(pl.col(flag)).then(pl.col(code)).alias(f"valid_{code}"))


def freshness_frame(last_drops: pl.DataFrame, *, now: dt.datetime) -> pl.DataFrame:
    """One row per station and entity type with the age of its last drop, in days."""
    return last_drops.select(
        pl.concat_str(["station_id", "entity_type"], separator="/").alias("station_key"),
        "station_id", "entity_type", "batch_id", age_days(now).round(3).alias("age_days"))


def invalid_codes(records: pl.DataFrame, code_spec: tuple[str, str] | None) -> tuple[int, int]:
    """(invalid, given): identifying codes (ID numbers, credit codes: the registered type's
    `code` as (column, validity flag)) that fail their check, among the ones given; (0, 0) for a
    type without one."""
    if code_spec is None:
        return 0, 0
    code, valid = code_spec
    if code not in records.columns or valid not in records.columns:
        return 0, 0
    given = records.filter(pl.col(code).is_not_null() & pl.col(valid).is_not_null())
    return int((~given[valid]).sum()), given.height
