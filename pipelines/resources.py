"""Dagster resources: the project folder and the warehouse it names."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from pipelines.project import Project
from warehouse import Warehouse


class ProjectResource(dg.ConfigurableResource):
    """The config folder (stations.yaml, ...) and, optionally, a warehouse URL overriding its default."""

    config_dir: str
    warehouse_url: str = ""

    _project: Project | None = PrivateAttr(default=None)
    _warehouse: Warehouse | None = PrivateAttr(default=None)

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = Project.load(self.config_dir, self.warehouse_url or None)
        return self._project

    @property
    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(self.project.warehouse_url, cache_dir=self.project.data_dir / "cache").migrate()
            self._warehouse.sync_stations(
                {"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                for s in self.project.stations.stations
            )
        return self._warehouse

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._warehouse is not None:
            self._warehouse.dispose()
