"""In-process materialisation of the asset graph, for `enteronce run`."""

from __future__ import annotations

import os
from collections.abc import Callable

import dagster as dg

from pipelines.assets import station_records
from pipelines.feed_assets import FEED_ASSETS, run_feeds
from pipelines.golden_assets import GOLDEN_ASSETS
from pipelines.partitions import stations_partitions
from pipelines.project import Project
from pipelines.quality_assets import QUALITY_ASSETS, data_quality
from pipelines.report_assets import REPORT_ASSETS
from pipelines.resolution_assets import RESOLUTION_ASSETS
from pipelines.resources import ProjectResource

ASSETS = [station_records, *RESOLUTION_ASSETS, *GOLDEN_ASSETS, *QUALITY_ASSETS, *FEED_ASSETS, *REPORT_ASSETS]
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
    """One run per station partition, as the drop sensor launches them, then what the
    automation sensors launch after them: resolution and publication, data quality, the
    subscribers' feeds and the audit report, in this process. The report's run comes last.

    A run that fails raises (after earlier stations committed: each drop is its own transaction,
    so rerunning resumes cleanly).
    """
    instance = _instance()
    known = set(instance.get_dynamic_partitions(stations_partitions.name))
    missing = [s for s in station_ids if s not in known]
    if missing:
        instance.add_dynamic_partitions(stations_partitions.name, missing)
    resources = {"project": ProjectResource(config_dir=str(project.config_dir), warehouse_url=project.warehouse_url)}

    def run(**kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(ASSETS, instance=instance, resources=resources, run_config=QUIET, **kwargs)

    def step(name: str) -> None:
        if on_station is not None:
            on_station(name)

    results = []
    for key in station_ids:
        step(key)
        results.append(run(partition_key=key, selection=[station_records]))
    if resolve:
        step("resolution")
        results.append(run(selection=[*RESOLUTION_ASSETS, *GOLDEN_ASSETS]))
        step("quality")
        results.append(run(selection=[data_quality]))
        step("feeds")
        results.extend(run_feeds(project, instance, ASSETS, resources, QUIET))
        step("report")
        results.append(run(selection=REPORT_ASSETS))
    return results
