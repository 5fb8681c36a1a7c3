"""ID numbers (GB 11643): cleaning, 15 -> 18 upgrade, validation, issues, consistency."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from entity_resolution.standardise import standardise_persons

TODAY = date(2025, 1, 1)
_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def check_char(body17: str) -> str:
    """Independent reference implementation of the GB 11643 check character."""
    assert len(body17) == 17 and body17.isdigit()
    return "10X98765432"[sum(int(c) * w for c, w in zip(body17, _WEIGHTS)) % 11]


BODY = "50010319900307123"  # Chongqing Yuzhong, born 1990-03-07, sequence 123 (odd -> male)
VALID = BODY + check_char(BODY)


def ids(*values: str | None, **extra: list) -> pl.DataFrame:
    """Standardise person rows that differ in their ID (a name is given so that only ID-related
    issues appear)."""
    frame = pl.DataFrame(
        {"name": ["张伟"] * len(values), "id_number": list(values), **extra},
        schema_overrides={"id_number": pl.String},
    )
    return standardise_persons(frame, today=TODAY)


def one(value: str | None) -> dict:
    return ids(value).row(0, named=True)


def test_reference_check_char_matches_known_examples() -> None:
    # Widely published GB 11643 worked example.
    assert check_char("11010519491231002") == "X"
    assert VALID == "500103199003071239"


def test_valid_id() -> None:
    row = one(VALID)
    assert row["id_number"] == "500103199003071239"
    assert row["id_valid"] is True
    assert row["id_issue"] is None
    assert row["id_upgraded"] is False
    assert row["id_birth_date"] == date(1990, 3, 7)
    assert row["id_sex"] == "M"


def test_valid_id_with_x_check_digit_lower_case() -> None:
    row = one("11010519491231002x")
    assert row["id_number"] == "11010519491231002X"
    assert row["id_valid"] is True
    assert row["id_sex"] == "F"  # 17th digit 2 is even
    assert row["id_birth_date"] == date(1949, 12, 31)


def test_wrong_check_digit() -> None:
    wrong = BODY + ("0" if VALID[-1] != "0" else "1")
    row = one(wrong)
    assert row["id_number"] == wrong
    assert row["id_valid"] is False
    assert row["id_issue"] == "check digit mismatch"
    assert row["id_birth_date"] == date(1990, 3, 7)  # still read: the date itself is real
    assert row["issues"] == "id_number: check digit mismatch"


def test_transposed_pair_is_caught() -> None:
    # Swap the two sequence digits "12" -> "21": a typical typing error.
    transposed = VALID[:14] + VALID[15] + VALID[14] + VALID[16:]
    assert transposed == "500103199003072139"
    row = one(transposed)
    assert row["id_valid"] is False
    assert row["id_issue"] == "check digit mismatch"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("５００１０３１９９００３０７１２３９", VALID),  # full-width digits
        ("'500103199003071239", VALID),  # spreadsheet text marker
        ("  500103 19900307 1239 ", VALID),  # inner spaces
        ("500103-19900307-1239", VALID),
        ("\u3000500103199003071239", VALID),  # ideographic space
    ],
)
def test_cleaning(raw: str, expected: str) -> None:
    row = one(raw)
    assert row["id_number"] == expected
    assert row["id_valid"] is True


def test_fullwidth_x_check_digit() -> None:
    row = one("11010519491231002Ｘ")
    assert row["id_number"] == "11010519491231002X"
    assert row["id_valid"] is True


def test_15_digit_upgrade_validates() -> None:
    old = "500103900307123"  # yymmdd = 900307, no check digit
    row = one(old)
    assert row["id_upgraded"] is True
    assert row["id_number"] == "500103199003071239"
    assert row["id_number"] == "50010319" + old[6:] + check_char("50010319" + old[6:])
    assert row["id_valid"] is True
    assert row["id_birth_date"] == date(1990, 3, 7)
    assert row["id_sex"] == "M"


def test_15_digit_upgrade_keeps_impossible_date_flagged() -> None:
    row = one("500103900230124")  # 1990-02-30
    assert row["id_upgraded"] is True
    assert len(row["id_number"]) == 18
    assert row["id_valid"] is False
    assert row["id_issue"] == "impossible embedded birth date"
    assert row["id_birth_date"] is None
    assert row["id_sex"] == "F"


def test_scientific_notation_is_unrecoverable_and_kept() -> None:
    row = one("5.00103E+17")
    assert row["id_number"] == "5.00103E+17"
    assert row["id_valid"] is False
    assert row["id_issue"] == "scientific notation (digits lost)"
    assert row["id_birth_date"] is None
    assert row["id_sex"] is None
    assert row["id_upgraded"] is False


def test_scientific_notation_lower_case_e() -> None:
    assert one("5.00103e+17")["id_issue"] == "scientific notation (digits lost)"


def test_impossible_embedded_birth_date() -> None:
    body = "50010319900230123"
    row = one(body + check_char(body))
    assert row["id_valid"] is False
    assert row["id_issue"] == "impossible embedded birth date"
    assert row["id_birth_date"] is None


def test_future_and_pre_1900_embedded_dates() -> None:
    future = "50010320300101123"
    old = "50010318991231123"
    frame = ids(future + check_char(future), old + check_char(old))
    assert frame["id_valid"].to_list() == [False, False]
    assert frame["id_issue"].to_list() == ["embedded birth date out of range"] * 2
    assert frame["id_birth_date"].to_list() == [date(2030, 1, 1), date(1899, 12, 31)]


def test_embedded_year_zero_is_flagged_and_not_stored_as_a_date() -> None:
    body = "50010300001223123"  # a mistyped year: 0000-12-23
    row = ids(body + check_char(body)).row(0, named=True)
    assert row["id_issue"] == "embedded birth date out of range"
    assert row["id_birth_date"] is None


@pytest.mark.parametrize(
    ("raw", "issue"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("5001031990030712", "wrong length 16"),
        ("5001031990030712391", "wrong length 19"),
        ("50010319900307A239", "non-digit characters"),
        ("X00103199003071239", "non-digit characters"),
    ],
)
def test_issues(raw: str | None, issue: str) -> None:
    row = one(raw)
    assert row["id_valid"] is False
    assert row["id_issue"] == issue
    assert f"id_number: {issue}" in row["issues"]


def test_missing_id_keeps_null_number() -> None:
    row = one(None)
    assert row["id_number"] is None
    assert row["id_upgraded"] is False
    assert row["id_birth_date"] is None


def test_consistency_with_stated_fields() -> None:
    frame = ids(
        VALID, VALID, VALID, VALID, None, VALID,
        birth_date=["1990-03-07", "1990-03-08", "1990-03-07", None, "1990-03-07", None],
        sex=["男", "M", "女", None, "M", "1"],
    )
    assert frame["id_consistent"].to_list() == [True, False, False, None, None, True]
    issues = frame["issues"].to_list()
    assert issues[0] is None
    assert issues[1] == "id_number: birth date differs from stated birth_date"
    assert issues[2] == "id_number: sex differs from stated sex"
    assert issues[3] is None
    assert issues[4] == "id_number: missing"


def test_issues_join_in_field_order() -> None:
    frame = standardise_persons(
        pl.DataFrame(
            {
                "name": ["张伟"],
                "birth_date": ["1990-02-30"],
                "id_number": [BODY + ("0" if VALID[-1] != "0" else "1")],
            }
        ),
        today=TODAY,
    )
    assert frame["issues"][0] == (
        "birth_date: impossible date '1990-02-30'; id_number: check digit mismatch"
    )


def test_many_rows_vectorised_mix() -> None:
    values = [VALID, "5.00103E+17", "500103900307123", None] * 250
    frame = ids(*values)
    assert frame.height == 1000
    assert frame["id_valid"].sum() == 500
    assert frame["id_upgraded"].sum() == 250
