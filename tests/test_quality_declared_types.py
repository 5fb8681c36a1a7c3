"""Quality for any declared entity type, without code: suites are data (quality/defaults/suites.yaml
for the bundled types, derived from the registry for every other), and a type declared only in a
project's entity_types.yaml gets standardised and golden suites, Great Expectations results and
correction tasks from its declaration. The bundled types' suites keep their expectation ids."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from core.errors import ConfigError
from entity_resolution.entity_types import load_registry, standardise
from entity_resolution.standardise.id_numbers import id_check_char
from quality.config import QualityConfig, parse_quality
from quality.corrections import expectation_tasks, golden_disagreements, own_check_tasks, valid_value
from quality.frames import golden_frame, standardised_frame
from quality.service import parameters
from quality.suites import known_expectation_ids, parse_suites, registry_quality, type_quality
from quality.validate import GxProject

TODAY = dt.date(2026, 11, 30)
PARAMS = parameters(QualityConfig(), TODAY)
MEMBERS = """\
version: 1
types:
  member:
    description: Club members
    fields:
      local_id: {type: text, required: true}
      full_name: {type: text, required: true}
      joined: {type: date, formats: ["%Y-%m-%d"]}
      card: {type: text, standardiser: id_number}
      phone: {type: text, standardiser: phone}
    id_prefix: M
    golden_fields: [full_name, joined, card, phone]
    evidence_columns: [card, card_valid, card_issue, card_upgraded]
    code: {column: card, valid_flag: card_valid, label: card numbers}
