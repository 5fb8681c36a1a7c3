"""Comparison levels on hand-made pairs of standardised person records (the default settings)."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.comparisons import comparison_vectors, fuzzy_scores
from entity_resolution.config import EntitySettings, load_resolution
from entity_resolution.standardise import standardise_persons

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(body: str) -> str:
    """A GB 11643-valid ID number for a 17-digit body."""
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


VALID = id_number("50010319900305123")
assert VALID[12] != VALID[13]
ONE_SUBSTITUTION = VALID[:10] + str((int(VALID[10]) + 1) % 10) + VALID[11:]
TRANSPOSED = VALID[:12] + VALID[13] + VALID[12] + VALID[14:]
FIFTEEN = VALID[:6] + VALID[8:17]  # the pre-1999 form; the standardiser upgrades it to VALID
BAD_CHECK = VALID[:17] + ("0" if VALID[17] != "0" else "1")

ADDRESS = "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室"
RECORDS = [
    # record_key, name, sex, birth_date, id_number, phone, address
    ("r01", "张伟", "男", "1990-03-05", VALID, "13812345678", ADDRESS),
    ("r02", "章伟", "男", "1990-05-03", ONE_SUBSTITUTION, "138 1234 5678", ADDRESS.replace("501室", "502室")),
    ("r03", "張玮", "女", "1990-11-20", TRANSPOSED, None, ADDRESS.replace("3栋2单元501室", "5栋1单元101室")),
    ("r04", "王建国", "男", "1995-03-05", FIFTEEN, "023-68881234", "重庆市江北区观音桥街道建新路88号"),
    ("r05", "王建军", "男", None, BAD_CHECK, "(023)68881234", "重庆市渝中区解放碑街道民族路社区民族路12号"),
    ("r06", "李明", "男", "1990-03-05", "5.00103E+17", None, "重庆市沙坪坝区小龙坎街道新桥路1号"),
    ("r07", "李敏", "女", "1990-03-05", None, None, None),
    ("r08", None, None, None, None, None, None),
]


@pytest.fixture(scope="module")
def person() -> EntitySettings:
    return load_resolution(None).entity("person")


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    raw = pl.DataFrame(
        RECORDS,
        schema=["record_key", "name", "sex", "birth_date", "id_number", "phone", "address"],
        orient="row",
    )
    return standardise_persons(raw)


def levels(records: pl.DataFrame, person: EntitySettings, left: str, right: str) -> dict[str, int]:
    pairs = pl.DataFrame({"left_id": [left], "right_id": [right]})
    row = comparison_vectors(pairs, records, person).row(0, named=True)
    return {k.removeprefix("gamma_"): v for k, v in row.items() if k.startswith("gamma_")}


def test_output_shape(records: pl.DataFrame, person: EntitySettings) -> None:
    pairs = pl.DataFrame({"left_id": ["r01", "r01"], "right_id": ["r02", "r03"], "first_rule": ["x", "y"]})
    out = comparison_vectors(pairs, records, person)
    assert out.columns == ["left_id", "right_id", "first_rule"] + [f"gamma_{c.name}" for c in person.comparisons]
    assert all(out.schema[f"gamma_{c.name}"] == pl.Int8 for c in person.comparisons)
    empty = comparison_vectors(pairs.head(0), records, person)
    assert empty.height == 0 and empty.columns == out.columns
    with pytest.raises(ValueError, match="absent from the records"):
        comparison_vectors(pl.DataFrame({"left_id": ["r01"], "right_id": ["zz"]}), records, person)


def test_name_levels(records: pl.DataFrame, person: EntitySettings) -> None:
    # 0 same name, 1 same pinyin, 2 close characters, 3 close pinyin, 4 else, -1 null
    assert levels(records, person, "r01", "r01")["name"] == 0
    assert levels(records, person, "r01", "r02")["name"] == 1  # 张伟 / 章伟: a homophone surname
    assert levels(records, person, "r01", "r03")["name"] == 1  # 张伟 / 張玮: traditional + homophone
    assert levels(records, person, "r04", "r05")["name"] == 2  # 王建国 / 王建军: JW 0.82 on characters
    assert levels(records, person, "r06", "r07")["name"] == 3  # 李明 / 李敏: li ming / li min
    assert levels(records, person, "r01", "r04")["name"] == 4
    assert levels(records, person, "r08", "r01")["name"] == -1


def test_id_number_levels(records: pl.DataFrame, person: EntitySettings) -> None:
    # 0 same, 1 same 15-digit form, 2 recoded region, 3 region differs rest agrees, 4 first 15
    # digits (spreadsheet), 5 one substitution or adjacent transposition, 6 else
    assert levels(records, person, "r01", "r04")["id_number"] == 0  # 15-digit upgraded == 18
    assert levels(records, person, "r01", "r02")["id_number"] == 5  # one digit substituted
    assert levels(records, person, "r01", "r03")["id_number"] == 5  # two adjacent digits swapped
    assert levels(records, person, "r04", "r05")["id_number"] == 1  # upgraded 15 vs 18 with a bad check
    assert levels(records, person, "r02", "r03")["id_number"] == 6  # two edits apart
    assert levels(records, person, "r01", "r06")["id_number"] == -1  # "5.00103E+17" is no ID to compare
    assert levels(records, person, "r01", "r07")["id_number"] == -1


def test_birth_date_levels(records: pl.DataFrame, person: EntitySettings) -> None:
    # 0 same, 1 day-month swap, 2 within a year, 3 else
    assert levels(records, person, "r01", "r06")["birth_date"] == 0
    assert levels(records, person, "r01", "r02")["birth_date"] == 1  # 03-05 / 05-03
    assert levels(records, person, "r01", "r03")["birth_date"] == 2  # 8.5 months apart
    assert levels(records, person, "r01", "r04")["birth_date"] == 3  # five years
    assert levels(records, person, "r01", "r05")["birth_date"] == -1


def test_contact_levels_weigh_phone_and_address_together(records: pl.DataFrame, person: EntitySettings) -> None:
    # 0 same phone and address, 1 same phone, 2 same address, 3 same building (token_set >= 0.9),
    # 4 same street (>= 0.7), 5 else, -1 neither phone nor address on a side
    assert levels(records, person, "r01", "r01")["contact"] == 0
    assert levels(records, person, "r01", "r02")["contact"] == 1  # phone spaces removed; another room
    assert levels(records, person, "r04", "r05")["contact"] == 1  # 023-68881234 / (023)68881234
    assert levels(records, person, "r01", "r05")["contact"] == 3  # less detailed: parts are a subset
    assert levels(records, person, "r01", "r03")["contact"] == 4  # no phone; another building of the street
    assert levels(records, person, "r01", "r04")["contact"] == 5
    assert levels(records, person, "r01", "r06")["contact"] == 5  # no phone, another address
    assert levels(records, person, "r01", "r07")["contact"] == -1


def test_sex_levels(records: pl.DataFrame, person: EntitySettings) -> None:
    assert levels(records, person, "r01", "r02")["sex"] == 0
    assert levels(records, person, "r01", "r03")["sex"] == 1


def test_levels_sharing_a_column_stay_separate_per_comparison(records: pl.DataFrame) -> None:
    """Two comparisons on one column with different cut-offs: fuzzy scores are reused between
    the levels of one comparison only."""
    s = EntitySettings.model_validate({
        "blocking": {"rules": [{"name": "n", "keys": ["name_norm"]}]},
        "comparisons": [
            {"name": "strict", "column": "name_norm", "levels": [{"kind": "jaro_winkler", "threshold": 0.95}]},
            {"name": "loose", "column": "name_norm",
             "levels": [{"kind": "jaro_winkler", "threshold": 0.8}, {"kind": "jaro_winkler", "threshold": 0.6}]},
        ],
        "thresholds": {"match": 0.9, "review": 0.5},
    })
    pairs = pl.DataFrame({"left_id": ["r04", "r01", "r01"], "right_id": ["r05", "r06", "r01"]})
    out = comparison_vectors(pairs, records, s)
    assert out["gamma_strict"].to_list() == [1, 1, 0]
    assert out["gamma_loose"].to_list() == [0, 2, 0]


def test_fuzzy_scores_are_rapidfuzz_vectorised() -> None:
    left = pl.Series(["zhang wei", "abcdef", "渝中区 12号 3栋", "500103199003051238"])
    right = pl.Series(["zhang wen", "abdcef", "渝中区 12号", "500103199003051283"])
    jw = fuzzy_scores(left, right, "jaro_winkler", 0.0)
    assert jw[0] == pytest.approx(0.9555, abs=1e-3)
    assert fuzzy_scores(left, right, "damerau_levenshtein", 2).to_list()[1] == 1  # transposition = 1
    assert fuzzy_scores(left, right, "levenshtein", 2).to_list()[1] == 2
    assert fuzzy_scores(left, right, "token_set", 0.0)[2] == pytest.approx(1.0)
    assert fuzzy_scores(left, right, "damerau_levenshtein", 1).to_list()[3] == 1
