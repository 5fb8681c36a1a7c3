"""Named standardisers: what an entity type declared in config (core.entity_types) refers to.

Two kinds:

- whole-record standardisers (`WHOLE`): `persons` and `organisations`, the Chinese identity
  data's rules (standardise_persons / standardise_organisations), which also cross-check fields
  (an ID number's birth date against the stated one). A type that names one gets exactly its
  columns.
- field standardisers (`STANDARDISERS`): one field's raw text -> its standardised column(s), an
  optional validity flag (`<field>_valid`: null when the value is blank, false when it is not
  usable) and an issue message. Each is a small function over Polars expressions built from the
  field modules of this package:

  name          columns                                                  valid flag
  text          <f> (strip, half-width, blank -> null)                   -
  upper_text    <f> upper-cased;  lower_text: lower-cased                 -
  digits        <f> digits only                                          -
  date          <f> Date (field `formats`, else the station's)           <f>_valid
  timestamp     <f> Datetime                                             <f>_valid
  integer       <f> Int64;  number: Float64;  boolean: Boolean           <f>_valid
  chinese_name  <f>, <f>_norm, <f>_pinyin                                -
  id_number     <f>, <f>_upgraded, <f>_valid, <f>_issue, <f>_birth_date, <f>_sex   <f>_valid
  credit_code   <f>, <f>_valid, <f>_issue                                <f>_valid
  phone         <f>, <f>_kind, <f>_valid                                 <f>_valid
  area_code     <f>, <f>_valid                                           <f>_valid
  address       <f>, addr_district ... addr_room (prefixed <f>_ unless the field is `address`)   -

`standardise(frame, entity_type, date_formats=...)` runs a type's standardisation, and
`output_schema(entity_type)` tells the columns and Polars types it produces (warehouse tables of
project types are built from it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import polars as pl

from core.entity_types import EntityType, FieldSpec
from entity_resolution.standardise.addresses import ADDRESS_PART_COLUMNS, with_address
from entity_resolution.standardise.area_codes import area_code_digits, area_code_valid
from entity_resolution.standardise.dates import DEFAULT_DATE_FORMATS, parse_date, with_timestamp
from entity_resolution.standardise.frames import finish, intake, issue, join_issues, raw_col
from entity_resolution.standardise.id_numbers import ID_COLUMNS, with_id_number
from entity_resolution.standardise.names import name_fields
from entity_resolution.standardise.org_codes import CREDIT_CODE_COLUMNS, with_credit_code
from entity_resolution.standardise.organisations import standardise_organisations
from entity_resolution.standardise.persons import FIELD_STEPS as PERSON_FIELD_STEPS
from entity_resolution.standardise.persons import standardise_persons
from entity_resolution.standardise.phones import PHONE_COLUMNS, with_phone
from entity_resolution.standardise.text import blank_to_null, clean_text, quoted

WHOLE: dict[str, Callable[..., pl.DataFrame]] = {
    "persons": standardise_persons,
    "organisations": standardise_organisations,
}


@dataclass(frozen=True)
class Context:
    date_formats: tuple[str, ...]
    today: date


@dataclass(frozen=True)
class Applied:
    lf: pl.LazyFrame
    columns: tuple[str, ...]
    valid: str | None = None  # the validity flag column
    issue: pl.Expr | None = None  # message where the value is unusable (without the field name)


Standardiser = Callable[[pl.LazyFrame, str, pl.Expr, FieldSpec, Context], Applied]


def _rename(lf: pl.LazyFrame, field: str, base: str, columns: Sequence[str]) -> tuple[pl.LazyFrame, tuple[str, ...]]:
    """A field module writes fixed names (`phone`, `phone_kind`...); for a field of another name
    they become `<field>`, `<field>_kind`..."""
    if field == base:
        return lf, tuple(columns)
    names = {c: field + c[len(base):] if c.startswith(base) else f"{field}_{c}" for c in columns}
    # The station's own `<field>` column (its raw value, already copied by intake) gives way to
    # the standardised one.
    return lf.drop(list(names.values()), strict=False).rename(names), tuple(names.values())


def _unusable(raw: pl.Expr, ok: pl.Expr, what: str) -> tuple[pl.Expr, pl.Expr]:
    """(valid flag, issue): null flag for a blank value, false when `ok` fails."""
    present = blank_to_null(raw).is_not_null()
    valid = pl.when(present).then(ok.fill_null(False))
    return valid, pl.concat_str(pl.lit(f"{what} "), quoted(raw.str.strip_chars()))


def _text(case: str | None = None, remove: str | None = None) -> Standardiser:
    def apply(lf, field, raw, spec, ctx):
        return Applied(lf.with_columns(clean_text(raw, case=case, remove=remove).alias(field)), (field,))
    return apply


def _date(lf, field, raw, spec, ctx):
    formats = spec.formats or ctx.date_formats
    lf = lf.with_columns(parse_date(raw, formats).alias(f"__d_{field}"))
    status = pl.col(f"__d_{field}").struct.field("status")
    valid, message = _unusable(raw, status == "ok", "not a date")
    lf = lf.with_columns(pl.col(f"__d_{field}").struct.field("date").alias(field), valid.alias(f"{field}_valid"))
    return Applied(lf, (field, f"{field}_valid"), f"{field}_valid", message)


def _timestamp(lf, field, raw, spec, ctx):
    lf = with_timestamp(lf, raw, field, spec.formats or ctx.date_formats)
    valid, message = _unusable(raw, pl.col(field).is_not_null(), "unparseable timestamp")
    return Applied(lf.with_columns(valid.alias(f"{field}_valid")), (field, f"{field}_valid"), f"{field}_valid", message)


# What a value that does not cast is called in `issues` (the per-row twin, rows.py, says the same).
CAST_ISSUES = {"integer": "not a whole number", "number": "not a number", "boolean": "not yes or no"}


def _cast(dtype: pl.DataType, what: str) -> Standardiser:
    def apply(lf, field, raw, spec, ctx):
        text = blank_to_null(clean_text(raw))
        if dtype == pl.Boolean:
            value = text.str.to_lowercase().replace_strict(
                {"true": True, "t": True, "yes": True, "y": True, "1": True,
                 "false": False, "f": False, "no": False, "n": False, "0": False}, default=None,
                return_dtype=pl.Boolean)
        else:
            value = text.cast(dtype, strict=False)
        valid, message = _unusable(raw, value.is_not_null(), what)
        lf = lf.with_columns(value.alias(field), valid.alias(f"{field}_valid"))
        return Applied(lf, (field, f"{field}_valid"), f"{field}_valid", message)
    return apply


def _chinese_name(lf, field, raw, spec, ctx):
    lf = lf.with_columns(name_fields(raw).alias(f"__n_{field}"))
    s = pl.col(f"__n_{field}").struct
    lf = lf.with_columns(s.field("name").alias(field), s.field("name_norm").alias(f"{field}_norm"),
                         s.field("name_pinyin").alias(f"{field}_pinyin"))
    return Applied(lf, (field, f"{field}_norm", f"{field}_pinyin"))


def _id_number(lf, field, raw, spec, ctx):
    lf, cols = _rename(with_id_number(lf, raw, today=ctx.today), field, "id_number",
                       ["id_number", *(c for c in ID_COLUMNS if c != "id_number")])
    # id_upgraded -> <field>_upgraded etc.
    if field != "id_number":
        lf = lf.rename({f"{field}_id_{c[3:]}": f"{field}_{c[3:]}" for c in ID_COLUMNS if c != "id_number"})
        cols = (field, *(f"{field}_{c[3:]}" for c in ID_COLUMNS if c != "id_number"))
    flag = f"{field}_valid" if field != "id_number" else "id_valid"
    issue_col = f"{field}_issue" if field != "id_number" else "id_issue"
    return Applied(lf, cols, flag, pl.col(issue_col))


def _credit_code(lf, field, raw, spec, ctx):
    lf, cols = _rename(with_credit_code(lf, raw), field, "credit_code", CREDIT_CODE_COLUMNS)
    return Applied(lf, cols, f"{field}_valid", pl.col(f"{field}_issue"))


def _phone(lf, field, raw, spec, ctx):
    lf, cols = _rename(with_phone(lf, raw), field, "phone", PHONE_COLUMNS)
    message = pl.concat_str(pl.col("__ph_issue"), pl.lit(" "), quoted(raw.str.strip_chars()))
    return Applied(lf, cols, f"{field}_valid", message)


def _area_code(lf, field, raw, spec, ctx):
    lf = lf.with_columns(area_code_digits(raw).alias(field))
    lf = lf.with_columns(area_code_valid(raw, pl.col(field)).alias(f"{field}_valid"))
    message = pl.concat_str(pl.lit("not 6, 9 or 12 digits "), quoted(raw.str.strip_chars()))
    return Applied(lf, (field, f"{field}_valid"), f"{field}_valid", message)


def _address(lf, field, raw, spec, ctx):
    lf = with_address(lf, raw)
    if field == "address":
        return Applied(lf, ("address", *ADDRESS_PART_COLUMNS))
    names = {"address": field, **{c: f"{field}_{c}" for c in ADDRESS_PART_COLUMNS}}
    return Applied(lf.rename(names), tuple(names.values()))


STANDARDISERS: dict[str, Standardiser] = {
    "text": _text(),
    "upper_text": _text(case="upper"),
    "lower_text": _text(case="lower"),
    "digits": _text(remove=r"[^0-9]"),
    "date": _date,
    "timestamp": _timestamp,
    "integer": _cast(pl.Int64, CAST_ISSUES["integer"]),
    "number": _cast(pl.Float64, CAST_ISSUES["number"]),
    "boolean": _cast(pl.Boolean, CAST_ISSUES["boolean"]),
    "chinese_name": _chinese_name,
    "id_number": _id_number,
    "credit_code": _credit_code,
    "phone": _phone,
    "area_code": _area_code,
    "address": _address,
}

NAMES: frozenset[str] = frozenset(STANDARDISERS) | frozenset(WHOLE)


def standardise(raw: pl.DataFrame, entity_type: EntityType, *, date_formats: Sequence[str] = DEFAULT_DATE_FORMATS,
                today: date | None = None) -> pl.DataFrame:
    """The type's standardised records: the caller's other columns first (record_key, local_id,
    ...), then the type's columns, then `issues` (every problem of the record, "; "-joined)."""
    whole = entity_type.spec.standardiser
    if whole is not None:
        return WHOLE[whole](raw, date_formats=date_formats, **({"today": today} if today else {}))
    ctx = Context(tuple(date_formats), today or date.today())
    fields = entity_type.fields
    lf = intake(raw, [k for k in fields if k != "local_id"])
    outputs: list[str] = []
    issues: list[pl.Expr] = []
    for name, spec in fields.items():
        if name == "local_id":
            continue
        raw_expr = raw_col(spec.from_field or name)
        applied = STANDARDISERS[spec.standardiser_name](lf, name, raw_expr, spec, ctx)
        lf = applied.lf
        outputs.extend(c for c in applied.columns if c not in outputs)
        if spec.required:
            issues.append(issue(name, pl.col(applied.columns[0]).is_null(), "missing"))
        if applied.valid is not None and applied.issue is not None:
            issues.append(issue(name, pl.col(applied.valid).not_(), applied.issue))
    lf = lf.with_columns(join_issues(issues).alias("issues") if issues else pl.lit(None, pl.String).alias("issues"))
    return finish(lf, raw.columns, [*outputs, "issues"])


