"""Write `stations.yaml` for the simulated network (validated by `connectors.config.load_stations`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from connectors.simulate.network import StationProfile
from connectors.simulate.writers import WrittenSource


def source_entry(src: WrittenSource, profile: StationProfile, sql_url: str | None) -> dict:
    entry: dict = {"name": src.source, "entity": src.entity, "kind": src.kind}
    if src.kind == "sql":
        entry["url"] = sql_url
        entry["table"] = src.table
        entry["watermark"] = src.watermark
    else:
        entry["path"] = src.rel_path
        entry["encoding"] = src.declared_encoding
        entry["header_row"] = "auto"
        if src.delimiter and src.delimiter != ",":
            entry["delimiter"] = src.delimiter
        if src.kind == "xlsx" and profile.declare_sheet and src.sheet:
            entry["sheet"] = src.sheet
    entry["columns"] = dict(src.columns)
    if src.entity == "person" and profile.restrict_dates and src.date_format:
        entry["date_formats"] = [src.date_format]
    return entry


def write_stations_yaml(path: Path, stations: list[StationProfile],
                        sources: dict[str, list[WrittenSource]], sql_url: str | None) -> None:
    doc = {"version": 1, "stations": []}
    for profile in stations:
        doc["stations"].append({
            "id": profile.id,
            "name": profile.name,
            "jurisdiction": list(profile.jurisdiction),
            "sources": [source_entry(s, profile, sql_url) for s in sources[profile.id]],
        })
    header = (
        "# Synthetic station network written by `enteronce simulate` (all data is synthetic).\n"
        "# Paths and sqlite URLs are relative to this file's folder.\n"
    )
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(doc, Dumper=dumper, allow_unicode=True, sort_keys=False, width=1000,
                     default_flow_style=False)
    path.write_text(header + text, encoding="utf-8")
