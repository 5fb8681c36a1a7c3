"""The one Dagster code location of enteronce."""

from __future__ import annotations

import os

import dagster as dg

from functools import lru_cache
from pathlib import Path

from core.entity_types import Registry
from core.errors import ConfigError
from entity_resolution.config import load_resolution
from entity_resolution.entity_types import load_registry
from pipelines.assets import ingest_job
from pipelines.automation import publication_sensor
from pipelines.feed_assets import FEED_SENSORS
from pipelines.project import default_config_dir, resolved_types
from pipelines.registry_assets import project_assets
from pipelines.resources import ProjectResource
from pipelines.sensors import station_drops_sensor


def project_resource() -> ProjectResource:
    """Configured from ENTERONCE_CONFIG / ENTERONCE_WAREHOUSE_URL, defaulting to the demo network."""
    config_dir = dg.EnvVar("ENTERONCE_CONFIG") if os.environ.get("ENTERONCE_CONFIG") else str(default_config_dir())
    url = dg.EnvVar("ENTERONCE_WAREHOUSE_URL") if os.environ.get("ENTERONCE_WAREHOUSE_URL") else ""
    return ProjectResource(config_dir=config_dir, warehouse_url=url)


@lru_cache(maxsize=8)
def definitions_for(registry: Registry) -> dg.Definitions:
    """The code location for a project's entity types: ingest, resolution, golden records and
    quality assets per registered type (pipelines.registry_assets)."""
    a = project_assets(registry)
    return dg.Definitions(
        assets=a.all,
        jobs=[ingest_job],
        sensors=[station_drops_sensor, publication_sensor(*a.resolution, *a.golden, a.data_quality, *a.report),
                 *FEED_SENSORS],
        resources={"project": project_resource()},
        # Steps run one after another in the run's own process: they hold the warehouse in turn
        # anyway, and a process per step costs seconds of imports on every drop. Each run is still
        # its own process (or pod, with Dagster's K8s or Celery run launchers in dagster.yaml).
        executor=dg.in_process_executor,
    )


def _configured_types() -> Registry:
    """The entity types the configured project (ENTERONCE_CONFIG) resolves, else the bundled
    ones; a broken entity_types.yaml is reported when the project is loaded, not here."""
    config = os.environ.get("ENTERONCE_CONFIG")
    if not config:
        return load_registry()
    try:
        own = Path(config) / "resolution.yaml"
        return resolved_types(load_registry(config), load_resolution(own if own.exists() else None))
    except ConfigError:
        return load_registry()


defs = definitions_for(_configured_types())
