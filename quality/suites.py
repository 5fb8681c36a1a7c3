"""The expectation suites, declared once, as data.

Each suite is a list of expectation specs: a Great Expectations expectation type with its
arguments, the quality dimension it measures, and - for row-level expectations on a station's
records - what a failure means to the station (the field to correct, where the expected value
comes from). `quality.validate` turns these into GX expectations; nothing else needs to know GX.

Thresholds that users set live in `quality.yaml` and reach the suites as GX suite parameters
(`{"$PARAMETER": name}`), so a suite stays the same object while its limits change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Dimension = Literal["completeness", "validity", "consistency", "uniqueness", "freshness"]
DataAsset = Literal["raw", "standardised", "golden"]
DIMENSIONS: tuple[Dimension, ...] = ("completeness", "validity", "consistency", "uniqueness", "freshness")

# Normalised phone numbers as the standardiser writes them: a mobile, or a landline with its area code.
PHONE_RE = r"^(?:1[3-9][0-9]{9}|0[0-9]{2,3}-[2-9][0-9]{6,7})$"
# Administrative area codes: 6-digit county, 9-digit township or 12-digit village level.
AREA_CODE_RE = r"^[1-8][0-9]{5}(?:[0-9]{3}(?:[0-9]{3})?)?$"
# GB 32100 unified social credit code shape (the check character is in credit_code_valid).
CREDIT_CODE_RE = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
RECORD_KEY_RE = r"^[^:]+:.+$"


@dataclass(frozen=True)
class Task:
    """What a failed row means to the owning station: the field to correct and why; the expected
    value, if any, is read from `expected_column` of the same record."""

    field: str
    reason: str
    expected_column: str | None = None
    # Where `expected_column` comes from, when it is derived from another field of the record
    # (`id_number`: the ID's embedded birth date or sex). Such a value is evidence only when that
    # field is itself trustworthy (quality.corrections.trusted_id); otherwise no value is proposed.
    derived_from: str | None = None


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
    entity_type: str  # person | organisation | station
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

PHONE_TASK = Task("phone", "phone number is not a mobile or a landline with its area code")

PERSONS = SuiteSpec("person_records", "standardised", "person", (
    not_null("name", "a name"),
    not_null("sex", "a sex"),
    not_null("birth_date", "a birth date"),
    not_null("id_number", "an ID number"),
    not_null("area_code", "an area code"),
    is_true("validity.id_number", "id_valid", "ID number passes its GB 11643 check digit and embedded birth date",
            Task("id_number", "ID number fails its check digit or embedded birth date")),
    plausible_date("birth_date", "birth date", Task("birth_date", "implausible birth date")),
    matches("validity.phone", "phone", PHONE_RE, "validity", "phone is a mobile or a landline with area code",
            PHONE_TASK),
    matches("validity.area_code", "area_code", AREA_CODE_RE, "validity", "area code has 6, 9 or 12 digits"),
    equal_pair("consistency.birth_date", "birth_date", "id_birth_date", "stated birth date equals the ID's",
               Task("birth_date", "stated birth date differs from the one in the ID number", "id_birth_date",
                    derived_from="id_number")),
    equal_pair("consistency.sex", "sex", "id_sex", "stated sex equals the ID's",
               Task("sex", "stated sex differs from the one in the ID number", "id_sex", derived_from="id_number")),
    unique("uniqueness.local_id", "local_id", "local ids are unique within the station"),
), extra_columns=("id_issue", "id_upgraded"))

ORGANISATIONS = SuiteSpec("organisation_records", "standardised", "organisation", (
    not_null("name", "a name"),
    not_null("credit_code", "a unified social credit code"),
    not_null("legal_rep", "a legal representative"),
    not_null("area_code", "an area code"),
    is_true("validity.credit_code", "credit_code_valid", "credit code passes its GB 32100 check character",
            Task("credit_code", "unified social credit code fails its check character")),
    matches("validity.credit_code.format", "credit_code", CREDIT_CODE_RE, "validity", "credit code has the GB 32100 shape"),
    matches("validity.phone", "phone", PHONE_RE, "validity", "phone is a mobile or a landline with area code",
            PHONE_TASK),
    matches("validity.area_code", "area_code", AREA_CODE_RE, "validity", "area code has 6, 9 or 12 digits"),
    unique("uniqueness.local_id", "local_id", "local ids are unique within the station"),
))

GOLDEN_PERSONS = SuiteSpec("golden_person", "golden", "person", (
    not_null("name_norm", "a name"),
    not_null("birth_date", "a birth date"),
    not_null("id_number", "an ID number"),
    is_true("validity.id_number", "id_valid", "the surviving ID number is valid"),
    plausible_date("birth_date", "birth date"),
    matches("validity.phone", "phone", PHONE_RE, "validity", "phone is a mobile or a landline with area code"),
    unique("uniqueness.id_number", "valid_id_number",
           "a valid ID number belongs to one active entity only"),
), key_column="entity_id")

GOLDEN_ORGANISATIONS = SuiteSpec("golden_organisation", "golden", "organisation", (
    not_null("name_norm", "a name"),
    not_null("credit_code", "a unified social credit code"),
    matches("validity.credit_code.format", "credit_code", CREDIT_CODE_RE, "validity", "credit code has the GB 32100 shape"),
    unique("uniqueness.credit_code", "credit_code", "a credit code belongs to one active entity only"),
), key_column="entity_id")

FRESHNESS = SuiteSpec("station_freshness", "raw", "station", (
    ExpectationSpec("freshness.last_drop", "ExpectColumnValuesToBeBetween",
                    {"column": "age_days", "min_value": 0, "max_value": _param("freshness_max_age_days")},
                    "freshness", "each station's last drop is at most freshness_max_age_days old"),
), key_column="station_key")

STANDARDISED = {"person": PERSONS, "organisation": ORGANISATIONS}


def declared_suite(entity_type: str, required: Sequence[str], valid_flags: Mapping[str, str]) -> SuiteSpec:
    """The standardised suite of an entity type declared in config (core.entity_types), from its
    field declarations: a required field is present (completeness), a field whose standardiser
    sets a validity flag has a usable value (validity; a blank value is not counted), local ids
    are unique. The bundled types keep their own suites above."""
    return SuiteSpec(f"{entity_type}_records", "standardised", entity_type, (
        *(not_null(f, f"a {f.replace('_', ' ')}") for f in required if f != "local_id"),
        *(is_true(f"validity.{f}", flag, f"{f.replace('_', ' ')} is a usable value",
                  Task(f, f"{f.replace('_', ' ')} is not a usable value")) for f, flag in valid_flags.items()),
        unique("uniqueness.local_id", "local_id", "local ids are unique within the station"),
    ))
GOLDEN = {"person": GOLDEN_PERSONS, "organisation": GOLDEN_ORGANISATIONS}
ALL_SUITES = (RAW, PERSONS, ORGANISATIONS, GOLDEN_PERSONS, GOLDEN_ORGANISATIONS, FRESHNESS)
