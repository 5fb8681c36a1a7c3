"""The ingest standardiser for a few records at a time, in plain Python.

`library.standardise` builds a Polars plan of hundreds of expressions: right for a station's batch,
but about 45 ms for the front desk's one record, whatever its size. `standardise_rows` gives, for
each row, exactly what `standardise(pl.DataFrame(rows), entity_type, ...).to_dicts()` gives (same
keys in the same order, same Python values, `issues` included) in a small fraction of a
millisecond, from the per-value twins that sit beside each field module's expressions and share
their patterns and tables. The tests compare the two on simulated exports, the hand-written cases
of the standardiser tests and random text.

It answers None, and the caller uses the Polars standardiser, for what it does not cover: a
standardiser it does not know, a field standardiser whose fixed column names another field would
collide with (or an address field not named `address`, or a field read from `local_id`, which the
Polars plan cannot run either), date directives other than %Y %m %d %H %M %S %.f %#z, a value
that is not text, or a parsed year Python's `date` cannot hold.

The first call of a process reads Rust's Unicode tables through Polars and builds the NFKC and
OpenCC character sets (about a second): a server should make one call at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from core.entity_types import EntityType, FieldSpec
from entity_resolution.standardise.addresses import (
    ADDRESS_PART_COLUMNS,
    address_parts_value,
)
from entity_resolution.standardise.area_codes import area_code_value
from entity_resolution.standardise.dates import (
    DATE_OK,
    DEFAULT_DATE_FORMATS,
    NotCovered,
    as_date,
    date_issue_value,
    parse_date_value,
    timestamp_value,
)
from entity_resolution.standardise.id_numbers import ID_COLUMNS, id_number_value
from entity_resolution.standardise.library import CAST_ISSUES
from entity_resolution.standardise.names import name_fields_value
from entity_resolution.standardise.org_codes import (
    CREDIT_CODE_COLUMNS,
    credit_code_value,
)
from entity_resolution.standardise.organisations import (
    ORGANISATION_COLUMNS,
    ORGANISATION_FIELDS,
)
from entity_resolution.standardise.persons import PERSON_COLUMNS, PERSON_FIELDS
from entity_resolution.standardise.phones import PHONE_COLUMNS, phone_value
from entity_resolution.standardise.sex import sex_value
from entity_resolution.standardise.text import (
    blank_to_null_value,
    case_value,
    clean_text_value,
    py_regex,
    quoted_value,
    strip_value,
)

Row = Mapping[str, str | None]
Record = dict[str, Any]


def _stripped_quote(raw: str | None) -> str | None:
    """`quoted(raw.str.strip_chars())`."""
    return None if raw is None else quoted_value(strip_value(raw))


def _join(messages: Sequence[str | None]) -> str | None:
    """`join_issues`: the non-null messages, "; "-joined; null when there are none."""
    return "; ".join(m for m in messages if m is not None) or None


def _issue(field: str, condition: bool | None, message: str | None) -> str | None:
    """`frames.issue`: "<field>: <message>" where the condition holds (null counts as false)."""
    return f"{field}: {message}" if condition and message is not None else None


def _contact(raw: Row, record: Record, phone_issue: str | None) -> list[str | None]:
    """`frames.contact_issues` for one record."""
    ts_raw = raw.get("source_updated_at")
    return [
        _issue("phone", phone_issue is not None,
               None if phone_issue is None or raw.get("phone") is None
               else f"{phone_issue} {_stripped_quote(raw.get('phone'))}"),
        _issue("area_code", record["area_code_valid"] is False,
               None if raw.get("area_code") is None
               else f"not 6, 9 or 12 digits {_stripped_quote(raw.get('area_code'))}"),
        _issue("source_updated_at",
               record["source_updated_at"] is None and blank_to_null_value(ts_raw) is not None,
               None if ts_raw is None else f"unparseable timestamp {_stripped_quote(ts_raw)}"),
    ]


def _contact_fields(raw: Row, date_formats: Sequence[str]) -> tuple[Record, Record, str | None]:
    """(phone columns, address and area code columns plus source_updated_at, phone issue)."""
    phone, kind, valid, phone_issue = phone_value(raw.get("phone"))
    area, area_valid = area_code_value(raw.get("area_code"))
    rest = {**address_parts_value(raw.get("address")), "area_code": area, "area_code_valid": area_valid,
            "source_updated_at": timestamp_value(raw.get("source_updated_at"), date_formats)}
    return {"phone": phone, "phone_kind": kind, "phone_valid": valid}, rest, phone_issue


def _person(raw: Row, date_formats: Sequence[str], today: date) -> Record:
    """`standardise_persons` for one record: PERSON_COLUMNS."""
    name, name_norm, name_pinyin = name_fields_value(raw.get("name"))
    sex, sex_unrecognised = sex_value(raw.get("sex"))
    birth, status = parse_date_value(raw.get("birth_date"), date_formats)
    ids = id_number_value(raw.get("id_number"), today=today)
    phones, contact, phone_issue = _contact_fields(raw, date_formats)
    birth_same = None if ids["id_birth_date"] is None or birth is None else ids["id_birth_date"] == birth
    sex_same = None if ids["id_sex"] is None or sex is None else ids["id_sex"] == sex
    consistent = None if birth_same is None and sex_same is None else birth_same is not False and sex_same is not False
    record: Record = {
        "name": name, "name_norm": name_norm, "name_pinyin": name_pinyin, "sex": sex,
        "birth_date": as_date(birth) if birth is not None and birth[0] >= 1000 else None,
        **ids, "id_birth_date": as_date(ids["id_birth_date"]), "id_consistent": consistent,
        **phones, **contact,
    }
    record["issues"] = _join([
        _issue("name", name_norm is None, "missing"),
        _issue("sex", sex_unrecognised, f"unrecognised value {quoted_value(raw.get('sex'))}"),
        _issue("birth_date", True, date_issue_value(status, birth, raw.get("birth_date"), today=today)),
        _issue("id_number", ids["id_issue"] is not None, ids["id_issue"]),
        _issue("id_number", birth_same is False, "birth date differs from stated birth_date"),
        _issue("id_number", sex_same is False, "sex differs from stated sex"),
        *_contact(raw, record, phone_issue),
    ])
    return {c: record[c] for c in PERSON_COLUMNS}


def _organisation(raw: Row, date_formats: Sequence[str], today: date) -> Record:
    """`standardise_organisations` for one record: ORGANISATION_COLUMNS."""
    name, name_norm, _ = name_fields_value(raw.get("name"), keep_periods=True)
    rep, rep_norm, _ = name_fields_value(raw.get("legal_rep"))
    code, code_valid, code_issue = credit_code_value(raw.get("credit_code"))
    phones, contact, phone_issue = _contact_fields(raw, date_formats)
    record: Record = {
        "name": name, "name_norm": name_norm, "credit_code": code, "credit_code_valid": code_valid,
        "credit_code_issue": code_issue, "legal_rep": rep, "legal_rep_norm": rep_norm, **phones, **contact,
    }
    record["issues"] = _join([
        _issue("name", name_norm is None, "missing"),
        _issue("credit_code", code_issue is not None, code_issue),
        *_contact(raw, record, phone_issue),
    ])
    return {c: record[c] for c in ORGANISATION_COLUMNS}


# Whole-record standardiser -> (one record's standardisation, the raw fields it reads).
WHOLE_ROWS: dict[str, tuple[Callable[[Row, Sequence[str], date], Record], tuple[str, ...]]] = {
    "persons": (_person, PERSON_FIELDS),
    "organisations": (_organisation, ORGANISATION_FIELDS),
}


# ---------------------------------------------------------------------------------------------
# Field standardisers (library.STANDARDISERS): raw value -> (columns, valid flag, issue message).
# The columns are named as library._rename names them.

Applied = tuple[Record, bool | None, str | None]
FieldRow = Callable[[str, str | None, FieldSpec, Sequence[str], date], Applied]

_INTEGER = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])$"
_BOOLEAN = {"true": True, "t": True, "yes": True, "y": True, "1": True,
            "false": False, "f": False, "no": False, "n": False, "0": False}
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _unusable(raw: str | None, ok: bool, what: str) -> tuple[bool | None, str | None]:
    """library._unusable: null flag for a blank value, else `ok`; the message."""
    present = blank_to_null_value(raw) is not None
    return (ok if present else None), (None if raw is None else f"{what} {_stripped_quote(raw)}")


def _text(case: str | None = None, remove: str | None = None) -> FieldRow:
    def apply(field, raw, spec, formats, today):
        return {field: clean_text_value(raw, case=case, remove=remove)}, None, None
    return apply


def _date(field, raw, spec, formats, today):
    day, status = parse_date_value(raw, spec.formats or formats)
    valid, message = _unusable(raw, status == DATE_OK, "not a date")
    return {field: as_date(day), f"{field}_valid": valid}, valid, message


def _timestamp(field, raw, spec, formats, today):
    value = timestamp_value(raw, spec.formats or formats)
    valid, message = _unusable(raw, value is not None, "unparseable timestamp")
    return {field: value, f"{field}_valid": valid}, valid, message


def _integer(text: str) -> int | None:
    if not py_regex(_INTEGER).search(text):
        return None
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else None


def _number(text: str) -> float | None:
    return float(text) if py_regex(_FLOAT).search(text) else None


def _boolean(text: str) -> bool | None:
    return _BOOLEAN.get(case_value(text, "lower"))


def _cast(convert: Callable[[str], object], what: str) -> FieldRow:
    def apply(field, raw, spec, formats, today):
        text = blank_to_null_value(clean_text_value(raw))
        value = None if text is None else convert(text)
        valid, message = _unusable(raw, value is not None, what)
        return {field: value, f"{field}_valid": valid}, valid, message
    return apply


def _chinese_name(field, raw, spec, formats, today):
    name, norm, pinyin = name_fields_value(raw)
    return {field: name, f"{field}_norm": norm, f"{field}_pinyin": pinyin}, None, None


def _id_number(field, raw, spec, formats, today):
    ids = id_number_value(raw, today=today)
    ids["id_birth_date"] = as_date(ids["id_birth_date"])
    if field == "id_number":
        return ids, ids["id_valid"], ids["id_issue"]
    columns = {field if c == "id_number" else f"{field}_{c[3:]}": v for c, v in ids.items()}
    return columns, ids["id_valid"], ids["id_issue"]


def _credit_code(field, raw, spec, formats, today):
    values = credit_code_value(raw)
    columns = {field + c[len("credit_code"):]: v for c, v in zip(CREDIT_CODE_COLUMNS, values, strict=True)}
    return columns, values[1], values[2]


def _phone(field, raw, spec, formats, today):
    phone, kind, valid, issue = phone_value(raw)
    columns = {field + c[len("phone"):]: v for c, v in zip(PHONE_COLUMNS, (phone, kind, valid), strict=True)}
    message = None if issue is None or raw is None else f"{issue} {_stripped_quote(raw)}"
    return columns, valid, message


def _area_code(field, raw, spec, formats, today):
    code, valid = area_code_value(raw)
    message = None if raw is None else f"not 6, 9 or 12 digits {_stripped_quote(raw)}"
    return {field: code, f"{field}_valid": valid}, valid, message


def _address(field, raw, spec, formats, today):
    parts = address_parts_value(raw)
    if field == "address":
        return parts, None, None
    return {field: parts["address"], **{f"{field}_{c}": parts[c] for c in ADDRESS_PART_COLUMNS}}, None, None


FIELD_ROWS: dict[str, FieldRow] = {
    "text": _text(),
    "upper_text": _text(case="upper"),
    "lower_text": _text(case="lower"),
    "digits": _text(remove=r"[^0-9]"),
    "date": _date,
    "timestamp": _timestamp,
    "integer": _cast(_integer, CAST_ISSUES["integer"]),
    "number": _cast(_number, CAST_ISSUES["number"]),
    "boolean": _cast(_boolean, CAST_ISSUES["boolean"]),
    "chinese_name": _chinese_name,
    "id_number": _id_number,
    "credit_code": _credit_code,
    "phone": _phone,
    "area_code": _area_code,
    "address": _address,
}

# Standardisers that write fixed column names (and renames them after): the Polars plan breaks or
# shares scratch columns when two fields use one, or when another field has one of those names.
_FIXED_COLUMNS: dict[str, tuple[str, ...]] = {
    "id_number": ID_COLUMNS, "credit_code": CREDIT_CODE_COLUMNS, "phone": (*PHONE_COLUMNS, "__ph_issue"),
    "address": ("address", *ADDRESS_PART_COLUMNS),
}


def covers(entity_type: EntityType) -> bool:
    """Whether `standardise_rows` answers for this type (else it returns None)."""
    whole = entity_type.spec.standardiser
    if whole is not None:
        return whole in WHOLE_ROWS
    fields = {k: f for k, f in entity_type.fields.items() if k != "local_id"}
    names = [f.standardiser_name for f in fields.values()]
    if any(n not in FIELD_ROWS for n in names):
        return False
    for name, spec in fields.items():
        if spec.from_field == "local_id":
            return False  # intake keeps no raw local_id for it to read: Polars raises
        if spec.standardiser_name == "address" and name != "address":
            return False  # library._address keeps the raw column of that name: Polars raises
        fixed = _FIXED_COLUMNS.get(spec.standardiser_name, ())
        if fixed and (names.count(spec.standardiser_name) > 1 or (name != fixed[0] and set(fixed) & set(fields))):
            return False
    return True


def _typed_row(raw: Row, fields: Mapping[str, FieldSpec], formats: Sequence[str], today: date) -> Record:
    """`standardise` without a whole-record standardiser, for one record."""
    record: Record = {}
    issues: list[str | None] = []
    for name, spec in fields.items():
        if name == "local_id":
            continue
        columns, valid, message = FIELD_ROWS[spec.standardiser_name](
            name, raw.get(spec.from_field or name), spec, formats, today)
        record.update(columns)
        if spec.required:
            issues.append(_issue(name, next(iter(columns.values())) is None, "missing"))
        issues.append(_issue(name, valid is False, message))
    record["issues"] = _join(issues)
    return record


def _columns(rows: Sequence[Row]) -> list[str]:
    """The frame's columns: every key, in order of first appearance."""
    return list(dict.fromkeys(k for row in rows for k in row))


def standardise_rows(
    rows: Sequence[Row],
    entity_type: EntityType,
    *,
    date_formats: Sequence[str] = DEFAULT_DATE_FORMATS,
    today: date | None = None,
) -> list[Record] | None:
    """Per row, `standardise(pl.DataFrame(rows), entity_type, ...).to_dicts()`'s row; None when
    the twin does not cover the type or a value (see the module docstring): use Polars then."""
    if not covers(entity_type):
        return None
    whole = entity_type.spec.standardiser
    if whole is not None:
        fn, canonical = WHOLE_ROWS[whole]
        fields = [f for f in canonical if f != "local_id"]
    else:
        fn, fields = None, [k for k in entity_type.fields if k != "local_id"]
    if any(not isinstance(row.get(f), str | None) for row in rows for f in fields):
        return None
    today = today or date.today()
    try:
        if fn is not None:
            records = [fn(row, date_formats, today) for row in rows]
        else:
            records = [_typed_row(row, entity_type.fields, date_formats, today) for row in rows]
    except NotCovered:
        return None
    columns = _columns(rows)
    out = []
    for row, record in zip(rows, records, strict=True):
        passthrough = {c: row.get(c) for c in columns if c not in record}
        out.append({**passthrough, **record})
    return out
