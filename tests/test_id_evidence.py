"""ID numbers as evidence the way Chinese ID numbers really behave: region codes that GB/T 2260
changed since issue, check digits we computed ourselves, a relative's ID on the record and
numbers a spreadsheet cut to 15 digits."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from connectors.simulate.export import simulate_person_records
from entity_resolution.comparisons import comparison_vectors, region_groups
from core.errors import ConfigError
from entity_resolution.config import (
    Constraints,
    DistinctValid,
    EntitySettings,
    default_resolution_path,
    load_resolution,
)
from entity_resolution.resolve import guard_records, resolve
from entity_resolution.standardise import standardise_persons
from entity_resolution.standardise.id_numbers import ISSUE_SPREADSHEET

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def check(body: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS, strict=True)) % 11]


def idn(body: str) -> str:
    return body + check(body)


def sheet_body() -> str:
    """15 digits whose spreadsheet form (+ "000") passes the check digit by chance."""
    for day in range(1, 29):
        for digit in range(1, 10):
            body15 = f"500106198211{day:02d}{digit}"
            if check(body15 + "00") == "0":
                return body15
    raise AssertionError("none found")


SHEET15 = sheet_body()
SHEET_TRUE = idn(SHEET15 + "44")  # 17th digit even: female
SHEET_FORM = SHEET15 + "000"

CURRENT = idn("50010319650307123")  # 渝中区 since 1997
SICHUAN = "510202650307123"  # the same person's pre-1997 15-digit ID: 四川重庆市 市中区
FATHER = idn("50010819500102113")
SON = idn("50010819800506131")

ADDR = "重庆市南岸区南坪街道南湖社区南湖路8号2栋1单元301室"
ADDR2 = "重庆市沙坪坝区小龙坎街道新桥路9号1栋2单元502室"
INJECTED = [
    # record_key, name, sex, birth_date, id_number, phone, address
    ("X:P1", "欧阳修远", "男", "1965-03-07", CURRENT, "13900000001", ADDR2),
    ("X:P2", "欧阳修远", "男", "1965-03-07", SICHUAN, "13900000001", ADDR2),
    ("X:P3", "欧阳修远", "男", "1965-03-07", CURRENT, "13900000002", ADDR2),
    ("X:F1", "司马光明", "男", "1950-01-02", FATHER, "13900000011", ADDR),
    ("X:F2", "司马光明", "男", "1950-01-02", FATHER, "13900000012", ADDR),
    ("X:S1", "司马子轩", "男", "1980-05-06", SON, "13900000013", ADDR),
    ("X:S2", "司马子轩", "男", "1980-05-06", FATHER, "13900000011", ADDR),  # the father's ID
    ("X:S3", "司马子轩", "男", "1980-05-06", SON, "13900000014", ADDR),
    ("X:Q1", "诸葛晓晴", "女", "1982-11-" + SHEET15[12:14], SHEET_TRUE, "13900000021", ADDR2),
    ("X:Q2", "诸葛晓晴", "女", "1982-11-" + SHEET15[12:14], SHEET_FORM, "13900000021", ADDR2),
    ("X:Q3", "诸葛晓晴", "女", "1982-11-" + SHEET15[12:14], SHEET_TRUE, "13900000022", ADDR2),
]
COLUMNS = ["record_key", "name", "sex", "birth_date", "id_number", "phone", "address"]


def standardised(rows: list[tuple]) -> pl.DataFrame:
    return standardise_persons(pl.DataFrame(rows, schema=COLUMNS, orient="row"))


@pytest.fixture(scope="module")
def person() -> EntitySettings:
    return load_resolution(None).entity("person")


@pytest.fixture(scope="module")
def records() -> pl.DataFrame:
    raw, _ = simulate_person_records(rows=6000, seed=11, stations=12)
    injected = pl.DataFrame(INJECTED, schema=COLUMNS, orient="row")
    raw = pl.concat([raw, injected], how="diagonal_relaxed")
    return standardise_persons(raw)


@pytest.fixture(scope="module")
def clusters(records: pl.DataFrame, person: EntitySettings) -> dict[str, str]:
    out = resolve(records, person).clusters.filter(pl.col("record_key").str.starts_with("X:"))
    return dict(out.iter_rows())


def test_sichuan_era_upgraded_id_links_to_the_current_one(
    records: pl.DataFrame, person: EntitySettings, clusters: dict[str, str]
) -> None:
    p2 = records.filter(pl.col("record_key") == "X:P2").row(0, named=True)
    assert p2["id_upgraded"] and p2["id_valid"]  # valid by construction: we computed its check digit
    assert clusters["X:P1"] == clusters["X:P2"] == clusters["X:P3"]
    # Before: the guard took both for check-digit-valid IDs and refused the link.
    old = person.model_copy(update={"constraints": Constraints(
        distinct_valid=(DistinctValid(column="id_number", valid_flag="id_valid"),))})
    before = dict(resolve(records, old).clusters.filter(pl.col("record_key").str.starts_with("X:P")).iter_rows())
    assert before["X:P2"] != before["X:P1"]


def test_relative_id_neither_guards_nor_links_to_the_relative(
    records: pl.DataFrame, person: EntitySettings, clusters: dict[str, str]
) -> None:
    guard = guard_records(records.filter(pl.col("record_key").str.starts_with("X:")), person)
    trusted = dict(guard.select("record_key", "id_trusted").iter_rows())
    assert trusted["X:S2"] is False and trusted["X:S1"] is True and trusted["X:F1"] is True
    assert clusters["X:S1"] == clusters["X:S2"] == clusters["X:S3"]
    assert clusters["X:F1"] == clusters["X:F2"] != clusters["X:S2"]
    # the father's ID on the son's record is no evidence either way
    pairs = pl.DataFrame({"left_id": ["X:F1", "X:S1"], "right_id": ["X:S2", "X:S2"]})
    gamma = comparison_vectors(pairs, records, person)["gamma_id_number"].to_list()
    assert gamma == [-1, -1]


def test_spreadsheet_form_is_not_trusted_even_when_its_check_passes(
    records: pl.DataFrame, person: EntitySettings, clusters: dict[str, str]
) -> None:
    assert check(SHEET_FORM[:17]) == SHEET_FORM[17]
    q2 = records.filter(pl.col("record_key") == "X:Q2").row(0, named=True)
    assert q2["id_valid"] is False and q2["id_issue"] == ISSUE_SPREADSHEET
    guard = guard_records(records.filter(pl.col("record_key").is_in(["X:Q1", "X:Q2"])), person)
    assert guard["id_trusted"].to_list() == [True, False]
    pairs = pl.DataFrame({"left_id": ["X:Q1"], "right_id": ["X:Q2"]})
    level = comparison_vectors(pairs, records, person)["gamma_id_number"][0]
    assert person.comparisons[1].levels[level].kind == "id_spreadsheet_15"
    assert clusters["X:Q1"] == clusters["X:Q2"] == clusters["X:Q3"]


def test_a_15_digit_number_is_no_spreadsheet_form() -> None:
    row = standardised([("a", "张三", "男", None, "510202650307000", None, None)]).row(0, named=True)
    assert row["id_upgraded"] and row["id_issue"] != ISSUE_SPREADSHEET


def id_level(person: EntitySettings, a: str, b: str) -> str:
    recs = standardised([("a", "张三", None, None, a, None, None), ("b", "张三", None, None, b, None, None)])
    g = comparison_vectors(pl.DataFrame({"left_id": ["a"], "right_id": ["b"]}), recs, person)["gamma_id_number"][0]
    levels = person.comparisons[1].levels
    return levels[g].kind if 0 <= g < len(levels) else ("else" if g == len(levels) else "null")


def test_id_levels(person: EntitySettings) -> None:
    assert id_level(person, idn("51020219650307123"), idn("50010319650307123")) == "id_region_recoded"
    # chains (510221 -> 500221 -> 500115) and merges (万盛 510216 and 綦江 500222 -> 500110) resolve
    assert id_level(person, idn("51022119700101222"), idn("50011519700101222")) == "id_region_recoded"
    assert id_level(person, idn("51021619700101222"), idn("50022219700101222")) == "id_region_recoded"
    # unknown regions: the rest (birth date, sequence, sex digit) agrees
    assert id_level(person, idn("44030519880808456"), idn("37010219880808456")) == "id_rest_agrees"
    # the rest differs: not these levels
    assert id_level(person, idn("51020219650307123"), idn("50010319650307125")) == "else"


def test_region_groups_include_project_rows(person: EntitySettings) -> None:
    codes, groups = region_groups(person)
    group = dict(zip(codes, groups, strict=True))
    assert group["510202"] == group["500103"] and group["510221"] == group["500115"]
    assert "440305" not in group


def write_config(tmp_path: Path, region_changes: object) -> Path:
    data = yaml.safe_load(default_resolution_path().read_text(encoding="utf-8"))
    data["entities"]["person"]["region_changes"] = region_changes
    path = tmp_path / "resolution.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_project_extends_the_change_table(tmp_path: Path) -> None:
    (tmp_path / "extra.csv").write_text("# ours\nold_code,new_code,since,note\n440305,370102,2030,test\n",
                                        encoding="utf-8")
    path = write_config(tmp_path, ["extra.csv", {"old_code": "110101", "new_code": "120101"}])
    person = load_resolution(path).entity("person")
    assert [(r.old_code, r.new_code) for r in person.region_changes] == [("440305", "370102"), ("110101", "120101")]
    assert id_level(person, idn("44030519880808456"), idn("37010219880808456")) == "id_region_recoded"
    assert person.model_hash() != load_resolution(None).entity("person").model_hash()


@pytest.mark.parametrize(
    ("content", "value", "expected"),
    [
        ("old_code,new_code\n44030,370102\n", "extra.csv", "extra.csv: line 2: old_code '44030' is not a 6-digit"),
        ("code,new\n", "extra.csv", "header must be old_code,new_code"),
        (None, "missing.csv", "missing.csv: file not found"),
        (None, [{"old_code": "1", "new_code": "370102"}], "region_changes.0.old_code"),
    ],
)
def test_bad_change_table_names_file_and_key(tmp_path: Path, content: str | None, value: object, expected: str) -> None:
    if content is not None:
        (tmp_path / "extra.csv").write_text(content, encoding="utf-8")
    path = write_config(tmp_path, value)
    with pytest.raises(ConfigError) as info:
        load_resolution(path)
    message = str(info.value)
    assert str(path) in message and "entities.person.region_changes" in message and expected in message
