"""Building feeds: the events (and snapshots) each subscriber receives, projected to its visible
fields and masked per its role, as JSON lines ready for files and for the API.

Subscribers sharing a policy (the same visible fields at the same levels) share the work: each
distinct policy masks its events once, as Polars expressions over the whole frame. JSON is built
from per-field fragments (Polars' own encoder), so an update carries only the changed fields that
the subscriber may see, and nothing outside its policy is ever encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from core.provenance import provenance_rows
from feeds import scope as sc
from feeds.config import Level, Subscriber, Subscriptions
from feeds.masking import CONTEXT_FIELDS, mask, project
from feeds.snapshot_rows import MAX_ROWS as SNAPSHOT_TWIN_MAX
from feeds.snapshot_rows import snapshot_rows

SCHEMA_VERSION = 1
# One row per (subscriber, event): the envelope's columns (nested values as JSON text, as CSV and
# Parquet carry them), `line` (the whole event as one JSON object, as JSON Lines and the API carry
# it), `fields` (the personal fields it delivers, for the audit log) and `about` (for a correction
# task, the golden entity whose record it is about: the audit log names it too).
ENVELOPE = ("seq", "event_id", "entity_type", "entity_id", "op", "version", "changed_fields", "before", "after",
            "sources", "occurred_at", "scope")
LINE_SCHEMA = {"subscriber_id": pl.String, "seq": pl.Int64, "event_id": pl.String, "entity_type": pl.String,
               "entity_id": pl.String, "op": pl.String, "version": pl.Int64, "changed_fields": pl.String,
               "before": pl.String, "after": pl.String, "sources": pl.String, "occurred_at": pl.String,
               "scope": pl.String, "line": pl.String, "fields": pl.List(pl.String), "about": pl.String}
RECORD = ("entity_id", "entity_type", "version", "record", "provenance")
SNAPSHOT_SCHEMA = {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "record": pl.String,
                   "provenance": pl.String, "line": pl.String, "fields": pl.List(pl.String), "about": pl.String}
# A correction task as delivered: which record and field to verify and why, always; the station's
# value and the expected one only where the subscriber's role lets it see that field, masked by the
# same rules as golden records. (`area_code` in the outbox's task events routes them; never sent.)
# `evidence` says in words which check failed and how many records and stations agree: counts
# and check names, never a value, so it is metadata every subscriber of the task may see.
# An overdue reminder (quality.supervision, on each quality pass) is the task as it stands plus
# `overdue: true`, when it fell due and the days it has been open: metadata keys like the others,
# always delivered (null on the task's other events, which do not carry them).
TASK_REMINDER = ("overdue", "due_at", "days_open")
TASK_META = ("task_id", "station_id", "record_key", "record_entity_type", "entity_id", "field", "reason", "source",
             "status", "opened_at", "closed_at", "evidence", *TASK_REMINDER)
TASK_VALUES = ("station_value", "expected_value")
TASK_TYPES = {"overdue": pl.Boolean, "days_open": pl.Int64}  # every other key is text
_TASK = pl.Struct({k: TASK_TYPES.get(k, pl.String) for k in (*TASK_META, *TASK_VALUES)})
_SOURCE = pl.List(pl.Struct({"station_id": pl.String, "record_key": pl.String}))


@dataclass(frozen=True)
class FeedInputs:
    """What the builder reads around the events: versions and members of the entities involved,
    and the current golden area codes (see FeedStore)."""

    versions: pl.DataFrame  # entity_id, version, record
    members: pl.DataFrame  # entity_id, record_key
    current: pl.DataFrame  # entity_id, area_code


# -- JSON helpers ----------------------------------------------------------------------------------
def json_value(expr: pl.Expr) -> pl.Expr:
    """A value as JSON text (`"张*"`, `null`, `["a"]`), by Polars' encoder."""
    return (pl.struct(expr.alias("v")).struct.json_encode()
            .str.strip_prefix('{"v":').str.strip_suffix("}"))


