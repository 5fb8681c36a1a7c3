"""The one Dagster code location of enteronce."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.assets import ingest_job, station_records
from pipelines.automation import publication_sensor
from pipelines.feed_assets import FEED_ASSETS, FEED_SENSORS
from pipelines.golden_assets import GOLDEN_ASSETS
from pipelines.project import default_config_dir
from pipelines.quality_assets import QUALITY_ASSETS, data_quality
from pipelines.report_assets import REPORT_ASSETS
from pipelines.resolution_assets import RESOLUTION_ASSETS
from pipelines.resources import ProjectResource
from pipelines.sensors import station_drops_sensor


def project_resource() -> ProjectResource:
    """Configured from ENTERONCE_CONFIG / ENTERONCE_WAREHOUSE_URL, defaulting to the demo network."""
    config_dir = dg.EnvVar("ENTERONCE_CONFIG") if os.environ.get("ENTERONCE_CONFIG") else str(default_config_dir())
    url = dg.EnvVar("ENTERONCE_WAREHOUSE_URL") if os.environ.get("ENTERONCE_WAREHOUSE_URL") else ""
    return ProjectResource(config_dir=config_dir, warehouse_url=url)


defs = dg.Definitions(
    assets=[station_records, *RESOLUTION_ASSETS, *GOLDEN_ASSETS, *QUALITY_ASSETS, *FEED_ASSETS, *REPORT_ASSETS],
    jobs=[ingest_job],
    sensors=[station_drops_sensor, publication_sensor(*RESOLUTION_ASSETS, *GOLDEN_ASSETS, data_quality, *REPORT_ASSETS),
             *FEED_SENSORS],
    resources={"project": project_resource()},
    # Steps run one after another in the run's own process: they hold the warehouse in turn
    # anyway, and a process per step costs seconds of imports on every drop. Each run is still
    # its own process (or pod, with Dagster's K8s or Celery run launchers in dagster.yaml).
    executor=dg.in_process_executor,
)
