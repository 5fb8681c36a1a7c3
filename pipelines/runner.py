"""In-process materialisation of the whole asset graph, for `enteronce run`."""

from __future__ import annotations

import logging
import os

import dagster as dg

from pipelines.assets import station_records
from pipelines.partitions import stations_partitions
from pipelines.project import Project
from pipelines.resources import ProjectResource

ASSETS = [station_records]


def _instance() -> dg.DagsterInstance:
    """The user's Dagster instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def materialize_project(project: Project, station_ids: list[str]) -> dg.ExecuteInProcessResult:
    """One run over the given stations' partitions (single-run backfill), in this process."""
    logging.getLogger("dagster").setLevel(logging.WARNING)
    instance = _instance()
    known = set(instance.get_dynamic_partitions(stations_partitions.name))
    missing = [s for s in station_ids if s not in known]
    if missing:
        instance.add_dynamic_partitions(stations_partitions.name, missing)
    resources = {"project": ProjectResource(config_dir=str(project.config_dir), warehouse_url=project.warehouse_url)}
    ordered = instance.get_dynamic_partitions(stations_partitions.name)
    wanted = set(station_ids)
    positions = [i for i, key in enumerate(ordered) if key in wanted]
    contiguous = positions and positions[-1] - positions[0] + 1 == len(positions)
    if len(station_ids) == 1 or not contiguous:
        results = [
            dg.materialize(ASSETS, instance=instance, resources=resources, partition_key=key, raise_on_error=True)
            for key in station_ids
        ]
        return results[-1]
    tags = {
        "dagster/asset_partition_range_start": ordered[positions[0]],
        "dagster/asset_partition_range_end": ordered[positions[-1]],
    }
    return dg.materialize(ASSETS, instance=instance, resources=resources, tags=tags, raise_on_error=True)
