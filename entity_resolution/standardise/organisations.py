"""Organisation records: raw canonical fields in, standardised fields and their issues out.

Same conventions as persons.py: one module per field's rules, wired here; bad values flagged and
kept, never dropped; other columns pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from entity_resolution.standardise.addresses import ADDRESS_PART_COLUMNS, with_address
from entity_resolution.standardise.area_codes import area_code_digits, area_code_valid
from entity_resolution.standardise.dates import DEFAULT_DATE_FORMATS, with_timestamp
from entity_resolution.standardise.frames import contact_issues, finish, intake, issue, join_issues, raw_col
from entity_resolution.standardise.names import name_fields
from entity_resolution.standardise.org_codes import CREDIT_CODE_COLUMNS, with_credit_code
from entity_resolution.standardise.phones import PHONE_COLUMNS, with_phone

ORGANISATION_FIELDS: tuple[str, ...] = (
    "local_id", "name", "credit_code", "legal_rep", "phone", "address",
    "area_code", "source_updated_at",
)

ORGANISATION_COLUMNS: tuple[str, ...] = (
    "name", "name_norm", *CREDIT_CODE_COLUMNS, "legal_rep", "legal_rep_norm",
    *PHONE_COLUMNS,
    "address", *ADDRESS_PART_COLUMNS,
    "area_code", "area_code_valid", "source_updated_at", "issues",
)


def standardise_organisations(
    raw: pl.DataFrame,
    *,
    date_formats: Sequence[str] = DEFAULT_DATE_FORMATS,
) -> pl.DataFrame:
    """Standardise organisation records; see ORGANISATION_COLUMNS for what is added.

    `name_norm` keeps ASCII periods ("Co., Ltd.") and turns full-width brackets into ASCII ones
    (NFKC), so "重庆某某有限公司（渝中）" and "重庆某某有限公司(渝中)" agree. `date_formats` are
    the station's date formats, used for a `source_updated_at` that is a bare date ("2024年5月1日").
    """
    lf = intake(raw, ORGANISATION_FIELDS)
    lf = lf.with_columns(
        name_fields(raw_col("name"), keep_periods=True).alias("__name"),
        name_fields(raw_col("legal_rep")).alias("__legal_rep"),
        area_code_digits(raw_col("area_code")).alias("area_code"),
    )
    lf = lf.with_columns(
        pl.col("__name").struct.field("name"),
        pl.col("__name").struct.field("name_norm"),
        pl.col("__legal_rep").struct.field("name").alias("legal_rep"),
        pl.col("__legal_rep").struct.field("name_norm").alias("legal_rep_norm"),
        area_code_valid(raw_col("area_code"), pl.col("area_code")).alias("area_code_valid"),
    )
    lf = with_credit_code(lf, raw_col("credit_code"))
    lf = with_phone(lf, raw_col("phone"))
    lf = with_timestamp(lf, raw_col("source_updated_at"), "source_updated_at", date_formats)
    lf = with_address(lf, raw_col("address"))
    lf = lf.with_columns(
        join_issues(
            [
                issue("name", pl.col("name_norm").is_null(), "missing"),
                issue("credit_code", pl.col("credit_code_issue").is_not_null(),
                      pl.col("credit_code_issue")),
                *contact_issues(),
            ]
        ).alias("issues")
    )
    return finish(lf, raw.columns, ORGANISATION_COLUMNS)
