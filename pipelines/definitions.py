"""The one Dagster code location of enteronce."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.assets import ingest_job, station_records
from pipelines.feed_assets import FEED_ASSETS, FEED_SENSORS
from pipelines.golden_assets import GOLDEN_ASSETS
from pipelines.project import default_config_dir
from pipelines.quality_assets import QUALITY_ASSETS, QUALITY_SENSORS
from pipelines.report_assets import REPORT_ASSETS, REPORT_SENSORS
from pipelines.resolution_assets import RESOLUTION_ASSETS
from pipelines.resources import ProjectResource
from pipelines.sensors import station_drops_sensor


def project_resource() -> ProjectResource:
    """Configured from ENTERONCE_CONFIG / ENTERONCE_WAREHOUSE_URL, defaulting to the demo network."""
    config_dir = dg.EnvVar("ENTERONCE_CONFIG") if os.environ.get("ENTERONCE_CONFIG") else str(default_config_dir())
    url = dg.EnvVar("ENTERONCE_WAREHOUSE_URL") if os.environ.get("ENTERONCE_WAREHOUSE_URL") else ""
    return ProjectResource(config_dir=config_dir, warehouse_url=url)


# Resolution and golden assets follow new station records by their automation conditions;
# this sensor evaluates them, running from the start so that no one has to click.
automation = dg.AutomationConditionSensorDefinition(
    "resolution_and_publication",
    target=dg.AssetSelection.assets(*RESOLUTION_ASSETS, *GOLDEN_ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

defs = dg.Definitions(
    assets=[station_records, *RESOLUTION_ASSETS, *GOLDEN_ASSETS, *QUALITY_ASSETS, *FEED_ASSETS, *REPORT_ASSETS],
    jobs=[ingest_job],
    sensors=[station_drops_sensor, automation, *QUALITY_SENSORS, *FEED_SENSORS, *REPORT_SENSORS],
    resources={"project": project_resource()},
)
