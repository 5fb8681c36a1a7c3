"""The stored form of a golden record's provenance: which station record each value came from.

Stored as a JSON array with one object per source record, naming the fields it supplied:

    [{"station_id": "s0011", "batch_id": "s0011/residents/30a7…", "record_key": "s0011:R00004951",
      "source_updated_at": "2024-05-03 15:49:19.000000", "fields": ["address", "name_norm", …]}]

Most golden records take every value from one or two station records, so naming the record once
and listing its fields keeps a person's provenance near 350 bytes. The form written before (one
object per field, `{"field": …, "station_id": …, …}`, about 2.4 KB for a person) repeated the record
for every field; at a million records it was most of the warehouse and most of the bytes every
publication, relation run and version wrote. Warehouses keep rows of that older form until the
record changes, so every reader goes through `provenance_rows` / `source_fields`, which read both.
"""

from __future__ import annotations

import polars as pl

SOURCE = ("station_id", "batch_id", "record_key", "source_updated_at")
# both forms' keys: json_decode leaves the keys a form lacks null
_STORED = pl.List(pl.Struct({"field": pl.String, "fields": pl.List(pl.String),
                             **{k: pl.String for k in SOURCE}}))
LONG_SCHEMA = {"entity_id": pl.String, "field": pl.String, **{k: pl.String for k in SOURCE}}


def provenance_json(long: pl.DataFrame) -> pl.DataFrame:
    """(entity_id, provenance): per entity its stored provenance, from one row per value
    (entity_id, field, station_id, batch_id, record_key, source_updated_at). The sources are
    ordered by station, record key, batch and time and each one's fields by name, so the same
    provenance is always the same text."""
    if long.height == 0:
        return pl.DataFrame(schema={"entity_id": pl.String, "provenance": pl.String})
    rows = long.select("entity_id", "field", *(pl.col(k).cast(pl.String) for k in SOURCE))
    per_source = (
        rows.group_by("entity_id", *SOURCE).agg(pl.col("field").sort().alias("fields"))
        .sort("entity_id", "station_id", "record_key", "batch_id", "source_updated_at", nulls_last=True)
        .select("entity_id", pl.struct(*SOURCE, "fields").struct.json_encode().alias("_j"))
    )
    return per_source.group_by("entity_id", maintain_order=True).agg(pl.col("_j").str.join(",")).select(
        "entity_id", pl.concat_str(pl.lit("["), pl.col("_j"), pl.lit("]")).alias("provenance"))


def provenance_rows(frame: pl.DataFrame, column: str = "provenance") -> pl.DataFrame:
    """One row per value (LONG_SCHEMA) from stored provenance in `column` of a frame with
    entity_id, whichever form it was written in. An entity with empty or null provenance has no
    rows."""
    decoded = frame.select("entity_id", pl.col(column).str.json_decode(_STORED).alias("_p")).explode("_p")
    return (
        decoded.filter(pl.col("_p").is_not_null()).unnest("_p")
        .with_columns(pl.coalesce("fields", pl.concat_list("field")).alias("field"))
        .drop("fields").explode("field").filter(pl.col("field").is_not_null())
        .select(*LONG_SCHEMA)
    )


def source_fields(source: dict) -> list[str]:
    """The fields one stored source object supplied (plain-Python readers), in either form."""
    fields = source.get("fields")
    if isinstance(fields, list):
        return [f for f in fields if isinstance(f, str)]
    field = source.get("field")
    return [field] if isinstance(field, str) else []
