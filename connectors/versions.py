"""Cheap version strings for a station's sources, so a sensor can tell a new drop in milliseconds.

Files: name, mtime and size of every drop (no hashing: sensor evaluations must stay well under
Dagster's 60 s limit with hundreds of stations). SQL tables: the largest watermark value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from connectors.config import SourceConfig, StationConfig
from connectors.readers import file_version, list_drops
from connectors.readers.sql import resolve_url


def source_version(source: SourceConfig, base_dir: Path) -> str:
    if source.kind == "sql":
        engine = sa.create_engine(resolve_url(source.url or "", base_dir))
        try:
            table = sa.Table(source.table, sa.MetaData(), autoload_with=engine)
            with engine.connect() as conn:
                return str(conn.scalar(sa.select(sa.func.max(table.c[source.watermark]))))
        finally:
            engine.dispose()
    return ";".join(f"{p.name}:{file_version(p)}" for p in list_drops(source, base_dir))


def station_version(station: StationConfig, base_dir: Path) -> str:
    parts = [f"{s.name}={source_version(s, base_dir)}" for s in station.sources]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
