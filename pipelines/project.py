"""The project folder a user points us at: its config, its data folder and its warehouse.

Everything is loaded and validated here, before any data moves.

State that belongs to one warehouse (the feeds' outbox, the resolution cache, the report, Great
Expectations' project and Data Docs, copies of rejected drops, the Dagster instance) lives in a
folder of that warehouse's own: the data folder itself for the embedded default warehouse, and
`<data>/warehouses/<name>/` for any other URL. Pointing the same project at another warehouse
therefore never mixes two outboxes or two caches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connectors.config import StationsFile, load_stations
from core.errors import ConfigError
from entity_resolution.config import ResolutionConfig, load_resolution
from entity_resolution.entity_types import EntityType, Registry, load_registry

DEMO_DIR = Path("data") / "demo"
DEMO_SIZE = {"stations": 12, "persons": 6000, "seed": 20261126}
STATE_MARKER = "warehouse.json"
# What a state folder holds on behalf of its warehouse; moved aside if the warehouse is replaced.
AUDIT_JOURNAL = "audit-journal"  # the API's audit rows on their way to the warehouse (feeds.journal)
BOUND_STATE = ("outbox", "cache", "report", "quality", "quarantine", AUDIT_JOURNAL)

log = logging.getLogger("enteronce")


def default_config_dir() -> Path:
    return Path(os.environ.get("ENTERONCE_CONFIG") or DEMO_DIR)


def state_folder_name(url: str) -> str:
    """A readable, collision-free folder name for a warehouse URL (password never part of it)."""
    u = sa.make_url(url)
    readable = "-".join(str(p) for p in (u.get_backend_name(), u.host, u.port, Path(u.database or "").name) if p)
    digest = hashlib.sha256(u.render_as_string(hide_password=True).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', readable)[:80]}-{digest}"


@dataclass(frozen=True)
class Project:
    config_dir: Path
    data_root: Path  # the project's data folder (ENTERONCE_DATA_DIR, default <config>/data)
    data_dir: Path  # this warehouse's state folder (see the module docstring)
    warehouse_url: str
    stations: StationsFile
    resolution: ResolutionConfig
    # The entity types: bundled plus the project's entity_types.yaml (core.entity_types).
    entity_types: Registry

    @classmethod
    def load(cls, config_dir: Path | str | None = None, warehouse_url: str | None = None) -> "Project":
        config_dir = Path(config_dir) if config_dir else default_config_dir()
        config_dir = config_dir.resolve()
        if not config_dir.is_dir():
            raise ConfigError(f"{config_dir}: config folder not found (set --config or ENTERONCE_CONFIG)")
        stations = load_stations(config_dir / "stations.yaml")
        own = config_dir / "resolution.yaml"
        resolution = load_resolution(own if own.exists() else None)
        entity_types = load_registry(config_dir)
        _check_resolution_entities(entity_types, stations, resolution, own)
        data_root = Path(os.environ.get("ENTERONCE_DATA_DIR") or config_dir / "data").resolve()
        embedded = f"sqlite:///{data_root / 'warehouse.sqlite'}"
        url = warehouse_url or os.environ.get("ENTERONCE_WAREHOUSE_URL") or embedded
        try:
            data_dir = data_root if url == embedded else data_root / "warehouses" / state_folder_name(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"warehouse URL {url!r}: {exc}") from None
        return cls(config_dir=config_dir, data_root=data_root, data_dir=data_dir, warehouse_url=url,
                   stations=stations, resolution=resolution, entity_types=entity_types)

    @property
    def pipeline_types(self) -> Registry:
        """The registered types this project resolves (their entity is in resolution.yaml): the
        ones that get resolution, golden-record and quality assets."""
        return resolved_types(self.entity_types, self.resolution)

    @property
    def default_entity_type(self) -> str:
        """The type a command means when it names none (`--entity` without a value): the first
        type this project resolves, else the registry's first (person, for the bundled types)."""
        return (self.pipeline_types.names or self.entity_types.names)[0]

    @property
    def station_ids(self) -> list[str]:
        return [s.id for s in self.stations.stations]

    def open_warehouse(self):
        """The warehouse at head, with its state folder bound to it (see `bind_state`)."""
        from warehouse import Warehouse
        from warehouse.locks import warehouse_lock

        store = Warehouse(self.warehouse_url, cache_dir=self.data_dir / "cache",
                          record_tables=project_record_tables(self.entity_types)).migrate()
        with warehouse_lock(store.engine, "migrate", purpose="bind state folder"):
            bind_state(self.data_dir, store.warehouse_id(), store.display_url)
        return store


