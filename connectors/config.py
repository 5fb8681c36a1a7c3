"""The `stations.yaml` contract: what a data engineer writes to onboard a station system.

Validated at the edge with pydantic so that a bad config fails before any data moves, and the
error names the file, the key path and what was expected (see `load_stations`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.errors import ConfigError
from entity_resolution.config import format_validation_error, load_yaml

EntityType = Literal["person", "organisation"]
SourceKind = Literal["csv", "tsv", "jsonl", "xlsx", "sql"]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gbk", "gb18030"]

# Canonical raw fields a source column may map to, per entity type. `local_id` is required: it
# makes the record key (station id + local id) that every later stage refers to.
CANONICAL_FIELDS: dict[str, tuple[str, ...]] = {
    "person": (
        "local_id", "name", "sex", "birth_date", "id_number", "phone", "address",
        "area_code", "source_updated_at",
    ),
    "organisation": (
        "local_id", "name", "credit_code", "legal_rep", "phone", "address",
        "area_code", "source_updated_at",
    ),
}

# Every format the simulated (and real) local systems are known to write; stations may narrow it.
DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One export of one station system: a file (or glob of drops) or a SQL table."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    entity: EntityType
    kind: SourceKind
    path: str | None = None  # file or glob, relative to the config folder unless absolute
    encoding: Encoding = "auto"
    delimiter: str | None = None  # csv: default ","; tsv: always "\t"
    header_row: int | Literal["auto"] = "auto"  # 1-based line of the header, or found by its names
    sheet: str | None = None  # xlsx: default the first sheet
    url: str | None = None  # sql: SQLAlchemy URL
    table: str | None = None  # sql: table name
    watermark: str | None = None  # sql: monotonically increasing column for incremental reads
    columns: dict[str, str]  # source header -> canonical field
    # At least one: with none, every date of the station would be flagged unrecognised.
    date_formats: tuple[str, ...] = Field(default=DEFAULT_DATE_FORMATS, min_length=1)
    chunk_rows: int = Field(default=200_000, ge=1)

    @field_validator("header_row", mode="before")
    @classmethod
    def _header_line(cls, v: Any) -> Any:
        """Line 0 or -3 would read the wrong line (or none) as the header; say so at check-config.

        Checked before the type, so a bad value gives one message instead of one per union arm;
        a digit string ("2") stays accepted as it always was.
        """
        if v == "auto":
            return v
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError(f'expected "auto" or the 1-based line of the header (an integer >= 1), got {v!r}')

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("delimiter must be a single character")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> "SourceConfig":
        if self.kind == "sql":
            missing = [k for k in ("url", "table", "watermark") if not getattr(self, k)]
            if missing:
                raise ValueError(f"a sql source needs {', '.join(missing)}")
        elif not self.path:
            raise ValueError(f"a {self.kind} source needs path")
        allowed = CANONICAL_FIELDS[self.entity]
        unknown = sorted(set(self.columns.values()) - set(allowed))
        if unknown:
            raise ValueError(
                f"columns map to unknown canonical field(s) {unknown}; "
                f"expected some of {list(allowed)}"
            )
        targets = list(self.columns.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"several source columns map to {dupes}")
        if "local_id" not in targets:
            raise ValueError("columns must map one source column to local_id")
        return self

    def column_for(self, canonical: str) -> str | None:
        return next((src for src, dst in self.columns.items() if dst == canonical), None)


class StationConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    name: str
    jurisdiction: tuple[str, ...] = Field(min_length=1)  # area-code prefixes
    sources: tuple[SourceConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_sources(self) -> "StationConfig":
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"station {self.id}: source names must be unique, got {names}")
        return self


class StationsFile(_Strict):
    version: Literal[1] = 1
    stations: tuple[StationConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "StationsFile":
        ids = [s.id for s in self.stations]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"station ids must be unique; repeated: {dupes}")
        return self

    def station(self, station_id: str) -> StationConfig:
        for s in self.stations:
            if s.id == station_id:
                return s
        raise KeyError(station_id)


def config_digest(model: BaseModel) -> str:
    """SHA-256 hex of a config model's canonical JSON (keys sorted): equal exactly when the config
    reads a drop the same way. Batches record their source's digest, station versions include
    the station's, so a config fix can be told apart from "nothing changed"."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_stations(path: Path) -> StationsFile:
    data = load_yaml(path, ConfigError)
    try:
        return StationsFile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(path, err)) from None
