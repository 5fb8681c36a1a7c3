"""The entity-type registry: what kinds of entity the hub knows, declared in config.

A type declares its canonical fields (what a station column may map to, with a value type and
whether it is required), how its records are standardised (one whole-record standardiser, or a
named standardiser per field), where its standardised records are stored, the prefix of its
entity ids and the entity of resolution.yaml that resolves it, plus optional hints for quality
(golden fields, the identifying code and its validity flag).

The bundled types (person, organisation: core/entity_types.yaml) are always there; a project
adds or overrides types with an `entity_types.yaml` in its config folder (same shape). A type
named in the project's file replaces the bundled one of that name whole.

Relations between types (`relations:`, e.g. which dwelling a person lives in) are declared in
the same files: a `from` type's golden record links to at most one `to` type's golden record
whose key fields all agree; both types must be registered. A project's file adds relations or
replaces a bundled one of the same name.

This module depends on pydantic and PyYAML only (the bottom layer): standardiser names are
checked against the names handed in (`standardisers=`; entity_resolution.entity_types
.load_registry hands in the library's, entity_resolution.standardise.library); the storage of a project type's records is built from the field declarations
by warehouse.schema.record_table (bundled types use the tables of the Alembic migrations).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from core.config import StrictConfig, format_validation_error, load_yaml
from core.errors import ConfigError

BUNDLED = Path(__file__).with_name("entity_types.yaml")
FILE_NAME = "entity_types.yaml"
NAME = r"^[a-z][a-z0-9_]{0,31}$"
_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

FieldType = Literal["text", "date", "timestamp", "integer", "number", "boolean"]
# The named standardiser a field gets when it names none.
DEFAULT_STANDARDISER = {"text": "text", "date": "date", "timestamp": "timestamp", "integer": "integer",
                        "number": "number", "boolean": "boolean"}
# Columns every record table has besides a type's own: lineage first, `issues` last.
LINEAGE = ("record_key", "station_id", "local_id", "batch_id", "row_number", "row_hash")


class FieldSpec(StrictConfig):
    """One canonical field. `from_field` standardises another field's raw value into this one
    (e.g. a date of birth kept as text and parsed as a date): no station column maps to it."""

    type: FieldType = "text"
    required: bool = False
    standardiser: str | None = None  # a named standardiser (entity_resolution.standardise.library)
    from_field: str | None = Field(default=None, alias="from")
    formats: tuple[str, ...] | None = None  # date / timestamp formats (strptime), in order
    label: str = Field(default="", max_length=80)  # how people read it (the front-desk form): "姓名 Name"

    @property
    def standardiser_name(self) -> str:
        return self.standardiser or DEFAULT_STANDARDISER[self.type]


class CodeSpec(StrictConfig):
    """The identifying code whose validity quality reports (an ID number, a credit code)."""

    column: str
    valid_flag: str
    label: str = "codes"  # plural, for messages ("ID numbers")
    metric: str = "invalid_code_rate"  # the ingest asset's metadata key


class EntityTypeSpec(StrictConfig):
    description: str = ""
    fields: dict[str, FieldSpec] = Field(min_length=1)
    # A whole-record standardiser (the bundled Chinese types); absent: per field.
    standardiser: str | None = None
    record_table: str | None = None  # default: <type>_records
    id_prefix: str = Field(pattern=r"^[A-Z][A-Z0-9]{0,3}$")
    resolution_entity: str | None = None  # default: the type's own name
    golden_fields: tuple[str, ...] | None = None  # golden values quality reads (default: the fields)
    correction_fields: tuple[str, ...] | None = None  # golden values correction tasks compare
    evidence_columns: tuple[str, ...] = ()  # member columns the golden tasks read as evidence
    code: CodeSpec | None = None

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        bad = [k for k in v if not _COLUMN.match(k) or k in LINEAGE[:2] or k in ("batch_id", "row_number",
                                                                                  "row_hash", "issues")]
        if bad:
            raise ValueError(f"field name(s) {bad} are not allowed: lower-case letters, digits and _, and "
                             f"none of the lineage columns {list(LINEAGE)} or issues")
        if "local_id" not in v:
            raise ValueError("a type needs a local_id field (the station's own record id)")
        for name, spec in v.items():
            if spec.from_field is not None and (spec.from_field not in v or spec.from_field == name):
                raise ValueError(f"{name}.from: {spec.from_field!r} is not another field of this type")
        return v

    @model_validator(mode="after")
    def _names(self, info: ValidationInfo) -> "EntityTypeSpec":
        known: Collection[str] | None = (info.context or {}).get("standardisers")
        if known is not None:
            wanted = [("standardiser", self.standardiser)] if self.standardiser else [
                (f"fields.{k}.standardiser", f.standardiser_name) for k, f in self.fields.items()]
            for where, name in wanted:
                if name not in known:
                    raise ValueError(f"{where}: unknown standardiser {name!r}; expected one of {sorted(known)}")
        if self.record_table is not None and not _COLUMN.match(self.record_table):
            raise ValueError(f"record_table {self.record_table!r}: lower-case letters, digits and _ only")
        return self

    @property
    def source_fields(self) -> tuple[str, ...]:
        """The canonical fields a station column may map to (local_id first)."""
        return tuple(k for k, f in self.fields.items() if f.from_field is None)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(k for k, f in self.fields.items() if f.required)


class EntityType:
    """One registered type, with its defaults filled in."""

    def __init__(self, name: str, spec: EntityTypeSpec, *, bundled: bool):
        self.name = name
        self.spec = spec
        self.bundled = bundled

    def __repr__(self) -> str:
        return f"EntityType({self.name!r})"

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return self.spec.fields

    @property
    def canonical_fields(self) -> tuple[str, ...]:
        return self.spec.source_fields

    @property
    def record_table(self) -> str:
        return self.spec.record_table or f"{self.name}_records"

    @property
    def id_prefix(self) -> str:
        return self.spec.id_prefix

    @property
    def resolution_entity(self) -> str:
        return self.spec.resolution_entity or self.name

    @property
    def code(self) -> CodeSpec | None:
        return self.spec.code

    @property
    def golden_fields(self) -> list[str]:
        if self.spec.golden_fields is not None:
            return list(self.spec.golden_fields)
        return [k for k in self.fields if k != "local_id"]

    @property
    def correction_fields(self) -> list[str]:
        return list(self.spec.correction_fields) if self.spec.correction_fields is not None else self.golden_fields


class RelationSpec(StrictConfig):
    """A relation between two types' golden records, kept by the relation step
    (entity_resolution/relations.py): each `from` record links to the one `to` record whose
    `key` fields (golden record fields of both types) all agree. The link is written into both
    golden records, as `from_field` (the linked entity id) on the `from` side and `to_field`
    (the linked entity ids, sorted, comma-separated) on the `to` side, so it is versioned and
    published like any golden value."""

    description: str = ""
    from_type: str = Field(alias="from", pattern=NAME)
    to_type: str = Field(alias="to", pattern=NAME)
    key: tuple[str, ...] = Field(min_length=1)
    from_field: str
    to_field: str

    @field_validator("key")
    @classmethod
    def _key(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in v if not _COLUMN.match(k)]
        if bad:
            raise ValueError(f"key field(s) {bad}: lower-case letters, digits and _ only")
        if len(set(v)) != len(v):
            raise ValueError(f"key repeats a field: {list(v)}")
        return v

    @field_validator("from_field", "to_field")
    @classmethod
    def _field(cls, v: str) -> str:
        if not _COLUMN.match(v) or v in ("entity_id", "area_code"):
            raise ValueError(f"{v!r}: lower-case letters, digits and _, and not entity_id or area_code")
        return v


class Relation:
    """One registered relation, by name (see RelationSpec)."""

    def __init__(self, name: str, spec: RelationSpec, source: str = ""):
        self.name = name
        self.spec = spec
        self.source = source  # the file that declared it, for errors

    def __repr__(self) -> str:
        return f"Relation({self.name!r}: {self.from_type} -> {self.to_type})"

    @property
    def from_type(self) -> str:
        return self.spec.from_type

    @property
    def to_type(self) -> str:
        return self.spec.to_type

    @property
    def key(self) -> list[str]:
        return list(self.spec.key)

    @property
    def from_field(self) -> str:
        return self.spec.from_field

    @property
    def to_field(self) -> str:
        return self.spec.to_field


class EntityTypesFile(StrictConfig):
    version: Literal[1] = 1
    types: dict[str, EntityTypeSpec] = Field(default_factory=dict)
    relations: dict[str, RelationSpec] = Field(default_factory=dict)

    @field_validator("relations")
    @classmethod
    def _relation_names(cls, v: dict[str, RelationSpec]) -> dict[str, RelationSpec]:
        bad = [k for k in v if not re.match(NAME, k)]
        if bad:
            raise ValueError(f"relation name(s) {bad}: lower-case letters, digits and _, at most 32 characters")
        return v

    @field_validator("types")
    @classmethod
    def _type_names(cls, v: dict[str, EntityTypeSpec]) -> dict[str, EntityTypeSpec]:
        bad = [k for k in v if not re.match(NAME, k)]
        if bad:
            raise ValueError(f"type name(s) {bad}: lower-case letters, digits and _, at most 32 characters")
        return v


class Registry:
    """The registered types, bundled first, then the project's in their file order."""

    def __init__(self, types: dict[str, EntityType], source: str = "",
                 relations: dict[str, Relation] | None = None):
        self._types = types
        self.source = source
        self.relations: dict[str, Relation] = dict(relations or {})
        for r in self.relations.values():
            for end, name in (("from", r.from_type), ("to", r.to_type)):
                if name not in types:
                    raise ConfigError(f"{r.source or source}: relations.{r.name}.{end}: unknown entity type {name!r}; "
                                      f"registered: {list(types)}")
            if r.from_type == r.to_type:
                raise ConfigError(f"{r.source or source}: relations.{r.name}: from and to are the same type "
                                  f"{r.from_type!r}")
        fields = [(t, f) for r in self.relations.values() for t, f in ((r.from_type, r.from_field),
                                                                       (r.to_type, r.to_field))]
        dupes = sorted({f"{t}.{f}" for t, f in fields if fields.count((t, f)) > 1})
        if dupes:
            raise ConfigError(f"{source}: several relations write the golden field(s) {dupes}")
        tables = [t.record_table for t in types.values()]
        dupes = sorted({n for n in tables if tables.count(n) > 1})
        if dupes:
            raise ConfigError(f"{source}: several entity types store their records in {dupes}")
        prefixes = [t.id_prefix for t in types.values()]
        dupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if dupes:
            raise ConfigError(f"{source}: several entity types use the entity id prefix {dupes}")

    def __iter__(self) -> Iterator[EntityType]:
        return iter(self._types.values())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __len__(self) -> int:
        return len(self._types)

    @property
    def names(self) -> list[str]:
        return list(self._types)

    def subset(self, names: Collection[str]) -> "Registry":
        """The registry of the named types only, in registry order (the same object for the same
        names, so what is built per registry is built once)."""
        return _subset(self, tuple(n for n in self._types if n in names))

    def relation_fields(self, name: str) -> list[str]:
        """The golden fields relations write into records of type `name` (kept by the golden
        step when survivorship rebuilds a record: they are not survivorship's)."""
        return [f for r in self.relations.values() for t, f in ((r.from_type, r.from_field), (r.to_type, r.to_field))
                if t == name]

    def linked_at_publication(self, name: str) -> list[Relation]:
        """The relations whose `from_field` a record of type `name` gets when it is published
        (entity_resolution.relations.PublishedLinks), so that a new or moved record is published
        once, with its link, rather than published and then versioned again by the relation's
        step. Each such relation has its `to` type published first; one that would close a cycle
        of that order (a relation back the other way) is left to its step alone."""
        waits: dict[str, set[str]] = {}  # type -> the types published before it

        def reaches(a: str, b: str) -> bool:  # does `a` (transitively) wait for `b`?
            seen, todo = set(), [a]
            while todo:
                t = todo.pop()
                if t == b:
                    return True
                if t not in seen:
                    seen.add(t)
                    todo.extend(waits.get(t, ()))
            return False

        kept = []
        for r in self.relations.values():
            if not reaches(r.to_type, r.from_type):
                waits.setdefault(r.from_type, set()).add(r.to_type)
                kept.append(r)
        return [r for r in kept if r.from_type == name]

    def get(self, name: str) -> EntityType:
        try:
            return self._types[name]
        except KeyError:
            raise ConfigError(f"unknown entity type {name!r}; registered: {self.names}") from None

    __getitem__ = get


