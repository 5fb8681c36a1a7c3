"""Dagster resources: the project folder and the warehouse it names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import dagster as dg
from pydantic import PrivateAttr

from pipelines.project import Project
from warehouse import Warehouse
from warehouse.locks import warehouse_lock


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
            self._warehouse = self.project.open_warehouse()
            self._warehouse.sync_stations(
                {"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                for s in self.project.stations.stations
            )
        return self._warehouse

    @contextmanager
    def writing(self, context, what: str, *, station: str | None = None) -> Iterator[Warehouse]:
        """Hold the warehouse for one step: exclusively for the network-wide steps (resolution,
        publication, quality, feeds, report), shared for a station's ingest on PostgreSQL (other
        stations may load at once; each station's own lock keeps two runs of one station apart).
        SQLite takes one writer at a time, so there every step is exclusive. Waiting is logged
        with who holds the warehouse, so a run that waits says why."""
        store = self.warehouse
        purpose = f"{what} (run {context.run.run_id[:8]})"

        def waiting(holders: str) -> None:
            context.log.info(f"waiting for the warehouse {store.display_url}: {holders}")

        with ExitStack() as stack:
            shared = station is not None and store.dialect == "postgresql"
            stack.enter_context(warehouse_lock(store.engine, "pipeline", shared=shared, on_wait=waiting,
                                               purpose=purpose))
            if station is not None:
                stack.enter_context(warehouse_lock(store.engine, f"station:{station}", on_wait=waiting,
                                                   purpose=purpose))
            yield store
        analyzed = store.refresh_statistics()  # after a large write, before the next step plans on it
        if analyzed:
            context.log.info(f"analyzed {', '.join(analyzed)} for the query planner")
        store.release_memory()  # the steps of a run share this process: the next one starts lean

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._warehouse is not None:
            self._warehouse.dispose()
