"""Sex as "M" / "F": stations write 男/女, GB/T 2261.1 codes 1/2, or English words and letters."""

from __future__ import annotations

import polars as pl

from entity_resolution.standardise.frames import via_distinct
from entity_resolution.standardise.text import clean_text, clean_text_value

SEX_CODES: dict[str, str] = {
    "男": "M", "男性": "M", "1": "M", "m": "M", "male": "M",
    "女": "F", "女性": "F", "2": "F", "f": "F", "female": "F",
}
# GB/T 2261.1 "0 未知的性别" and "9 未说明的性别" say the sex is not known: null, not an error.
SEX_UNKNOWN: tuple[str, ...] = ("0", "9", "未知", "未说明", "unknown", "u")
_SPACES = r"\s+"  # removed before the lookup


def _sex_distinct(values: pl.Series) -> pl.Series:
    """Struct {sex, unrecognised} for distinct raw values."""
    frame = pl.DataFrame({"raw": values}).with_columns(
        clean_text(pl.col("raw"), remove=_SPACES, case="lower").alias("key")
    )
    key = pl.col("key")
    return frame.select(
        pl.struct(
            key.replace_strict(SEX_CODES, default=None, return_dtype=pl.String).alias("sex"),
            (
                key.is_not_null() & ~key.is_in(list(SEX_CODES)) & ~key.is_in(list(SEX_UNKNOWN))
            ).alias("unrecognised"),
        )
    ).to_series()


def parse_sex(expr: pl.Expr) -> pl.Expr:
    """Struct {sex: "M"|"F"|null, unrecognised: bool} — a value that is present but is neither a
    known code nor an explicit "unknown" is unrecognised (and flagged by the caller)."""
    dtype = pl.Struct({"sex": pl.String, "unrecognised": pl.Boolean})
    return via_distinct(expr.cast(pl.String), _sex_distinct, dtype)


def sex_value(value: str | None) -> tuple[str | None, bool]:
    """(sex, unrecognised) of one raw value, as `parse_sex` gives them."""
    key = clean_text_value(value, remove=_SPACES, case="lower")
    if key is None:
        return None, False
    return SEX_CODES.get(key), key not in SEX_CODES and key not in SEX_UNKNOWN
