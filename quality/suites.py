"""The expectation suites, as data.

Each suite is a list of expectation specs: a Great Expectations expectation type with its
arguments, the quality dimension it measures, and - for row-level expectations on a station's
records - what a failure means to the station (the field to correct, where the expected value
comes from). `quality.validate` turns these into GX expectations; nothing else needs to know GX.

The suites of the entity types are declared in config, not here: `quality/defaults/suites.yaml`
holds the bundled types' (read and validated at the edge, `load_suites`), and every other
registered type - a project's own, a bundled one without an entry - gets suites derived from its
declaration in the entity-type registry (`derived_quality`): required fields present, the
validity flags its standardisers set, its identifying code valid and unique. `type_quality(t)`
is what the rest of quality reads: a type's standardised and golden suites, the checks a value
proposed by a correction task must pass, and how task messages name its fields. Only the raw and
freshness suites, which no entity type shapes, are written here.

Thresholds that users set live in `quality.yaml` and reach the suites as GX suite parameters
(`{"$PARAMETER": name}`), so a suite stays the same object while its limits change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from core.config import StrictConfig, format_validation_error, load_yaml
from core.entity_types import EntityType, Registry
from core.errors import ConfigError

Dimension = Literal["completeness", "validity", "consistency", "uniqueness", "freshness"]
DataAsset = Literal["raw", "standardised", "golden"]
DIMENSIONS: tuple[Dimension, ...] = ("completeness", "validity", "consistency", "uniqueness", "freshness")
SUITES_FILE = Path(__file__).with_name("defaults") / "suites.yaml"

RECORD_KEY_RE = r"^[^:]+:.+$"


@dataclass(frozen=True)
class Task:
    """What a failed row means to the owning station: the field to correct and why; the expected
    value, if any, is read from `expected_column` of the same record."""

    field: str
    reason: str
    expected_column: str | None = None
    # Where `expected_column` comes from, when it is derived from another field of the record
    # (an ID number: its embedded birth date or sex). Such a value is evidence only when that
    # field is itself trustworthy (quality.corrections.trusted_id); otherwise no value is proposed.
    derived_from: str | None = None
    issue_column: str | None = None  # the standardiser's message about the value, quoted in the task
    verify: str | None = None  # what the station should check the value against


@dataclass(frozen=True)
class ExpectationSpec:
    id: str  # stable across runs: the report trends it, correction tasks are keyed by it
    type: str  # the GX 1.x expectation class name
    kwargs: dict
    dimension: Dimension
    description: str
    task: Task | None = None

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    @property
    def value_columns(self) -> list[str]:
        """The record's values a sample row shows."""
        return [c for c in (self.kwargs.get("column"), self.kwargs.get("column_A"), self.kwargs.get("column_B")) if c]


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    data_asset: DataAsset
    entity_type: str  # a registered entity type, `any` (raw) or `station` (freshness)
    expectations: tuple[ExpectationSpec, ...] = field(default_factory=tuple)
    key_column: str = "record_key"  # what a sample row is identified by
    # Present in the frame handed to GX although no expectation reads them (sample rows, tasks).
    extra_columns: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        cols = [self.key_column]
        for e in self.expectations:
            cols += e.value_columns
            if e.task and e.task.expected_column:
                cols.append(e.task.expected_column)
        return list(dict.fromkeys([*cols, *self.extra_columns]))


def _param(name: str) -> dict:
    return {"$PARAMETER": name}


def not_null(column: str, what: str) -> ExpectationSpec:
    return ExpectationSpec(f"completeness.{column}", "ExpectColumnValuesToNotBeNull", {"column": column},
                           "completeness", f"every record has {what}")


def matches(id_: str, column: str, regex: str, dimension: Dimension, description: str,
            task: Task | None = None) -> ExpectationSpec:
    return ExpectationSpec(id_, "ExpectColumnValuesToMatchRegex", {"column": column, "regex": regex},
                           dimension, description, task)


