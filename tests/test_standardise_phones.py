"""Phones: one written form per number (mobile 11 digits, landline "023-68123456")."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.standardise import standardise_organisations, standardise_persons


def phone_rows(*values: str | None) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"name": ["张伟"] * len(values), "id_number": ["11010519491231002X"] * len(values),
         "phone": list(values)},
        schema_overrides={"phone": pl.String},
    )
    return standardise_persons(frame)


def one(value: str | None) -> dict:
    return phone_rows(value).row(0, named=True)


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+8613812345678",
        "0086-13812345678",
        "008613812345678",
        "86 13812345678",
        "'13812345678",
        "１３８１２３４５６７８",
        "013812345678",  # long-distance prefix before a mobile
    ],
)
def test_mobile_forms(raw: str) -> None:
    row = one(raw)
    assert row["phone"] == "13812345678"
    assert row["phone_kind"] == "mobile"
    assert row["phone_valid"] is True
    assert row["issues"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("023-68123456", "023-68123456"),
        ("(023)68123456", "023-68123456"),
        ("（０２３）６８１２３４５６", "023-68123456"),
        ("023 6812 3456", "023-68123456"),
        ("02368123456", "023-68123456"),
        ("+86 23 6812 3456", "023-68123456"),
        ("0086-23-68123456", "023-68123456"),
        ("010-62345678", "010-62345678"),
        ("0571-88123456", "0571-88123456"),
        ("0851-5812345", "0851-5812345"),  # 7-digit local number
    ],
)
def test_landline_forms(raw: str, expected: str) -> None:
    row = one(raw)
    assert row["phone"] == expected
    assert row["phone_kind"] == "landline"
    assert row["phone_valid"] is True


def test_local_number_without_area_code_is_flagged_not_guessed() -> None:
    row = one("68123456")
    assert row["phone"] == "68123456"
    assert row["phone_kind"] == "landline"
    assert row["phone_valid"] is False
    assert row["issues"] == "phone: landline without area code '68123456'"


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("12345", "12345"),
        ("1381234567", "1381234567"),  # 10 digits
        ("23812345678", "23812345678"),
        ("023-68123456-801", "02368123456801"),  # extension: not guessed away
        ("no phone", "nophone"),
    ],
)
def test_unrecognised_numbers_are_kept_and_flagged(raw: str, kept: str) -> None:
    row = one(raw)
    assert row["phone"] == kept
    assert row["phone_kind"] is None
    assert row["phone_valid"] is False
    assert row["issues"] == f"phone: unrecognised number '{raw}'"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_phone(raw: str | None) -> None:
    row = one(raw)
    assert row["phone"] is None
    assert row["phone_kind"] is None
    assert row["phone_valid"] is None
    assert row["issues"] is None


def test_missing_phone_column() -> None:
    frame = standardise_persons(pl.DataFrame({"name": ["张伟"]}))
    assert frame["phone"].to_list() == [None]
    assert frame["phone_valid"].to_list() == [None]


def test_organisation_phone() -> None:
    raw = pl.DataFrame({"phone": ["(023)68123456", "+86 139 0000 1111"]})
    frame = standardise_organisations(raw)
    assert frame["phone"].to_list() == ["023-68123456", "13900001111"]
    assert frame["phone_kind"].to_list() == ["landline", "mobile"]
    assert frame["phone_valid"].to_list() == [True, True]
