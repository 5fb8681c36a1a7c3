"""`quality.yaml`: defaults, validation errors naming file and key, and the CLI's message."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import ConfigError
from connectors.simulate import simulate_network
from quality.config import load_quality, project_quality


def test_bundled_defaults_and_a_project_override(tmp_path: Path) -> None:
    defaults = load_quality()
    assert defaults.max_invalid_id_rate == 0.10 and defaults.freshness_max_age_days == 30
    assert defaults.suites == ["raw", "standardised", "golden", "freshness"]
    from entity_resolution.entity_types import load_registry

    fields = defaults.corrections.fields_of(load_registry())  # each type's registered correction_fields
    assert "birth_date" in fields["person"] and "credit_code" in fields["organisation"]
    assert project_quality(tmp_path) == defaults  # no quality.yaml: the defaults
    (tmp_path / "quality.yaml").write_text(
        "max_invalid_id_rate: 0.02\nsuites: [standardised]\nearliest_birth_date: 1920-01-01\n", encoding="utf-8")
    own = project_quality(tmp_path)
    assert own.max_invalid_id_rate == 0.02 and own.runs("standardised") and not own.runs("golden")
    assert own.earliest_birth_date == dt.date(1920, 1, 1)


def test_errors_name_the_file_and_each_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "quality.yaml"
    path.write_text("max_invalid_id_rate: 1.5\nsuites: [raw, bronze]\nfreshnes_max_age_days: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_quality(path)
    text = str(err.value)
    assert str(path) in text
    assert "max_invalid_id_rate: Input should be less than or equal to 1" in text
    assert "suites.1:" in text and "'bronze'" in text
    assert "freshnes_max_age_days: unknown key" in text
    path.write_text("suites: [raw\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_quality(path)


def test_cli_reports_a_bad_quality_yaml_without_a_traceback(tmp_path: Path) -> None:
    from pipelines.cli import app

    simulate_network(tmp_path, stations=1, persons=20, seed=3)
    (tmp_path / "quality.yaml").write_text("max_invalid_id_rate: -1\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "--config", str(tmp_path)])
    assert result.exit_code == 2
    out = result.output + (result.stderr if hasattr(result, "stderr") else "")
    assert "quality.yaml" in out and "max_invalid_id_rate" in out and "Traceback" not in out
