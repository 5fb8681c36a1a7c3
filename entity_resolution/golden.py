"""Golden-record diffs: two versions of the golden frame in, one change row per affected entity out.

The rows are the material of change events (`changed_fields`, `before`, `after`: see the README's change-event contract); the
caller numbers them, adds versions and sources, and decides what a 'gone' entity is (merged into
another or retired) from the stable-id changes.

Everything is joins and Polars expressions: the JSON objects are built from per-field fragments
(`struct.json_encode` of a one-field struct), so each row carries only the fields it needs.
"""

from __future__ import annotations

import polars as pl

__all__ = ["DIFF_KINDS", "diff_golden", "json_ready"]

DIFF_KINDS = ("create", "update", "gone")

_P = "__gd_"
_IN_BEFORE, _IN_AFTER, _KIND = f"{_P}in_before", f"{_P}in_after", f"{_P}kind"


def json_ready(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A value as it should appear in JSON: datetimes and times as ISO 8601 text (dates already
    encode as ISO), categoricals as text, everything else as Polars encodes it."""
    if isinstance(dtype, pl.Datetime):
        return expr.dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else ""))
    if dtype == pl.Time:
        return expr.dt.to_string("%H:%M:%S%.f")
    if isinstance(dtype, pl.Categorical | pl.Enum | pl.Decimal | pl.Duration):
        return expr.cast(pl.String)
    return expr


def _fragment(column: str, key: str, dtype: pl.DataType) -> pl.Expr:
    """`"key":value` (JSON, non-ASCII kept as is) for the value in `column`."""
    return (
        pl.struct(json_ready(pl.col(column), dtype).alias(key))
        .struct.json_encode()
        .str.strip_prefix("{")
        .str.strip_suffix("}")
    )


def _object(fragments: list[pl.Expr], include: list[pl.Expr]) -> pl.Expr:
    """A JSON object of the fragments whose `include` holds, in list order."""
    if not fragments:
        return pl.lit("{}")
    picked = pl.concat_list([pl.when(inc).then(frag) for frag, inc in zip(fragments, include, strict=True)])
    return pl.concat_str(pl.lit("{"), picked.list.drop_nulls().list.join(","), pl.lit("}"))


def _whole(columns: list[str], fields: list[str], dtypes: list[pl.DataType]) -> pl.Expr:
    """A JSON object of all fields."""
    if not fields:
        return pl.lit("{}")
    return pl.struct(
        [json_ready(pl.col(c), dt).alias(f) for c, f, dt in zip(columns, fields, dtypes, strict=True)]
    ).struct.json_encode()


def _checked(frame: pl.DataFrame, fields: list[str], entity_col: str, name: str) -> None:
    missing = [c for c in [entity_col, *fields] if c not in frame.columns]
    if missing:
        raise ValueError(f"diff_golden: {name} lacks column(s) {missing}")
    ids = frame.get_column(entity_col)
    if ids.null_count():
        raise ValueError(f"diff_golden: {name} has {ids.null_count()} row(s) with a null {entity_col}")
    if ids.is_duplicated().any():
        dupes = ids.filter(ids.is_duplicated()).unique().sort().head(5).to_list()
        raise ValueError(f"diff_golden: {name} repeats {entity_col} values, e.g. {dupes}")


def diff_golden(
    before: pl.DataFrame, after: pl.DataFrame, fields: list[str], *, entity_col: str = "entity_id"
) -> pl.DataFrame:
    """One row per entity that is new, changed or gone between two golden frames.

    before, after: entity_col + at least `fields` (one row per entity). Values compare null-safely
    (null == null); `before` columns are cast to `after`'s dtypes where they differ (so an empty
    frame of nulls works as "nothing before").

    Returns entity_col, kind, changed_fields, before, after, sorted by entity_col:
    - 'create' (in after only): changed_fields = all fields, before null, after = JSON of all fields;
    - 'update' (in both, some field differs): changed_fields = the differing fields, before /
      after = JSON of those fields' old / new values;
    - 'gone' (in before only): changed_fields = all fields, before = JSON of all fields, after
      null; the caller decides whether that is a merge or a retirement.
    changed_fields is a sorted list and JSON keys follow the same order; dates and datetimes are
    ISO 8601 text, non-ASCII stays readable. Unchanged entities are absent.
    """
    fields = sorted(dict.fromkeys(fields))
    if entity_col in fields:
        raise ValueError(f"diff_golden: {entity_col!r} is the entity column, not a field")
    _checked(before, fields, entity_col, "before")
    _checked(after, fields, entity_col, "after")
    if before.schema[entity_col] != after.schema[entity_col]:
        before = before.with_columns(pl.col(entity_col).cast(after.schema[entity_col]))

    bcols = [f"{_P}b{i}" for i in range(len(fields))]
    acols = [f"{_P}a{i}" for i in range(len(fields))]
    dtypes = [after.schema[f] for f in fields]
    old = before.select(
        entity_col,
        *[
            (pl.col(f) if before.schema[f] == dt else pl.col(f).cast(dt)).alias(c)
            for f, c, dt in zip(fields, bcols, dtypes, strict=True)
        ],
        pl.lit(True).alias(_IN_BEFORE),
    )
    new = after.select(
        entity_col,
        *[pl.col(f).alias(c) for f, c in zip(fields, acols, strict=True)],
        pl.lit(True).alias(_IN_AFTER),
    )
    changed = [pl.col(b).ne_missing(pl.col(a)) for b, a in zip(bcols, acols, strict=True)]
    joined = new.join(old, on=entity_col, how="full", coalesce=True).lazy()  # once, for 3 branches
    in_both = pl.col(_IN_BEFORE).is_not_null() & pl.col(_IN_AFTER).is_not_null()
    all_fields = pl.lit(fields, dtype=pl.List(pl.String))
    no_json = pl.lit(None, dtype=pl.String)

    # Updates: only the fields that differ, built from one JSON fragment per field.
    updates = joined.filter(in_both & pl.any_horizontal(changed) if fields else pl.lit(False)).with_columns(
        [c.alias(f"{_P}c{i}") for i, c in enumerate(changed)]
    )
    flags = [pl.col(f"{_P}c{i}") for i in range(len(fields))]
    updates = updates.select(
        entity_col,
        pl.lit("update").alias("kind"),
        (
            pl.concat_list([pl.when(c).then(pl.lit(f)) for f, c in zip(fields, flags, strict=True)]).list.drop_nulls()
            if fields
            else all_fields
        ).alias("changed_fields"),
        _object([_fragment(c, f, dt) for c, f, dt in zip(bcols, fields, dtypes, strict=True)], flags).alias("before"),
        _object([_fragment(c, f, dt) for c, f, dt in zip(acols, fields, dtypes, strict=True)], flags).alias("after"),
    )
    # Creates and gones: every field, one JSON encoding of the whole row.
    creates = joined.filter(pl.col(_IN_BEFORE).is_null()).select(
        entity_col,
        pl.lit("create").alias("kind"),
        all_fields.alias("changed_fields"),
        no_json.alias("before"),
        _whole(acols, fields, dtypes).alias("after"),
    )
    gones = joined.filter(pl.col(_IN_AFTER).is_null()).select(
        entity_col,
        pl.lit("gone").alias("kind"),
        all_fields.alias("changed_fields"),
        _whole(bcols, fields, dtypes).alias("before"),
        no_json.alias("after"),
    )
    return pl.concat([creates, updates, gones]).sort(entity_col).collect()