def is_true(id_: str, column: str, description: str, task: Task | None = None) -> ExpectationSpec:
    return ExpectationSpec(id_, "ExpectColumnValuesToBeInSet", {"column": column, "value_set": [True]},
                           "validity", description, task)


def plausible_date(column: str, what: str, task: Task | None = None) -> ExpectationSpec:
    # Dates reach GX as ISO text, whose order is the dates' order.
    return ExpectationSpec(f"validity.{column}.plausible", "ExpectColumnValuesToBeBetween",
                           {"column": column, "min_value": _param("earliest_date"), "max_value": _param("today")},
                           "validity", f"{what} between earliest_birth_date and today", task)


def unique(id_: str, column: str, description: str) -> ExpectationSpec:
    return ExpectationSpec(id_, "ExpectColumnValuesToBeUnique", {"column": column}, "uniqueness", description)


def equal_pair(id_: str, a: str, b: str, description: str, task: Task | None = None) -> ExpectationSpec:
    return ExpectationSpec(id_, "ExpectColumnPairValuesToBeEqual",
                           {"column_A": a, "column_B": b, "ignore_row_if": "either_value_is_missing"},
                           "consistency", description, task)


RAW = SuiteSpec("raw_records", "raw", "any", (
    not_null("local_id", "a local id"),
    unique("uniqueness.local_id", "local_id", "local ids are unique within the station's drop"),
    matches("validity.record_key", "record_key", RECORD_KEY_RE, "validity", "record key is <station>:<local id>"),
    ExpectationSpec("completeness.payload", "ExpectColumnValuesToNotMatchRegex",
                    {"column": "payload", "regex": r"^\{\s*\}$"}, "completeness", "the row carries values"),
))

FRESHNESS = SuiteSpec("station_freshness", "raw", "station", (
    ExpectationSpec("freshness.last_drop", "ExpectColumnValuesToBeBetween",
                    {"column": "age_days", "min_value": 0, "max_value": _param("freshness_max_age_days")},
                    "freshness", "each station's last drop is at most freshness_max_age_days old"),
), key_column="station_key")


# -- what a value proposed by a correction task must pass ---------------------------------------
CheckKind = Literal["text", "id_number", "credit_code", "date", "pattern", "one_of"]


@dataclass(frozen=True)
class ValueCheck:
    """How quality.corrections.valid_value judges a value of one field: an ID number's GB 11643
    check digit and plausible embedded birth date, a credit code's GB 32100 check character, a
    plausible date (earliest_birth_date .. today), a regular expression, a set of values, or any
    non-empty text."""

    kind: CheckKind = "text"
    pattern: str | None = None
    values: tuple[str, ...] = ()


TEXT = ValueCheck()


@dataclass(frozen=True)
class IdEvidence:
    """The columns the `id_number` standardiser writes for one field (`id_valid`, `id_upgraded`,
    `id_birth_date`, `id_sex`, `id_issue` for a field named id_number; `<field>_valid` ... for
    another), and the record's stated fields they are compared with (from the suite's tasks
    `derived_from` the field): what decides whether the ID is evidence for them."""

    field: str
    valid: str
    upgraded: str
    birth_date: str
    sex: str
    issue: str
    stated_birth_date: str | None = None
    stated_sex: str | None = None

    @classmethod
    def of(cls, source: str, *, stated_birth_date: str | None = None, stated_sex: str | None = None) -> "IdEvidence":
        stem = "id" if source == "id_number" else source  # the id_number standardiser's naming
        return cls(source, f"{stem}_valid", f"{stem}_upgraded", f"{stem}_birth_date", f"{stem}_sex", f"{stem}_issue",
                   stated_birth_date, stated_sex)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.valid, self.upgraded, self.birth_date, self.sex)