def _check_resolution_entities(types: Registry, stations: StationsFile, resolution: ResolutionConfig,
                               path: Path) -> None:
    """Every entity type a station sends must have its entity in resolution.yaml."""
    used = dict.fromkeys(src.entity for st in stations.stations for src in st.sources)
    missing = [f"{name} (entity {types[name].resolution_entity!r})" for name in used
               if types[name].resolution_entity not in resolution.entities]
    if missing:
        where = path if path.exists() else "the bundled resolution.yaml"
        raise ConfigError(f"{where}: no resolution settings for the entity type(s) {', '.join(missing)} "
                          "that stations.yaml sends; add them under `entities`")


def resolved_types(types: Registry, resolution: ResolutionConfig) -> Registry:
    return types.subset([t.name for t in types if t.resolution_entity in resolution.entities])


def project_record_tables(types: Registry) -> dict:
    """entity type -> record table, for the types whose table is no bundled (Alembic) one: the
    lineage columns, the columns its standardisation produces, `issues` (warehouse.schema)."""
    from warehouse.schema import BUNDLED_RECORD_TABLES, record_table

    return {t.name: record_table(t.record_table, _column_kinds(t)) for t in types
            if t.record_table not in BUNDLED_RECORD_TABLES}


def _column_kinds(entity_type: EntityType) -> dict[str, str]:
    import polars as pl

    from entity_resolution.entity_types import output_schema

    def kind(dtype: pl.DataType) -> str:
        if dtype == pl.Date:
            return "date"
        if isinstance(dtype, pl.Datetime):
            return "timestamp"
        if dtype == pl.Boolean:
            return "boolean"
        if dtype.is_integer():
            return "integer"
        if dtype.is_float():
            return "number"
        return "text"

    return {c: kind(t) for c, t in output_schema(entity_type).items()}


def bind_state(data_dir: Path, warehouse_id: str, display_url: str) -> None:
    """Tie a state folder to one warehouse by the id the warehouse keeps (`hub_info`).

    A URL can outlive its database (an SQLite file deleted, a PostgreSQL database re-created):
    the new warehouse starts its outbox at seq 1 again, and files named by seq range would meet
    the old ones. When the id differs, the old warehouse's state is moved aside, whole, into
    `retired/<old id>-<time>/`, never deleted and never mixed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / STATE_MARKER
    mine = {"warehouse_id": warehouse_id, "warehouse": display_url}
    try:
        bound = json.loads(marker.read_text(encoding="utf-8")).get("warehouse_id")
    except (OSError, ValueError):
        bound = None
    if bound == warehouse_id:
        return
    if bound is not None:
        retired = data_dir / "retired" / f"{bound}-{time.strftime('%Y%m%dT%H%M%S')}"
        moved = [name for name in BOUND_STATE if (data_dir / name).exists()]
        for name in moved:
            retired.mkdir(parents=True, exist_ok=True)
            shutil.move(str(data_dir / name), str(retired / name))
        if moved:
            log.warning("%s belonged to another warehouse (id %s); its %s moved to %s",
                        data_dir, bound, ", ".join(moved), retired)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(mine, indent=2) + "\n", encoding="utf-8")
    tmp.replace(marker)
