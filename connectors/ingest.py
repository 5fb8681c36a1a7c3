"""One drop of one station source into the warehouse: raw rows, quarantine and standardised records.

A drop is a batch. The whole batch commits in one transaction, so a failed run leaves nothing
behind and its rerun gives the state of one clean run; a drop already loaded is skipped, so the
same drop twice changes nothing. Raw rows and standardised records are written in the same pass:
reading a million JSON payloads back costs more than standardising them.

A drop rejected as a whole is skipped too, until the source's config changes: a rejection is
often a config mistake (a misspelled mapped header), and once it is fixed the drop is read again
(see `_ingest_file`). After a station's sources are all processed, the station version it
started from is recorded, so a drop sensor anywhere can tell the drops were ingested.

Drops are untrusted input. A drop is opened once, without following links and without blocking
(connectors.readers.safe), and everything - hash, parsing, the quarantine copy - reads that open
file. What matches a source's path but is not a regular file (a symbolic link, a FIFO, a device,
a socket, a directory) is never opened: it is recorded as a rejected batch with the reason and a
quarantine row naming it, and nothing is copied. Copies of rejected drops are owner-only (files
0600 in 0700 folders): they hold personal data.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from connectors.config import (
    SourceConfig,
    StationConfig,
    config_digest,
    within_roots,
)
from connectors.readers import Chunk, Reject, detect_encoding, read_drop
from connectors.readers.drops import Refused, scan_drops
from connectors.readers.safe import DropFile, NotFound, display, open_drop
from connectors.sources import source_ref
from connectors.versions import station_version, with_entries
from core.digests import file_sha256
from core.errors import SourceError
from entity_resolution.entity_types import standardise
from warehouse import Warehouse
from warehouse.entry import entry_marks
from warehouse.store import BatchLoad

Progress = Callable[[str, int], None]  # (what, rows just done)



def standardise_source(canonical: pl.DataFrame, source: SourceConfig) -> pl.DataFrame:
    """Standardise a source's canonical frame by the rules of its registered entity type."""
    return standardise(canonical, source.entity_type, date_formats=source.date_formats)


@dataclass
class BatchOutcome:
    station_id: str
    source_name: str
    ref: str
    status: str  # loaded | skipped | rejected | unchanged
    batch_id: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_unchanged: int = 0  # identical to the station's current record: counted, not stored again
    error: str | None = None
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    retried: bool = False  # a drop rejected under an earlier config, read again after a config change

    def summary(self) -> str:
        """One line for logs: what happened to the drop, its counts and, if any, the error."""
        again = " (retried after a config change)" if self.retried else ""
        error = f" - {self.error}" if self.error else ""
        unchanged = f", unchanged {self.rows_unchanged}" if self.rows_unchanged else ""
        return (f"{self.station_id}/{self.source_name} {self.status}{again}: read {self.rows_read}, "
                f"loaded {self.rows_loaded}, quarantined {self.rows_quarantined}{unchanged}{error}")


def ingest_station(
    store: Warehouse,
    station: StationConfig,
    *,
    base_dir: Path,
    data_dir: Path,
    progress: Progress | None = None,
) -> list[BatchOutcome]:
    """Ingest every new drop of every source of one station, then record the station's version.

    The version (connectors.versions) is taken before anything is read, so a drop that arrives
    mid-run makes a version this run does not claim. It is recorded only when every source was
    processed (loaded, skipped, unchanged or rejected: a rejected file is final for that config);
    if ingestion raises (e.g. a SQL source's table is missing), nothing is recorded. A failure
    to compute the version itself (a station database unreachable) raises, as reading would.
    """
    version = with_entries(station_version(station, base_dir), entry_marks(store, station.id).get(station.id))
    outcomes = _ingest_sources(store, station, base_dir, data_dir, progress)
    store.record_station_version(station.id, version)
    return outcomes


def _ingest_sources(
    store: Warehouse,
    station: StationConfig,
    base_dir: Path,
    data_dir: Path,
    progress: Progress | None,
) -> list[BatchOutcome]:
    outcomes: list[BatchOutcome] = []
    for source in station.sources:
        if source.kind == "sql":
            outcomes.append(_ingest_sql(store, station, source, base_dir, progress))
        else:
            scan = scan_drops(source, base_dir)
            if not scan.files and not scan.refused:
                outcomes.append(
                    BatchOutcome(station.id, source.name, str(source.path), "unchanged", error="no drop found")
                )
            for refused in scan.refused:
                outcomes.append(_refuse(store, station, source, refused))
            for path in scan.files:
                outcomes.append(_ingest_file(store, station, source, path, data_dir, progress))
    return outcomes


