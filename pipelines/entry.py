"""The front desk's record entry bound to a project: the `Enter` function feeds/entry.py is handed
(the feeds layer may not import connectors, where ingest lives)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from connectors.entry import enter_record
from pipelines.entry_publisher import EntryPublisher
from pipelines.project import Project
from warehouse import Warehouse
from warehouse.entry import entry_marks


def project_entry(project: Project, store: Warehouse, *, publisher: EntryPublisher | None = None):
    """enter(station_id, entity_type, record, ref=...) -> dict, over the project's stations and
    entity types; a station not in stations.yaml raises LookupError (its records would belong to
    no configured station). With a `publisher`, every record newly loaded is handed to it."""
    stations = set(project.station_ids)

    def enter(station_id: str, entity_type: str, record: Mapping[str, str], *, ref: str) -> dict:
        if station_id not in stations:
            raise LookupError(f"station {station_id!r} is not in stations.yaml")
        if entity_type not in project.entity_types:
            raise ValueError(f"unknown entity type {entity_type!r}")
        before = entry_marks(store, station_id).get(station_id) if publisher is not None else None
        outcome = enter_record(store, project.entity_types, station_id, entity_type, record, ref=ref)
        if publisher is not None and outcome.status == "loaded" and not outcome.duplicate:
            publisher.entered(station_id, before)
        return asdict(outcome)

    return enter
