"""Dates and timestamps from station exports, parsed strictly.

A value is read only by the formats the station is known to write, and a value that has the shape
of one of them but is not a real day ("1990-02-30") is reported as impossible rather than rolled
over or guessed: a wrong birth date would quietly merge or split people downstream. Each format
also gets a shape regex so that a lenient parser can never read "1990102" as some day in October.

Birth dates are parsed once per distinct value (a million residents share a few tens of thousands
of birth dates) and joined back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import polars as pl

from entity_resolution.standardise.frames import via_distinct
from entity_resolution.standardise.text import clean_text

DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d",
)

DATE_OK = "ok"
DATE_IMPOSSIBLE = "impossible"
DATE_UNRECOGNISED = "unrecognised"

EARLIEST_BIRTH = date(1900, 1, 1)

# Exports from Excel or a database often append a midnight time to a date column.
_TRAILING_TIME = r"(?:[ T]+[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)$"

_DIRECTIVE_WIDTH = {"Y": (4, 4), "m": (1, 2), "d": (1, 2), "y": (2, 2), "H": (1, 2),
                    "M": (1, 2), "S": (1, 2), "j": (1, 3)}


def format_shape(fmt: str) -> str:
    """An anchored regex for the values `fmt` can describe.

    A directive right next to another directive ("%Y%m%d") must use its full width, otherwise the
    split is ambiguous; with a separator, one-digit months and days are accepted ("1990/1/2").
    Unknown directives match any run of characters, leaving the decision to the parser.
    """
    tokens = re.findall(r"%.|[^%]+", fmt)
    out = []
    for i, tok in enumerate(tokens):
        if tok == "%%" or not tok.startswith("%"):
            out.append(re.escape(tok[-1] if tok == "%%" else tok))
            continue
        width = _DIRECTIVE_WIDTH.get(tok[1])
        if width is None:
            out.append(".+?")
            continue
        low, high = width
        neighbour_is_directive = any(
            0 <= j < len(tokens) and tokens[j].startswith("%") and tokens[j] != "%%"
            for j in (i - 1, i + 1)
        )
        if neighbour_is_directive:
            low = high
        out.append(f"[0-9]{{{low},{high}}}" if low != high else f"[0-9]{{{high}}}")
    return "^" + "".join(out) + "$"


def clean_date_text(expr: pl.Expr) -> pl.Expr:
    """Half-width, no trailing midnight-style time, no inner whitespace; blank -> null."""
    return (
        clean_text(expr)
        .str.replace(_TRAILING_TIME, "")
        .str.replace_all(r"\s+", "")
        .replace("", None)
    )


def _parse_distinct(values: pl.Series, formats: tuple[str, ...]) -> pl.Series:
    """Struct {date, status} for distinct raw values (see parse_date)."""
    frame = pl.DataFrame({"raw": values}).with_columns(clean_date_text(pl.col("raw")).alias("t"))
    text = pl.col("t")
    shapes = [text.str.contains(format_shape(fmt)).fill_null(False) for fmt in formats]
    parsed = pl.coalesce(
        [pl.lit(None, dtype=pl.Date)]
        + [
            pl.when(shape).then(text.str.strptime(pl.Date, fmt, strict=False))
            for fmt, shape in zip(formats, shapes, strict=True)
        ]
    )
    frame = frame.with_columns(
        parsed.alias("date"), pl.any_horizontal([pl.lit(False), *shapes]).alias("shaped")
    )
    status = (
        pl.when(text.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("date").is_not_null())
        .then(pl.lit(DATE_OK))
        .when(pl.col("shaped"))
        .then(pl.lit(DATE_IMPOSSIBLE))
        .otherwise(pl.lit(DATE_UNRECOGNISED))
    )
    return frame.select(pl.struct(pl.col("date"), status.alias("status"))).to_series()


def parse_date(expr: pl.Expr, formats: Sequence[str] = DEFAULT_DATE_FORMATS) -> pl.Expr:
    """A struct {date: Date, status: "ok"|"impossible"|"unrecognised"|null (blank)}."""
    dtype = pl.Struct({"date": pl.Date, "status": pl.String})
    fmts = tuple(formats)
    return via_distinct(expr.cast(pl.String), lambda v: _parse_distinct(v, fmts), dtype)


def date_issue(status: pl.Expr, value: pl.Expr, raw_value: pl.Expr, *, today: date) -> pl.Expr:
    """Reason text for a birth-like date (null when fine or blank): impossible, unrecognised,
    or a real day that cannot be a birth date (future, before 1900)."""
    quoted = pl.concat_str(pl.lit("'"), raw_value.str.strip_chars(), pl.lit("'"))
    return (
        pl.when(status == DATE_IMPOSSIBLE)
        .then(pl.concat_str(pl.lit("impossible date "), quoted))
        .when(status == DATE_UNRECOGNISED)
        .then(pl.concat_str(pl.lit("unrecognised date format "), quoted))
        .when(value > today)
        .then(pl.concat_str(pl.lit("date in the future "), quoted))
        .when(value < EARLIEST_BIRTH)
        .then(pl.concat_str(pl.lit("date before 1900 "), quoted))
    )


# ---------------------------------------------------------------------------------------------
# Timestamps (source_updated_at)

# Offsets are converted to China Standard Time and then dropped: naive timestamps from the
# stations are local time, and one column must not mix the two.
LOCAL_TIME_ZONE = "Asia/Shanghai"


def clean_timestamp_text(expr: pl.Expr) -> pl.Expr:
    """Half-width; "T" or runs of whitespace between date and time as one space; "/" as "-"."""
    return (
        clean_text(expr)
        .str.replace(r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})", "${1}-${2}-${3}")
        .str.replace(r"^([0-9]{4}-[0-9]{1,2}-[0-9]{1,2})(?:T|\s+)", "${1} ")
    )


def with_timestamp(
    lf: pl.LazyFrame, raw: pl.Expr, out: str, date_formats: Sequence[str] = ()
) -> pl.LazyFrame:
    """Add column `out`: Datetime("us") from "YYYY-MM-DD HH:MM[:SS[.f]]", the ISO "T" form (with
    or without an offset), or a date alone (midnight) in ISO form or any of the station's
    `date_formats`; null when the value is none of these."""
    scratch = f"__ts_{out}"
    lf = lf.with_columns(clean_timestamp_text(raw).alias(scratch))
    text = pl.col(scratch)
    naive = [
        text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d")
    ]
    with_offset = (
        text.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S%.f%#z", strict=False)
        .dt.convert_time_zone(LOCAL_TIME_ZONE)
        .dt.replace_time_zone(None)
    )
    station_dates = [
        pl.when(text.str.contains(format_shape(fmt)))
        .then(text.str.strptime(pl.Date, fmt, strict=False))
        .cast(pl.Datetime("us"))
        for fmt in date_formats
    ]
    parsed = pl.coalesce([*naive, with_offset, *station_dates])
    return lf.with_columns(parsed.alias(out)).drop(scratch)
