"""In-process materialisation of the asset graph, for `enteronce run`."""

from __future__ import annotations

import os
from collections.abc import Callable

import dagster as dg

from pipelines.assets import station_records
from pipelines.golden_assets import GOLDEN_ASSETS
from pipelines.resolution_assets import RESOLUTION_ASSETS
from pipelines.partitions import stations_partitions
from pipelines.project import Project
from pipelines.resources import ProjectResource

ASSETS = [station_records, *RESOLUTION_ASSETS, *GOLDEN_ASSETS]
# MARKER:runner-assets-quality (ASSETS += ...)
# MARKER:runner-assets-feeds (ASSETS += ...)
# MARKER:runner-assets-report (ASSETS += ...)
# The CLI draws its own progress; Dagster's console logger only speaks up for warnings.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _instance() -> dg.DagsterInstance:
    """The user's Dagster instance when DAGSTER_HOME is set (runs show in the UI), else ephemeral."""
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def materialize_project(
    project: Project,
    station_ids: list[str],
    on_station: Callable[[str], None] | None = None,
    *,
    resolve: bool = True,
) -> list[dg.ExecuteInProcessResult]:
    """One run per station partition, as the drop sensor launches them, then one resolution run,
    in this process.

    A run that fails raises (after earlier stations committed: each drop is its own transaction,
    so rerunning resumes cleanly).
    """
    instance = _instance()
    known = set(instance.get_dynamic_partitions(stations_partitions.name))
    missing = [s for s in station_ids if s not in known]
    if missing:
        instance.add_dynamic_partitions(stations_partitions.name, missing)
    resources = {"project": ProjectResource(config_dir=str(project.config_dir), warehouse_url=project.warehouse_url)}
    results = []
    for key in station_ids:
        if on_station is not None:
            on_station(key)
        results.append(dg.materialize(ASSETS, instance=instance, resources=resources, partition_key=key,
                                      run_config=QUIET, selection=[station_records]))
    if resolve:
        if on_station is not None:
            on_station("resolution")
        results.append(dg.materialize(ASSETS, instance=instance, resources=resources, run_config=QUIET,
                                      selection=[*RESOLUTION_ASSETS, *GOLDEN_ASSETS]))
        # MARKER:runner-after-publication-quality
        # MARKER:runner-after-publication-feeds
        # MARKER:runner-after-publication-report
    return results
