"""Record entry: one verified record from a station's front desk, stored as a batch of one.

An entry is a drop of one row from a source of its own, `front_desk` (warehouse.entry.ENTRY_SOURCE),
per station and entity type, whose columns are the type's canonical fields. It goes through the
ingest functions every drop goes through (connectors.ingest: the reader contract's `finalize`,
`split_rows`, `raw_frame`, `canonical_frame`, the type's standardiser, `quarantine_frame`, one
transaction by `Warehouse.load_batch`), so it has the same lineage, reconciliation, quarantine and
idempotency as a drop, and resolution, quality and the feeds see nothing unusual.

Why not a drop file in the station's folder: a station's sources may be SQL tables or XLSX
sheets the hub only reads, and the caller must learn at once whether the record went in, with
its batch id or what is wrong with it.

Stricter than a drop in one way: the officer has just verified the resident, so a record the
standardiser finds something wrong with (an ID check digit, an ID birth date or sex against the
stated one, an impossible date, a malformed phone...) is not loaded with its issues as a drop row
would be: it goes to quarantine whole, with every issue, and the answer lists them field by field.
A drop row without a local id is quarantined by `split_rows` here as in any drop.

Idempotent by content: the batch id is the station, the source and a SHA-256 of the entity type and
the submitted fields; the same record again is the same batch, and the answer names it. A
correction (same local id, other values) is a new batch whose record replaces the earlier one, as
a later drop's row would.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors.config import SourceConfig, StationConfig, config_digest
from connectors.ingest import canonical_frame, quarantine_frame, raw_frame, split_rows
from connectors.readers import Chunk, Reject
from connectors.readers.model import ROW, finalize
from connectors.versions import station_version, with_entries
from entity_resolution.entity_types import Registry, standardise
from entity_resolution.matching import parse_checks
from warehouse import Warehouse
from warehouse.entry import ENTRY_SOURCE, entry_batch, entry_marks

ENTRY_KIND = "entry"  # batches.source_kind of entered batches
_LOCK = threading.Lock()  # one entry at a time per process: two equal records race for one batch id


class EntryRefused(ValueError):
    """A request that is not a record of the type at all (unknown fields): nothing is stored."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@dataclass
class EntryOutcome:
    batch_id: str
    record_key: str | None
    status: str  # loaded | quarantined
    duplicate: bool  # the same record was entered before: this is that batch
    errors: list[dict] = field(default_factory=list)  # field, message (quarantined: why)
    quarantine_id: int | None = None
    keys: dict[str, str] = field(default_factory=dict)  # standardised values, for the audit's hashes


def entry_source(registry: Registry, entity_type: str) -> SourceConfig:
    """The front-desk source of a type: every canonical field under its own name."""
    etype = registry.get(entity_type)
    source = SourceConfig(name=ENTRY_SOURCE, entity=entity_type, kind="jsonl", path="front-desk",
                          columns={f: f for f in etype.canonical_fields})
    source._entity_type = etype
    return source


