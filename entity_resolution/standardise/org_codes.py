"""Unified social credit codes (GB 32100-2015), the organisation's counterpart of the ID number.

Only certain repairs are made (half-width, upper case, separators and quotes removed); the letters
I, O, S, V and Z are not in the code's alphabet and are flagged rather than "corrected" to 1, 0,
5, U or 2, because the check character cannot tell which digit was meant.
"""

from __future__ import annotations

import polars as pl

from entity_resolution.standardise.text import clean_text, clean_text_value, py_regex

CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_WEIGHTS: tuple[int, ...] = (
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
)
CREDIT_CODE_COLUMNS = ("credit_code", "credit_code_valid", "credit_code_issue")

ISSUE_MISSING = "missing"
ISSUE_INVALID_CHARS = "characters outside the code alphabet"
ISSUE_CHECK = "check character mismatch"

_CLASS = "[0-9A-HJ-NPQRTUWXY]"
_JUNK = r"[\s'\"`‘’\-]"  # removed by cleaning


def clean_credit_code(expr: pl.Expr) -> pl.Expr:
    """Half-width, upper-case, without whitespace, hyphens, quotes or a leading apostrophe."""
    return clean_text(expr, remove=_JUNK, case="upper")


def credit_check_char(code: pl.Expr) -> pl.Expr:
    """The check character for the first 17 characters of `code` (null unless they are valid)."""
    body = code.str.slice(0, 17)
    values = list(range(len(CREDIT_ALPHABET)))
    total = pl.sum_horizontal(
        body.str.slice(i, 1).replace_strict(
            list(CREDIT_ALPHABET), values, default=None, return_dtype=pl.Int64
        )
        * weight
        for i, weight in enumerate(CREDIT_WEIGHTS)
    )
    check = (31 - total % 31) % 31
    shaped = body.str.contains(f"^{_CLASS}{{17}}$")
    return pl.when(shaped).then(
        check.replace_strict(values, list(CREDIT_ALPHABET), return_dtype=pl.String)
    )


def with_credit_code(lf: pl.LazyFrame, raw_code: pl.Expr) -> pl.LazyFrame:
    """Add CREDIT_CODE_COLUMNS; `credit_code_issue` is null exactly when the code is valid."""
    lf = lf.with_columns(clean_credit_code(raw_code).alias("credit_code"))
    code = pl.col("credit_code")
    issue = (
        pl.when(code.is_null())
        .then(pl.lit(ISSUE_MISSING))
        .when(~code.str.contains(f"^{_CLASS}*$"))
        .then(pl.lit(ISSUE_INVALID_CHARS))
        .when(code.str.len_chars() != 18)
        .then(pl.concat_str(pl.lit("wrong length "), code.str.len_chars().cast(pl.String)))
        .when(credit_check_char(code) != code.str.slice(17, 1))
        .then(pl.lit(ISSUE_CHECK))
    )
    lf = lf.with_columns(issue.alias("credit_code_issue"))
    return lf.with_columns(pl.col("credit_code_issue").is_null().alias("credit_code_valid"))


def credit_check_char_value(code: str) -> str | None:
    """`credit_check_char` of one code (None unless its first 17 characters are in the alphabet)."""
    body = code[:17]
    if not py_regex(f"^{_CLASS}{{17}}$").search(body):
        return None
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(body, CREDIT_WEIGHTS, strict=True))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def credit_code_value(raw: str | None) -> tuple[str | None, bool, str | None]:
    """(credit_code, credit_code_valid, credit_code_issue) of one raw value."""
    code = clean_text_value(raw, remove=_JUNK, case="upper")
    if code is None:
        issue = ISSUE_MISSING
    elif not py_regex(f"^{_CLASS}*$").search(code):
        issue = ISSUE_INVALID_CHARS
    elif len(code) != 18:
        issue = f"wrong length {len(code)}"
    elif credit_check_char_value(code) not in (None, code[17]):
        issue = ISSUE_CHECK
    else:
        issue = None
    return code, issue is None, issue
