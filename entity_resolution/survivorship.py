"""Survivorship: the records of one entity in, one golden record out, with every value's provenance.

Per field (configured in `resolution.yaml`, per entity type) an ordered list of rules narrows the
entity's candidate records, i.e. those with a non-null value for the field:

- `valid_only`      keep the records whose `valid_flag` column is true, if any is (a null flag is
                    not valid), so a checksum-valid ID number beats an invalid one;
- `source_priority` keep the records of the highest-priority station present (`priority`,
                    highest first); a no-op when none of the candidates' stations is listed;
- `most_recent`     keep the records with the latest `source_updated_at` (a null time loses; all
                    null keeps all);
- `most_frequent`   keep the records holding the value(s) most frequent among the candidates;
- `most_complete`   keep the records holding the longest value (characters of its text form).

After the rules, one record is left by a fixed tie-break: the latest `source_updated_at` (nulls
last), then the largest `batch_id`, then the smallest `record_key`. The result does not depend
on the order of the input rows as long as (record_key, batch_id) identifies a record.

`follow: X` takes the field from the record that won field X (address parts and the area code
follow the address, so a golden address is never stitched together from several records). The
value is taken even when it is null there. When X has no value at all for an entity, the
follower is decided on its own with the `default` rules.

Everything is Polars expressions over whole frames; no Python loop touches rows or entities.
One sort puts each entity's records together in tie-break order; records of one-record entities
(most of them) win trivially, and the rules run, one lazy plan per field (run together), only
over the records of entities that have several.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.config import StrictConfig, format_validation_error
from core.errors import ConfigError

__all__ = [
    "PROVENANCE_SCHEMA_COLUMNS",
    "FieldRule",
    "RuleName",
    "SurvivorshipSettings",
    "parse_survivorship",
    "render_value",
    "survive",
]

RuleName = Literal["valid_only", "source_priority", "most_recent", "most_frequent", "most_complete"]
# Rules that need no per-field parameter, so they can be the default for any field.
DefaultRuleName = Literal["most_recent", "most_frequent", "most_complete"]

RECORD_KEY, STATION, BATCH, UPDATED = "record_key", "station_id", "batch_id", "source_updated_at"
LINEAGE_COLUMNS = (RECORD_KEY, STATION, BATCH, UPDATED)
PROVENANCE_SCHEMA_COLUMNS = ("field", "value", *LINEAGE_COLUMNS)  # after the entity column

# Internal columns; field names may not start with this prefix.
_P = "__sv_"
_ROW, _ENT, _VAL, _FLD = f"{_P}row", f"{_P}ent", f"{_P}val", f"{_P}fld"


class FieldRule(StrictConfig):
    """How one golden field is chosen: `rules` in order, or `follow` another field's winner.

    Empty `rules` (and no `follow`) means the settings' `default` rules.
    """

    rules: list[RuleName] = Field(default_factory=list)
    valid_flag: str | None = None  # boolean column, for valid_only
    priority: list[str] = Field(default_factory=list)  # station ids, highest first
    follow: str | None = None  # take the value from the record that won this field

    @model_validator(mode="after")
    def _consistent(self) -> FieldRule:
        repeated = sorted({r for r in self.rules if self.rules.count(r) > 1})
        if repeated:
            raise ValueError(f"rules must not repeat; repeated: {repeated}")
        if self.follow is not None:
            extra = [k for k in ("rules", "valid_flag", "priority") if getattr(self, k)]
            if extra:
                raise ValueError(f"a field that follows another takes no {', '.join(extra)}")
            return self
        if "valid_only" in self.rules and not self.valid_flag:
            raise ValueError("rule valid_only needs valid_flag, the boolean column that marks a valid value")
        if self.valid_flag and "valid_only" not in self.rules:
            raise ValueError("valid_flag is only used by rule valid_only, which is not in rules")
        if self.priority and "source_priority" not in self.rules:
            raise ValueError("priority is only used by rule source_priority, which is not in rules")
        dupes = sorted({s for s in self.priority if self.priority.count(s) > 1})
        if dupes:
            raise ValueError(f"priority lists a station more than once: {dupes}")
        return self


class SurvivorshipSettings(StrictConfig):
    """Survivorship of one entity type: field -> rule. A field may be given as a list of rules
    (`phone: [most_recent]`) or left empty (`phone:`), which means the `default` rules."""

    fields: dict[str, FieldRule] = Field(min_length=1)
    default: list[DefaultRuleName] = Field(default_factory=lambda: ["most_recent"])

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        out = {}
        for name, rule in value.items():
            if rule is None:
                rule = {}
            elif isinstance(rule, list | tuple):
                rule = {"rules": list(rule)}
            out[name] = rule
        return out

    @property
    def record_columns(self) -> list[str]:
        """The record columns survivorship reads besides keys, station, batch and
        source_updated_at: each field and its valid flag."""
        return list(dict.fromkeys([*self.fields, *(r.valid_flag for r in self.fields.values() if r.valid_flag)]))

    @model_validator(mode="after")
    def _follow_targets(self) -> SurvivorshipSettings:
        repeated = sorted({r for r in self.default if self.default.count(r) > 1})
        if repeated:
            raise ValueError(f"default rules must not repeat; repeated: {repeated}")
        for name, rule in self.fields.items():
            if not name or name.startswith(_P) or name in LINEAGE_COLUMNS:
                raise ValueError(f"field {name!r}: not allowed as a golden field name")
            if rule.follow is None:
                continue
            if rule.follow == name:
                raise ValueError(f"field {name!r} cannot follow itself")
            target = self.fields.get(rule.follow)
            if target is None:
                raise ValueError(
                    f"field {name!r} follows {rule.follow!r}, which is not a configured field; "
                    f"have {sorted(self.fields)}"
                )
            if target.follow is not None:
                raise ValueError(
                    f"field {name!r} follows {rule.follow!r}, which itself follows {target.follow!r}; "
                    f"follow the leading field directly"
                )
        return self

    def rules_for(self, name: str) -> list[str]:
        """The effective rules of a leading (non-following) field."""
        return list(self.fields[name].rules or self.default)

    def leaders(self) -> list[str]:
        return [n for n, r in self.fields.items() if r.follow is None]

    def followers(self, leader: str) -> list[str]:
        return [n for n, r in self.fields.items() if r.follow == leader]

    def input_columns(self) -> list[str]:
        """Columns survive() reads besides the entity column and the lineage columns."""
        cols = list(self.fields)
        cols += [r.valid_flag for r in self.fields.values() if r.valid_flag]
        return list(dict.fromkeys(cols))


# --------------------------------------------------------------------------- parsing


def parse_survivorship(
    data: object, *, source: Path | str = "<survivorship config>", key: str = ""
) -> SurvivorshipSettings:
    """Validate already-parsed YAML data. Errors raise ConfigError naming `source` (the file) and
    the key path, prefixed with `key` (e.g. "entities.person.survivorship") when given."""
    try:
        return SurvivorshipSettings.model_validate(data)
    except ValidationError as err:
        message = format_validation_error(source, err, "survivorship configuration")
        if key:
            message = message.replace("\n  - ", f"\n  - {key}.")
        raise ConfigError(message) from None


# --------------------------------------------------------------------------- values as text


def render_value(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The text form of a value (provenance, most_frequent, most_complete): strings as they are,
    dates and times ISO 8601, numbers and booleans as Polars prints them, nested values as JSON."""
    if dtype == pl.String:
        return expr
    if dtype == pl.Date:
        return expr.dt.to_string("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        return expr.dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else ""))
    if dtype == pl.Time:
        return expr.dt.to_string("%H:%M:%S%.f")
    if isinstance(dtype, pl.List | pl.Array | pl.Struct):
        return (
            pl.struct(expr.alias("v")).struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
        )
    return expr.cast(pl.String)


# --------------------------------------------------------------------------- survive


def _check(records: pl.DataFrame, settings: SurvivorshipSettings, entity_col: str) -> None:
    needed = [entity_col, *LINEAGE_COLUMNS, *settings.input_columns()]
    missing = [c for c in dict.fromkeys(needed) if c not in records.columns]
    if missing:
        raise ValueError(f"survive: records lack column(s) {missing}")
    if entity_col in settings.fields:
        raise ValueError(f"survive: {entity_col!r} is the entity column and cannot be a golden field")
    for rule in settings.fields.values():
        if rule.valid_flag and records.schema[rule.valid_flag] != pl.Boolean:
            raise TypeError(
                f"survive: valid_flag column {rule.valid_flag!r} must be Boolean, "
                f"got {records.schema[rule.valid_flag]}"
            )
    if not isinstance(records.schema[UPDATED], pl.Datetime | pl.Date | pl.Null):
        raise TypeError(f"survive: {UPDATED} must be a Datetime, got {records.schema[UPDATED]}")
    if records[entity_col].null_count():
        raise ValueError(f"survive: {records[entity_col].null_count()} record(s) have a null {entity_col}")


def _narrow(lf: pl.LazyFrame, rule: FieldRule | None, rules: list[str]) -> pl.LazyFrame:
    """Apply `rules` in order to the candidates in `lf` (one row per record with a value), then
    the tie-break: `_ROW` is the record's position in tie-break order, so the smallest wins."""
    per_entity = pl.col(_ENT)
    for name in rules:
        if name == "valid_only":
            assert rule is not None and rule.valid_flag
            ok = pl.col(rule.valid_flag).fill_null(False)
            lf = lf.filter(ok | ~ok.any().over(per_entity))
        elif name == "source_priority":
            assert rule is not None
            if not rule.priority:
                continue
            rank = (
                pl.col(STATION)
                .cast(pl.String)
                .replace_strict(rule.priority, list(range(len(rule.priority))),
                                default=len(rule.priority), return_dtype=pl.UInt32)
            )
            lf = lf.with_columns(rank.alias(f"{_P}k")).filter(
                pl.col(f"{_P}k") == pl.col(f"{_P}k").min().over(per_entity)
            )
        elif name == "most_recent":
            t = pl.col(UPDATED)
            latest = t.max().over(per_entity)
            lf = lf.filter((t == latest) | latest.is_null())
        elif name == "most_frequent":
            lf = lf.with_columns(pl.len().over(_ENT, _VAL).alias(f"{_P}k")).filter(
                pl.col(f"{_P}k") == pl.col(f"{_P}k").max().over(per_entity)
            )
        elif name == "most_complete":
            lf = lf.with_columns(pl.col(_VAL).str.len_chars().alias(f"{_P}k")).filter(
                pl.col(f"{_P}k") == pl.col(f"{_P}k").max().over(per_entity)
            )
        else:  # pragma: no cover - the settings model admits only the names above
            raise ValueError(f"unknown survivorship rule {name!r}")
    return lf.select(_ENT, _ROW).filter(pl.col(_ROW) == pl.col(_ROW).min().over(per_entity))


def _winners(
    single: pl.LazyFrame,
    multi: pl.LazyFrame,
    schema: pl.Schema,
    field: str,
    rule: FieldRule | None,
    rules: list[str],
) -> pl.LazyFrame:
    """(entity code, winning row) for one field, for entities with at least one value.

    `single` holds the records of one-record entities (the record wins if it has a value),
    `multi` the others, the only ones the rules need to look at."""
    extra = []
    if "valid_only" in rules and rule is not None and rule.valid_flag:
        extra.append(rule.valid_flag)
    if "source_priority" in rules:
        extra.append(STATION)
    if "most_recent" in rules:
        extra.append(UPDATED)
    value = render_value(pl.col(field), schema[field]).alias(_VAL)
    lf = multi.select(_ENT, _ROW, value, *dict.fromkeys(extra)).filter(pl.col(_VAL).is_not_null())
    alone = single.filter(pl.col(field).is_not_null()).select(_ENT, _ROW)
    return pl.concat([alone, _narrow(lf, rule, rules)])


def survive(
    records: pl.DataFrame, settings: SurvivorshipSettings, *, entity_col: str = "entity_id"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(golden, provenance).

    records: entity_col, record_key, station_id, batch_id, source_updated_at (Datetime, may be
    null), every configured field (any dtype) and valid_flag column (Boolean).

    golden: entity_col + one column per configured field (in configuration order, original
    dtype), one row per entity (an entity with no value at all gets a row of nulls), sorted by
    entity_col.
    provenance: entity_col, field, value (String; dates ISO), record_key, station_id, batch_id,
    source_updated_at: one row per (entity, field with a non-null golden value), naming the record
    the value came from; ordered by field (configuration order), then entity_col.
    """
    _check(records, settings, entity_col)
    schema = records.schema
    fields = list(settings.fields)
    keep = list(dict.fromkeys([entity_col, *LINEAGE_COLUMNS, *settings.input_columns()]))

    # One sort for all fields: entities contiguous, each entity's records in tie-break order, so
    # `_ROW` (the position) breaks every tie (smaller wins) and entity codes are run numbers.
    base = records.select(keep).sort(
        [entity_col, UPDATED, BATCH, RECORD_KEY], descending=[False, True, True, False], nulls_last=True
    )
    starts = base.get_column(entity_col).ne_missing(base.get_column(entity_col).shift(1))
    base = base.with_row_index(_ROW).with_columns(
        (starts.cum_sum() - 1).cast(pl.UInt32).set_sorted().alias(_ENT)
    )
    entities = base.filter(starts).select(entity_col)  # row i = entity code i
    n_entities = entities.height
    code = pl.col(_ENT)
    is_multi = code.eq_missing(code.shift(1)) | code.eq_missing(code.shift(-1))
    split = base.with_columns(is_multi.alias(f"{_P}multi"))
    single = split.filter(~pl.col(f"{_P}multi")).drop(f"{_P}multi").lazy()
    multi = split.filter(pl.col(f"{_P}multi")).drop(f"{_P}multi").lazy()

    leaders = settings.leaders()
    plans = [_winners(single, multi, schema, f, settings.fields[f], settings.rules_for(f)) for f in leaders]
    won = dict(zip(leaders, pl.collect_all(plans), strict=True))

    # Followers: the leader's winning row; where the leader has no value at all, their own
    # winner under the default rules, among those entities' records only.
    rows: dict[str, pl.Series] = {}
    for leader in leaders:
        rows[leader] = _scatter(won[leader], n_entities)
    fallback_plans, fallback_fields = [], []
    for leader in leaders:
        followers = settings.followers(leader)
        if not followers:
            continue
        orphan = rows[leader].is_null()
        if not orphan.any():
            continue
        orphans = pl.Series(_ENT, orphan.arg_true(), dtype=pl.UInt32).to_frame().lazy()
        single_o = single.join(orphans, on=_ENT, how="semi")
        multi_o = multi.join(orphans, on=_ENT, how="semi")
        for f in followers:
            fallback_plans.append(_winners(single_o, multi_o, schema, f, None, list(settings.default)))
            fallback_fields.append(f)
    fallback = dict(zip(fallback_fields, pl.collect_all(fallback_plans), strict=True))
    for f in fields:
        rule = settings.fields[f]
        if rule.follow is None:
            continue
        lead = rows[rule.follow]
        rows[f] = lead.zip_with(lead.is_not_null(), _scatter(fallback[f], n_entities)) if f in fallback else lead

    golden = entities.with_columns(
        base.get_column(f).gather(rows[f]).alias(f) for f in fields
    )
    provenance = _provenance(base, golden, rows, fields, entity_col)
    return golden, provenance


def _scatter(winners: pl.DataFrame, n_entities: int) -> pl.Series:
    """Winning row per entity code (null where the entity has none), indexed by code."""
    out = pl.repeat(None, n_entities, dtype=pl.UInt32, eager=True).alias(_ROW)
    if winners.height:
        out = out.scatter(winners.get_column(_ENT), winners.get_column(_ROW))
    return out


def _provenance(
    base: pl.DataFrame,
    golden: pl.DataFrame,
    rows: dict[str, pl.Series],
    fields: list[str],
    entity_col: str,
) -> pl.DataFrame:
    """Long frame, one row per (entity, non-null golden field), ordered by field (configuration
    order), then entity (sorting it entity-major would cost about a second per million records)."""
    long = pl.concat(
        [
            golden.select(
                entity_col,
                pl.lit(f, dtype=pl.String).alias("field"),
                render_value(pl.col(f), golden.schema[f]).alias("value"),
                rows[f].alias(_ROW),
            ).filter(pl.col("value").is_not_null())
            for f in fields
        ]
    )
    lineage = base.select(LINEAGE_COLUMNS)[long.get_column(_ROW)]
    return pl.concat([long.drop(_ROW), lineage], how="horizontal")
