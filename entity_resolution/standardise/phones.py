"""Chinese phone numbers: one written form per number, so equal numbers compare equal.

Mobiles become their 11 digits ("+86 138 1234 5678" -> "13812345678"); landlines become
"area-local" ("(023)68123456" -> "023-68123456"), the form the Ministry of Industry and IT
publishes. Area codes are 3 digits for 010 and 02x and 4 digits otherwise, which is what makes
the split unambiguous without a lookup table. A number that fits neither shape is kept with its
separators removed and flagged; a local number without its area code is kept and flagged too,
since guessing the area from the station would be a guess.
"""

from __future__ import annotations

import polars as pl

from entity_resolution.standardise.text import clean_text, clean_text_value, py_regex, py_template

PHONE_COLUMNS = ("phone", "phone_kind", "phone_valid")

MOBILE = r"^0?(1[3-9][0-9]{9})$"  # a long-distance "0" before a mobile is sometimes dialled
LANDLINE = r"^(0(?:[12][0-9]|[3-9][0-9]{2}))([2-9][0-9]{6,7})$"
LOCAL_ONLY = r"^[2-9][0-9]{6,7}$"

ISSUE_NO_AREA = "landline without area code"
ISSUE_UNRECOGNISED = "unrecognised number"

_SCRATCH = "__ph_"
# Written between digit groups by people and exports; removed before the shape is judged.
_SEPARATORS = r"[\s'\"`‘’\-()\[\]./]"
_COUNTRY = r"^(?:\+|00)86"
_MOBILE_AFTER_86 = r"^86(1[3-9][0-9]{9})$"  # the "+" of +86 lost
_TRUNKLESS = r"^[2-9]"


def with_phone(lf: pl.LazyFrame, raw_phone: pl.Expr) -> pl.LazyFrame:
    """Add PHONE_COLUMNS plus a private `__ph_issue` reason (null when fine or missing).

    After a +86 / 0086 country prefix the trunk "0" of a landline is dropped by convention
    ("+86 23 6812 3456"), so it is put back; a mobile never has one.
    """
    s = _SCRATCH
    text, national, digits = pl.col(f"{s}text"), pl.col(f"{s}national"), pl.col(f"{s}digits")
    lf = lf.with_columns(clean_text(raw_phone, remove=_SEPARATORS).alias(f"{s}text"))
    lf = lf.with_columns(
        text.str.contains(_COUNTRY).alias(f"{s}intl"),
        text.str.replace(_COUNTRY, "")
        .str.replace(_MOBILE_AFTER_86, "${1}")
        .alias(f"{s}national"),
    )
    lf = lf.with_columns(
        pl.when(pl.col(f"{s}intl") & national.str.contains(_TRUNKLESS))
        .then(pl.concat_str(pl.lit("0"), national))
        .otherwise(national)
        .replace("", None)
        .alias(f"{s}digits")
    )
    landline = digits.str.extract_groups(LANDLINE)
    lf = lf.with_columns(
        digits.str.extract(MOBILE, 1).alias(f"{s}mobile"),
        pl.concat_str(
            landline.struct.field("1"), pl.lit("-"), landline.struct.field("2")
        ).alias(f"{s}landline"),
        digits.str.contains(LOCAL_ONLY).alias(f"{s}local"),
    )
    mobile, land, local = pl.col(f"{s}mobile"), pl.col(f"{s}landline"), pl.col(f"{s}local")
    recognised = mobile.is_not_null() | land.is_not_null()
    lf = lf.with_columns(
        pl.coalesce(mobile, land, digits).alias("phone"),
        pl.when(mobile.is_not_null())
        .then(pl.lit("mobile"))
        .when(land.is_not_null() | local)
        .then(pl.lit("landline"))
        .alias("phone_kind"),
        pl.when(digits.is_not_null()).then(recognised).alias("phone_valid"),
        pl.when(recognised | digits.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(local)
        .then(pl.lit(ISSUE_NO_AREA))
        .otherwise(pl.lit(ISSUE_UNRECOGNISED))
        .alias(f"{s}issue"),
    )
    return lf.drop(
        f"{s}text", f"{s}intl", f"{s}national", f"{s}digits", f"{s}mobile", f"{s}landline",
        f"{s}local",
    )


def phone_value(raw: str | None) -> tuple[str | None, str | None, bool | None, str | None]:
    """(phone, phone_kind, phone_valid, issue) of one raw value, as `with_phone` gives them."""
    text = clean_text_value(raw, remove=_SEPARATORS)
    if text is None:
        return None, None, None, None
    intl = bool(py_regex(_COUNTRY).search(text))
    national = py_regex(_COUNTRY).sub("", text, count=1)
    national = py_regex(_MOBILE_AFTER_86).sub(py_template("${1}"), national, count=1)
    digits = ("0" + national if intl and py_regex(_TRUNKLESS).search(national) else national) or None
    if digits is None:
        return None, None, None, None
    mobile = py_regex(MOBILE).search(digits)
    landline = py_regex(LANDLINE).search(digits)
    local = bool(py_regex(LOCAL_ONLY).search(digits))
    if mobile is not None:
        return mobile.group(1), "mobile", True, None
    if landline is not None:
        return f"{landline.group(1)}-{landline.group(2)}", "landline", True, None
    return digits, "landline" if local else None, False, ISSUE_NO_AREA if local else ISSUE_UNRECOGNISED
