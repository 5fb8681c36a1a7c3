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
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import polars as pl

from entity_resolution.standardise.frames import via_distinct
from entity_resolution.standardise.text import (
    clean_text,
    clean_text_value,
    py_regex,
    py_template,
    quoted_value,
    rust_whitespace,
    strip_value,
)

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


# ---------------------------------------------------------------------------------------------
# Per-value twins (standardise/rows.py). Polars parses with chrono; `_chrono_parse` follows its
# rules for the directives the standardisers use: a space in the format takes any run of
# whitespace (or none), whitespace before a number is skipped, %Y takes up to 4 digits (any number
# after a sign), other numbers up to 2, %.f an optional fraction (digits past the 9th ignored),
# %#z "Z" or +hh[[:| ]mm], and nothing may be left over. A day is a (year, month, day) tuple
# until it is stored, since chrono reads years Python's `date` cannot hold.


class NotCovered(ValueError):
    """A format directive the twin does not parse, or a value Python cannot hold (year 0):
    the caller falls back to the Polars standardiser."""


Day = tuple[int, int, int]

_NUMERIC = {"Y": "year", "m": "month", "d": "day", "H": "hour", "M": "minute", "S": "second"}
_RANGES = {"month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 60)}
_CHRONO_YEARS = (-262144, 262143)


@cache
def _strftime_items(fmt: str) -> tuple[tuple[str, str], ...]:
    """The format as chrono's items: ("space", ""), ("lit", text), ("num", field), ("frac", ""),
    ("offset", "")."""
    items: list[tuple[str, str]] = []
    for tok in re.findall(r"%[.#]?.|[^%]", fmt):
        if tok.startswith("%"):
            spec = tok[1:]
            if spec in _NUMERIC:
                items.append(("num", _NUMERIC[spec]))
            elif spec in (".f", "#z"):
                items.append(("frac" if spec == ".f" else "offset", ""))
            elif spec == "%":
                items.append(("lit", "%"))
            else:
                raise NotCovered(f"date directive %{spec}")
        elif not strip_value(tok):
            items.append(("space", ""))
        elif items and items[-1][0] == "lit":
            items[-1] = ("lit", items[-1][1] + tok)
        else:
            items.append(("lit", tok))
    return tuple(items)


@cache
def _shape(fmt: str) -> re.Pattern[str]:
    """`format_shape(fmt)` compiled for Python."""
    return py_regex(format_shape(fmt))


@cache
def _digit_run(low: int, high: int | None) -> re.Pattern[str]:
    return re.compile(f"[0-9]{{{low},{'' if high is None else high}}}")


def _digits(s: str, low: int, high: int | None) -> tuple[int, str] | None:
    """chrono's scan::number: at least `low`, at most `high` ASCII digits."""
    m = _digit_run(low, high).match(s)
    return None if m is None else (int(m.group()), s[m.end():])


def _offset(s: str) -> tuple[int, str] | None:
    """chrono's permissive offset: seconds east of UTC and the rest of the text."""
    if s[:1] in ("Z", "z"):
        return 0, s[1:]
    if s[:1] not in ("+", "-", "\u2212"):
        return None
    sign, s = (-1 if s[0] != "+" else 1), s[1:]
    if len(s) < 2 or not ("0" <= s[0] <= "9" and "0" <= s[1] <= "9"):
        return None
    hours, s = int(s[:2]), s[2:].lstrip(":" + rust_whitespace())
    minutes = 0
    if len(s) >= 2:
        if not ("0" <= s[0] <= "5" and "0" <= s[1] <= "9"):
            return None
        minutes, s = int(s[:2]), s[2:]
    elif len(s) == 1:
        return None
    seconds = hours * 3600 + minutes * 60
    return (sign * seconds, s) if seconds < 86400 else None


def _chrono_parse(text: str, fmt: str) -> dict[str, int] | None:
    """The fields chrono reads from `text` with `fmt`, or None when it rejects it."""
    fields: dict[str, int] = {}
    s = text
    for kind, arg in _strftime_items(fmt):
        if kind == "space":
            s = s.lstrip(rust_whitespace())
        elif kind == "lit":
            if not s.startswith(arg):
                return None
            s = s[len(arg):]
        elif kind == "num":
            s = s.lstrip(rust_whitespace())
            signed = arg == "year" and s[:1] in ("+", "-")
            got = _digits(s[1:], 1, None) if signed else _digits(s, 1, 4 if arg == "year" else 2)
            if got is None:
                return None
            value, s = (-got[0] if s[0] == "-" else got[0], got[1]) if signed else got
            low, high = _RANGES.get(arg, _CHRONO_YEARS)
            if not low <= value <= high:
                return None
            fields[arg] = value
        elif kind == "frac":
            if s.startswith("."):
                got = _digits(s[1:], 1, 9)
                if got is None:
                    return None
                width = len(s) - 1 - len(got[1])
                fields["nanosecond"] = got[0] * 10 ** (9 - width)
                s = got[1].lstrip("0123456789")
        else:
            got = _offset(s.lstrip(rust_whitespace()))
            if got is None:
                return None
            fields["offset"], s = got
    return fields if not s else None


def _is_day(year: int, month: int, day: int) -> bool:
    """Proleptic Gregorian, year 0 and negative years included (chrono's calendar)."""
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


@cache
def _date_only(fmt: str) -> bool:
    return all(kind in ("space", "lit") or arg in ("year", "month", "day") for kind, arg in _strftime_items(fmt))


def strptime_day(text: str, fmt: str) -> Day | None:
    """`str.strptime(pl.Date, fmt, strict=False)` for one value, as a (y, m, d) tuple."""
    if not _date_only(fmt):
        raise NotCovered(f"date format with time fields {fmt!r}")
    fields = _chrono_parse(text, fmt)
    if fields is None or not {"year", "month", "day"} <= fields.keys():
        return None
    day = (fields["year"], fields["month"], fields["day"])
    return day if _is_day(*day) else None


def as_date(day: Day | None) -> date | None:
    """A parsed day as a Python date (NotCovered when Python has no such year)."""
    if day is None:
        return None
    if not 1 <= day[0] <= 9999:
        raise NotCovered(f"year {day[0]}")
    return date(*day)


def clean_date_text_value(value: str | None) -> str | None:
    """Per-value `clean_date_text`."""
    text = clean_text_value(value)
    if text is None:
        return None
    text = py_regex(_TRAILING_TIME).sub("", text, count=1)
    return py_regex(r"\s+").sub("", text) or None


def parse_date_value(value: str | None, formats: Sequence[str] = DEFAULT_DATE_FORMATS) -> tuple[Day | None, str | None]:
    """(day, status) of one raw value, as `parse_date` gives them (status null when blank)."""
    text = clean_date_text_value(value)
    if text is None:
        return None, None
    shaped = False
    for fmt in formats:
        if _shape(fmt).search(text):
            shaped = True
            day = strptime_day(text, fmt)
            if day is not None:
                return day, DATE_OK
    return None, DATE_IMPOSSIBLE if shaped else DATE_UNRECOGNISED


def date_issue_value(status: str | None, value: Day | None, raw_value: str | None, *, today: date) -> str | None:
    """Per-value `date_issue`."""
    quoted = None if raw_value is None else quoted_value(strip_value(raw_value))
    if status == DATE_IMPOSSIBLE:
        return None if quoted is None else f"impossible date {quoted}"
    if status == DATE_UNRECOGNISED:
        return None if quoted is None else f"unrecognised date format {quoted}"
    if value is not None and value > (today.year, today.month, today.day):
        return None if quoted is None else f"date in the future {quoted}"
    if value is not None and value < (EARLIEST_BIRTH.year, EARLIEST_BIRTH.month, EARLIEST_BIRTH.day):
        return None if quoted is None else f"date before 1900 {quoted}"
    return None


def clean_timestamp_text_value(value: str | None) -> str | None:
    """Per-value `clean_timestamp_text`."""
    text = clean_text_value(value)
    if text is None:
        return None
    text = py_regex(r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})").sub(py_template("${1}-${2}-${3}"), text, count=1)
    return py_regex(r"^([0-9]{4}-[0-9]{1,2}-[0-9]{1,2})(?:T|\s+)").sub(py_template("${1} "), text, count=1)


