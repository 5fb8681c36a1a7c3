"""Administrative division codes (GB/T 2260 and its 9- and 12-digit extensions).

Feeds scope records to stations by area-code prefix, so the code is reduced to its digits and a
length that is not a level of the hierarchy (6 county, 9 township, 12 village) is flagged.
"""

from __future__ import annotations

import polars as pl

from entity_resolution.standardise.text import blank_to_null, blank_to_null_value, clean_text, clean_text_value

AREA_CODE_LENGTHS: tuple[int, ...] = (6, 9, 12)
_NOT_DIGIT = r"[^0-9]"


def area_code_digits(expr: pl.Expr) -> pl.Expr:
    """Digits only (half-width first); null when none are left."""
    return clean_text(expr, remove=_NOT_DIGIT)


def area_code_valid(raw: pl.Expr, digits: pl.Expr) -> pl.Expr:
    """Null when no code was given; otherwise whether its digit count is a hierarchy level."""
    return (
        pl.when(blank_to_null(raw).is_not_null())
        .then(digits.str.len_chars().is_in(list(AREA_CODE_LENGTHS)).fill_null(False))
    )


def area_code_value(raw: str | None) -> tuple[str | None, bool | None]:
    """(area_code, area_code_valid) of one raw value."""
    digits = clean_text_value(raw, remove=_NOT_DIGIT)
    if blank_to_null_value(raw) is None:
        return digits, None
    return digits, digits is not None and len(digits) in AREA_CODE_LENGTHS
