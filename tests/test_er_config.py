"""resolution.yaml: the bundled defaults load, and a bad file fails naming the file and the key."""

from __future__ import annotations

import copy
from pathlib import Path

import polars as pl
import pytest
import yaml

from entity_resolution.blocking import prepare
from core.errors import ConfigError
from entity_resolution.config import (
    EntitySettings,
    ResolutionConfig,
    default_resolution_path,
    load_resolution,
)


@pytest.fixture(scope="module")
def default_data() -> dict:
    return yaml.safe_load(default_resolution_path().read_text(encoding="utf-8"))


def write(tmp_path: Path, data: object, name: str = "resolution.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def error_for(tmp_path: Path, data: object) -> str:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_resolution(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_defaults_load_with_four_entity_types() -> None:
    cfg = load_resolution(None)
    assert isinstance(cfg, ResolutionConfig)
    assert cfg.version == 1
    assert set(cfg.entities) == {"person", "organisation", "person_en", "dwelling"}
    person = cfg.entity("person")
    assert isinstance(person, EntitySettings)
    assert person.unique_id == "record_key"
    assert [r.name for r in person.blocking.rules] == [
        "id_number", "id_15_digit_form", "id_rest", "phone", "name_pinyin_birth_date", "surname_birth_date_district",
        "name_phone", "name_building"]
    assert [c.name for c in person.comparisons] == ["name", "id_number", "birth_date", "sex", "contact"]
    assert person.thresholds.review < person.thresholds.match
    assert person.constraints.distinct_valid[0].column == "id_number"
    assert person.constraints.distinct_valid[0].valid_flag == "id_trusted"  # derived: see test_id_evidence
    assert person.estimation.u_sample_pairs == 1_000_000
    name = person.comparisons[0]
    assert name.term_frequency
    assert [lv.kind for lv in name.levels] == ["exact", "exact", "jaro_winkler", "jaro_winkler"]
    assert name.levels[1].column == "name_pinyin"
    assert name.labels()[-1] == "else"
    org = cfg.entity("organisation")
    assert org.constraints.distinct_valid[0].valid_flag == "credit_code_valid"


def test_unknown_entity_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no entity 'vehicle'"):
        load_resolution(None).entity("vehicle")


def test_unknown_key_names_file_and_key_path(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    data["entities"]["person"]["blocking"]["rulez"] = []
    message = error_for(tmp_path, data)
    assert "entities.person.blocking.rulez: unknown key" in message


def test_bad_level_kind_names_the_level_and_the_allowed_kinds(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    data["entities"]["person"]["comparisons"][0]["levels"][2]["kind"] = "soundex"
    message = error_for(tmp_path, data)
    assert "entities.person.comparisons.0.levels.2.kind" in message
    assert "'soundex'" in message and "jaro_winkler" in message


def test_review_not_below_match(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    data["entities"]["organisation"]["thresholds"] = {"match": 0.9, "review": 0.9}
    message = error_for(tmp_path, data)
    assert "entities.organisation.thresholds" in message
    assert "review (0.9) must be below match (0.9)" in message


def test_level_parameters_are_checked(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    levels = data["entities"]["person"]["comparisons"][0]["levels"]
    del levels[2]["threshold"]  # jaro_winkler without threshold
    data["entities"]["person"]["comparisons"][2]["levels"][2].pop("days")  # date_within without days
    data["entities"]["person"]["comparisons"][1]["levels"][0]["threshold"] = 0.5  # exact with threshold
    message = error_for(tmp_path, data)
    assert "entities.person.comparisons.0.levels.2: level kind jaro_winkler needs threshold" in message
    assert "entities.person.comparisons.2.levels.2: level kind date_within needs days" in message
    assert "entities.person.comparisons.1.levels.0: level kind exact takes no threshold" in message


def test_bad_derived_sql_and_unknown_training_rule(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    data["entities"]["person"]["derived"]["broken"] = "CASE WHEN THEN"
    data["entities"]["person"]["estimation"]["training_rules"] = ["id_number", "nope"]
    message = error_for(tmp_path, data)
    assert "entities.person.derived: derived column 'broken'" in message
    data["entities"]["person"]["derived"].pop("broken")
    message = error_for(tmp_path, data)
    assert "unknown blocking rule(s) ['nope']" in message


def test_duplicate_names_and_tf_on_fuzzy_first_level(tmp_path: Path, default_data: dict) -> None:
    data = copy.deepcopy(default_data)
    rules = data["entities"]["person"]["blocking"]["rules"]
    rules.append(copy.deepcopy(rules[0]))
    message = error_for(tmp_path, data)
    assert "entities.person.blocking: blocking rule names must be unique; repeated: ['id_number']" in message

    data = copy.deepcopy(default_data)
    data["entities"]["person"]["comparisons"][4]["term_frequency"] = True
    data["entities"]["person"]["comparisons"][4]["levels"] = [{"kind": "levenshtein", "threshold": 1}]
    message = error_for(tmp_path, data)
    assert "entities.person.comparisons.4: term_frequency needs the first level to be exact" in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_resolution(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nentities: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_resolution(bad)
    wrong_version = write(tmp_path, {"version": 2, "entities": {}}, "v2.yaml")
    with pytest.raises(ConfigError) as info:
        load_resolution(wrong_version)
    assert "version: Input should be 1 (got 2)" in str(info.value)


def test_model_hash_follows_comparisons_not_thresholds() -> None:
    person = load_resolution(None).entity("person")
    relaxed = person.model_copy(update={"thresholds": person.thresholds.model_copy(update={"match": 0.8})})
    assert relaxed.model_hash() == person.model_hash()
    fewer = person.model_copy(update={"comparisons": person.comparisons[:-1]})
    assert fewer.model_hash() != person.model_hash()


def test_records_lacking_a_configured_column_fail_naming_where_it_is_used() -> None:
    person = load_resolution(None).entity("person")
    records = pl.DataFrame({"record_key": ["a"], "name_norm": ["张伟"]})
    with pytest.raises(ConfigError) as info:
        prepare(records, person)
    message = str(info.value)
    assert "'name_pinyin' (used at blocking.rules.4.keys)" in message
    assert "'sex' (used at comparisons.3.column)" in message