def _ingest_file(
    store: Warehouse,
    station: StationConfig,
    source: SourceConfig,
    path: Path,
    data_dir: Path,
    progress: Progress | None,
) -> BatchOutcome:
    """Load one file drop, unless it is done: loaded, or rejected under the same config.

    A drop rejected under another config (or before configs were recorded) is read again; its
    earlier attempt is replaced in the same transaction (Warehouse.load_batch). A loaded drop is
    never re-read because the config changed: its rows are in, and later drops follow the new
    config. The rejected file's copy under data/quarantine/ stays either way.

    The file is opened once (no link followed, a FIFO never waited on); if, since it was listed,
    it was swapped for something that is not a regular file inside the allowed folders, it is
    refused like any such entry; if it vanished, there is nothing to do.
    """
    try:
        drop = open_in_roots(path, source)
    except NotFound:
        return BatchOutcome(station.id, source.name, display(path), "unchanged",
                            error=f"{display(path)}: vanished before it was read")
    except SourceError as err:
        return _refuse(store, station, source, Refused(path, err.reason))
    with drop:
        return _ingest_open_file(store, station, source, drop, data_dir, progress)


def open_in_roots(path: Path, source: SourceConfig) -> DropFile:
    """Open a listed drop the safe way (connectors.readers.safe.open_drop) and make sure the open
    file is inside the source's allowed folders (a folder on the way may have been swapped for a
    link since it was listed); SourceError (with the reason) if not, NotFound if it vanished."""
    drop = open_drop(path)
    real = _real_location(drop)
    if real is not None and source.roots is not None and not within_roots(real, source.roots):
        drop.close()
        raise SourceError(display(path), f"resolves to {display(real)}, outside the config folder and "
                                         "allowed_roots: not read, not copied")
    return drop


def _ingest_open_file(
    store: Warehouse,
    station: StationConfig,
    source: SourceConfig,
    drop: DropFile,
    data_dir: Path,
    progress: Progress | None,
) -> BatchOutcome:
    sha = file_sha256(drop)
    outcome = BatchOutcome(station.id, source.name, drop.label, "loaded", f"{station.id}/{source.name}/{sha[:16]}")
    header = _batch_header(store, station, source, outcome, sha)
    if header is None:
        return outcome
    try:
        encoding = detect_encoding(drop, source.encoding) if source.kind != "xlsx" else None
        with store.load_batch({**header, "encoding": encoding, "status": "loading"}) as load:
            _load_chunks(load, station, source, read_drop(source, drop), outcome, progress)
            load.finish(status="loaded", **_counts(outcome))
    except SourceError as err:
        kept = _keep_copy(drop, data_dir, station.id, sha)
        _record_rejection(store, header, outcome, err, kept=kept, original=f"whole file {drop.label}")
    return outcome


def _batch_header(store: Warehouse, station: StationConfig, source: SourceConfig, outcome: BatchOutcome,
                  content_hash: str) -> dict | None:
    """The batch row to write for `outcome`'s batch, or None (outcome marked skipped) when it
    loaded before or was rejected under the same source config; a rejection under another
    config is read again (retried)."""
    digest = config_digest(source)
    state = store.batch_state(outcome.batch_id)
    if state is not None and (state[0] == "loaded" or state == ("rejected", digest)):
        outcome.status = "skipped"
        return None
    outcome.retried = state is not None and state[0] == "rejected"
    return {
        "batch_id": outcome.batch_id, "station_id": station.id, "source_name": source.name,
        "entity_type": source.entity, "source_kind": source.kind, "source_ref": outcome.ref,
        "content_hash": content_hash, "config_digest": digest,
    }


def _real_location(drop: DropFile) -> str | None:
    """Where the open file really is (Linux: its descriptor's /proc link), to catch a folder on
    the way swapped for a link between listing and opening; None where that cannot be told."""
    try:
        return os.readlink(f"/proc/self/fd/{drop.fd}")
    except OSError:
        return None


def _refuse(store: Warehouse, station: StationConfig, source: SourceConfig, refused: Refused) -> BatchOutcome:
    """Record an entry that is never read (a link, a FIFO, a device, a directory...) as a rejected
    batch with a quarantine row naming it and why; nothing is opened or copied. Keyed by its path
    and reason, so it is recorded once, and again only after a config change."""
    key = hashlib.sha256(f"refused\0{refused.label}\0{refused.reason}".encode()).hexdigest()
    outcome = BatchOutcome(station.id, source.name, refused.label, "rejected", f"{station.id}/{source.name}/{key[:16]}",
                           error=f"{refused.label}: {refused.reason}")
    header = _batch_header(store, station, source, outcome, key)
    if header is None:
        return outcome
    _record_rejection(store, header, outcome, SourceError(refused.label, refused.reason), kept=None,
                      original=f"not read: {refused.label}")
    return outcome


