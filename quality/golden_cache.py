"""The active golden records of a type, decoded, kept between runs in one Parquet file per type.

The golden suite's pass rates are over every active golden record, but a drop changes few of
them: reading and decoding all of them again was most of the suite's cost (a 10k drop into 1M
records: 33 s on PostgreSQL, Great Expectations itself about 10 s of it). The file carries the
marks it was brought up to (the type's last resolution run, the last change event), so a run
reads only the entities touched since: members rewritten by resolution, or given an event
(every golden change is published as one).

The file is a cache, never a source: it is rebuilt from the warehouse when it is missing,
unreadable, of other fields, of another warehouse (its `warehouse_id`: a database made anew
under the same URL), or ahead of this one (a restored backup).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Iterator
from typing import Protocol

import polars as pl

from core.entity_types import EntityType
from quality.frames import decode_golden

FORMAT = "1"
# Beyond this share of the cached entities touched, one full read is cheaper than a keyed one.
FULL_READ_SHARE = 0.5
SEQS = ("resolution_seq", "event_seq")


class GoldenSource(Protocol):  # warehouse.quality.QualityStore
    def active_golden(self, entity_type: str, entity_ids: list[str]) -> pl.DataFrame: ...
    def active_golden_parts(self, entity_type: str) -> Iterator[pl.DataFrame]: ...
    def warehouse_id(self) -> str: ...
    def touched_entities(self, entity_type: str, after_resolution_seq: int, after_event_seq: int) -> pl.Series: ...
    def resolution_seq(self, entity_type: str) -> int: ...
    def max_event_seq(self) -> int: ...


def current_golden(store: GoldenSource, folder: Path, entity_type: EntityType) -> pl.DataFrame:
    """entity_id and the type's golden fields of every active golden record, sorted by entity_id
    (as `decode_golden` of a full read gives them), the cache in `folder` brought up to date."""
    fields = list(entity_type.golden_fields)
    path = Path(folder) / f"{entity_type.name}.parquet"
    # the marks first: whatever is written while this reads is read again next time
    marks = {"warehouse_id": store.warehouse_id(), "resolution_seq": store.resolution_seq(entity_type.name),
             "event_seq": store.max_event_seq()}
    frame, was = _load(path, fields) or (None, None)
    if frame is not None:
        frame = _updated(store, frame, was, entity_type, fields, marks)
    if frame is None:
        # decoded a chunk at a time; sorted here, not by the database's collation: the order an
        # update gives
        frame = pl.concat([decode_golden(part, fields, entity_type)
                           for part in store.active_golden_parts(entity_type.name)]).sort("entity_id")
    if was != marks:  # a rebuild always differs: another warehouse, marks ahead, or behind by many
        _save(frame, path, fields, marks)
    return frame


def _updated(store: GoldenSource, frame: pl.DataFrame, was: dict, entity_type: EntityType, fields: list[str],
             marks: dict) -> pl.DataFrame | None:
    """The cached frame with the entities touched since its marks read again; None when it
    cannot be trusted or a full read is cheaper."""
    if was["warehouse_id"] != marks["warehouse_id"] or any(was[k] > marks[k] for k in SEQS):
        return None
    touched = store.touched_entities(entity_type.name, was["resolution_seq"], was["event_seq"])
    if len(touched) > FULL_READ_SHARE * max(frame.height, 1):
        return None
    if touched.is_empty():
        return frame
    fresh = decode_golden(store.active_golden(entity_type.name, touched.to_list()), fields, entity_type)
    kept = frame.join(touched.to_frame("entity_id"), on="entity_id", how="anti")
    return pl.concat([kept, fresh.select(frame.columns)]).sort("entity_id")


def _load(path: Path, fields: list[str]) -> tuple[pl.DataFrame, dict[str, int]] | None:
    try:
        meta = pl.read_parquet_metadata(path)
        if meta.get("format") != FORMAT or json.loads(meta.get("fields", "null")) != fields:
            return None
        marks = {"warehouse_id": meta["warehouse_id"], **{k: int(meta[k]) for k in SEQS}}
        return pl.read_parquet(path), marks
    except (OSError, ValueError, KeyError, pl.exceptions.PolarsError):
        return None


def _save(frame: pl.DataFrame, path: Path, fields: list[str], marks: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    frame.write_parquet(tmp, metadata={"format": FORMAT, "fields": json.dumps(fields, ensure_ascii=False),
                                       **{k: str(v) for k, v in marks.items()}})
    os.replace(tmp, path)