def json_object(values: dict[str, pl.Expr], include: dict[str, pl.Expr] | None = None) -> pl.Expr:
    """A JSON object of the named values, each key present only where its `include` holds."""
    if not values:
        return pl.lit("{}")
    frags = [
        pl.when(include[k] if include else pl.lit(True)).then(
            pl.struct(v.alias(k)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"))
        for k, v in values.items()
    ]
    return pl.concat_str(pl.lit("{"), pl.concat_list(frags).list.drop_nulls().list.join(","), pl.lit("}"))


def has_key(text: pl.Expr, key: str) -> pl.Expr:
    """Whether a flat JSON object (as text) has `key`; a string value cannot fake one, since its
    quotes are escaped."""
    return text.str.contains(f'[{{,]"{key}":').fill_null(False)


def key_list(include: dict[str, pl.Expr]) -> pl.Expr:
    """The keys whose condition holds, as a list column."""
    if not include:
        return pl.lit([], pl.List(pl.String))
    return pl.concat_list([pl.when(c).then(pl.lit(k)) for k, c in include.items()]).list.drop_nulls()


def _strip_close(text: pl.Expr) -> pl.Expr:
    return text.str.strip_suffix("}")


def policies(subs: Subscriptions, subscribers: list[Subscriber]) -> dict[str, dict[str, Level]]:
    return {s.id: subs.levels(s) for s in subscribers}


def _policy_groups(levels: dict[str, dict[str, Level]]) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for sid, lv in levels.items():
        groups.setdefault(tuple(lv.items()), []).append(sid)
    return groups


# -- events -------------------------------------------------------------------------------------------
def _decoded(events: pl.DataFrame, versions: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Events with `a.<f>` / `b.<f>`: every field's value after and before the change (from the
    event itself, completed by the golden versions so that masking rules that read other parts,
    such as the address cut to its community, see the whole record)."""
    rec = pl.Struct({f: pl.String for f in fields})
    v = versions.select("entity_id", "version", pl.col("record").str.json_decode(rec).alias("_v"))
    prev = v.select("entity_id", (pl.col("version") + 1).alias("version"), pl.col("_v").alias("_p"))
    task = pl.col("entity_type") == sc.CORRECTION_TASK
    any_task = events["entity_type"].eq(sc.CORRECTION_TASK).any()
    tasks = [pl.when(task).then(pl.col(c)).str.json_decode(_TASK).alias(f"_t{c[0]}") if any_task
             else pl.lit(None, _TASK).alias(f"_t{c[0]}") for c in ("after", "before")]
    ev = (
        events.with_columns(
            pl.col("changed_fields").str.json_decode(pl.List(pl.String)).alias("_cf"),
            pl.when(task).then(None).otherwise(pl.col("after")).str.json_decode(rec).alias("_a"),
            pl.when(task).then(None).otherwise(pl.col("before")).str.json_decode(rec).alias("_b"),
            *tasks,
        )
        .join(v, on=["entity_id", "version"], how="left")
        .join(prev, on=["entity_id", "version"], how="left")
    )
    return ev.with_columns(
        *[pl.coalesce(pl.col("_a").struct.field(f), pl.col("_v").struct.field(f)).alias(f"a.{f}") for f in fields],
        *[pl.coalesce(pl.col("_b").struct.field(f), pl.col("_p").struct.field(f)).alias(f"b.{f}") for f in fields],
    ).drop("_a", "_b", "_v", "_p")


def record_keys(events: pl.DataFrame, versions: pl.DataFrame, sample: int = 50) -> dict[str, set[str]]:
    """The fields each entity type's golden records carry (keys of a sample of its records): the
    pipeline encodes every field of a type, null or not, so a type's records share their keys."""
    typed = versions.join(events.select("entity_id", "entity_type").unique("entity_id"), on="entity_id")
    recs = pl.concat([
        typed.select("entity_type", "record"),
        events.filter(pl.col("op") == "create").select("entity_type", pl.col("after").alias("record")),
    ]).drop_nulls().group_by("entity_type").head(sample)
    keys: dict[str, set[str]] = {}
    for etype, rec in recs.iter_rows():
        try:
            keys.setdefault(etype, set()).update(json.loads(rec))
        except (ValueError, TypeError):
            continue
    return keys


def _in_type(keys: dict[str, set[str]], field: str) -> pl.Expr:
    return pl.col("entity_type").is_in([t for t, ks in keys.items() if field in ks])


def _policy_lines(ev: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions,
                  keys: dict[str, set[str]]) -> pl.DataFrame:
    """One policy's view of the events: the envelope's columns and the fields each delivers.

    Each kind of event is projected on its own rows only (creates: the whole visible record;
    updates: the visible changed fields, and the whole visible record for subscribers the
    entity enters; merge/split/retire: the record before, and the ids to repoint to; correction
    tasks: the task, its values as the policy sees the task's field — see task_view)."""
    visible = list(levels)
    op = pl.col("op")
    a = dict(zip(visible, project(levels, subs, lambda f: pl.col(f"a.{f}")), strict=True))
    b = dict(zip(visible, project(levels, subs, lambda f: pl.col(f"b.{f}")), strict=True))
    present = {f: _in_type(keys, f) for f in visible}
    changed = {f: pl.col("_cf").list.contains(f) for f in visible}
    vis_cf = pl.col("_cf").list.eval(pl.element().filter(pl.element().is_in(visible)))
    none = pl.lit(None, pl.String)
    task = pl.col("entity_type") == sc.CORRECTION_TASK
    tv = task_view(levels, subs)
    kinds = {
        "create": (~task & (op == "create"), vis_cf, none, json_object(a, present), none, key_list(present), none),
        "update": (~task & (op == "update"), vis_cf, json_object(b, changed), json_object(a, changed),
                   json_object(a, {f: present[f] | changed[f] for f in visible}), vis_cf, none),
        "structural": (~task & op.is_in(list(sc.STRUCTURAL)), vis_cf, json_object(b, present), pl.col("after"), none,
                       key_list(present), none),
        "task": (task, tv["changed_fields"], tv["before"], tv["after"], none, tv["fields"], tv["about"]),
    }
    sources = pl.col("sources").str.json_decode(_SOURCE).list.eval(pl.element().struct.json_encode())
    parts = []
    for name, (cond, cf, before, after, after_full, delivered, about) in kinds.items():
        rows = ev.filter(cond)
        if rows.height == 0:
            continue
        parts.append(rows.select(
            "seq", "event_id", "entity_type", "entity_id", "op", "version",
            json_value(cf).alias("changed_fields"), before.alias("before"), after.alias("after"),
            after_full.alias("_after_full"),
            pl.concat_str(pl.lit("["), sources.list.join(","), pl.lit("]")).fill_null("[]").alias("sources"),
            pl.col("occurred_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z").alias("occurred_at"),
            delivered.alias("fields"),
            (delivered if name == "task" else key_list({f: present[f] | changed[f] for f in visible}))
            .alias("_fields_full"),
            # a task is no golden update: scope entered/left and "nothing visible changed" do not apply
            (op == "update").alias("_update") if name == "update" else pl.lit(False).alias("_update"),
            (cf.list.len() > 0).alias("_visible_change"), about.alias("about"),
        ))
    return pl.concat(parts).sort("seq")


def _task_value(value: pl.Expr, field: pl.Expr, levels: dict[str, Level], subs: Subscriptions) -> pl.Expr:
    """A task's value of its (per row) field as the policy delivers that field: as is (`full`),
    masked by the field's rule (`masked`), or null where the field is not visible. A rule that
    reads other parts of the record (the address cut to its community) has none here, so it
    redacts rather than guess."""
    out = None
    for f, level in levels.items():
        if level == "full":
            v = value.cast(pl.String)
        else:
            v = mask(f, subs.rule(f), lambda name, f=f: value if name == f else pl.lit(None, pl.String))
        out = (pl.when(field == f) if out is None else out.when(field == f)).then(v)
    return pl.lit(None, pl.String) if out is None else out.otherwise(pl.lit(None, pl.String))


def task_view(levels: dict[str, Level], subs: Subscriptions, *, after: str = "_ta",
              before: str = "_tb") -> dict[str, pl.Expr]:
    """Expressions over decoded task payloads (`after` / `before` struct columns, `_cf` the changed
    keys) for one policy: the task objects as delivered, the changed keys it may see, the personal
    fields delivered (the task's field, when visible: for the audit log) and the entity it is about.

    Deny by default: the object is built from a fixed list of keys (TASK_META), never by copying
    the payload, so nothing the event carries besides them (the routing area) gets through."""
    a, b = pl.col(after), pl.col(before)
    field = pl.coalesce(a.struct.field("field"), b.struct.field("field"))
    visible = field.is_in(list(levels)).fill_null(False)

    def obj(s: pl.Expr) -> pl.Expr:
        values = {k: s.struct.field(k) for k in TASK_META}
        values |= {k: _task_value(s.struct.field(k), field, levels, subs) for k in TASK_VALUES}
        include = {k: pl.lit(True) for k in TASK_META} | {k: visible for k in TASK_VALUES}
        return pl.when(s.is_not_null()).then(json_object(values, include)).otherwise(pl.lit(None, pl.String))

    meta = pl.element().is_in(list(TASK_META))
    cf = pl.col("_cf")
    return {
        "after": obj(a),
        "before": obj(b),
        "changed_fields": pl.when(visible).then(cf.list.eval(pl.element().filter(meta | pl.element().is_in(
            list(TASK_VALUES))))).otherwise(cf.list.eval(pl.element().filter(meta))),
        "fields": pl.when(visible).then(pl.concat_list(field)).otherwise(pl.lit([], pl.List(pl.String))),
        "about": pl.coalesce(a.struct.field("entity_id"), b.struct.field("entity_id")),
    }


def envelope_line() -> pl.Expr:
    """The event as one JSON object (JSON Lines, API), from the envelope's columns."""
    head = pl.struct("seq", "event_id", "entity_type", "entity_id", "op", "version").struct.json_encode()
    return pl.concat_str(
        _strip_close(head),
        pl.lit(',"changed_fields":'), pl.col("changed_fields"),
        pl.lit(',"before":'), pl.col("before").fill_null("null"),
        pl.lit(',"after":'), pl.col("after").fill_null("null"),
        pl.lit(',"sources":'), pl.col("sources"),
        pl.lit(',"occurred_at":'), json_value(pl.col("occurred_at")),
        pl.lit(',"scope":'), json_value(pl.col("scope")),
        pl.lit("}"),
    )


def build_events(events: pl.DataFrame, inputs: FeedInputs, subs: Subscriptions, subscribers: list[Subscriber],
                 after: dict[str, int]) -> pl.DataFrame:
    """Every subscriber's events after its cursor (`after`: subscriber id -> seq), in seq order,
    one row per (subscriber, event) with the JSON line as delivered (LINE_SCHEMA).

    An update whose changed fields are all invisible to a subscriber is left out, unless it moves
    the entity into or out of the subscriber's scope (then it arrives with `scope` entered/left
    and only the fields it may see).
    """
    if events.height == 0 or not subscribers:
        return pl.DataFrame(schema=LINE_SCHEMA)
    tables = sc.subscriber_tables(subscribers)
    keys = sc.event_scope_keys(events, inputs.versions, inputs.current)
    pairs = sc.deliveries(keys, tables, inputs.members, inputs.current)
    cursor = pl.DataFrame({"subscriber_id": list(after), "_after": list(after.values())},
                          schema={"subscriber_id": pl.String, "_after": pl.Int64})
    pairs = pairs.join(cursor, on="subscriber_id", how="left").filter(
        pl.col("seq") > pl.col("_after").fill_null(0)).drop("_after")
    if pairs.height == 0:
        return pl.DataFrame(schema=LINE_SCHEMA)
    levels = policies(subs, subscribers)
    fields = sorted({f for lv in levels.values() for f in lv} | set(CONTEXT_FIELDS))
    ev = _decoded(events.filter(pl.col("seq").is_in(pairs["seq"].unique().implode())), inputs.versions, fields)
    keys = record_keys(events, inputs.versions)
    parts = []
    for policy, ids in _policy_groups(levels).items():
        mine = pairs.filter(pl.col("subscriber_id").is_in(ids))
        if mine.height == 0:
            continue
        lines = _policy_lines(ev.filter(pl.col("seq").is_in(mine["seq"].unique().implode())), dict(policy), subs,
                              keys)
        parts.append(mine.join(lines, on="seq"))
    joined = pl.concat(parts)
    scope = (pl.when(pl.col("_update") & pl.col("in_before") & ~pl.col("in_after")).then(pl.lit("left"))
             .when(pl.col("_update") & ~pl.col("in_before") & pl.col("in_after")).then(pl.lit("entered"))
             .otherwise(pl.lit("in")))
    entered = pl.col("scope") == "entered"
    return (
        joined.with_columns(scope.alias("scope"))
        .filter(~pl.col("_update") | pl.col("_visible_change") | (pl.col("scope") != "in"))
        .with_columns(pl.when(entered).then(pl.col("_after_full")).otherwise(pl.col("after")).alias("after"),
                      pl.when(entered).then(pl.col("_fields_full")).otherwise(pl.col("fields")).alias("fields"))
        .with_columns(envelope_line().alias("line"))
        .select(list(LINE_SCHEMA))
        .sort("subscriber_id", "seq")
    )


# -- snapshots ------------------------------------------------------------------------------------------
def build_snapshot(golden: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions) -> pl.DataFrame:
    """Golden records (entity_id, entity_type, version, record, provenance JSON) as one subscriber
    receives them: the record masked to its visible fields, provenance limited to those fields'
    station and record key (SNAPSHOT_SCHEMA). A handful of records (the front desk, record
    lookups) go through the plain-Python twin (feeds.snapshot_rows), which gives the same rows."""
    if golden.height == 0:
        return pl.DataFrame(schema=SNAPSHOT_SCHEMA)
    if golden.height <= SNAPSHOT_TWIN_MAX:
        twin = snapshot_rows(golden, levels, subs)
        if twin is not None:
            return twin
    return snapshot_frame(golden, levels, subs)


def snapshot_frame(golden: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions) -> pl.DataFrame:
    """build_snapshot by Polars, whatever the number of records."""
    visible = list(levels)
    fields = sorted(set(visible) | set(CONTEXT_FIELDS))
    rec = golden.select(
        "entity_id", "entity_type", "version", pl.col("record").alias("_raw"),
        pl.col("record").str.json_decode(pl.Struct({f: pl.String for f in fields})).alias("_r"),
    ).with_columns(*[pl.col("_r").struct.field(f).alias(f"r.{f}") for f in fields])
    masked = dict(zip(visible, project(levels, subs, lambda f: pl.col(f"r.{f}")), strict=True))
    present = {f: has_key(pl.col("_raw"), f) for f in visible}
    prov = (
        provenance_rows(golden)
        .filter(pl.col("field").is_in(visible))
        .group_by("entity_id").agg(
            pl.concat_str(json_value(pl.col("field")), pl.lit(":"),
                          pl.struct("station_id", "record_key").struct.json_encode()).sort().str.join(",").alias("_p"))
    )
    head = pl.struct("entity_id", "entity_type", "version").struct.json_encode()
    return (
        rec.join(prov, on="entity_id", how="left", maintain_order="left")
        .with_columns(json_object(masked, present).alias("record"),
                      pl.concat_str(pl.lit("{"), pl.col("_p").fill_null(""), pl.lit("}")).alias("provenance"))
        .select(
            "entity_id", "entity_type", "version", "record", "provenance",
            pl.concat_str(_strip_close(head), pl.lit(',"record":'), pl.col("record"),
                          pl.lit(',"provenance":'), pl.col("provenance"), pl.lit("}")).alias("line"),
            key_list(present).alias("fields"),
            pl.lit(None, pl.String).alias("about"),
        )
    )


def build_task_snapshot(tasks: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions) -> pl.DataFrame:
    """Open correction tasks (the latest outbox event of each, in the outbox's shape) as one
    subscriber receives them in a snapshot: one row per task in the snapshot's format
    (SNAPSHOT_SCHEMA; entity_type `correction_task`, `record` the task as task_view delivers it,
    no provenance: the task names its own station and record)."""
    if tasks.height == 0:
        return pl.DataFrame(schema=SNAPSHOT_SCHEMA)
    tv = task_view(levels, subs)
    head = pl.struct("entity_id", "entity_type", "version").struct.json_encode()
    return (
        tasks.select(
            "entity_id", "entity_type", "version",
            pl.col("after").str.json_decode(_TASK).alias("_ta"),
            pl.lit(None, _TASK).alias("_tb"),
            pl.lit([], pl.List(pl.String)).alias("_cf"),
        )
        .select("entity_id", "entity_type", "version", tv["after"].alias("record"), pl.lit("{}").alias("provenance"),
                tv["fields"].alias("fields"), tv["about"].alias("about"))
        .with_columns(pl.concat_str(_strip_close(head), pl.lit(',"record":'), pl.col("record"),
                                    pl.lit(',"provenance":'), pl.col("provenance"), pl.lit("}")).alias("line"))
        .select(list(SNAPSHOT_SCHEMA))
    )


def audit_ids(rows: pl.DataFrame) -> list[str]:
    """The entities a set of delivered rows carries data about: their ids, and for correction
    tasks the entity of the record the task is about."""
    ids = rows["entity_id"].to_list()
    if "about" in rows.columns:
        ids += rows["about"].drop_nulls().to_list()
    return ids


def audit_fields(fields: pl.Series | list[list[str] | None], levels: dict[str, Level]) -> dict[str, str]:
    """The fields actually delivered (union over the rows), with their masking level (a list:
    the front desk's few rows, where a Series would cost more than the union)."""
    if isinstance(fields, list):
        seen = {f for row in fields if row for f in row}
    else:
        seen = set(fields.explode().drop_nulls().unique().to_list()) if fields.len() else set()
    return {f: levels[f] for f in levels if f in seen}