# Per whole-record standardiser, the fields it can standardise alone (see persons.FIELD_STEPS).
FIELD_STEPS = {"persons": PERSON_FIELD_STEPS}


def standardise_fields(raw: pl.DataFrame, entity_type: EntityType, fields: Sequence[str], *,
                       today: date | None = None) -> pl.DataFrame | None:
    """Only the columns of `fields`, when each of them standardises alone under the type's
    standardiser (None otherwise: use `standardise`). The same expressions as `standardise` for
    those columns, without the rest of the record's plan: a front-desk search by ID number or
    phone pays for its one field, not for names, dates and addresses it did not give. `raw` holds
    the caller's other columns and those fields; no `issues`."""
    steps = FIELD_STEPS.get(entity_type.spec.standardiser or "")
    if not steps or not fields or not set(fields) <= set(steps):
        return None
    today = today or date.today()
    lf = intake(raw, tuple(fields))
    outputs: list[str] = []
    for name in fields:
        step, columns = steps[name]
        lf = step(lf, today)
        outputs.extend(c for c in columns if c not in outputs)
    return finish(lf, raw.columns, outputs)


@lru_cache(maxsize=64)
def _schema(entity_type: EntityType) -> tuple[tuple[str, pl.DataType], ...]:
    empty = pl.DataFrame(schema={k: pl.String for k in entity_type.canonical_fields})
    out = standardise(empty, entity_type)
    return tuple((c, t) for c, t in out.schema.items() if c != "local_id")


def output_schema(entity_type: EntityType) -> dict[str, pl.DataType]:
    """The columns (and their Polars types) the type's standardisation adds, `issues` last."""
    return dict(_schema(entity_type))


def validity_flags(entity_type: EntityType) -> dict[str, str]:
    """field -> its validity flag column, for the fields whose standardiser sets one."""
    if entity_type.spec.standardiser is not None:
        return {}
    columns = output_schema(entity_type)
    flags = {}
    for name, spec in entity_type.fields.items():
        if name == "local_id":
            continue
        flag = {"id_number": "id_valid" if name == "id_number" else f"{name}_valid"}.get(
            spec.standardiser_name, f"{name}_valid")
        if flag in columns and columns[flag] == pl.Boolean:
            flags[name] = flag
    return flags
