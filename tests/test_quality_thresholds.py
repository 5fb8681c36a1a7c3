"""Checks that mean something: an expectation fails a batch only below its quality.yaml threshold
(GX's `mostly`), its failing rows still become correction tasks, a station's check reports its
latest batch also when a run brings nothing new, and a precision from too few judgements is not
given as a figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from core.errors import ConfigError
from entity_resolution.standardise.id_numbers import id_check_char
from quality.config import QualityConfig, Thresholds, load_quality
from quality.report import model
from quality.service import validate_station
from quality.validate import gx_project
from scenario_network import NEW_HOME, Hub, network_with_csv_station, write_drop
from warehouse.quality import QualityStore

STATION = "s9001"


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


def bad_check_digit(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def residents(n: int, bad: int) -> list[dict]:
    """`n` clean residents born 1990-03-07 in 500106, the first `bad` with a failing check digit."""
    rows = []
    for i in range(n):
        # sequence digits never end in 00: "...00" + check digit 0 would be a spreadsheet's "...000"
        number = valid_id(f"50010619900307{i // 90}{i % 90 + 10:02d}")
        rows.append({"local_id": f"L{i:03d}", "name": "张伟", "sex": "男" if i % 2 else "女",
                     "birth_date": "1990-03-07", "id_number": bad_check_digit(number) if i < bad else number,
                     "phone": f"136{i:08d}", "address": NEW_HOME, "area_code": "500106001001",
                     "source_updated_at": "2026-11-20 09:00:00"})
    return rows


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("thresholds"), stations=1, persons=20, seed=11)


def validated(base: Path, tmp_path: Path, url: str, rows: list[dict], config: QualityConfig, name: str = "net"):
    """The test station's one drop, ingested and validated; the store and the person run's results."""
    root = tmp_path / name
    shutil.copytree(base, root)
    hub = Hub(root, url)
    hub.drop(rows)
    hub.ingest(next(s for s in hub.stations.stations if s.id == STATION))
    store = QualityStore(hub.store)
    outcome = validate_station(store, gx_project(root / "data" / "quality"), config, STATION)
    run = next(r for r in outcome.runs if r["suite"] == "person_records")
    results = store.results([run["run_id"]])
    return store, outcome, run, {r["expectation_id"]: r for r in results.iter_rows(named=True)}


def test_one_bad_row_in_200_passes_with_its_rate_and_still_opens_its_task(base_network: Path, tmp_path: Path,
                                                                          warehouse_url: str) -> None:
    store, outcome, run, results = validated(base_network, tmp_path, warehouse_url, residents(200, bad=1),
                                             QualityConfig(data_docs=False))
    assert run["success"] is True and not outcome.held
    ids = results["validity.id_number"]
    assert ids["success"] and ids["unexpected_count"] == 1 and ids["element_count"] == 200
    assert json.loads(ids["observed_value"]) == {"pass_rate": 0.995, "threshold": 0.90, "failing_rows": 1}
    assert outcome.tolerated == {"person_records/validity.id_number": 1} and outcome.failures == {}
    tasks = store.tasks(station_ids=[STATION], status="open")
    assert tasks.select("record_key", "field").rows() == [(f"{STATION}:L000", "id_number")]


def test_twenty_percent_invalid_fails_the_batch(base_network: Path, tmp_path: Path) -> None:
    config = QualityConfig(data_docs=False, max_invalid_id_rate=1.0)  # not held: this is about the suite
    store, outcome, run, results = validated(base_network, tmp_path, f"sqlite:///{tmp_path / 'w.sqlite'}",
                                             residents(200, bad=40), config)
    assert run["success"] is False
    ids = results["validity.id_number"]
    assert not ids["success"] and json.loads(ids["observed_value"])["pass_rate"] == 0.8
    failing = [k for k, r in results.items() if not r["success"]]
    assert failing == ["validity.id_number"]
    assert outcome.failures == {"person_records/validity.id_number": 40}
    assert store.tasks(station_ids=[STATION], status="open").height == 40


def test_a_slip_in_a_small_batch_is_a_task_not_a_failed_batch(base_network: Path, tmp_path: Path) -> None:
    """1 bad ID in 4 is 75 % < 90 %, but one slip says nothing about the export: under
    min_failing_rows the batch passes (marked tolerated) and the row gets its task; 3 bad in 10 fail."""
    config = QualityConfig(data_docs=False, max_invalid_id_rate=1.0)
    assert config.min_failing_rows == 3
    store, outcome, run, results = validated(base_network, tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                                             residents(4, bad=1), config)
    ids = results["validity.id_number"]
    assert run["success"] is True and ids["success"]
    assert json.loads(ids["observed_value"])["tolerated"].startswith("fewer than min_failing_rows")
    assert store.tasks(station_ids=[STATION], status="open")["record_key"].to_list() == [f"{STATION}:L000"]
    _, _, run, results = validated(base_network, tmp_path, f"sqlite:///{tmp_path / 't.sqlite'}",
                                   residents(10, bad=3), config, name="three")
    assert run["success"] is False and not results["validity.id_number"]["success"]


def test_a_per_expectation_override_takes_effect(base_network: Path, tmp_path: Path) -> None:
    lenient = QualityConfig(data_docs=False, max_invalid_id_rate=1.0,
                            thresholds=Thresholds(expectations={"validity.id_number": 0.75}))
    assert lenient.thresholds.of("validity.id_number", "validity") == 0.75
    assert lenient.thresholds.of("validity.phone", "validity") == 0.90  # its own override replaced: the default
    _, _, run, results = validated(base_network, tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}",
                                   residents(200, bad=40), lenient)
    assert run["success"] is True
    assert json.loads(results["validity.id_number"]["observed_value"])["threshold"] == 0.75
    strict = QualityConfig(data_docs=False, thresholds=Thresholds(expectations={"validity.id_number": 1.0}))
    _, _, run, results = validated(base_network, tmp_path, f"sqlite:///{tmp_path / 'b.sqlite'}",
                                   residents(200, bad=1), strict, name="strict")
    assert run["success"] is False and not results["validity.id_number"]["success"]
    assert results["consistency.birth_date"]["success"]  # other expectations keep their defaults


def test_defaults_and_bad_config_name_the_file_and_key(tmp_path: Path) -> None:
    defaults = load_quality()
    assert defaults == QualityConfig(tasks_sla_days=defaults.tasks_sla_days)  # the YAML and the model agree
    assert (defaults.thresholds.completeness, defaults.thresholds.uniqueness) == (0.95, 1.0)
    path = tmp_path / "quality.yaml"
    path.write_text("thresholds:\n  validity: 1.5\n  completness: 0.9\n  expectations:\n"
                    "    validity.id_numbr: 0.8\n    validity.phone: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_quality(path)
    text = str(err.value)
    assert str(path) in text
    assert "thresholds.validity: Input should be less than or equal to 1" in text
    assert "thresholds.completness: unknown key" in text
    assert "thresholds.expectations: validity.id_numbr: unknown expectation id" in text
    assert "validity.phone: 2.0 is not a share between 0 and 1" in text


def test_station_check_after_a_run_with_nothing_new_reports_the_latest_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.project import Project
    from pipelines.runner import materialize_project

    root = network_with_csv_station(tmp_path / "proj", stations=1, persons=20, seed=5)
    config = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    config["stations"] = [s for s in config["stations"] if s["id"] == STATION]
    (root / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    (root / "quality.yaml").write_text("max_invalid_id_rate: 1.0\ndata_docs: false\n", encoding="utf-8")
    write_drop(root, STATION, residents(50, bad=10))  # 20 % invalid ID numbers
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("ENTERONCE_WAREHOUSE_URL", raising=False)
    project = Project.load(root)

    def suite_check() -> tuple[bool, dict]:
        results = materialize_project(project, [STATION])
        found = [(e.passed, e.metadata) for r in results for e in r.get_asset_check_evaluations()
                 if e.check_name == "standardised_suite" and e.asset_key.to_user_string() == "person_records"]
        assert len(found) == 1
        return found[0]

    passed, meta = suite_check()
    assert not passed and meta["batches_validated"].value == 1
    assert meta["below_threshold"].value["validity.id_number"] == {"pass_rate": 0.8, "threshold": 0.9,
                                                                   "failing_rows": 10}
    batch = meta["batch"].value
    passed, meta = suite_check()  # nothing new: the latest batch's stored result, still failed
    assert not passed and meta["batches_validated"].value == 0
    assert meta["batch"].value == batch and meta["result"].value.startswith("nothing new validated")
    assert meta["failing_expectations"].value == {"validity.id_number": 10}


def test_precision_from_one_judgement_is_too_few() -> None:
    judged = pl.DataFrame({"entity_type": ["person"], "decision": ["match"], "verdict": ["different"],
                           "pairs": [1]})
    row = model.precision_estimates(judged).row(0, named=True)
    assert (row["judged"], row["share"], row["low"], row["high"], row["needed"]) == (1, None, None, None, 30)
    headline = model.link_precision(model.precision_estimates(judged))
    assert model.describe_precision(headline) == "too few judgements (1 of 30 needed)"
    many = pl.DataFrame({"entity_type": ["person"] * 2, "decision": ["match"] * 2, "verdict": ["same", "different"],
                         "pairs": [27, 3]})
    assert model.describe_precision(model.link_precision(model.precision_estimates(many))).startswith("90.0 % (95 % CI")
    assert model.describe_precision(None) == "no judgements yet"