def _ingest_sql(
    store: Warehouse,
    station: StationConfig,
    source: SourceConfig,
    base_dir: Path,
    progress: Progress | None,
) -> BatchOutcome:
    ref = source_ref(source, base_dir)
    after = store.watermark(station.id, source.name)
    batch_id = f"{station.id}/{source.name}/after-{hashlib.sha256((after or '').encode()).hexdigest()[:16]}"
    outcome = BatchOutcome(station.id, source.name, ref, "loaded", batch_id)
    chunks = (
        c for c in read_drop(source, ref, watermark_after=after, base_dir=base_dir) if c.rows.height or c.rejects
    )
    first = next(chunks, None)  # SourceError here (missing table/column) is a config problem: raise
    if first is None:
        outcome.status, outcome.batch_id = "unchanged", None
        return outcome
    content = hashlib.sha256()
    marks: list[str] = []

    def tracked() -> Iterator[Chunk]:
        for chunk in itertools.chain([first], chunks):
            content.update("".join(chunk.rows["__row_hash__"].to_list()).encode())
            if chunk.watermark_max is not None:
                marks.append(chunk.watermark_max)
            yield chunk

    header = {
        "batch_id": batch_id, "station_id": station.id, "source_name": source.name,
        "entity_type": source.entity, "source_kind": "sql", "source_ref": ref,
        "content_hash": batch_id.rsplit("-", 1)[-1], "watermark_from": after, "status": "loading",
        "config_digest": config_digest(source),
    }
    with store.load_batch(header) as load:
        _load_chunks(load, station, source, tracked(), outcome, progress)
        watermark = marks[-1] if marks else after
        load.finish(status="loaded", content_hash=content.hexdigest(), watermark_to=watermark, **_counts(outcome))
        if watermark is not None:
            load.set_watermark(station.id, source.name, watermark)
    return outcome


def _counts(outcome: BatchOutcome) -> dict[str, int]:
    return {
        "rows_read": outcome.rows_read,
        "rows_loaded": outcome.rows_loaded,
        "rows_quarantined": outcome.rows_quarantined,
        "rows_unchanged": outcome.rows_unchanged,
    }


def _load_chunks(
    load: BatchLoad,
    station: StationConfig,
    source: SourceConfig,
    chunks: Iterator[Chunk],
    outcome: BatchOutcome,
    progress: Progress | None,
) -> None:
    seen_ids = pl.Series("seen", [], dtype=pl.String)
    current = load.store.current_rows(source.entity, station.id, load.header.get("config_digest"))
    for chunk in chunks:
        accepted, rejected, seen_ids = split_rows(chunk, source, seen_ids)
        read = accepted.height
        accepted = changed_rows(accepted, source, station.id, current)
        outcome.rows_unchanged += read - accepted.height
        raw = raw_frame(accepted, source, station.id, load.batch_id)
        load.append_raw(raw)
        records = standardise_source(canonical_frame(accepted, source, raw), source)
        load.upsert_records(source.entity, records)
        quarantined = quarantine_frame(rejected, station.id, load.batch_id)
        load.append_quarantine(quarantined)
        outcome.rows_read += read + quarantined.height
        outcome.rows_loaded += accepted.height
        outcome.rows_quarantined += quarantined.height
        for reason in quarantined["reason"].to_list():
            key = reason.split(":", 1)[0]
            outcome.quarantine_reasons[key] = outcome.quarantine_reasons.get(key, 0) + 1
        if progress is not None:
            progress(f"{station.id}/{source.name}", read + quarantined.height)


def changed_rows(rows: pl.DataFrame, source: SourceConfig, station_id: str, current: pl.DataFrame) -> pl.DataFrame:
    """The rows that are not the station's current record over again (`current`: record_key and
    row_hash, Warehouse.current_rows), in their order.

    Many stations export their whole register with every drop. A row the warehouse already holds,
    byte for byte under the same record key, would be stored, standardised, validated and
    resolved again to change nothing: a drop costs what it changes, not the export's size."""
    if current.height == 0 or rows.height == 0:
        return rows
    key = (pl.lit(f"{station_id}:") + pl.col(source.column_for("local_id"))).alias("__record_key__")
    return rows.with_columns(key).join(current, left_on=["__record_key__", "__row_hash__"],
                                       right_on=["record_key", "row_hash"], how="anti",
                                       maintain_order="left").drop("__record_key__")


def payload_expr(columns: list[str]) -> pl.Expr:
    """The source row as a JSON object under its own headers: the original, for lineage."""
    return pl.struct([pl.col(c) for c in columns]).struct.json_encode().alias("payload")


