"""`quality.yaml`: which suites run, the thresholds that hold a batch, what becomes a task.

Validated with pydantic at the edge; errors name the file and the key, like the other configs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.errors import ConfigError
from entity_resolution.config import format_validation_error, load_yaml

SuiteKind = Literal["raw", "standardised", "golden", "freshness"]
DEFAULTS = Path(__file__).with_name("defaults") / "quality.yaml"


class Corrections(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_expectations: bool = True
    golden_fields: dict[Literal["person", "organisation"], list[str]] = Field(default_factory=lambda: {
        "person": ["name_norm", "sex", "birth_date", "id_number"],
        "organisation": ["name_norm", "credit_code", "legal_rep_norm"],
    })


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    suites: list[SuiteKind] = Field(default_factory=lambda: ["raw", "standardised", "golden", "freshness"])
    max_invalid_id_rate: float = Field(0.10, ge=0.0, le=1.0)
    hold_unreconciled: bool = True
    freshness_max_age_days: float = Field(30, gt=0)
    earliest_birth_date: dt.date = dt.date(1900, 1, 1)
    sample_rows: int = Field(10, ge=0, le=1000)
    data_docs: bool = True
    corrections: Corrections = Field(default_factory=Corrections)

    def runs(self, kind: SuiteKind) -> bool:
        return kind in self.suites


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
    return parse_quality(load_yaml(path, ConfigError), source=path)


def project_quality(config_dir: Path) -> QualityConfig:
    """`<config_dir>/quality.yaml` if the project has one, else the defaults."""
    own = Path(config_dir) / "quality.yaml"
    return load_quality(own if own.exists() else None)
