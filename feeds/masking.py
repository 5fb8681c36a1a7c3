"""Masking as Polars expressions: one expression per field and rule, applied to whole frames.

Every rule is character-based (never byte-based), so Chinese names and addresses stay valid
UTF-8: `张三丰` -> `张**`. A null stays null (nothing to hide); a value too short to keep its
first and last characters and still hide something is masked entirely, so masking never
returns a value unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from feeds.config import AddressRule, DateRule, Level, MaskRule, PartialRule, RedactRule, Subscriptions

ADDRESS_LEVELS = {"district": ("addr_district",),
                  "street": ("addr_district", "addr_street"),
                  "community": ("addr_district", "addr_street", "addr_community")}
# Columns some rule reads besides the field itself; the caller keeps them in the frame.
CONTEXT_FIELDS = ("addr_district", "addr_street", "addr_community")

Column = Callable[[str], pl.Expr]


def _hide_all(value: pl.Expr, char: str) -> pl.Expr:
    return value.str.replace_all(r"(?s).", char)


def partial(value: pl.Expr, rule: PartialRule) -> pl.Expr:
    """Keep `keep_first` and `keep_last` characters, mask the rest (`138****5678`)."""
    n = value.str.len_chars()
    kept = rule.keep_first + rule.keep_last
    middle = _hide_all(value.str.slice(rule.keep_first, n - kept), rule.mask_char)
    head = value.str.head(rule.keep_first)
    tail = value.str.tail(rule.keep_last) if rule.keep_last else pl.lit("")
    return (
        pl.when(value.is_null()).then(pl.lit(None, pl.String))
        .when(n <= kept).then(_hide_all(value, rule.mask_char))
        .otherwise(pl.concat_str(head, middle, tail))
    )


def address(value: pl.Expr, rule: AddressRule, column: Column, redact: str = "***") -> pl.Expr:
    """The address cut to its district / street / community, rebuilt from the parsed parts; an
    address whose parts were not parsed becomes `***` rather than leaking the road and number."""
    parts = pl.concat_str([column(p) for p in ADDRESS_LEVELS[rule.level]], ignore_nulls=True)
    return (
        pl.when(value.is_null()).then(pl.lit(None, pl.String))
        .when(parts.is_null() | (parts == "")).then(pl.lit(redact))
        .otherwise(parts)
    )


def date(value: pl.Expr, rule: DateRule) -> pl.Expr:
    """`1990-05-17` -> `1990` (or `1990-05`); anything not ISO-like is redacted."""
    keep = 4 if rule.keep == "year" else 7
    return (
        pl.when(value.is_null()).then(pl.lit(None, pl.String))
        .when(value.str.contains(r"^\d{4}-\d{2}")).then(value.str.head(keep))
        .otherwise(pl.lit("***"))
    )


def redact(value: pl.Expr, rule: RedactRule) -> pl.Expr:
    return pl.when(value.is_null()).then(pl.lit(None, pl.String)).otherwise(pl.lit(rule.text))


def mask(field: str, rule: MaskRule, column: Column = pl.col) -> pl.Expr:
    """The masked value of `field` under `rule`; `column(name)` finds a column in the frame (so
    the same rules work on frames whose columns carry a prefix)."""
    value = column(field).cast(pl.String)
    if isinstance(rule, PartialRule):
        out = partial(value, rule)
    elif isinstance(rule, AddressRule):
        out = address(value, rule, column)
    elif isinstance(rule, DateRule):
        out = date(value, rule)
    else:
        out = redact(value, rule)
    return out.alias(field)


def project(levels: dict[str, Level], subs: Subscriptions, column: Column = pl.col) -> list[pl.Expr]:
    """Per visible field, the value as delivered: as is (`full`) or masked by its rule."""
    return [
        column(f).cast(pl.String).alias(f) if level == "full" else mask(f, subs.rule(f), column)
        for f, level in levels.items()
    ]


def mask_frame(frame: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions) -> pl.DataFrame:
    """A frame of records (text columns named by field) projected and masked; missing columns
    read as null."""
    missing = [f for f in {*levels, *CONTEXT_FIELDS} if f not in frame.columns]
    if missing:
        frame = frame.with_columns([pl.lit(None, pl.String).alias(f) for f in missing])
    return frame.select(project(levels, subs))


# -- the same rules on one value (feeds/snapshot_rows.py: a handful of records without Polars) ----
_ISO_LIKE = re.compile(r"^\d{4}-\d{2}")


def mask_value(value: str | None, rule: MaskRule, parts: dict[str, str | None]) -> str | None:
    """`mask` on one value: `parts` holds the record's CONTEXT_FIELDS (an address rule reads
    them). Equal to the Polars expression value for value (tests/test_snapshot_rows.py)."""
    if value is None:
        return None
    if isinstance(rule, PartialRule):
        n, kept = len(value), rule.keep_first + rule.keep_last
        if n <= kept:
            return rule.mask_char * n
        tail = value[n - rule.keep_last:] if rule.keep_last else ""
        return value[:rule.keep_first] + rule.mask_char * (n - kept) + tail
    if isinstance(rule, AddressRule):
        joined = "".join(p for p in (parts.get(name) for name in ADDRESS_LEVELS[rule.level]) if p is not None)
        return joined or "***"
    if isinstance(rule, DateRule):
        return value[:4 if rule.keep == "year" else 7] if _ISO_LIKE.match(value) else "***"
    return rule.text


def project_value(field: str, level: Level, subs: Subscriptions, record: dict[str, str | None]) -> str | None:
    """`project` for one field of one record (a dict of text values)."""
    value = record.get(field)
    return value if level == "full" else mask_value(value, subs.rule(field), record)