def content_hash(entity_type: str, record: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps({"entity_type": entity_type, "record": dict(sorted(record.items()))},
                                     ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def enter_record(store: Warehouse, registry: Registry, station_id: str, entity_type: str,
                 record: Mapping[str, str], *, ref: str = "front desk") -> EntryOutcome:
    """Store one record of `station_id` as a batch of one (see the module docstring); `ref` goes
    to batches.source_ref (who entered it). Unknown fields raise EntryRefused, nothing stored."""
    source = entry_source(registry, entity_type)
    fields = list(source.canonical_fields)
    unknown = sorted(set(record) - set(fields))
    if unknown:
        raise EntryRefused([{"field": f, "message": f"not a field of {entity_type} (fields: {', '.join(fields)})"}
                            for f in unknown])
    sha = content_hash(entity_type, record)
    batch_id = f"{station_id}/{ENTRY_SOURCE}/{sha[:16]}"
    with _LOCK:
        done = entry_batch(store, batch_id)
        duplicate = done is not None and done["status"] == "loaded"
        prepared = _prepared(source, record, station_id, batch_id)  # standardised once, for the load and the answer
        if not duplicate:
            _load(store, station_id, source, batch_id, sha, ref, prepared)
            done = entry_batch(store, batch_id)
    assert done is not None
    return _outcome(done, source, prepared[1], station_id, duplicate)


def _frame(source: SourceConfig, record: Mapping[str, str]) -> pl.DataFrame:
    fields = list(source.canonical_fields)
    raw = pl.DataFrame({**{f: [record.get(f)] for f in fields}, ROW: [1]},
                       schema={**{f: pl.String for f in fields}, ROW: pl.Int64})
    return finalize(raw, fields)


def _prepared(source: SourceConfig, record: Mapping[str, str], station_id: str, batch_id: str
              ) -> tuple[pl.DataFrame, pl.DataFrame | None, list[Reject]]:
    """(raw rows, standardised records or None, rejects) of the one-row drop, as `_load_chunks`
    makes them from a drop's chunk."""
    accepted, rejects, _ = split_rows(Chunk(_frame(source, record), []), source,
                                      pl.Series("seen", [], dtype=pl.String))
    raw = raw_frame(accepted, source, station_id, batch_id)
    if not accepted.height:
        return raw, None, rejects
    records = standardise(canonical_frame(accepted, source, raw), source.entity_type,
                          date_formats=source.date_formats)
    return raw, records, rejects


def _load(store: Warehouse, station_id: str, source: SourceConfig, batch_id: str, sha: str, ref: str,
          prepared: tuple[pl.DataFrame, pl.DataFrame | None, list[Reject]]) -> None:
    """The batch, as `_load_chunks` writes a drop's chunk, with the standardiser's issues as one
    more reason for quarantine."""
    header = {"batch_id": batch_id, "station_id": station_id, "source_name": ENTRY_SOURCE,
              "entity_type": source.entity, "source_kind": ENTRY_KIND, "source_ref": ref[:500],
              "content_hash": sha, "config_digest": config_digest(source), "status": "loading"}
    raw, records, rejects = prepared
    rejects = list(rejects)
    with store.load_batch(header) as load:
        if records is not None:
            checks = parse_checks(records["issues"][0]) if "issues" in records.columns else []
            if checks:
                fields = ",".join(dict.fromkeys(str(c["field"]) for c in checks))[:200]
                rejects.append(Reject(row_number=1, field=fields, original=raw["payload"][0],
                                      reason="; ".join(f"{c['field']}: {c['message']}" for c in checks)))
            else:
                load.append_raw(raw)
                load.upsert_records(source.entity, records)
        quarantined = quarantine_frame(rejects, station_id, batch_id)
        load.append_quarantine(quarantined)
        load.finish(status="loaded", rows_read=1, rows_loaded=1 - quarantined.height,
                    rows_quarantined=quarantined.height)


def _outcome(done: dict, source: SourceConfig, records: pl.DataFrame | None, station_id: str,
             duplicate: bool) -> EntryOutcome:
    keys: dict[str, str] = {}
    if records is not None:
        keys = {f: str(v) for f, v in records.select(source.canonical_fields).row(0, named=True).items()
                if v is not None}
    q = done["quarantine"]
    if q:
        errors, named = [], (q[0]["field"] or "").split(",")
        for part in q[0]["reason"].split("; "):
            name, _, message = part.partition(": ")
            errors.append({"field": name, "message": message} if message and name in named
                          else {"field": q[0]["field"], "message": part})
        return EntryOutcome(done["batch_id"], None, "quarantined", duplicate, errors, q[0]["quarantine_id"], keys)
    return EntryOutcome(done["batch_id"], f"{station_id}:{keys.get('local_id')}", "loaded", duplicate, [], None, keys)


def settle_entry_version(store: Warehouse, station: StationConfig, base_dir: Path, marks_before: str | None) -> bool:
    """Claim an entry as ingested: when the station's recorded version is its drops' version with
    the entries before this one (nothing else is waiting), record it with this entry too, so the
    drop sensor launches no station run for it. For a caller that publishes the entry itself
    (pipelines/entry_publisher.py); `unsettle_entry_version` gives the claim back if that fails.
    Returns whether it claimed (False: a drop is waiting too; the sensor's run takes both)."""
    files = station_version(station, base_dir)
    if store.station_versions().get(station.id) != with_entries(files, marks_before):
        return False
    store.record_station_version(station.id, with_entries(files, entry_marks(store, station.id).get(station.id)))
    return True


def unsettle_entry_version(store: Warehouse, station: StationConfig, base_dir: Path, marks_before: str | None) -> None:
    """Undo `settle_entry_version`: the station's version as it was before the entry, so the drop
    sensor's next look ingests and publishes it the ordinary way."""
    store.record_station_version(station.id, with_entries(station_version(station, base_dir), marks_before))
