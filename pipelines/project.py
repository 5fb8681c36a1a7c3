"""The project folder a user points us at: its config, its data folder and its warehouse.

Everything is loaded and validated here, before any data moves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectors.config import StationsFile, load_stations
from connectors.errors import ConfigError
from entity_resolution.config import ConfigError as ResolutionConfigError
from entity_resolution.config import ResolutionConfig, load_resolution

DEMO_DIR = Path("data") / "demo"
DEMO_SIZE = {"stations": 12, "persons": 6000, "seed": 20261126}


def default_config_dir() -> Path:
    return Path(os.environ.get("ENTERONCE_CONFIG") or DEMO_DIR)


@dataclass(frozen=True)
class Project:
    config_dir: Path
    data_dir: Path
    warehouse_url: str
    stations: StationsFile
    resolution: ResolutionConfig

    @classmethod
    def load(cls, config_dir: Path | str | None = None, warehouse_url: str | None = None) -> "Project":
        config_dir = Path(config_dir) if config_dir else default_config_dir()
        config_dir = config_dir.resolve()
        if not config_dir.is_dir():
            raise ConfigError(f"{config_dir}: config folder not found (set --config or ENTERONCE_CONFIG)")
        stations = load_stations(config_dir / "stations.yaml")
        own = config_dir / "resolution.yaml"
        try:
            resolution = load_resolution(own if own.exists() else None)
        except ResolutionConfigError as exc:
            raise ConfigError(str(exc)) from None
        data_dir = Path(os.environ.get("ENTERONCE_DATA_DIR") or config_dir / "data").resolve()
        url = warehouse_url or os.environ.get("ENTERONCE_WAREHOUSE_URL") or f"sqlite:///{data_dir / 'warehouse.sqlite'}"
        return cls(config_dir=config_dir, data_dir=data_dir, warehouse_url=url, stations=stations,
                   resolution=resolution)

    @property
    def station_ids(self) -> list[str]:
        return [s.id for s in self.stations.stations]
