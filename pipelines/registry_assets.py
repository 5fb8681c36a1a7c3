"""The assets of one project, generated per registered entity type (core.entity_types).

Ingest (one records asset per type), resolution and golden records (one multi-asset per type),
the quality checks, the data_quality asset and the dependencies of the feeds and the report
follow the project's types and relations. The Dagster code location builds them for the
configured project (pipelines.definitions) and `enteronce run` for the project it runs
(pipelines.runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import dagster as dg

from core.entity_types import Registry
from pipelines.assets import station_records_asset
from pipelines.feed_assets import feed_assets
from pipelines.golden_assets import golden_assets
from pipelines.quality_assets import quality_assets
from pipelines.report_assets import report_assets
from pipelines.resolution_assets import resolution_assets


@dataclass(frozen=True)
class ProjectAssets:
    station_records: dg.AssetsDefinition
    resolution: list
    golden: list
    data_quality: dg.AssetsDefinition
    quality_checks: list
    feeds: list
    report: list

    @property
    def quality(self) -> list:
        return [self.data_quality, *self.quality_checks]

    @property
    def all(self) -> list:
        return [self.station_records, *self.resolution, *self.golden, *self.feeds, *self.quality, *self.report]


@lru_cache(maxsize=8)
def project_assets(registry: Registry) -> ProjectAssets:
    """The assets for `registry`'s types (built once per registry)."""
    data_quality, *checks = quality_assets(registry)
    return ProjectAssets(station_records_asset(registry), resolution_assets(registry), golden_assets(registry),
                         data_quality, checks, feed_assets(registry), report_assets(registry))
