"""Golden records and change events: change once, updated everywhere.

After each resolution run, the entities it touched get their golden record recomputed by
survivorship; only real differences become new versions and change events. Resolution's merges,
splits and retirements become events too, so a station can repoint its local references. The
store (warehouse/golden.py) commits golden rows, versions and events in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from entity_resolution.golden import diff_golden
from entity_resolution.survivorship import SurvivorshipSettings, survive

EVENT_NAMESPACE = uuid.UUID("5b0b7c1e-3f52-4c59-9d8e-0e1e2a3b4c5d")
OP_ORDER = {"create": 0, "split": 1, "update": 2, "merge": 3, "retire": 4}


class GoldenStore(Protocol):
    def state(self) -> int: ...
    def latest_resolution_seq(self) -> int: ...
    def entity_changes(self, after_seq: int) -> pl.DataFrame: ...
    def touched_entities(self, after_seq: int) -> pl.Series: ...
    def inputs(self, entity_ids: pl.Series, fields: list[str]) -> pl.DataFrame: ...
    def current(self, entity_ids: pl.Series) -> pl.DataFrame: ...
    def commit(self, *, golden: pl.DataFrame, versions: pl.DataFrame, events: pl.DataFrame,
               resolution_seq: int) -> tuple[int, int]: ...


@dataclass
class GoldenSummary:
    entity_type: str
    resolution_seq: int
    entities_recomputed: int = 0
    events: int = 0
    seq_range: tuple[int, int] | None = None
    ops: dict[str, int] = field(default_factory=dict)


def event_id(entity_id: str, version: int, op: str) -> str:
    """Deterministic, so a rerun of the same change produces the same id (consumers dedupe on it)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{entity_id}:{version}:{op}"))


def event_ids(events: pl.DataFrame) -> pl.Series:
    """`event_id` of each row of a frame with entity_id, version and op."""
    return pl.Series("event_id", [event_id(e, v, o) for e, v, o in
                                  zip(events["entity_id"], events["version"], events["op"])], dtype=pl.String)