"""


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


GOOD = valid_id("50010619900307122")
OTHER = valid_id("11010519491231002")
BROKEN = GOOD[:17] + ("0" if GOOD[17] != "0" else "1")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("members")
    (folder / "entity_types.yaml").write_text(MEMBERS, encoding="utf-8")
    return load_registry(folder)


@pytest.fixture(scope="module")
def gx(tmp_path_factory: pytest.TempPathFactory) -> GxProject:
    return GxProject(tmp_path_factory.mktemp("quality"))


def failing(v) -> dict[str, set[str]]:
    return {e: set(g["key"].to_list()) for (e,), g in v.failures.group_by("expectation_id")}


def records(registry, rows: list[dict]) -> pl.DataFrame:
    """The member type's standardised records, by the library's standardisers (as ingest does)."""
    raw = pl.DataFrame(rows, schema={k: pl.String for k in ("local_id", "full_name", "joined", "card", "phone")})
    out = standardise(raw, registry["member"], today=TODAY)
    return out.with_columns(pl.concat_str(pl.lit("s1:"), "local_id").alias("record_key"),
                            pl.lit("s1").alias("station_id"), pl.lit("b1").alias("batch_id"))


def test_bundled_suites_keep_their_expectation_ids() -> None:
    q = registry_quality()
    assert q["person"].declared and q["organisation"].declared
    assert [e.id for e in q["person"].standardised.expectations] == [
        "completeness.name", "completeness.sex", "completeness.birth_date", "completeness.id_number",
        "completeness.area_code", "validity.id_number", "validity.birth_date.plausible", "validity.phone",
        "validity.area_code", "consistency.birth_date", "consistency.sex", "uniqueness.local_id"]
    assert [e.id for e in q["organisation"].standardised.expectations] == [
        "completeness.name", "completeness.credit_code", "completeness.legal_rep", "completeness.area_code",
        "validity.credit_code", "validity.credit_code.format", "validity.phone", "validity.area_code",
        "uniqueness.local_id"]
    assert [e.id for e in q["person"].golden.expectations] == [
        "completeness.name_norm", "completeness.birth_date", "completeness.id_number", "validity.id_number",
        "validity.birth_date.plausible", "validity.phone", "uniqueness.id_number"]
    assert (q["person"].standardised.name, q["person"].golden.name) == ("person_records", "golden_person")
    # tasks derived from the ID number, read from the declaration
    assert {e.id: e.task.derived_from for e in q["person"].derived} == {
        "consistency.birth_date": "id_number", "consistency.sex": "id_number"}
    ev = q["person"].id_evidence["id_number"]
    assert (ev.valid, ev.birth_date, ev.stated_birth_date, ev.stated_sex) == ("id_valid", "id_birth_date",
                                                                              "birth_date", "sex")


def test_every_registered_type_without_a_declaration_gets_derived_suites() -> None:
    """Bundled types not in suites.yaml (dwelling, added by config alone) get suites too."""
    for t in load_registry():
        q = type_quality(t)
        assert q.standardised.name == f"{t.name}_records" and q.standardised.expectations
        if not q.declared:
            assert q.golden is not None and q.golden.name == f"golden_{t.name}"


def test_a_yaml_declared_type_gets_suites_from_its_declaration(registry) -> None:
    q = type_quality(registry["member"])
    assert not q.declared
    assert [e.id for e in q.standardised.expectations] == [
        "completeness.full_name", "validity.joined", "validity.card", "validity.phone", "uniqueness.local_id"]
    card = next(e for e in q.standardised.expectations if e.id == "validity.card")
    assert card.kwargs["column"] == "card_valid" and card.task.field == "card" and card.task.issue_column == "card_issue"
    assert [e.id for e in q.golden.expectations] == ["completeness.full_name", "validity.card", "uniqueness.card"]
    assert {f: c.kind for f, c in q.values.items()} == {"joined": "date", "card": "id_number", "phone": "pattern"}


def test_a_yaml_declared_type_is_validated_and_gets_tasks(registry, gx: GxProject) -> None:
    q = type_quality(registry["member"])
    recs = records(registry, [
        {"local_id": "1", "full_name": "Ann Lee", "joined": "2020-01-02", "card": GOOD, "phone": "13812345678"},
        {"local_id": "2", "full_name": None, "joined": "2020-13-45", "card": BROKEN, "phone": "12"},
        {"local_id": "3", "full_name": "Bo Chan", "joined": None, "card": None, "phone": None},
    ])
    # s1:3 has no card: completeness's business (not required here), not a validity failure
    assert recs.filter(pl.col("record_key") == "s1:3")["card_valid"].to_list() == [False]
    v = gx.validate(standardised_frame(recs, q), q.standardised, label="members", parameters=PARAMS)
    assert failing(v) == {"completeness.full_name": {"s1:2"}, "validity.joined": {"s1:2"},
                          "validity.card": {"s1:2"}, "validity.phone": {"s1:2"}}
    tasks = expectation_tasks(v.failures, recs, q.standardised, station_id="s1", batch_id="b1", today=TODAY,
                              quality=q)
    assert set(tasks["field"]) == {"joined", "card", "phone"} and set(tasks["record_key"]) == {"s1:2"}
    assert (tasks["entity_type"] == "member").all() and tasks["expected_value"].is_null().all()
    card = tasks.filter(pl.col("field") == "card").row(0, named=True)
    assert card["station_value"] == BROKEN and card["reason"].startswith("card is not a usable value: ")
    # the golden pass finds the same problems on member records by itself: the same task ids
    own = own_check_tasks(recs, "member", today=TODAY, quality=q)
    assert set(own["task_id"]) == set(tasks["task_id"])


def test_a_yaml_declared_types_golden_suite_and_golden_tasks(registry, gx: GxProject) -> None:
    t = registry["member"]
    q = type_quality(t)

    def rec(**v) -> str:
        return json.dumps({"full_name": "Ann Lee", "joined": "2020-01-02", "phone": "13812345678", **v})

    active = pl.DataFrame({"entity_id": ["M1", "M2", "M3", "M4"], "record": [
        rec(card=GOOD), rec(card=GOOD), rec(card=BROKEN), rec(card=OTHER, full_name=None)]})
    frame = golden_frame(active, t, today=TODAY)
    assert frame.schema["joined"] == pl.Date  # declared a date: decoded as one
    v = gx.validate(frame, q.golden, label="golden_members", parameters=PARAMS)
    assert failing(v) == {"uniqueness.card": {"M1", "M2"}, "validity.card": {"M3"}, "completeness.full_name": {"M4"}}

    # a station's broken card, where two other stations give the golden record's valid one
    members = records(registry, [{"local_id": "1", "full_name": "Ann Lee", "card": BROKEN}]).with_columns(
        pl.lit("M1").alias("entity_id"))
    others = pl.concat([records(registry, [{"local_id": str(i), "full_name": "Ann Lee", "card": GOOD}]).with_columns(
        pl.lit("M1").alias("entity_id"), pl.lit(f"s{i}").alias("station_id"),
        pl.lit(f"s{i}:{i}").alias("record_key")) for i in (2, 3)], how="vertical_relaxed")
    members = pl.concat([members, others.select(members.columns)], how="vertical_relaxed")
    golden = pl.DataFrame({"entity_id": ["M1"], "card": [GOOD], "full_name": ["Ann Lee"]})
    found = golden_disagreements(members, golden, ["full_name", "card"], entity_type="member", today=TODAY, quality=q)
    assert found.select("record_key", "field", "station_value", "expected_value").rows() == [
        ("s1:1", "card", BROKEN, GOOD)]
    assert "This record's card fails validation." in found["evidence"][0]


def test_value_checks_come_from_the_declaration(registry) -> None:
    q = type_quality(registry["member"])
    values = pl.Series([GOOD, BROKEN, None])
    got = pl.select(valid_value("card", pl.lit(values), today=TODAY, check=q.check("card"))).to_series().to_list()
    assert got == [True, False, False]
    # a field without a check is any non-empty text
    got = pl.select(valid_value("full_name", pl.lit(pl.Series(["Ann", " "])), check=q.check("full_name"))).to_series()
    assert got.to_list() == [True, False]


def test_suite_declarations_are_validated_naming_the_file_and_key() -> None:
    bad = {"version": 1, "patterns": {"p": "("},
           "types": {"x": {"standardised": {"expectations": [
               {"not_null": "a", "is_true": "b", "what": "a"},
               {"id": "validity.c", "matches": "c", "pattern": "nosuch", "description": "c"},
               {"unique": "d"}]}}}}
    with pytest.raises(ConfigError) as err:
        parse_suites(bad, "suites.yaml")
    text = str(err.value)
    assert text.startswith("suites.yaml: invalid quality suites")
    assert "patterns: p: not a regular expression" in text
    assert "types.x.standardised.expectations.0: give exactly one of" in text
    assert "types.x.standardised.expectations.2: unique needs an `id` and a `description`" in text
    with pytest.raises(ConfigError, match="unknown pattern 'nosuch'"):
        parse_suites({"patterns": {}, "types": {"x": {"standardised": {"expectations": [
            {"id": "validity.c", "matches": "c", "pattern": "nosuch", "description": "c"}]}}}}, "suites.yaml")


def test_thresholds_may_name_the_bundled_types_expectations() -> None:
    known = known_expectation_ids()
    assert {"validity.id_number", "validity.credit_code.format", "freshness.last_drop"} <= set(known)
    parse_quality({"thresholds": {"expectations": {"validity.credit_code.format": 0.5}}})
    with pytest.raises(ConfigError, match="validity.nosuch: unknown expectation id"):
        parse_quality({"thresholds": {"expectations": {"validity.nosuch": 0.5}}}, source=Path("quality.yaml"))


def test_golden_task_fields_default_to_each_types_correction_fields(registry) -> None:
    fields = QualityConfig().corrections.fields_of(registry)
    assert fields["member"] == ["full_name", "joined", "card", "phone"]
    assert fields["person"] == ["name_norm", "sex", "birth_date", "id_number"]
    own = parse_quality({"corrections": {"golden_fields": {"member": ["card"], "person": []}}})
    assert own.corrections.fields_of(registry)["member"] == ["card"]
    assert own.corrections.fields_of(registry)["person"] == []