def _chrono_datetime(fields: dict[str, int]) -> datetime | None:
    """The naive datetime of parsed fields (a leap second rolls over, as Polars stores it)."""
    year, month, day = fields["year"], fields["month"], fields["day"]
    if not _is_day(year, month, day):
        return None
    if not 1 <= year <= 9999:
        raise NotCovered(f"year {year}")
    second = fields.get("second", 0)
    micros = fields.get("nanosecond", 0) // 1000 + (1_000_000 if second == 60 else 0)
    try:
        return datetime(year, month, day, fields.get("hour", 0), fields.get("minute", 0),
                        min(second, 59)) + timedelta(microseconds=micros)
    except OverflowError as exc:
        raise NotCovered("timestamp past year 9999") from exc


@cache
def _local_zone() -> ZoneInfo:
    return ZoneInfo(LOCAL_TIME_ZONE)


def _naive_timestamp(text: str, fmt: str) -> datetime | None:
    fields = _chrono_parse(text, fmt)
    return None if fields is None else _chrono_datetime(fields)


def _offset_timestamp(text: str) -> datetime | None:
    fields = _chrono_parse(text, "%Y-%m-%d %H:%M:%S%.f%#z")
    if fields is None:
        return None
    local = _chrono_datetime(fields)
    if local is None:
        return None
    try:
        utc = (local - timedelta(seconds=fields["offset"])).replace(tzinfo=UTC)
        return utc.astimezone(_local_zone()).replace(tzinfo=None)
    except OverflowError as exc:
        raise NotCovered("timestamp outside Python's years") from exc


def timestamp_value(value: str | None, date_formats: Sequence[str] = ()) -> datetime | None:
    """Per-value `with_timestamp`: the same forms, tried in the same order."""
    text = clean_timestamp_text_value(value)
    if text is None:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        parsed = _naive_timestamp(text, fmt)
        if parsed is not None:
            return parsed
    parsed = _offset_timestamp(text)
    if parsed is not None:
        return parsed
    for fmt in date_formats:
        if _shape(fmt).search(text):
            day = as_date(strptime_day(text, fmt))
            if day is not None:
                return datetime(day.year, day.month, day.day)
    return None