@dataclass(frozen=True)
class TypeQuality:
    """What quality knows of one entity type: its suites, the checks of its fields' values and
    their labels in task messages. `declared`: from suites.yaml (else derived from the registry)."""

    entity_type: str
    standardised: SuiteSpec
    golden: SuiteSpec | None
    values: Mapping[str, ValueCheck]
    labels: Mapping[str, str]
    declared: bool = False
    code_column: str | None = None  # the registered `code` (golden uniqueness, golden frame)
    code_flag: str | None = None

    def label(self, field_name: str) -> str:
        return self.labels.get(field_name, field_name.replace("_", " "))

    def check(self, field_name: str) -> ValueCheck:
        return self.values.get(field_name, TEXT)

    @property
    def derived(self) -> tuple[ExpectationSpec, ...]:
        """The expectations whose expected value is read from another field (an ID number)."""
        return tuple(e for e in self.standardised.expectations if e.task and e.task.derived_from)

    @property
    def id_evidence(self) -> dict[str, IdEvidence]:
        """source field -> its ID evidence, for every field some task derives a value from."""
        out: dict[str, IdEvidence] = {}
        for source in dict.fromkeys(e.task.derived_from for e in self.derived):
            base = IdEvidence.of(source)
            stated = {e.task.expected_column: e.task.field for e in self.derived if e.task.derived_from == source}
            out[source] = IdEvidence.of(source, stated_birth_date=stated.get(base.birth_date),
                                        stated_sex=stated.get(base.sex))
        return out

    @property
    def validity_flags(self) -> dict[str, str]:
        """field -> the flag column of its `is_true` expectation with a task (what says a member's
        value passes its standardiser's check)."""
        return {e.task.field: e.kwargs["column"] for e in self.standardised.expectations
                if e.type == "ExpectColumnValuesToBeInSet" and e.task is not None}


# -- suites.yaml --------------------------------------------------------------------------------
_COL = r"^[a-z][a-z0-9_]{0,62}$"
_KINDS = ("not_null", "is_true", "plausible_date", "matches", "equal", "unique")


class TaskDecl(StrictConfig):
    field: str = Field(pattern=_COL)
    reason: str = Field(min_length=1)
    expected_column: str | None = Field(default=None, pattern=_COL)
    derived_from: str | None = Field(default=None, pattern=_COL)
    issue_column: str | None = Field(default=None, pattern=_COL)
    verify: str | None = None


class ExpectationDecl(StrictConfig):
    id: str | None = Field(default=None, pattern=r"^[a-z]+(?:\.[a-z0-9_]+)+$")
    not_null: str | None = Field(default=None, pattern=_COL)
    is_true: str | None = Field(default=None, pattern=_COL)
    plausible_date: str | None = Field(default=None, pattern=_COL)
    matches: str | None = Field(default=None, pattern=_COL)
    equal: tuple[str, str] | None = None
    unique: str | None = Field(default=None, pattern=_COL)
    pattern: str | None = None  # a name under `patterns`
    dimension: Dimension = "validity"  # of `matches`
    what: str | None = None  # of not_null and plausible_date: "a name", "birth date"
    description: str | None = None
    task: TaskDecl | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ExpectationDecl":
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of {list(_KINDS)} (got {kinds or 'none'})")
        kind = kinds[0]
        if kind in ("not_null", "plausible_date"):
            if not self.what:
                raise ValueError(f"{kind} needs `what` (how the message names the value)")
        elif not (self.id and self.description):
            raise ValueError(f"{kind} needs an `id` and a `description`")
        if kind == "matches" and not self.pattern:
            raise ValueError("matches needs `pattern` (a name under `patterns`)")
        if kind in ("not_null", "unique") and self.task is not None:
            raise ValueError(f"{kind} cannot carry a task: no field value is wrong")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in _KINDS if getattr(self, k) is not None)


class SuiteDecl(StrictConfig):
    expectations: list[ExpectationDecl] = Field(min_length=1)
    extra_columns: tuple[str, ...] = ()