def _as_text(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Every field as text (dates ISO), the form values are stored, compared and published in."""
    return frame.select("entity_id", *[
        (pl.col(f).dt.strftime("%Y-%m-%dT%H:%M:%S") if isinstance(frame.schema[f], pl.Datetime)
         else pl.col(f).cast(pl.String)).alias(f)
        for f in fields
    ])


def _record_json(fields: list[str]) -> pl.Expr:
    return pl.struct([pl.col(f) for f in fields]).struct.json_encode()


def _provenance_json(provenance: pl.DataFrame) -> pl.DataFrame:
    prov = provenance.with_columns(pl.col("source_updated_at").cast(pl.String))
    return prov.group_by("entity_id").agg(
        pl.struct("field", "station_id", "batch_id", "record_key", "source_updated_at")
        .sort_by("field").alias("p")
    ).select("entity_id", _json_list(pl.col("p")).alias("provenance"))


def run_golden(store: GoldenStore, settings: SurvivorshipSettings, *, entity_type: str,
               carried: Sequence[str] = ()) -> GoldenSummary:
    """Recompute the golden records of the entities resolution touched since the last step, and
    commit the real changes with their versions and events.

    `carried`: golden fields that survivorship does not produce but another step writes into the
    records (a relation's field, e.g. a person's dwelling id: core/entity_types.yaml
    `relations:`); a rebuilt record keeps their stored values, and they are never reported as
    changed or removed here.
    """
    last, latest = store.state(), store.latest_resolution_seq()
    summary = GoldenSummary(entity_type, latest)
    if latest <= last:
        return summary
    fields = list(settings.fields)
    carried = [f for f in dict.fromkeys(carried) if f not in settings.fields]
    changes = store.entity_changes(last)
    active, retired = _affected(store, changes, last)
    golden, provenance = _survive(store, settings, active, fields)
    current = store.current(pl.concat([active, retired["entity_id"]]).unique())
    before = _decode(current, [*fields, *carried])
    after = _as_text(golden, fields).join(before.select("entity_id", *carried), on="entity_id", how="left")
    events = pl.concat([_value_events(before, after, active, fields), _structural_events(changes, before)],
                       how="vertical_relaxed")
    if events.height == 0:
        store.commit(golden=pl.DataFrame(), versions=pl.DataFrame(), events=pl.DataFrame(), resolution_seq=latest)
        return summary
    bumped = _bumped(events, current)
    events = _numbered(events, bumped, provenance)
    golden_rows = _golden_rows(after, [*fields, *carried], provenance, before, retired, bumped)
    versions = _versions(golden_rows, events)
    first, last_seq = store.commit(
        golden=golden_rows, versions=versions,
        events=events.select("event_id", "entity_id", "op", "version", "changed_fields", "before", "after",
                             "sources"),
        resolution_seq=latest,
    )
    summary.entities_recomputed = int(active.len())
    summary.events = events.height
    summary.seq_range = (first, last_seq)
    summary.ops = {k: int(v) for k, v in events.group_by("op").len().iter_rows()}
    return summary


def _affected(store: GoldenStore, changes: pl.DataFrame, last: int) -> tuple[pl.Series, pl.DataFrame]:
    """(active, retired): the entities whose golden record is recomputed (records changed, new,
    split, or survivors of a merge) and the ids retired since (entity_id, merged_into)."""
    retired = changes.filter(pl.col("op") == "retire").select("entity_id", "merged_into").unique("entity_id")
    active = _minus(pl.concat([
        store.touched_entities(last),
        changes.filter(pl.col("op") != "retire")["entity_id"],
        retired["merged_into"].drop_nulls(),
    ]).unique(), retired["entity_id"])
    return active, retired


def _survive(store: GoldenStore, settings: SurvivorshipSettings, active: pl.Series,
             fields: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Survivorship over the active entities' member records: (golden values, provenance)."""
    valid_flags = [r.valid_flag for r in settings.fields.values() if r.valid_flag]
    return survive(store.inputs(active, [*fields, *valid_flags]), settings)


def _value_events(before: pl.DataFrame, after: pl.DataFrame, active: pl.Series, fields: list[str]) -> pl.DataFrame:
    """create / update events: the survivorship fields that differ from the stored record."""
    diffs = diff_golden(before.filter(pl.col("entity_id").is_in(active.implode())), after, fields)
    return diffs.filter(pl.col("kind") != "gone").select(
        "entity_id", pl.col("kind").alias("op"), "changed_fields", "before", "after")


def _structural_events(changes: pl.DataFrame, before: pl.DataFrame) -> pl.DataFrame:
    """merge / split / retire events. A retired id's event says where it went (op merge) so
    stations repoint their references; the survivor's own change shows as its value update. A
    split is announced on the id that kept the larger part, with the ids of the other parts."""
    structural = changes.filter(pl.col("op").is_in(["split", "retire"])).select(
        "entity_id",
        pl.when((pl.col("op") == "retire") & pl.col("merged_into").is_not_null()).then(pl.lit("merge"))
        .otherwise(pl.col("op")).alias("op"),
        "merged_into", "parts",
    ).unique(["entity_id", "op"], keep="last")
    return structural.join(before.select("entity_id", "_record"), on="entity_id", how="left").select(
        "entity_id", "op", pl.lit([], pl.List(pl.String)).alias("changed_fields"),
        pl.col("_record").alias("before"),
        pl.when(pl.col("op") == "split")
        .then(pl.struct(pl.col("parts")).struct.json_encode())
        .when(pl.col("merged_into").is_not_null())
        .then(pl.struct(pl.col("merged_into")).struct.json_encode())
        .otherwise(pl.lit("{}")).alias("after"),
    )


def _bumped(events: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """One new version per entity with any event this step; all its events carry it."""
    return events.select("entity_id").unique().join(current.select("entity_id", "version"), on="entity_id",
                                                    how="left").with_columns(
        version=(pl.col("version").fill_null(0) + 1).cast(pl.Int64))


def _numbered(events: pl.DataFrame, bumped: pl.DataFrame, provenance: pl.DataFrame) -> pl.DataFrame:
    """Events with their version, sources and deterministic event id, in op order, changed_fields
    as JSON text."""
    events = (
        events.join(bumped, on="entity_id")
        .join(_sources(events, provenance), on=["entity_id", "op"], how="left")
        .with_columns(pl.col("sources").fill_null("[]"), _op_rank().alias("_rank"))
        .sort("_rank", "entity_id")
    )
    return (
        events.with_columns(event_ids(events))
        .with_columns(
            pl.when(pl.col("changed_fields").list.len() == 0).then(pl.lit("[]"))
            .otherwise(pl.concat_str(pl.lit('["'), pl.col("changed_fields").list.join('","'), pl.lit('"]')))
            .alias("changed_fields"))  # field names are identifiers: nothing to escape
        .drop("_rank")
    )


def _golden_rows(after: pl.DataFrame, record_fields: list[str], provenance: pl.DataFrame, before: pl.DataFrame,
                 retired: pl.DataFrame, bumped: pl.DataFrame) -> pl.DataFrame:
    """The golden rows to write: the rebuilt records (survivorship fields, then carried ones) and
    the retired ids' last records, only for entities that changed."""
    new_rows = (
        after.with_columns(_record_json(record_fields).alias("record"))
        .join(_provenance_json(provenance), on="entity_id", how="left")
        .with_columns(pl.col("provenance").fill_null("[]"), pl.lit("active").alias("status"))
    )
    if "area_code" not in after.columns:  # feeds scope by it; other schemas may not have one
        new_rows = new_rows.with_columns(pl.lit(None, pl.String).alias("area_code"))
    retired_rows = before.join(retired.select("entity_id"), on="entity_id").select(
        "entity_id", pl.col("_record").alias("record"), pl.col("_provenance").alias("provenance"),
        pl.lit("retired").alias("status"), pl.lit(None, pl.String).alias("area_code"))
    return pl.concat([
        new_rows.select("entity_id", "record", "provenance", "status", "area_code"), retired_rows,
    ], how="vertical_relaxed").join(bumped, on="entity_id")


def _versions(golden_rows: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """A golden_versions row per changed entity: its new record, under its last event's op."""
    last_op = events.group_by("entity_id", maintain_order=True).agg(
        pl.col("op").last(), pl.col("changed_fields").first(), pl.col("sources").first())
    return golden_rows.join(last_op, on="entity_id").select(
        "entity_id", "version", "op", "record", "provenance", "changed_fields", "sources")


def _minus(ids: pl.Series, drop: pl.Series) -> pl.Series:
    return ids.filter(~ids.is_in(drop.implode())).rename("entity_id")


def _decode(current: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Stored golden records back to text columns, keeping the raw JSON for events."""
    if current.height == 0:
        return pl.DataFrame(schema={"entity_id": pl.String, **{f: pl.String for f in fields},
                                    "_record": pl.String, "_provenance": pl.String})
    decoded = current.select(
        "entity_id",
        pl.col("record").str.json_decode(pl.Struct({f: pl.String for f in fields})).alias("_values"),
        pl.col("record").alias("_record"), pl.col("provenance").alias("_provenance"),
    ).unnest("_values")
    return decoded


def _sources(events: pl.DataFrame, provenance: pl.DataFrame) -> pl.DataFrame:
    """Per event, the distinct station records behind it (JSON list): for an update, the records
    that supplied the changed fields; otherwise every record the golden values came from."""
    fields = events.select("entity_id", "op", pl.col("changed_fields").alias("field")).explode("field")
    by_field = fields.filter(pl.col("op") == "update").join(provenance, on=["entity_id", "field"])
    whole = events.filter(pl.col("op") != "update").select("entity_id", "op").join(provenance, on="entity_id")
    cols = ["entity_id", "op", "station_id", "record_key", "batch_id"]
    src = pl.concat([by_field.select(cols), whole.select(cols)]).unique().sort(cols)
    return src.group_by("entity_id", "op", maintain_order=True).agg(
        pl.struct("station_id", "record_key", "batch_id").alias("s")
    ).select("entity_id", "op", _json_list(pl.col("s")).alias("sources"))


def _json_list(structs: pl.Expr) -> pl.Expr:
    """A list of structs as a JSON array, built by Polars' own JSON encoder per element."""
    return pl.concat_str(pl.lit("["), structs.list.eval(pl.element().struct.json_encode()).list.join(","), pl.lit("]"))


def _op_rank() -> pl.Expr:
    return pl.col("op").replace_strict(OP_ORDER, default=9, return_dtype=pl.Int8)
