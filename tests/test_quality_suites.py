"""Each suite catches what it should: real Great Expectations runs on small crafted frames.

GX is slow to import and to set up, so one GX project serves the whole module.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from quality.config import QualityConfig
from quality.frames import freshness_frame, golden_frame
from quality.service import parameters
from entity_resolution.entity_types import load_registry
from quality.suites import FRESHNESS, RAW, type_quality
from quality.validate import GxProject

# The bundled types' suites, as quality/defaults/suites.yaml declares them.
REGISTRY = load_registry()
PERSONS = type_quality(REGISTRY["person"]).standardised
ORGANISATIONS = type_quality(REGISTRY["organisation"]).standardised
GOLDEN_PERSONS = type_quality(REGISTRY["person"]).golden

TODAY = dt.date(2026, 11, 26)
PARAMS = parameters(QualityConfig(), TODAY)


@pytest.fixture(scope="module")
def gx(tmp_path_factory: pytest.TempPathFactory) -> GxProject:
    return GxProject(tmp_path_factory.mktemp("quality"))


def person(key: str, **over) -> dict:
    base = {"record_key": f"s1:{key}", "local_id": key, "name": "张伟", "sex": "M",
            "birth_date": dt.date(1990, 3, 7), "id_number": "110105199003070011", "area_code": "500103001001",
            "id_valid": True, "phone": "13812345678", "id_birth_date": dt.date(1990, 3, 7), "id_sex": "M",
            "id_issue": None}
    return {**base, **over}


def failing(v) -> dict[str, set[str]]:
    return {e: set(g["key"].to_list()) for (e,), g in v.failures.group_by("expectation_id")}


def test_clean_person_batch_passes_every_expectation(gx: GxProject) -> None:
    frame = pl.DataFrame([person("1"), person("2", phone="023-68123456", sex="F", id_sex="F")])
    v = gx.validate(frame, PERSONS, label="clean", parameters=PARAMS)
    assert v.success and v.evaluated == len(PERSONS.expectations) == v.successful
    assert v.failures.height == 0
    assert v.results["unexpected_percent"].max() == 0


def test_person_suite_catches_each_defect_on_the_right_record(gx: GxProject) -> None:
    frame = pl.DataFrame([
        person("ok"),
        person("badid", id_valid=False, id_issue="check digit mismatch"),
        person("old", birth_date=dt.date(1850, 1, 1), id_birth_date=None),
        person("future", birth_date=dt.date(2030, 1, 1), id_birth_date=None),
        person("phone", phone="6812345"),
        person("area", area_code="5001"),
        person("dob", birth_date=dt.date(1990, 3, 8)),
        person("sex", sex="F"),
        person("noname", name=None),
        person("dup1", local_id="dup"),
        person("dup2", local_id="dup"),
        person("noid", id_number=None, id_valid=None, id_birth_date=None, id_sex=None),
    ])
    v = gx.validate(frame, PERSONS, label="defects", parameters=PARAMS)
    assert not v.success
    assert failing(v) == {
        "validity.id_number": {"s1:badid"},
        "validity.birth_date.plausible": {"s1:old", "s1:future"},
        "validity.phone": {"s1:phone"},
        "validity.area_code": {"s1:area"},
        "consistency.birth_date": {"s1:dob"},
        "consistency.sex": {"s1:sex"},
        "completeness.name": {"s1:noname"},
        "completeness.id_number": {"s1:noid"},
        "uniqueness.local_id": {"s1:dup1", "s1:dup2"},
    }
    results = {r["expectation_id"]: r for r in v.results.iter_rows(named=True)}
    assert results["completeness.sex"]["success"] and results["completeness.birth_date"]["success"]
    dob = results["consistency.birth_date"]
    assert dob["dimension"] == "consistency" and dob["unexpected_count"] == 1
    assert json.loads(dob["sample_rows"]) == [{"record_key": "s1:dob", "value": "1990-03-08 ≠ 1990-03-07"}]
    # a missing ID is no invalid ID: validity is judged over the IDs given
    assert results["validity.id_number"]["element_count"] == 12 and results["validity.id_number"]["unexpected_count"] == 1


def test_earliest_birth_date_comes_from_the_config(gx: GxProject) -> None:
    frame = pl.DataFrame([person("1", birth_date=dt.date(1905, 1, 1), id_birth_date=None)])
    lenient = gx.validate(frame, PERSONS, label="lenient", parameters=PARAMS)
    strict = gx.validate(frame, PERSONS, label="strict",
                         parameters=parameters(QualityConfig(earliest_birth_date=dt.date(1910, 1, 1)), TODAY))
    assert "validity.birth_date.plausible" not in failing(lenient)
    assert failing(strict)["validity.birth_date.plausible"] == {"s1:1"}


def test_organisation_and_raw_suites(gx: GxProject) -> None:
    orgs = pl.DataFrame([
        {"record_key": "s1:U1", "local_id": "U1", "name": "甲公司", "credit_code": "91500107MA5U6DY43K",
         "credit_code_valid": True, "legal_rep": "李", "phone": "13812345678", "area_code": "500107"},
        {"record_key": "s1:U2", "local_id": "U2", "name": "乙公司", "credit_code": "91500107MA5U6DY43Y",
         "credit_code_valid": False, "legal_rep": None, "phone": None, "area_code": "500107"},
        {"record_key": "s1:U3", "local_id": "U3", "name": "丙公司", "credit_code": "9150OI07MA5U6DY43K",
         "credit_code_valid": False, "legal_rep": "王", "phone": None, "area_code": "500107"},
    ])
    v = gx.validate(orgs, ORGANISATIONS, label="orgs", parameters=PARAMS)
    assert failing(v) == {"validity.credit_code": {"s1:U2", "s1:U3"}, "validity.credit_code.format": {"s1:U3"},
                          "completeness.legal_rep": {"s1:U2"}}
    raw = pl.DataFrame({"record_key": ["s1:1", "s1:2", "bad", "s1:4"], "local_id": ["1", "2", "2", "4"],
                        "row_hash": ["a", "b", "c", "d"], "payload": ['{"x": "1"}', '{"x": "2"}', '{"x": "3"}', "{}"]})
    v = gx.validate(raw, RAW, label="raw", parameters=PARAMS)
    assert failing(v) == {"uniqueness.local_id": {"s1:2", "bad"}, "validity.record_key": {"bad"},
                          "completeness.payload": {"s1:4"}}


def test_golden_suite_finds_a_valid_id_held_by_two_entities(gx: GxProject) -> None:
    def rec(**v) -> str:
        return json.dumps({"name_norm": "张伟", "sex": "M", "birth_date": "1949-12-31", "phone": "13812345678", **v})

    active = pl.DataFrame({"entity_id": ["P1", "P2", "P3", "P4", "P5"], "record": [
        rec(id_number="11010519491231002X"), rec(id_number="11010519491231002X"),
        rec(id_number="110105194912310021"), rec(id_number="110105194912310021"), rec(id_number=None),
    ]})
    frame = golden_frame(active, REGISTRY["person"], today=TODAY)
    v = gx.validate(frame, GOLDEN_PERSONS, label="golden", parameters=PARAMS)
    found = failing(v)
    # P3 and P4 share an *invalid* number: a validity problem, not two entities for one person
    assert found["uniqueness.id_number"] == {"P1", "P2"}
    assert found["validity.id_number"] == {"P3", "P4"}
    assert found["completeness.id_number"] == {"P5"}


def test_a_suite_over_golden_records_lists_samples_of_its_failing_rows(gx: GxProject) -> None:
    """`complete=False` (the golden suites): the counts and pass rates are over every row, but
    only `samples` failing rows are listed; a station batch (`complete=True`) lists them all."""
    rows = [{"entity_id": f"P{i}", "record": json.dumps({
        "name_norm": "张伟", "sex": "M", "birth_date": "1949-12-31", "id_number": None if i < 6 else f"1101051949123{i:04d}",
        "phone": "13812345678"})} for i in range(20)]
    frame = golden_frame(pl.DataFrame(rows), REGISTRY["person"], today=TODAY)
    summary = gx.validate(frame, GOLDEN_PERSONS, label="golden-summary", parameters=PARAMS, samples=2, complete=False)
    complete = gx.validate(frame, GOLDEN_PERSONS, label="golden-complete", parameters=PARAMS, samples=2)
    for v in (summary, complete):
        row = v.results.filter(pl.col("expectation_id") == "completeness.id_number").row(0, named=True)
        assert row["unexpected_count"] == 6 and row["element_count"] == 20
        assert len(json.loads(row["sample_rows"])) == 2
    assert failing(summary)["completeness.id_number"] == {"P0", "P1"}
    assert failing(complete)["completeness.id_number"] == {f"P{i}" for i in range(6)}


def test_freshness_flags_a_station_whose_last_drop_is_too_old(gx: GxProject) -> None:
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
    drops = pl.DataFrame({"station_id": ["s1", "s2"], "entity_type": ["person", "person"], "batch_id": ["b1", "b2"],
                          "started_at": [now - dt.timedelta(days=2), now - dt.timedelta(days=45)]},
                         schema_overrides={"started_at": pl.Datetime("us", "UTC")})
    v = gx.validate(freshness_frame(drops, now=now), FRESHNESS, label="fresh", parameters=PARAMS)
    assert failing(v) == {"freshness.last_drop": {"s2/person"}}
    assert gx.build_docs().is_file()


def test_an_empty_batch_validates_without_error(gx: GxProject) -> None:
    v = gx.validate(pl.DataFrame([person("1")]).head(0), PERSONS, label="empty", parameters=PARAMS)
    assert v.success and v.failures.height == 0 and v.results.height == len(PERSONS.expectations)


def test_gx_is_not_imported_by_the_code_location() -> None:
    import subprocess
    import sys

    code = ("import sys, pipelines.definitions; "
            "print('great_expectations' in sys.modules)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1], check=True)
    assert out.stdout.strip() == "False"
