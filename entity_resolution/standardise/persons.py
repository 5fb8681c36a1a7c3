"""Person records: raw canonical fields in, standardised fields and their issues out.

The rules for each field live in their own module; this one only wires them together, compares
the stated birth date and sex with the ones embedded in the ID number, and gathers every problem
into one `issues` text so that a reviewer sees all of a record's defects at once. Bad values are
flagged and kept (or kept in the message when they cannot be represented, e.g. "1990-02-30"),
never dropped, and nothing here raises on a value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import polars as pl

from entity_resolution.standardise.addresses import ADDRESS_PART_COLUMNS, with_address
from entity_resolution.standardise.area_codes import area_code_digits, area_code_valid
from entity_resolution.standardise.dates import (
    DEFAULT_DATE_FORMATS,
    date_issue,
    parse_date,
    with_timestamp,
)
from entity_resolution.standardise.frames import contact_issues, finish, intake, issue, join_issues, raw_col
from entity_resolution.standardise.id_numbers import ID_COLUMNS, with_id_number
from entity_resolution.standardise.names import name_fields
from entity_resolution.standardise.phones import PHONE_COLUMNS, with_phone
from entity_resolution.standardise.sex import parse_sex
from entity_resolution.standardise.text import quoted

PERSON_FIELDS: tuple[str, ...] = (
    "local_id", "name", "sex", "birth_date", "id_number", "phone", "address",
    "area_code", "source_updated_at",
)

PERSON_COLUMNS: tuple[str, ...] = (
    "name", "name_norm", "name_pinyin", "sex", "birth_date",
    *ID_COLUMNS, "id_consistent",
    *PHONE_COLUMNS,
    "address", *ADDRESS_PART_COLUMNS,
    "area_code", "area_code_valid", "source_updated_at", "issues",
)


# Fields whose standardised columns depend on their own raw value alone (no cross-check feeds
# them): a lookup giving only these needs only their steps of `standardise_persons`, the same
# expressions at a fraction of the whole record's cost (`library.standardise_fields`).
FIELD_STEPS: dict[str, tuple[Callable[[pl.LazyFrame, date], pl.LazyFrame], tuple[str, ...]]] = {
    "id_number": (lambda lf, today: with_id_number(lf, raw_col("id_number"), today=today), ID_COLUMNS),
    "phone": (lambda lf, today: with_phone(lf, raw_col("phone")), PHONE_COLUMNS),
}


def id_consistency(
    id_birth: pl.Expr, id_sex: pl.Expr, birth: pl.Expr, sex: pl.Expr
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(consistent, birth_differs, sex_differs).

    `consistent` compares whatever both sides have: null when no pair can be compared (an ID
    without a readable date and sex, or a record stating neither), false when any pair differs.
    """
    birth_same = id_birth == birth
    sex_same = id_sex == sex
    consistent = (
        pl.when(birth_same.is_null() & sex_same.is_null())
        .then(pl.lit(None, dtype=pl.Boolean))
        .otherwise(birth_same.fill_null(True) & sex_same.fill_null(True))
    )
    return consistent, birth_same.not_(), sex_same.not_()


def standardise_persons(
    raw: pl.DataFrame,
    *,
    date_formats: Sequence[str] = DEFAULT_DATE_FORMATS,
    today: date | None = None,
) -> pl.DataFrame:
    """Standardise person records; see PERSON_COLUMNS for what is added.

    Columns other than the canonical raw fields (record_key, station_id, batch_id, ...) pass
    through unchanged and first, in their order; `local_id` is one of them. `today` bounds birth
    dates ("not in the future") and exists so that results can be reproduced; default: today.
    """
    today = today or date.today()
    lf = intake(raw, PERSON_FIELDS)

    lf = lf.with_columns(
        name_fields(raw_col("name")).alias("__name"),
        parse_sex(raw_col("sex")).alias("__sex"),
        parse_date(raw_col("birth_date"), date_formats).alias("__birth"),
        area_code_digits(raw_col("area_code")).alias("area_code"),
    )
    lf = lf.with_columns(
        pl.col("__name").struct.field("name"),
        pl.col("__name").struct.field("name_norm"),
        pl.col("__name").struct.field("name_pinyin"),
        pl.col("__birth").struct.field("date").alias("birth_date"),
        pl.col("__birth").struct.field("status").alias("__birth_status"),
        pl.col("__sex").struct.field("sex").alias("sex"),
        pl.col("__sex").struct.field("unrecognised").alias("__sex_unrecognised"),
        area_code_valid(raw_col("area_code"), pl.col("area_code")).alias("area_code_valid"),
    )
    lf = with_id_number(lf, raw_col("id_number"), today=today)
    lf = with_phone(lf, raw_col("phone"))
    lf = with_timestamp(lf, raw_col("source_updated_at"), "source_updated_at", date_formats)
    lf = with_address(lf, raw_col("address"))

    consistent, birth_differs, sex_differs = id_consistency(
        pl.col("id_birth_date"), pl.col("id_sex"), pl.col("birth_date"), pl.col("sex")
    )
    lf = lf.with_columns(consistent.alias("id_consistent"))
    lf = lf.with_columns(
        join_issues(
            [
                issue("name", pl.col("name_norm").is_null(), "missing"),
                issue("sex", pl.col("__sex_unrecognised"),
                      pl.concat_str(pl.lit("unrecognised value "), quoted(raw_col("sex")))),
                issue("birth_date", pl.lit(True),
                      date_issue(pl.col("__birth_status"), pl.col("birth_date"),
                                 raw_col("birth_date"), today=today)),
                issue("id_number", pl.col("id_issue").is_not_null(), pl.col("id_issue")),
                issue("id_number", birth_differs, "birth date differs from stated birth_date"),
                issue("id_number", sex_differs, "sex differs from stated sex"),
                *contact_issues(),
            ]
        ).alias("issues")
    )
    # Flagged above and kept; but a year before 1000 is a typo no database should store as a date.
    lf = lf.with_columns(pl.when(pl.col("birth_date").dt.year() >= 1000).then(pl.col("birth_date")).alias("birth_date"))
    return finish(lf, raw.columns, PERSON_COLUMNS)
