"""Plumbing shared by the entity standardisers: raw-field intake, issue messages, distinct maps.

Kept apart from the field modules so that each of those is only about its field's rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import polars as pl

from entity_resolution.standardise.text import blank_to_null, quoted

RAW_PREFIX = "__raw_"


def raw_col(field: str) -> pl.Expr:
    """The raw text of a canonical field (outputs may reuse the field's name; this never changes)."""
    return pl.col(RAW_PREFIX + field)


def intake(frame: pl.DataFrame, fields: Sequence[str]) -> pl.LazyFrame:
    """Copy each canonical raw field to a private String column; absent fields become all-null.

    Sources are mapped by config, so any field can be missing from a station's export. Non-string
    columns (an Excel reader's dates or integers) are cast rather than rejected: a standardiser
    flags bad values, it never raises on them.
    """
    columns = []
    for field in fields:
        if field in frame.columns:
            columns.append(pl.col(field).cast(pl.String, strict=False).alias(RAW_PREFIX + field))
        else:
            columns.append(pl.lit(None, dtype=pl.String).alias(RAW_PREFIX + field))
    return frame.lazy().with_columns(columns)


def finish(lf: pl.LazyFrame, input_columns: Sequence[str], outputs: Sequence[str]) -> pl.DataFrame:
    """Caller's other columns first, in their order, then the standardised outputs; drop scratch."""
    passthrough = [c for c in input_columns if c not in outputs]
    return lf.select([*passthrough, *outputs]).collect()


def issue(field: str, condition: pl.Expr, message: pl.Expr | str) -> pl.Expr:
    """`"<field>: <message>"` where `condition` holds, else null (a null condition is false)."""
    msg = pl.lit(message) if isinstance(message, str) else message
    return pl.when(condition.fill_null(False)).then(pl.concat_str(pl.lit(f"{field}: "), msg))


def join_issues(messages: Iterable[pl.Expr]) -> pl.Expr:
    """All non-null messages joined by "; "; null when a record has none, so filters stay simple."""
    return pl.concat_str(list(messages), separator="; ", ignore_nulls=True).replace("", None)


def via_distinct(
    expr: pl.Expr, compute: Callable[[pl.Series], pl.Series], return_dtype: pl.DataType
) -> pl.Expr:
    """Run `compute` (distinct values -> results, same length) once per distinct value of `expr`
    and map the results back to every row.

    For columns with few distinct values (dates, sex codes) this turns a million-row parse into a
    few thousand; the join back is one hash lookup per row. Not marked element-wise on purpose:
    the streaming engine would otherwise call it per morsel and repeat the distinct work.
    """

    def run(s: pl.Series) -> pl.Series:
        keys = s.unique()
        table = pl.DataFrame({"k": keys, "v": compute(keys)})
        out = s.to_frame("k").join(
            table, on="k", how="left", nulls_equal=True, maintain_order="left"
        )
        return out.get_column("v").alias(s.name)

    return expr.map_batches(run, return_dtype=return_dtype)


def contact_issues() -> list[pl.Expr]:
    """Issues every entity type reports the same way: phone, area code, source timestamp.

    Reads the scratch column `__ph_issue` left by `with_phone`, so call it after that step.
    """
    return [
        issue("phone", pl.col("__ph_issue").is_not_null(),
              pl.concat_str(pl.col("__ph_issue"), pl.lit(" "), quoted(raw_col("phone").str.strip_chars()))),
        issue("area_code", pl.col("area_code_valid").not_(),
              pl.concat_str(pl.lit("not 6, 9 or 12 digits "), quoted(raw_col("area_code").str.strip_chars()))),
        issue("source_updated_at",
              pl.col("source_updated_at").is_null() & blank_to_null(raw_col("source_updated_at")).is_not_null(),
              pl.concat_str(pl.lit("unparseable timestamp "),
                            quoted(raw_col("source_updated_at").str.strip_chars()))),
    ]
