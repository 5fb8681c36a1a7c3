"""Cheap version strings for a station's sources, so a sensor can tell a new drop in milliseconds.

Files: name, mtime and size of every drop (no hashing: sensor evaluations must stay well under
Dagster's 60 s limit with hundreds of stations). SQL tables: the largest watermark value. The
station's own config is part of its version: a fixed mapping can turn a rejected drop into rows
(connectors.ingest retries it), so an edit to the station's stations.yaml entry counts as new.
`ingest_station` records the version it started from in the warehouse
(Warehouse.station_versions), so any sensor can tell which stations have nothing new.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from connectors.config import SourceConfig, StationConfig, config_digest
from connectors.readers import file_version
from connectors.readers.drops import scan_drops
from connectors.readers.sql import open_table, require_columns


def source_version(source: SourceConfig, base_dir: Path) -> str:
    if source.kind == "sql":
        engine, table, label = open_table(source, base_dir)
        try:
            require_columns(table, [source.watermark], label)
            with engine.connect() as conn:
                return str(conn.scalar(sa.select(sa.func.max(table.c[source.watermark]))))
        finally:
            engine.dispose()
    scan = scan_drops(source, base_dir)
    files = ";".join(f"{p.name}:{file_version(p)}" for p in scan.files)
    # Something refused (a link, a FIFO...) counts too, so its run records it; appended only when
    # present, so versions of ordinary drop folders are what they always were.
    refused = "".join(f";refused:{r.label}:{r.reason}" for r in scan.refused)
    return files + refused


def station_version(station: StationConfig, base_dir: Path) -> str:
    """16 hex digits over the station's config and every source's drops: changes when either does."""
    parts = [f"config={config_digest(station)}"]
    parts += [f"{s.name}={source_version(s, base_dir)}" for s in station.sources]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def with_entries(version: str, entries: str | None) -> str:
    """A station's version with its front-desk entries (warehouse.entry.entry_marks): an entered
    record changes it, so the drop sensor launches the station's run (quality, then publication)
    as for a drop. A station without entries keeps the version it always had."""
    if entries is None:
        return version
    return hashlib.sha256(f"{version}|{entries}".encode()).hexdigest()[:16]


def current_version(station: StationConfig, base_dir: Path, entries: str | None) -> tuple[str, Exception | None]:
    """The version to compare with the one the station's last ingest recorded (the drop sensor
    and `enteronce run` both do), and the error if it cannot be taken (a station database
    unreachable): then `unreadable-<digest of the error>`, which no ingest records, so the
    station is run — once per distinct error — and its run fails with the error."""
    try:
        return with_entries(station_version(station, base_dir), entries), None
    except Exception as exc:  # noqa: BLE001 - one broken source must not stall the others
        return "unreadable-" + hashlib.sha256(f"{type(exc).__name__}: {exc}".encode()).hexdigest()[:16], exc
