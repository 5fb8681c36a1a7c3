"""Which subscribers an event goes to: scope by jurisdiction or own records, before or after.

An event reaches a subscriber when its entity is in the subscriber's scope before or after the
change, so a station also learns that a resident left its area (and then hears nothing more).
Merge, split and retire events also reach whoever has the other entity involved (the survivor,
the parts) in scope, so that references can be repointed.

Correction tasks (entity type `correction_task`) obey the same policy, deny by default:
- a subscriber receives them only if its `entity_types` list `correction_task` **and** the
  entity type of the record the task is about (`person`, `organisation`);
- a station subscriber (kind `station`) receives only the tasks addressed to its station; a
  department receives tasks addressed to any station;
- and only tasks in its scope: `own_records` holds the tasks on the subscriber's station's own
  records (so the station that owns a record always gets that record's tasks), `area_codes`
  the tasks whose record's area (the golden area of the entity holding it, else the record's
  own area code; carried in the event as `area_code`) falls under a prefix, before or after the
  change, like any event.

All of it is joins over frames: the events' area codes (before and after) against the
subscribers' prefixes, one join per distinct prefix length, and the entities' member records
against the subscribers' stations. No loop runs per event or per subscriber.
"""

from __future__ import annotations

import polars as pl

from feeds.config import Subscriber

CORRECTION_TASK = "correction_task"
STRUCTURAL = ("merge", "retire", "split")
_AFTER_STRUCT = pl.Struct({"merged_into": pl.String, "parts": pl.List(pl.String)})


def subscriber_tables(subscribers: list[Subscriber]) -> dict[str, pl.DataFrame]:
    """The subscribers' scope as frames: area prefixes, own-record stations, entity types, and who
    takes correction tasks about which record types (stations: only those addressed to them)."""
    prefixes = [(s.id, p) for s in subscribers for p in s.scope.area_codes]
    own = [(s.id, s.station_id) for s in subscribers if s.scope.own_records and s.station_id]
    types = [(s.id, t) for s in subscribers for t in s.entity_types]
    # who may receive correction tasks, and about which record types; a station only its own
    tasks = [(s.id, t, s.station_id if s.kind == "station" else None) for s in subscribers
             if CORRECTION_TASK in s.entity_types for t in s.entity_types if t != CORRECTION_TASK]
    two = lambda a, b: {a: pl.String, b: pl.String}  # noqa: E731
    return {
        "prefixes": pl.DataFrame(prefixes, schema=two("subscriber_id", "prefix"), orient="row"),
        "own": pl.DataFrame(own, schema=two("subscriber_id", "station_id"), orient="row"),
        "types": pl.DataFrame(types, schema=two("subscriber_id", "entity_type"), orient="row"),
        "tasks": pl.DataFrame(tasks, schema={"subscriber_id": pl.String, "task_type": pl.String,
                                             "only_station": pl.String}, orient="row"),
    }


def _area(record: pl.Expr) -> pl.Expr:
    return record.str.json_path_match("$.area_code")


KEYS_SCHEMA = {"seq": pl.Int64, "entity_type": pl.String, "entity_id": pl.String, "op": pl.String,
               "source_keys": pl.List(pl.String), "area_before": pl.String, "area_after": pl.String,
               "related": pl.List(pl.String), "task_station": pl.String, "task_type": pl.String}
# What scope reads of a task event (warehouse.quality writes them; area_code is routing only).
_TASK_KEYS = pl.Struct({"station_id": pl.String, "record_entity_type": pl.String, "entity_id": pl.String,
                        "area_code": pl.String})


def task_entity(events: pl.DataFrame) -> pl.Series:
    """The golden entities the events' correction tasks are about (for their current areas)."""
    tasks = events.filter(pl.col("entity_type") == CORRECTION_TASK)
    if tasks.height == 0:
        return pl.Series("entity_id", [], pl.String)
    return tasks.select(pl.coalesce(pl.col("after").str.json_decode(_TASK_KEYS).struct.field("entity_id"),
                                    pl.col("before").str.json_decode(_TASK_KEYS).struct.field("entity_id"))
                        .alias("entity_id")).to_series().drop_nulls().unique()


