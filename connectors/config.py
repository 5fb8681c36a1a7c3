"""The `stations.yaml` contract: what a data engineer writes to onboard a station system.

Validated at the edge with pydantic so that a bad config fails before any data moves, and the
error names the file, the key path and what was expected (see `load_stations`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
import sqlalchemy as sa

from core.config import StrictConfig, format_validation_error, load_yaml
from core.errors import ConfigError
from entity_resolution.entity_types import EntityType as RegisteredType
from entity_resolution.entity_types import Registry, load_registry

# An entity type of the registry (core.entity_types: the bundled types plus the project's
# entity_types.yaml); its canonical fields are what a source column may map to.
EntityType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
SourceKind = Literal["csv", "tsv", "jsonl", "xlsx", "sql"]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gbk", "gb18030"]

# Every format the simulated (and real) local systems are known to write; stations may narrow it.
DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d",
)


KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


def _byte_size(v: Any) -> Any:
    """A byte count: an integer, or a string such as "64 KiB", "2 GiB" or "500 MB"."""
    if isinstance(v, str):
        m = _SIZE.match(v)
        if not m:
            raise ValueError(f'expected a byte count such as 65536, "64 KiB" or "2 GiB", got {v!r}')
        return int(m.group(1)) * _UNITS[m.group(2)]
    return v


class Limits(StrictConfig):
    """What one drop may cost to read. A file over a limit is rejected whole (kept byte for byte in
    quarantine) with a message naming the limit, except a text row with an oversized field, which
    goes to quarantine by itself. Set project-wide (`limits:` at the top of stations.yaml) and/or
    per source (`limits:` in a source, overriding the project's values key by key).

    The defaults admit any realistic station export and keep one ingest's memory in the low GB:
    - max_file_bytes 2 GiB: a 1M-row export is ~170 MB as CSV; ten times that is still a plausible file.
    - max_line_bytes 1 MiB: a text line (or a quoted record spanning lines) is held whole in memory;
      base records are a few hundred bytes, so this is ~5,000 times a real row.
    - max_field_bytes 64 KiB: ~21,000 Chinese characters; no name, address or remark is near it. A text
      row with a larger field is quarantined; an XLSX cell (its XML, an upper bound) rejects the file,
      because calamine materialises the whole sheet before any row could be set aside.
    - max_columns 1,000: header columns (JSON Lines: distinct keys); exports have 10-50, and each
      column costs per-row work in every chunk.
    - max_json_depth 32: nesting of one JSON Lines value; deeper lines are quarantined, not parsed.
    - max_xlsx_cells 20,000,000: the sheet's declared range and the actual range its cells span
      (rows x columns, what calamine allocates), and the number of cells; a full-height 1,048,576-row
      sheet of 19 columns fits; calamine + Arrow take ~120 bytes a cell (~2.4 GB at the limit).
    - max_xlsx_strings 20,000,000: entries of the shared-strings table (its declared uniqueCount
      is preallocated by calamine, so a forged count alone could abort the process).
    - max_decompressed_bytes 4 GiB: the sum of the archive's uncompressed sizes, as declared and
      as actually inflated (a lying size header is a rejection too).
    - max_compression_ratio 100: per archive member over 1 MiB; spreadsheet XML compresses 5-30x,
      zip bombs 1,000x.
    """

    max_file_bytes: int = Field(default=2 * GiB, ge=1)
    max_line_bytes: int = Field(default=1 * MiB, ge=64)
    max_field_bytes: int = Field(default=64 * KiB, ge=16)
    max_columns: int = Field(default=1_000, ge=1)
    max_json_depth: int = Field(default=32, ge=1, le=1_000)
    max_xlsx_cells: int = Field(default=20_000_000, ge=1)
    max_xlsx_strings: int = Field(default=20_000_000, ge=1)
    max_decompressed_bytes: int = Field(default=4 * GiB, ge=1)
    max_compression_ratio: int = Field(default=100, ge=1)

    @field_validator(
        "max_file_bytes", "max_line_bytes", "max_field_bytes", "max_decompressed_bytes", mode="before"
    )
    @classmethod
    def _sizes(cls, v: Any) -> Any:
        return _byte_size(v)


DEFAULT_LIMITS = Limits()


def within_roots(path: str, roots: tuple[str, ...]) -> bool:
    """Whether `path` (already real) is one of `roots` (real) or below one."""
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _literal_prefix(pattern: str) -> str:
    """The part of a path before its first component holding a glob character."""
    parts = Path(pattern).parts
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return str(Path(*parts[:i])) if i else ""
    return pattern


def check_within(value: str, base_dir: Path, roots: tuple[str, ...], what: str) -> str:
    """Resolve a configured file path or glob; raise ValueError unless it stays inside `roots`.

    The folders before the first glob character are resolved for real - `..` climbs and symbolic
    links followed (a link in the config folder pointing at /etc escapes too) - and must land
    in one of the (real) roots. Returns the absolute, normalised path. What a glob matches later
    is walked without following links (connectors.readers.drops), so a match cannot escape either.
    The file a literal path names is a drop, the station's to write: if it is a link, that drop
    is refused when it is read (named, quarantined as not read, the run goes on), not the whole
    configuration here.
    """
    expanded = os.path.expanduser(value)
    joined = os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(base_dir, expanded))
    prefix = _literal_prefix(joined) or os.sep
    if prefix == joined and joined != os.sep:  # no glob: the folder for real, the file's own name as is
        real = os.path.join(os.path.realpath(os.path.dirname(joined)), os.path.basename(joined))
    else:
        real = os.path.realpath(prefix)
    if not within_roots(real, roots):
        where = "the config folder" if len(roots) == 1 else "the config folder or allowed_roots"
        via = "" if real == os.path.normpath(prefix) else f" (via symbolic links: {real})"
        raise ValueError(
            f"{what} {value!r} resolves to {joined}{via}, outside {where} ({', '.join(roots)}); "
            f"keep {'drops' if what == 'path' else 'it'} under the config folder or add the folder to allowed_roots"
        )
    return joined


class SourceConfig(StrictConfig):
    """One export of one station system: a file (or glob of drops) or a SQL table."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    entity: EntityType
    kind: SourceKind
    path: str | None = None  # file or glob, relative to the config folder unless absolute
    encoding: Encoding = "auto"
    delimiter: str | None = None  # csv: default ","; tsv: always "\t"
    header_row: int | Literal["auto"] = "auto"  # 1-based line of the header, or found by its names
    sheet: str | None = None  # xlsx: default the first sheet
    url: str | None = None  # sql: SQLAlchemy URL
    table: str | None = None  # sql: table name
    watermark: str | None = None  # sql: monotonically increasing column for incremental reads
    columns: dict[str, str]  # source header -> canonical field
    # At least one: with none, every date of the station would be flagged unrecognised.
    date_formats: tuple[str, ...] = Field(default=DEFAULT_DATE_FORMATS, min_length=1)
    chunk_rows: int = Field(default=200_000, ge=1)
    limits: Limits | None = None  # None: the project's limits (stations.yaml `limits:`), else the defaults

    # The folders this source may read from, real paths: set when the config was loaded from a
    # stations.yaml (the config folder plus allowed_roots); None for a config built in code, whose
    # paths were not validated and whose literal path prefix is then not re-checked when reading.
    _roots: tuple[str, ...] | None = PrivateAttr(default=None)
    # The registered type `entity` names (from the registry the config was validated with).
    _entity_type: RegisteredType | None = PrivateAttr(default=None)

    @model_serializer(mode="wrap")
    def _without_unset_limits(self, handler: Any) -> dict[str, Any]:
        """`limits: None` is left out of dumps, so the config digest of every source configured
        before limits existed stays what it was (no drop is re-read, no station re-launched)."""
        data = handler(self)
        if isinstance(data, dict) and data.get("limits") is None:
            data.pop("limits", None)
        return data

    @property
    def effective_limits(self) -> Limits:
        return self.limits if self.limits is not None else DEFAULT_LIMITS

    @property
    def roots(self) -> tuple[str, ...] | None:
        return self._roots

    @property
    def entity_type(self) -> RegisteredType:
        """The registered entity type of this source's records."""
        return self._entity_type if self._entity_type is not None else load_registry().get(self.entity)

    @property
    def canonical_fields(self) -> tuple[str, ...]:
        return self.entity_type.canonical_fields

    @field_validator("header_row", mode="before")
    @classmethod
    def _header_line(cls, v: Any) -> Any:
        """Line 0 or -3 would read the wrong line (or none) as the header; say so at check-config.

        Checked before the type, so a bad value gives one message instead of one per union arm;
        a digit string ("2") stays accepted as it always was.
        """
        if v == "auto":
            return v
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError(f'expected "auto" or the 1-based line of the header (an integer >= 1), got {v!r}')

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError("delimiter must be a single character")
        return v

    @model_validator(mode="after")
    def _kind_fields(self, info: ValidationInfo) -> "SourceConfig":
        if self.kind == "sql":
            missing = [k for k in ("url", "table", "watermark") if not getattr(self, k)]
            if missing:
                raise ValueError(f"a sql source needs {', '.join(missing)}")
        elif not self.path:
            raise ValueError(f"a {self.kind} source needs path")
        registry: Registry = (info.context or {}).get("entity_types") or load_registry()
        if self.entity not in registry:
            raise ValueError(f"entity {self.entity!r} is no registered entity type; expected one of "
                             f"{registry.names} (add a type in entity_types.yaml)")
        self._entity_type = registry.get(self.entity)
        allowed = self._entity_type.canonical_fields
        unknown = sorted(set(self.columns.values()) - set(allowed))
        if unknown:
            raise ValueError(
                f"columns map to unknown canonical field(s) {unknown}; "
                f"expected some of {list(allowed)}"
            )
        targets = list(self.columns.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"several source columns map to {dupes}")
        if "local_id" not in targets:
            raise ValueError("columns must map one source column to local_id")
        return self

    @field_validator("path")
    @classmethod
    def _path_inside(cls, v: str | None, info: ValidationInfo) -> str | None:
        ctx = info.context or {}
        if v is not None and "base_dir" in ctx:
            check_within(v, ctx["base_dir"], ctx["roots"], "path")
        return v

    @field_validator("url")
    @classmethod
    def _sqlite_inside(cls, v: str | None, info: ValidationInfo) -> str | None:
        ctx = info.context or {}
        if v is not None and "base_dir" in ctx:
            db = sqlite_file(v)
            if db is not None:
                if sa.make_url(v).database.startswith("file:") and not os.path.isabs(db):
                    raise ValueError(f"SQLite URI {v!r}: a file: URI must name an absolute path")
                check_within(db, ctx["base_dir"], ctx["roots"], "SQLite database")
        return v

    @model_validator(mode="after")
    def _remember_roots(self, info: ValidationInfo) -> "SourceConfig":
        ctx = info.context or {}
        if "roots" in ctx:
            self._roots = ctx["roots"]
        return self

    def column_for(self, canonical: str) -> str | None:
        return next((src for src, dst in self.columns.items() if dst == canonical), None)


class StationConfig(StrictConfig):
    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    name: str
    jurisdiction: tuple[str, ...] = Field(min_length=1)  # area-code prefixes
    sources: tuple[SourceConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_sources(self) -> "StationConfig":
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"station {self.id}: source names must be unique, got {names}")
        return self


class StationsFile(StrictConfig):
    version: Literal[1] = 1
    # Folders besides the config folder that sources may read from (absolute, or relative to
    # the config folder). Paths anywhere else are config errors.
    allowed_roots: tuple[str, ...] = ()
    limits: Limits = Limits()  # project-wide; a source's own `limits:` overrides it key by key
    stations: tuple[StationConfig, ...] = Field(min_length=1)

    @field_validator("allowed_roots")
    @classmethod
    def _real_roots(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for root in v:
            if not root.strip():
                raise ValueError("an allowed root must be a folder, got an empty string")
            if os.path.realpath(os.path.expanduser(root)) == os.sep:
                raise ValueError(f"allowed root {root!r} is the whole file system")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> "StationsFile":
        ids = [s.id for s in self.stations]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"station ids must be unique; repeated: {dupes}")
        return self

    def station(self, station_id: str) -> StationConfig:
        for s in self.stations:
            if s.id == station_id:
                return s
        raise KeyError(station_id)


def config_digest(model: BaseModel) -> str:
    """SHA-256 hex of a config model's canonical JSON (keys sorted): equal exactly when the config
    reads a drop the same way. Batches record their source's digest, station versions include
    the station's, so a config fix can be told apart from "nothing changed"."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sqlite_file(url: str) -> str | None:
    """The file path of a SQLite URL (as written: maybe relative), None for anything else.

    `sqlite:///file:PATH?...&uri=true` URLs name their file after "file:".
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database or ""
    if db in ("", ":memory:") or "mode=memory" in db:
        return None
    if db.startswith("file:"):
        db = db[len("file:"):].split("?", 1)[0]
        if db.startswith("//"):  # file://host/path
            db = "/" + db[2:].split("/", 1)[-1]
    return db or None


def resolve_roots(base_dir: Path, allowed_roots: Any) -> tuple[str, ...]:
    """The real folders sources may read from: the config folder, then each allowed root."""
    roots = [os.path.realpath(base_dir)]
    if isinstance(allowed_roots, (list, tuple)):
        for root in allowed_roots:
            if isinstance(root, str) and root.strip():
                expanded = os.path.expanduser(root)
                roots.append(os.path.realpath(expanded if os.path.isabs(expanded) else base_dir / expanded))
    return tuple(dict.fromkeys(roots))


def _with_project_limits(cfg: StationsFile) -> StationsFile:
    """Fold the project-wide limits into each source (its own keys win), so a reader needs only
    its source, and a change of either counts as a config change of the sources it touches."""
    project = cfg.limits.model_dump(exclude_unset=True)
    if not project:
        return cfg
    stations = []
    for station in cfg.stations:
        sources = []
        for source in station.sources:
            own = source.limits.model_dump(exclude_unset=True) if source.limits is not None else {}
            sources.append(source.model_copy(update={"limits": Limits.model_validate({**project, **own})}))
        stations.append(station.model_copy(update={"sources": tuple(sources)}))
    return cfg.model_copy(update={"stations": tuple(stations)})


def load_stations(path: Path) -> StationsFile:
    """Load and validate stations.yaml. Source paths (and SQLite files) must resolve inside the
    file's folder or one of its `allowed_roots`; anything else fails here, naming file, key and value."""
    data = load_yaml(path)
    base_dir = Path(os.path.abspath(path)).parent
    roots = resolve_roots(base_dir, data.get("allowed_roots") if isinstance(data, dict) else None)
    try:
        cfg = StationsFile.model_validate(data, context={"base_dir": base_dir, "roots": roots,
                                                         "entity_types": load_registry(base_dir)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(path, err)) from None
    return _with_project_limits(cfg)
