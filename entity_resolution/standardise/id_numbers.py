"""Resident identity card numbers (GB 11643): clean, upgrade 15 -> 18 digits, validate, explain.

The ID number is the strongest matching key the hub has, so it is repaired where the repair is
certain (spreadsheet apostrophes, full-width digits, lower-case x, the 1999 upgrade of 15-digit
numbers) and flagged, never guessed, where it is not: a number Excel turned into "5.00101E+17" or
"500101199003071000" has lost digits and stays as it came, with the reason in `id_issue`.

The check digit is column arithmetic: the 17-digit body is read as one integer and its digits
peeled off with integer division, which is much cheaper than slicing seventeen one-character
strings per row.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from entity_resolution.standardise.dates import Day, strptime_day
from entity_resolution.standardise.text import clean_text, clean_text_value, py_regex

ID_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
EARLIEST_BIRTH = date(1900, 1, 1)

ISSUE_MISSING = "missing"
ISSUE_SCIENTIFIC = "scientific notation (digits lost)"
ISSUE_NON_DIGIT = "non-digit characters"
ISSUE_CHECK = "check digit mismatch"
ISSUE_IMPOSSIBLE_DATE = "impossible embedded birth date"
ISSUE_DATE_RANGE = "embedded birth date out of range"
# Excel keeps 15 significant digits: an 18-digit number typed as a number comes back as its first
# 15 digits and "000". About 1 in 11 of those passes the check by chance, so the form itself is
# the issue, whatever the check digit says.
ISSUE_SPREADSHEET = "ends in 000: last digits lost in a spreadsheet?"

ID_COLUMNS = ("id_number", "id_upgraded", "id_valid", "id_issue", "id_birth_date", "id_sex")

_SCIENTIFIC = r"^[0-9]+(?:\.[0-9]*)?E[+]?[0-9]+$"
# What cleaning removes, and the shapes the stages test (shared with the per-value twin).
_JUNK = r"[\s'\"`‘’]"
_FIFTEEN = r"^[0-9]{15}$"
_SEVENTEEN = r"^[0-9]{17}$"
_DIGITS_AND_X = r"^[0-9]*X?$"
_EIGHTEEN = r"^[0-9]{17}[0-9X]$"
_SCRATCH = "__id_"


def clean_id_text(expr: pl.Expr) -> pl.Expr:
    """Half-width, upper-case, without whitespace, quotes or a spreadsheet's leading apostrophe."""
    return clean_text(expr, remove=_JUNK, case="upper")