def event_scope_keys(events: pl.DataFrame, versions: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Per event: area code before and after the change, the other entities involved, and (for
    correction tasks) the station addressed and the record's entity type.

    events: the outbox (changed_fields, before, after as JSON text); versions: entity_id, version and
    the area_code as of each version (or the whole record); current: entity_id, area_code (now).
    For an update that did not touch area_code, the area is the one of the event's version. A
    task's area is the `area_code` its event carries (before and after); an event written without
    one falls back to the current golden area of the entity the task is about.
    """
    is_task = pl.col("entity_type") == CORRECTION_TASK
    golden, tasks = events.filter(~is_task), events.filter(is_task)
    parts = []
    if golden.height:
        parts.append(_golden_keys(golden, versions, current))
    if tasks.height:
        parts.append(_task_keys(tasks, current))
    if not parts:
        return pl.DataFrame(schema=KEYS_SCHEMA)
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical_relaxed").select(list(KEYS_SCHEMA))


def _golden_keys(events: pl.DataFrame, versions: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    area_of = pl.col("area_code") if "area_code" in versions.columns else _area(pl.col("record"))
    varea = versions.select("entity_id", "version", area_of.alias("_varea"))
    cur = current.select("entity_id", pl.col("area_code").alias("_carea"))
    cf = pl.col("changed_fields").str.json_decode(pl.List(pl.String))
    ev = (
        events.select("seq", "entity_type", "entity_id", "op", "version", "before", "after", "sources",
                      cf.alias("_cf"))
        .join(varea, on=["entity_id", "version"], how="left")
        .join(cur, on="entity_id", how="left")
    )
    op = pl.col("op")
    area_moved = pl.col("_cf").list.contains("area_code")
    at_version = pl.coalesce("_varea", "_carea")
    after_area = (
        pl.when(op == "create").then(_area(pl.col("after")))
        .when((op == "update") & area_moved).then(_area(pl.col("after")))
        .when(op.is_in(["update", "split"])).then(at_version)
        .otherwise(pl.lit(None, pl.String))
    )
    before_area = (
        pl.when(op == "create").then(pl.lit(None, pl.String))
        .when((op == "update") & area_moved).then(_area(pl.col("before")))
        .when(op == "update").then(at_version)
        .when(op.is_in(list(STRUCTURAL))).then(_area(pl.col("before")))
        .otherwise(pl.lit(None, pl.String))
    )
    structural = pl.col("after").str.json_decode(_AFTER_STRUCT)
    related = pl.when(op.is_in(list(STRUCTURAL))).then(
        pl.concat_list(structural.struct.field("parts").fill_null([]),
                       structural.struct.field("merged_into")).list.drop_nulls()
    ).otherwise(pl.lit([], pl.List(pl.String)))
    return ev.select(
        "seq", "entity_type", "entity_id", "op", _source_keys().alias("source_keys"),
        before_area.alias("area_before"), after_area.alias("area_after"), related.alias("related"),
        pl.lit(None, pl.String).alias("task_station"), pl.lit(None, pl.String).alias("task_type"),
    )


def _task_keys(events: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    a = pl.col("after").str.json_decode(_TASK_KEYS)
    b = pl.col("before").str.json_decode(_TASK_KEYS)
    ev = events.select("seq", "entity_type", "entity_id", "op", "sources", "before", a.alias("_a"), b.alias("_b"))
    ev = ev.with_columns(pl.coalesce(pl.col("_a").struct.field("entity_id"),
                                     pl.col("_b").struct.field("entity_id")).alias("_about"))
    ev = ev.join(current.select(pl.col("entity_id").alias("_about"), pl.col("area_code").alias("_carea")),
                 on="_about", how="left")
    field = lambda f: pl.coalesce(pl.col("_a").struct.field(f), pl.col("_b").struct.field(f))  # noqa: E731
    return ev.select(
        "seq", "entity_type", "entity_id", "op", _source_keys().alias("source_keys"),
        pl.when(pl.col("before").is_not_null())
        .then(pl.coalesce(pl.col("_b").struct.field("area_code"), "_carea")).alias("area_before"),
        pl.when(pl.col("_a").is_not_null())
        .then(pl.coalesce(pl.col("_a").struct.field("area_code"), "_carea")).alias("area_after"),
        pl.lit([], pl.List(pl.String)).alias("related"),
        field("station_id").alias("task_station"),
        field("record_entity_type").alias("task_type"),
    )


def _source_keys() -> pl.Expr:
    return (pl.col("sources").str.json_decode(pl.List(pl.Struct({"record_key": pl.String})))
            .list.eval(pl.element().struct.field("record_key")))


def related_ids(keys: pl.DataFrame) -> pl.Series:
    """Other entities named by merge/split events (their current areas and members are needed)."""
    return keys.select(pl.col("related").explode()).drop_nulls().to_series().unique()


def deliveries(keys: pl.DataFrame, tables: dict[str, pl.DataFrame], members: pl.DataFrame,
               current: pl.DataFrame) -> pl.DataFrame:
    """(seq, subscriber_id, in_before, in_after): every event each subscriber is to receive.

    members: entity_id, record_key (`station:local id`) now; current: entity_id, area_code now
    (for the related entities of merges and splits).
    """
    area_rows = pl.concat([
        keys.select("seq", pl.col("area_before").alias("area"), pl.lit("b").alias("side")),
        keys.select("seq", pl.col("area_after").alias("area"), pl.lit("a").alias("side")),
        keys.select("seq", pl.col("related").alias("entity_id")).explode("entity_id").drop_nulls()
        .join(current.select("entity_id", pl.col("area_code").alias("area")), on="entity_id")
        .select("seq", "area", pl.lit("r").alias("side")),
    ]).drop_nulls("area")
    hits = [_under_prefixes(area_rows, "area", tables).select("seq", "subscriber_id", "side")]
    # own records: the entity (or a merge survivor / split part) holds a record of the station.
    # Membership is as of now; a station whose only record of the entity is among the event's
    # sources has just brought it in (the update that linked its record): in scope after only.
    stations = _member_stations(members)
    own = tables["own"]
    held = keys.select("seq", "entity_id", "source_keys").join(stations, on="entity_id").join(own, on="station_id")
    hits.append(held.select("seq", "subscriber_id", pl.lit("oa").alias("side")))
    hits.append(held.filter(~pl.col("source_keys").list.contains(pl.col("record_key")).fill_null(False))
                .select("seq", "subscriber_id", pl.lit("ob").alias("side")))
    related = keys.select("seq", pl.col("related").alias("entity_id")).explode("entity_id").drop_nulls()
    hits.append(related.join(stations, on="entity_id").join(own, on="station_id")
                .select("seq", "subscriber_id", pl.lit("o").alias("side")))
    # a task on a record of the subscriber's own station is in its own-records scope
    hits.append(keys.filter(pl.col("task_station").is_not_null())
                .select("seq", pl.col("task_station").alias("station_id")).join(own, on="station_id")
                .select("seq", "subscriber_id", pl.lit("o").alias("side")))
    pairs = pl.concat(hits)
    kinds = keys.select("seq", "entity_type", "task_type", "task_station")
    pairs = pairs.join(kinds, on="seq")
    task = pl.col("entity_type") == CORRECTION_TASK
    golden = (pairs.filter(~task)
              .join(tables["types"], on=["subscriber_id", "entity_type"], how="semi"))
    # tasks: opted in for the record's type, and (stations) addressed to the subscriber's station
    tasks = (pairs.filter(task)
             .join(tables["tasks"], on=["subscriber_id", "task_type"], how="inner")
             .filter(pl.col("only_station").is_null() | (pl.col("only_station") == pl.col("task_station"))))
    cols = ["seq", "subscriber_id", "side"]
    return (
        pl.concat([golden.select(cols), tasks.select(cols)])
        .group_by("seq", "subscriber_id")
        .agg(in_before=pl.col("side").is_in(["b", "r", "o", "ob"]).any(),
             in_after=pl.col("side").is_in(["a", "r", "o", "oa"]).any())
        .sort("subscriber_id", "seq")
    )


def snapshot_scope(golden: pl.DataFrame, members: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(entity_id, subscriber_id): which of these active golden records each subscriber's snapshot
    holds, by the rule FeedStore.golden_in_scope reads one subscriber's with: a record of one of
    its entity types whose area code starts with one of its prefixes, or that holds a record of its
    station (`own_records`). golden: entity_id, entity_type, area_code; members: entity_id,
    record_key (`station:local id`) of those records."""
    hits = _under_prefixes(golden.select("entity_id", "entity_type", "area_code"), "area_code", tables)
    held = golden.select("entity_id", "entity_type").join(_member_stations(members), on="entity_id").join(
        tables["own"], on="station_id")
    return (pl.concat([hits.select("entity_id", "entity_type", "subscriber_id"),
                       held.select("entity_id", "entity_type", "subscriber_id")])
            .join(tables["types"], on=["subscriber_id", "entity_type"], how="semi")
            .select("entity_id", "subscriber_id").unique())


def _under_prefixes(rows: pl.DataFrame, area: str, tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """`rows` once per subscriber one of whose area prefixes their `area` starts with (plus
    subscriber_id): one join per distinct prefix length."""
    prefixes = tables["prefixes"].with_columns(_len=pl.col("prefix").str.len_chars())
    return pl.concat([
        rows.filter(pl.col(area).str.len_chars() >= n).with_columns(_prefix=pl.col(area).str.head(n))
        .join(prefixes.filter(pl.col("_len") == n).select(pl.col("prefix").alias("_prefix"), "subscriber_id"),
              on="_prefix")
        .drop("_prefix")
        for n in prefixes["_len"].unique().to_list()
    ], how="vertical") if prefixes.height else rows.clear().with_columns(subscriber_id=pl.lit(None, pl.String))


def _member_stations(members: pl.DataFrame) -> pl.DataFrame:
    """Members (entity_id, record_key `station:local id`) with the station of each record."""
    return members.select("entity_id", "record_key",
                          pl.col("record_key").str.extract(r"^([^:]+):", 1).alias("station_id"))