def split_rows(
    chunk: Chunk, source: SourceConfig, seen_ids: pl.Series
) -> tuple[pl.DataFrame, list[Reject], pl.Series]:
    """Keep rows with a usable local id; a missing or repeated one sends the row to quarantine.

    The local id makes the record key every later stage refers to, so a row without one, or
    with one an earlier row of the same drop already used, cannot be loaded without guessing.
    """
    lid_col = source.column_for("local_id")
    assert lid_col is not None  # guaranteed by SourceConfig validation
    rows = chunk.rows
    data_cols = [c for c in rows.columns if not c.startswith("__")]
    rows = rows.with_columns(
        _missing=pl.col(lid_col).is_null(),
        _repeat=pl.col(lid_col).is_duplicated() & ~pl.col(lid_col).is_first_distinct()
        | pl.col(lid_col).is_in(seen_ids.implode()),
    )
    bad = rows.filter(pl.col("_missing") | pl.col("_repeat"))
    rejects = list(chunk.rejects)
    if bad.height:
        bad = bad.with_columns(payload_expr(data_cols))
        for row_no, lid, missing, payload in bad.select("__row__", lid_col, "_missing", "payload").iter_rows():
            reason = (
                "missing local id: the mapped id column is empty"
                if missing
                else f"duplicate local id: {lid!r} already appears earlier in this drop"
            )
            rejects.append(Reject(row_number=row_no, field=lid_col, reason=reason, original=payload))
    good = rows.filter(~(pl.col("_missing") | pl.col("_repeat"))).drop("_missing", "_repeat")
    seen_ids = pl.concat([seen_ids, good[lid_col].rename("seen")])
    return good, rejects, seen_ids


def raw_frame(rows: pl.DataFrame, source: SourceConfig, station_id: str, batch_id: str) -> pl.DataFrame:
    lid_col = source.column_for("local_id")
    data_cols = [c for c in rows.columns if not c.startswith("__")]
    return rows.select(
        pl.lit(batch_id).alias("batch_id"),
        pl.col("__row__").cast(pl.Int64).alias("row_number"),
        pl.lit(station_id).alias("station_id"),
        pl.lit(source.entity).alias("entity_type"),
        pl.col(lid_col).alias("local_id"),
        (pl.lit(f"{station_id}:") + pl.col(lid_col)).alias("record_key"),
        pl.col("__row_hash__").alias("row_hash"),
        payload_expr(data_cols),
    )


def canonical_frame(rows: pl.DataFrame, source: SourceConfig, raw: pl.DataFrame) -> pl.DataFrame:
    """Rename the station's own headers to canonical fields, next to the lineage columns."""
    mapped = [pl.col(src).alias(dst) for src, dst in source.columns.items()]
    missing = [pl.lit(None, pl.String).alias(f) for f in source.canonical_fields if f not in source.columns.values()]
    canonical = rows.select(*mapped, *missing)
    return pl.concat(
        [raw.select("record_key", "station_id", "batch_id", "row_number", "row_hash"), canonical],
        how="horizontal",
    )


def quarantine_frame(rejects: list[Reject], station_id: str, batch_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "batch_id": [batch_id] * len(rejects),
            "station_id": [station_id] * len(rejects),
            "row_number": [r.row_number for r in rejects],
            "field": [r.field for r in rejects],
            "reason": [r.reason for r in rejects],
            "original": [r.original for r in rejects],
        },
        schema={
            "batch_id": pl.String, "station_id": pl.String, "row_number": pl.Int64,
            "field": pl.String, "reason": pl.String, "original": pl.String,
        },
    )


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)  # also folders made by an earlier version, world-readable
    except OSError:
        pass


def _keep_copy(drop: DropFile, data_dir: Path, station_id: str, sha: str) -> Path:
    """Copy the rejected drop, byte for byte from its open descriptor, to
    data/quarantine/<station>/<hash>-<name>, owner-only; written aside and renamed into place."""
    folder = data_dir / "quarantine" / station_id
    _private_dir(folder.parent)
    _private_dir(folder)
    name = drop.path.name.encode("utf-8", "surrogateescape")[:180].decode("utf-8", "ignore")
    kept = folder / f"{sha[:16]}-{name}"
    tmp = folder / f".{sha[:16]}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out, drop.reader() as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, kept)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return kept


def _record_rejection(
    store: Warehouse, header: dict, outcome: BatchOutcome, err: SourceError, *, kept: Path | None, original: str
) -> None:
    """A drop rejected as a whole: its batch and one quarantine row with the reason, and where
    its copy was kept (None: refused, nothing read or copied)."""
    store.record_rejected_batch(
        header,
        pl.DataFrame(
            {
                "batch_id": [header["batch_id"]], "station_id": [header["station_id"]],
                "row_number": [None], "field": [err.field],
                "reason": [f"file {'rejected' if kept is not None else 'refused'}: {err.reason}"],
                "original": [original], "stored_path": [str(kept) if kept is not None else None],
            },
            schema_overrides={"row_number": pl.Int64, "field": pl.String, "stored_path": pl.String},
        ),
        str(err),
    )
    outcome.status, outcome.error = "rejected", str(err)