def check_char_of_number(body: pl.Expr) -> pl.Expr:
    """GB 11643 check character of a 17-digit body given as an integer (null stays null)."""
    total = pl.sum_horizontal(
        ((body // 10 ** (16 - i)) % 10) * weight for i, weight in enumerate(ID_WEIGHTS)
    )
    return (total % 11).replace_strict(
        list(range(11)), list(ID_CHECK_CHARS), return_dtype=pl.String
    )


def body_number(body17: pl.Expr) -> pl.Expr:
    """A 17-digit body as Int64 (fits: < 10**17), null unless it is exactly 17 digits."""
    return pl.when(body17.str.contains(_SEVENTEEN)).then(
        body17.str.to_integer(base=10, strict=False).cast(pl.Int64)
    )


def id_check_char(body17: pl.Expr) -> pl.Expr:
    """GB 11643 check character of a 17-digit body string (null unless exactly 17 digits)."""
    return check_char_of_number(body_number(body17))


def with_id_number(lf: pl.LazyFrame, raw_id: pl.Expr, *, today: date) -> pl.LazyFrame:
    """Add the ID_COLUMNS computed from `raw_id`.

    `id_issue` names the first defect found, in the order a person fixing the record would need
    them: absent, digits lost, junk characters, wrong length, embedded date (which says where the
    error is), check digit (which only says that there is one).

    Built in stages of plain columns: each stage reads the previous one's columns, so nothing is
    computed twice.
    """
    s = _SCRATCH
    clean, nodash, body = pl.col(f"{s}clean"), pl.col(f"{s}nodash"), pl.col(f"{s}body")
    lf = lf.with_columns(clean_id_text(raw_id).alias(f"{s}clean"))
    lf = lf.with_columns(
        clean.str.contains(_SCIENTIFIC).fill_null(False).alias(f"{s}sci"),
        clean.str.replace_all("-", "", literal=True).alias(f"{s}nodash"),
    )
    lf = lf.with_columns(nodash.str.contains(_FIFTEEN).fill_null(False).alias("id_upgraded"))
    # The 17-digit body: for a 15-digit number, "19" goes before its yymmdd.
    lf = lf.with_columns(
        pl.when(pl.col("id_upgraded"))
        .then(pl.concat_str(nodash.str.slice(0, 6), pl.lit("19"), nodash.str.slice(6, 9)))
        .otherwise(nodash.str.slice(0, 17))
        .alias(f"{s}body")
    )
    lf = lf.with_columns(check_char_of_number(body_number(body)).alias(f"{s}check"))
    lf = lf.with_columns(
        pl.when(pl.col("id_upgraded"))
        .then(pl.concat_str(body, pl.col(f"{s}check")))
        .when(pl.col(f"{s}sci"))
        .then(clean)
        .otherwise(nodash)
        .alias("id_number"),
    )
    number = pl.col("id_number")
    shaped = number.str.contains(_EIGHTEEN).fill_null(False)
    lf = lf.with_columns(shaped.alias(f"{s}shaped"))
    shaped = pl.col(f"{s}shaped")
    lf = lf.with_columns(
        pl.when(shaped)
        .then(number.str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False))
        .alias("id_birth_date"),
        pl.when(shaped)
        .then(
            pl.when(number.str.slice(16, 1).cast(pl.Int8, strict=False) % 2 == 1)
            .then(pl.lit("M"))
            .otherwise(pl.lit("F"))
        )
        .alias("id_sex"),
    )
    birth = pl.col("id_birth_date")
    issue = (
        pl.when(number.is_null())
        .then(pl.lit(ISSUE_MISSING))
        .when(pl.col(f"{s}sci"))
        .then(pl.lit(ISSUE_SCIENTIFIC))
        .when(~number.str.contains(_DIGITS_AND_X))
        .then(pl.lit(ISSUE_NON_DIGIT))
        .when(~shaped)
        .then(pl.concat_str(pl.lit("wrong length "), number.str.len_chars().cast(pl.String)))
        .when(birth.is_null())
        .then(pl.lit(ISSUE_IMPOSSIBLE_DATE))
        .when((birth < EARLIEST_BIRTH) | (birth > today))
        .then(pl.lit(ISSUE_DATE_RANGE))
        .when(~pl.col("id_upgraded") & number.str.ends_with("000"))
        .then(pl.lit(ISSUE_SPREADSHEET))
        .when(pl.col(f"{s}check") != number.str.slice(17, 1))
        .then(pl.lit(ISSUE_CHECK))
    )
    lf = lf.with_columns(issue.alias("id_issue"))
    lf = lf.with_columns(
        pl.col("id_issue").is_null().alias("id_valid"),
        # Kept when merely out of range (flagged above); a year before 1000 is no date to store.
        pl.when(birth.dt.year() >= 1000).then(birth).alias("id_birth_date"),
    )
    return lf.drop(
        f"{s}clean", f"{s}sci", f"{s}nodash", f"{s}body", f"{s}check", f"{s}shaped"
    )


# ---------------------------------------------------------------------------------------------
# Per-value twin (standardise/rows.py)


def check_char_value(body17: str) -> str | None:
    """`id_check_char` of one body (None unless exactly 17 ASCII digits)."""
    if not py_regex(_SEVENTEEN).search(body17):
        return None
    return ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(body17, ID_WEIGHTS, strict=True)) % 11]


def _id_issue(number: str | None, sci: bool, upgraded: bool, shaped: bool, birth: Day | None,
              check: str | None, today: date) -> str | None:
    """The first defect, in `with_id_number`'s order."""
    if number is None:
        return ISSUE_MISSING
    if sci:
        return ISSUE_SCIENTIFIC
    if not py_regex(_DIGITS_AND_X).search(number):
        return ISSUE_NON_DIGIT
    if not shaped:
        return f"wrong length {len(number)}"
    if birth is None:
        return ISSUE_IMPOSSIBLE_DATE
    if not (EARLIEST_BIRTH.year, EARLIEST_BIRTH.month, EARLIEST_BIRTH.day) <= birth <= (today.year, today.month, today.day):
        return ISSUE_DATE_RANGE
    if not upgraded and number.endswith("000"):
        return ISSUE_SPREADSHEET
    if check is not None and check != number[17:18]:
        return ISSUE_CHECK
    return None


def id_number_value(raw: str | None, *, today: date) -> dict[str, object]:
    """The ID_COLUMNS of one raw value, as `with_id_number` gives them (id_birth_date as a
    (y, m, d) tuple, null below the year 1000)."""
    clean = clean_text_value(raw, remove=_JUNK, case="upper")
    sci = clean is not None and bool(py_regex(_SCIENTIFIC).search(clean))
    nodash = None if clean is None else clean.replace("-", "")
    upgraded = nodash is not None and bool(py_regex(_FIFTEEN).search(nodash))
    body = None if nodash is None else (nodash[:6] + "19" + nodash[6:15] if upgraded else nodash[:17])
    check = None if body is None else check_char_value(body)
    number = (body + check) if upgraded and check is not None else clean if sci else nodash
    shaped = number is not None and bool(py_regex(_EIGHTEEN).search(number))
    birth = strptime_day(number[6:14], "%Y%m%d") if shaped else None
    issue = _id_issue(number, sci, upgraded, shaped, birth, check, today)
    return {
        "id_number": number,
        "id_upgraded": upgraded,
        "id_valid": issue is None,
        "id_issue": issue,
        "id_birth_date": birth if birth is not None and birth[0] >= 1000 else None,
        "id_sex": ("M" if int(number[16]) % 2 == 1 else "F") if shaped else None,
    }