class ValueDecl(StrictConfig):
    check: Literal["text", "id_number", "credit_code", "date"] | None = None
    pattern: str | None = None  # a name under `patterns`
    one_of: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one(self) -> "ValueDecl":
        given = [k for k in ("check", "pattern", "one_of") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of check, pattern, one_of (got {given or 'none'})")
        return self


class TypeDecl(StrictConfig):
    standardised: SuiteDecl
    golden: SuiteDecl | None = None
    values: dict[str, ValueDecl] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class SuitesFile(StrictConfig):
    version: Literal[1] = 1
    patterns: dict[str, str] = Field(default_factory=dict)
    types: dict[str, TypeDecl] = Field(default_factory=dict)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, v: dict[str, str]) -> dict[str, str]:
        for name, rx in v.items():
            try:
                re.compile(rx)
            except re.error as exc:
                raise ValueError(f"{name}: not a regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _patterns_known(self) -> "SuitesFile":
        problems = []
        for tname, t in self.types.items():
            suites = [("standardised", t.standardised), ("golden", t.golden)]
            for sname, s in suites:
                for i, e in enumerate(s.expectations if s else ()):
                    if e.pattern is not None and e.pattern not in self.patterns:
                        problems.append(f"types.{tname}.{sname}.expectations.{i}.pattern: unknown pattern "
                                        f"{e.pattern!r}; patterns: {sorted(self.patterns)}")
            for f, v in t.values.items():
                if v.pattern is not None and v.pattern not in self.patterns:
                    problems.append(f"types.{tname}.values.{f}.pattern: unknown pattern {v.pattern!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def parse_suites(data: object, source: Path | str = "<suites>") -> SuitesFile:
    try:
        return SuitesFile.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, "quality suites")) from None


@lru_cache(maxsize=4)
def load_suites(path: Path = SUITES_FILE) -> SuitesFile:
    """The bundled suite declarations (quality/defaults/suites.yaml), validated."""
    return parse_suites(load_yaml(path), path)


def _task(t: TaskDecl | None) -> Task | None:
    return Task(**t.model_dump()) if t is not None else None


def _expectation(e: ExpectationDecl, patterns: Mapping[str, str]) -> ExpectationSpec:
    task = _task(e.task)
    if e.not_null:
        return not_null(e.not_null, e.what or "")
    if e.plausible_date:
        return plausible_date(e.plausible_date, e.what or "", task)
    if e.is_true:
        return is_true(e.id, e.is_true, e.description, task)
    if e.matches:
        return matches(e.id, e.matches, patterns[e.pattern], e.dimension, e.description, task)
    if e.equal:
        return equal_pair(e.id, e.equal[0], e.equal[1], e.description, task)
    return unique(e.id, e.unique, e.description)


def _value_check(v: ValueDecl, patterns: Mapping[str, str]) -> ValueCheck:
    if v.pattern is not None:
        return ValueCheck("pattern", pattern=patterns[v.pattern])
    if v.one_of is not None:
        return ValueCheck("one_of", values=tuple(v.one_of))
    return ValueCheck(v.check or "text")


def declared_quality(t: EntityType, decl: TypeDecl, patterns: Mapping[str, str]) -> TypeQuality:
    std = SuiteSpec(f"{t.name}_records", "standardised", t.name,
                    tuple(_expectation(e, patterns) for e in decl.standardised.expectations),
                    extra_columns=decl.standardised.extra_columns)
    golden = None
    if decl.golden is not None:
        golden = SuiteSpec(f"golden_{t.name}", "golden", t.name,
                           tuple(_expectation(e, patterns) for e in decl.golden.expectations), key_column="entity_id")
    code = t.code
    return TypeQuality(t.name, std, golden, {k: _value_check(v, patterns) for k, v in decl.values.items()},
                       dict(decl.labels), declared=True, code_column=code.column if code else None,
                       code_flag=code.valid_flag if code else None)


# The check a value proposed for a field gets from the named standardiser that produced it.
_STANDARDISER_CHECKS = {"id_number": ValueCheck("id_number"), "credit_code": ValueCheck("credit_code"),
                        "date": ValueCheck("date")}
_STANDARDISER_PATTERNS = {"phone": "phone", "area_code": "area_code"}


