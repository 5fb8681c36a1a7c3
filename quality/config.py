"""`quality.yaml`: which suites run, the thresholds that hold a batch, what becomes a task.

Validated with pydantic at the edge; errors name the file and the key, like the other configs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator

from core.config import StrictConfig, format_validation_error, load_yaml
from core.errors import ConfigError

SuiteKind = Literal["raw", "standardised", "golden", "freshness"]
DEFAULTS = Path(__file__).with_name("defaults") / "quality.yaml"


class Corrections(StrictConfig):
    from_expectations: bool = True
    # entity type (core.entity_types) -> golden fields that correction tasks compare with the
    # stations' values; a registered type not named here compares its registry
    # `correction_fields` (an empty list: no golden-record tasks for that type)
    golden_fields: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], list[str]] = Field(
        default_factory=dict)

    def fields_of(self, types) -> dict[str, list[str]]:
        """entity type -> the golden fields its correction tasks compare, for every type of
        `types` (a core.entity_types.Registry)."""
        return {t.name: list(self.golden_fields.get(t.name, t.correction_fields)) for t in types}


class Thresholds(StrictConfig):
    """The share of a batch's rows that must meet an expectation for it to pass (GX's `mostly`):
    a default per dimension, and overrides by expectation id (the suites of quality.suites:
    raw, freshness, and those of the bundled entity types)."""

    completeness: float = Field(0.95, ge=0.0, le=1.0)
    validity: float = Field(0.90, ge=0.0, le=1.0)
    consistency: float = Field(0.95, ge=0.0, le=1.0)
    uniqueness: float = Field(1.0, ge=0.0, le=1.0)
    freshness: float = Field(1.0, ge=0.0, le=1.0)
    expectations: dict[str, float] = Field(default_factory=lambda: {"validity.phone": 0.85})

    @field_validator("expectations")
    @classmethod
    def _known_ids(cls, value: dict[str, float]) -> dict[str, float]:
        from quality.suites import known_expectation_ids

        known = known_expectation_ids()
        problems = [f"{key}: unknown expectation id (known: {', '.join(known)})" for key in value if key not in known]
        problems += [f"{key}: {rate!r} is not a share between 0 and 1" for key, rate in value.items()
                     if key in known and not 0.0 <= rate <= 1.0]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def of(self, expectation_id: str, dimension: str) -> float:
        """The threshold of one expectation: its override, else its dimension's default."""
        if expectation_id in self.expectations:
            return self.expectations[expectation_id]
        return getattr(self, dimension)


class QualityConfig(StrictConfig):
    version: Literal[1] = 1
    suites: list[SuiteKind] = Field(default_factory=lambda: ["raw", "standardised", "golden", "freshness"])
    max_invalid_id_rate: float = Field(0.10, ge=0.0, le=1.0)
    # ... and only with at least this many invalid codes: one bad credit code among a station's 4 new
    # organisations is a typing slip (a task), not a broken export to stop
    min_invalid_ids_to_hold: int = Field(3, ge=1)
    # an expectation below its threshold fails a batch only with at least this many failing rows
    min_failing_rows: int = Field(3, ge=1)
    hold_unreconciled: bool = True
    freshness_max_age_days: float = Field(30, gt=0)
    # a correction task open longer than this is overdue (supervision; a reminder in the station's feed)
    tasks_sla_days: float = Field(14, gt=0, le=3650)
    earliest_birth_date: dt.date = dt.date(1900, 1, 1)
    sample_rows: int = Field(10, ge=0, le=1000)
    data_docs: bool = True
    corrections: Corrections = Field(default_factory=Corrections)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    def runs(self, kind: SuiteKind) -> bool:
        return kind in self.suites

    def thresholds_of(self, suite) -> dict[str, float]:
        """Expectation id -> threshold for every expectation of a `quality.suites.SuiteSpec`."""
        return {e.id: self.thresholds.of(e.id, e.dimension) for e in suite.expectations}


def parse_quality(data: object, *, source: Path | str = "<quality config>") -> QualityConfig:
    """Validate already-parsed YAML; `source` names it in errors."""
    if data is None:
        data = {}
    try:
        return QualityConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err, "quality configuration")) from None


def load_quality(path: Path | None = None) -> QualityConfig:
    """The project's `quality.yaml` when given, else the bundled defaults."""
    path = Path(path) if path is not None else DEFAULTS
    return parse_quality(load_yaml(path), source=path)


def project_quality(config_dir: Path) -> QualityConfig:
    """`<config_dir>/quality.yaml` if the project has one, else the defaults."""
    own = Path(config_dir) / "quality.yaml"
    return load_quality(own if own.exists() else None)
