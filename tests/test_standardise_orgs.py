"""Organisations: unified social credit code (GB 32100-2015) and the organisation frame."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.standardise import ORGANISATION_COLUMNS, standardise_organisations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def credit_check(body17: str) -> str:
    """Independent reference implementation of the GB 32100-2015 check character."""
    total = sum(ALPHABET.index(c) * w for c, w in zip(body17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


BODY = "91500103MA5U7Y9X1"  # enterprise (9), company (1), Chongqing Yuzhong, organisation code
VALID = BODY + credit_check(BODY)


def codes(*values: str | None) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"name": ["重庆某某有限公司"] * len(values), "credit_code": list(values)},
        schema_overrides={"credit_code": pl.String},
    )
    return standardise_organisations(frame)


def one(value: str | None) -> dict:
    return codes(value).row(0, named=True)


def test_reference_helper_on_published_code() -> None:
    # A commonly quoted example code, 91350100M000100Y43.
    assert credit_check("91350100M000100Y4") == "3"


def test_valid_code() -> None:
    row = one(VALID)
    assert row["credit_code"] == VALID
    assert row["credit_code_valid"] is True
    assert row["credit_code_issue"] is None
    assert row["issues"] is None


@pytest.mark.parametrize(
    "raw",
    [VALID.lower(), f" {VALID[:8]} {VALID[8:]} ", f"'{VALID}", VALID.translate(
        str.maketrans("0123456789ABCDEFGHJKLMNPQRTUWXY", "０１２３４５６７８９ＡＢＣＤＥＦＧＨＪＫＬＭＮＰＱＲＴＵＷＸＹ")
    ), f"{VALID[:8]}-{VALID[8:]}"],
)
def test_cleaning(raw: str) -> None:
    row = one(raw)
    assert row["credit_code"] == VALID
    assert row["credit_code_valid"] is True


def test_wrong_check_character() -> None:
    wrong_char = ALPHABET[(ALPHABET.index(VALID[-1]) + 1) % 31]
    row = one(BODY + wrong_char)
    assert row["credit_code"] == BODY + wrong_char
    assert row["credit_code_valid"] is False
    assert row["credit_code_issue"] == "check character mismatch"
    assert row["issues"] == "credit_code: check character mismatch"


def test_single_changed_character_is_caught() -> None:
    typo = VALID[:10] + ("1" if VALID[10] != "1" else "2") + VALID[11:]
    assert one(typo)["credit_code_issue"] == "check character mismatch"


@pytest.mark.parametrize(
    ("raw", "issue"),
    [
        (None, "missing"),
        ("  ", "missing"),
        ("91500103MA5U7Y9X", "wrong length 16"),
        ("91500103MA5U7Y9XIO", "characters outside the code alphabet"),  # I and O are not used
        ("91500103MA5U7Y9X1S", "characters outside the code alphabet"),
        ("91500103-MA5U7Y9X1?", "characters outside the code alphabet"),
    ],
)
def test_invalid_codes(raw: str | None, issue: str) -> None:
    row = one(raw)
    assert row["credit_code_valid"] is False
    assert row["credit_code_issue"] == issue
    assert row["issues"] == f"credit_code: {issue}"


def test_organisation_frame_columns_pass_through_and_order() -> None:
    raw = pl.DataFrame(
        {
            "record_key": ["s1:9", "s1:7"],
            "local_id": ["9", "7"],
            "name": ["  重慶某某商貿有限公司（渝中） ", None],
            "credit_code": [VALID, "bad"],
            "legal_rep": ["張 三", "李四"],
            "phone": ["(023)68123456", "123"],
            "batch_id": [5, 5],
        }
    )
    out = standardise_organisations(raw)
    assert out.columns == ["record_key", "local_id", "batch_id", *ORGANISATION_COLUMNS]
    assert out["record_key"].to_list() == ["s1:9", "s1:7"]
    assert out["batch_id"].to_list() == [5, 5]
    assert out["local_id"].to_list() == ["9", "7"]
    first, second = out.iter_rows(named=True)
    assert first["name"] == "重慶某某商貿有限公司（渝中）"
    assert first["name_norm"] == "重庆某某商贸有限公司(渝中)"
    assert first["legal_rep_norm"] == "张三"
    assert first["phone"] == "023-68123456"
    assert first["issues"] is None
    assert second["issues"] == (
        "name: missing; credit_code: wrong length 3; phone: unrecognised number '123'"
    )


def test_missing_columns_become_null_outputs() -> None:
    out = standardise_organisations(pl.DataFrame({"station_id": ["s1"]}))
    assert out.columns == ["station_id", *ORGANISATION_COLUMNS]
    row = out.row(0, named=True)
    assert row["name_norm"] is None
    assert row["credit_code"] is None
    assert row["credit_code_valid"] is False
    assert row["issues"] == "name: missing; credit_code: missing"
    assert out.schema["source_updated_at"] == pl.Datetime("us")
    assert out.schema["credit_code_valid"] == pl.Boolean


def test_date_formats_apply_to_a_bare_date_source_updated_at() -> None:
    raw = pl.DataFrame({"name": ["某公司"] * 2, "source_updated_at": ["2024年5月1日", "01/05/2024"]})
    default = standardise_organisations(raw)
    assert default["source_updated_at"].to_list()[0].isoformat() == "2024-05-01T00:00:00"
    assert default["source_updated_at"].to_list()[1] is None
    station = standardise_organisations(raw, date_formats=("%d/%m/%Y",))
    assert station["source_updated_at"].to_list()[1].isoformat() == "2024-05-01T00:00:00"