def derived_quality(t: EntityType, patterns: Mapping[str, str] | None = None) -> TypeQuality:
    """The suites of a type without a declaration, from its registry entry:

    - standardised: every required field present; every validity flag its standardisers set
      (`<field>_valid`: date, number, ID number, phone ...) true where a value was given, with a
      correction task on the field (quoting the standardiser's `<..>_issue` message when it writes
      one); the registered `code`'s flag, if no standardiser of a field set it; local ids unique.
    - golden (over golden_fields): the required ones present; the code valid and on one active
      entity only (its uniqueness counted over valid codes).
    """
    from entity_resolution.entity_types import output_schema, validity_flags

    patterns = patterns if patterns is not None else load_suites().patterns
    columns = output_schema(t)
    flags = validity_flags(t)
    code = t.code
    if code is not None and code.valid_flag not in flags.values() and code.column in t.fields:
        flags[code.column] = code.valid_flag

    def issue_of(flag: str) -> str | None:
        col = flag.removesuffix("_valid") + "_issue"
        return col if col in columns else None

    def words(f: str) -> str:
        return f.replace("_", " ")

    std = SuiteSpec(f"{t.name}_records", "standardised", t.name, (
        *(not_null(f, f"a {words(f)}") for f in t.spec.required_fields if f != "local_id"),
        *(is_true(f"validity.{f}", flag, f"{words(f)} is a usable value",
                  Task(f, f"{words(f)} is not a usable value", issue_column=issue_of(flag)))
          for f, flag in flags.items()),
        unique("uniqueness.local_id", "local_id", "local ids are unique within the station"),
    ))
    golden_fields = t.golden_fields
    gexp = [not_null(f, f"a {words(f)}") for f in golden_fields if f in t.fields and t.fields[f].required]
    if code is not None and code.column in golden_fields:
        gexp += [is_true(f"validity.{code.column}", code.valid_flag, f"the surviving {words(code.column)} is valid"),
                 unique(f"uniqueness.{code.column}", f"valid_{code.column}",
                        f"a valid {words(code.column)} belongs to one active entity only")]
    golden = SuiteSpec(f"golden_{t.name}", "golden", t.name, tuple(gexp), key_column="entity_id") if gexp else None
    values: dict[str, ValueCheck] = {}
    if t.spec.standardiser is None:
        for f, spec in t.fields.items():
            name = spec.standardiser_name
            if name in _STANDARDISER_CHECKS:
                values[f] = _STANDARDISER_CHECKS[name]
            elif name in _STANDARDISER_PATTERNS and _STANDARDISER_PATTERNS[name] in patterns:
                values[f] = ValueCheck("pattern", pattern=patterns[_STANDARDISER_PATTERNS[name]])
    return TypeQuality(t.name, std, golden, values, {}, declared=False,
                       code_column=code.column if code else None, code_flag=code.valid_flag if code else None)


@lru_cache(maxsize=64)
def type_quality(t: EntityType) -> TypeQuality:
    """A registered type's quality: its suites.yaml entry when it is a bundled type listed
    there (a project type replaces the bundled one of its name whole, suites included), else
    derived from its declaration."""
    suites = load_suites()
    decl = suites.types.get(t.name) if t.bundled else None
    return declared_quality(t, decl, suites.patterns) if decl is not None else derived_quality(t, suites.patterns)


def registry_quality(types: Registry | Iterable[EntityType] | None = None) -> dict[str, TypeQuality]:
    """entity type -> its TypeQuality, for the registry given (default: the bundled types)."""
    if types is None:
        from entity_resolution.entity_types import load_registry

        types = load_registry()
    return {t.name: type_quality(t) for t in types}


def known_expectation_ids(types: Registry | Iterable[EntityType] | None = None) -> list[str]:
    """Every expectation id of the raw and freshness suites and of the types' suites (default:
    the bundled types): what quality.yaml's `thresholds.expectations` may name."""
    ids = {e.id for s in (RAW, FRESHNESS) for e in s.expectations}
    for q in registry_quality(types).values():
        ids |= {e.id for s in (q.standardised, q.golden) if s is not None for e in s.expectations}
    return sorted(ids)