@lru_cache(maxsize=64)
def _subset(registry: Registry, names: tuple[str, ...]) -> Registry:
    if names == tuple(registry.names):
        return registry
    # a relation stays when both its types do (the relation step needs both golden records)
    relations = {k: r for k, r in registry.relations.items() if r.from_type in names and r.to_type in names}
    return Registry({n: registry.get(n) for n in names}, registry.source, relations)


def _parse(data: Any, source: Path | str, standardisers: Collection[str] | None) -> EntityTypesFile:
    if data is None:
        data = {}
    try:
        return EntityTypesFile.model_validate(data, context={"standardisers": standardisers})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, "entity types")) from None


@lru_cache(maxsize=16)
def _load(project_file: str | None, stamp: tuple[int, int] | None, names: frozenset[str] | None) -> Registry:
    bundled = _parse(load_yaml(BUNDLED), BUNDLED, names)
    types = {k: EntityType(k, v, bundled=True) for k, v in bundled.types.items()}
    relations = {k: Relation(k, v, str(BUNDLED)) for k, v in bundled.relations.items()}
    if project_file is not None:
        own = _parse(load_yaml(Path(project_file)), project_file, names)
        for k, v in own.types.items():
            types[k] = EntityType(k, v, bundled=False)
        relations.update({k: Relation(k, v, project_file) for k, v in own.relations.items()})
    return Registry(types, project_file or str(BUNDLED), relations)


def load_entity_types(config_dir: Path | str | None = None, *,
                      standardisers: Collection[str] | None = None) -> Registry:
    """The bundled types plus those of `<config_dir>/entity_types.yaml` when it exists; with
    `standardisers`, every standardiser a type names must be one of them."""
    names = frozenset(standardisers) if standardisers is not None else None
    if config_dir is None:
        return _load(None, None, names)
    path = Path(config_dir) / FILE_NAME
    try:
        st = path.stat()
    except FileNotFoundError:
        return _load(None, None, names)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    return _load(str(path.resolve()), (st.st_mtime_ns, st.st_size), names)
