"""Open each configured source and read a sample, without loading anything (`check-config`).

A config can be valid YAML with the right keys and still not read a single row: a mapped header
misspelled (`公民身份号吗`), the wrong encoding declared, a date format the station does not use.
`ingest` would reject the drop or quarantine every row; this finds it before data moves, through
the same readers (same limits, same refusal of links and special files) and the same
standardisers, and names the file and the column.

Only the first SAMPLE_ROWS rows of each drop (or of the SQL table) are read, so the cost is
bounded per drop whatever the size of the export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from connectors.config import SourceConfig, StationConfig
from core.errors import SourceError
from connectors.ingest import canonical_frame, open_in_roots, raw_frame, split_rows, standardise_source
from connectors.readers import detect_encoding, read_drop
from connectors.readers.drops import scan_drops
from connectors.readers.safe import DropFile, NotFound, display

Level = Literal["error", "warning"]
# The date and timestamp fields of the source's entity type (core.entity_types) have their parse
# rate checked: the raw field (or the field it is parsed from) against its standardised column.
DATE_TYPES = ("date", "timestamp")
# Share of a sample's values that must parse before a date column counts as readable: a few
# impossible dates are data (quarantine and tasks deal with them); most failing is a format.
DATE_PARSE_FLOOR = 0.5
MAX_EXAMPLES = 3
SAMPLE_ROWS = 2_000  # per drop: enough to see a format, small enough for hundreds of stations


@dataclass
class Finding:
    level: Level
    file: str | None  # the drop (or SQL table) it is about
    column: str | None  # the station's own header, when it is about one column
    problem: str


@dataclass
class SourceProbe:
    station_id: str
    source: str
    kind: str
    files: int = 0
    rows_sampled: int = 0
    encoding: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def probe_station(station: StationConfig, base_dir: Path) -> list[SourceProbe]:
    return [probe_source(station, source, base_dir) for source in station.sources]


def probe_source(station: StationConfig, source: SourceConfig, base_dir: Path) -> SourceProbe:
    probe = SourceProbe(station.id, source.name, source.kind)
    source = source.model_copy(update={"chunk_rows": min(source.chunk_rows, SAMPLE_ROWS)})
    if source.kind == "sql":
        probe.files = 1
        _sample(probe, station, source, None, base_dir, label=f"{source.name} (table {source.table})")
        return probe
    scan = scan_drops(source, base_dir)
    for refused in scan.refused:
        probe.findings.append(Finding("error", refused.label, None, refused.reason))
    probe.files = len(scan.files)
    if not scan.files and not scan.refused:
        probe.findings.append(Finding("warning", None, None, f"no file matches path {source.path!r} (yet)"))
    for path in scan.files:
        label = display(path)
        try:  # opened once, as ingest opens it: no link followed, nothing outside the allowed folders
            drop = open_in_roots(path, source)
        except NotFound:
            continue
        except SourceError as err:
            probe.findings.append(Finding("error", label, err.field, err.reason))
            continue
        with drop:
            if source.kind != "xlsx":
                try:
                    probe.encoding = detect_encoding(drop, source.encoding)
                except SourceError as err:
                    probe.findings.append(Finding("error", label, err.field, err.reason))
                    continue
            _sample(probe, station, source, drop, base_dir, label=label)
    return probe


def _sample(probe: SourceProbe, station: StationConfig, source: SourceConfig, drop: DropFile | None,
            base_dir: Path, *, label: str) -> None:
    """Read the first chunk of one drop (a file the caller opened, or None: the SQL table):
    header, encoding, local ids, dates."""
    chunks = None
    try:
        chunks = read_drop(source, drop, base_dir=base_dir)
        chunk = next(chunks, None)
    except SourceError as err:
        probe.findings.append(Finding("error", label, err.field, err.reason))
        return
    except Exception as err:  # noqa: BLE001 - a driver's or a reader's own error: named, not a traceback
        probe.findings.append(Finding("error", label, None, f"could not be read: {err.__class__.__name__}: {err}"))
        return
    finally:
        if chunks is not None:
            chunks.close()
    if chunk is None:
        return
    accepted, rejects, _ = split_rows(chunk, source, pl.Series("seen", [], pl.String))
    sampled = accepted.height + len(rejects)
    probe.rows_sampled += sampled
    if rejects and len(rejects) * 2 > sampled:
        reasons = sorted({r.reason.split(":", 1)[0] for r in rejects})
        probe.findings.append(Finding("error", label, rejects[0].field,
                                      f"{len(rejects):,} of the first {sampled:,} rows would be quarantined "
                                      f"({'; '.join(reasons[:MAX_EXAMPLES])})"))
    if accepted.height == 0:
        return
    canonical = canonical_frame(accepted, source, raw_frame(accepted, source, station.id, "probe"))
    records = standardise_source(canonical, source)
    header_of = {canon: own for own, canon in source.columns.items()}
    dated = [(spec.from_field or fld, fld) for fld, spec in source.entity_type.fields.items() if spec.type in DATE_TYPES]
    for raw_fld, fld in dated:
        if raw_fld not in header_of:
            continue
        given = canonical[raw_fld].cast(pl.String).str.strip_chars().replace("", None)
        failed = given.is_not_null() & records[fld].is_null()
        n_given, n_failed = int(given.is_not_null().sum()), int(failed.sum())
        if n_failed == 0:
            continue
        examples = given.filter(failed).unique(maintain_order=True).head(MAX_EXAMPLES).to_list()
        level: Level = "error" if n_failed > n_given * (1 - DATE_PARSE_FLOOR) else "warning"
        hint = " (add the station's format to date_formats)" if level == "error" else ""
        probe.findings.append(Finding(level, label, header_of[raw_fld],
                                      f"{n_failed:,} of {n_given:,} sampled dates do not parse, e.g. "
                                      f"{', '.join(repr(e) for e in examples)}{hint}"))
