"""Golden records and change events: change once, updated everywhere.

After each resolution run, the entities it touched get their golden record recomputed by
survivorship; only real differences become new versions and change events. Resolution's merges,
splits and retirements become events too, so a station can repoint its local references. The
store (warehouse/golden.py) commits golden rows, versions and events in one transaction.
"""

from __future__ import annotations

import hashlib
import resource
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

import polars as pl

from core.json_columns import in_slices
from core.provenance import provenance_json
from entity_resolution.golden import diff_golden
from entity_resolution.survivorship import SurvivorshipSettings, survive

EVENT_NAMESPACE = uuid.UUID("5b0b7c1e-3f52-4c59-9d8e-0e1e2a3b4c5d")
OP_ORDER = {"create": 0, "split": 1, "update": 2, "merge": 3, "retire": 4}


class Linker(Protocol):
    """A golden field whose value another type's records decide (a relation's `from_field`:
    entity_resolution.relations.PublishedLinks), set as a record is published."""

    @property
    def field(self) -> str: ...
    @property
    def key(self) -> list[str]: ...  # the survivorship fields it reads (an event's sources)
    def values(self, records: pl.DataFrame) -> pl.DataFrame: ...  # entity_id + `field`


class GoldenStore(Protocol):
    def state(self) -> int: ...
    def latest_resolution_seq(self) -> int: ...
    def entity_changes(self, after_seq: int) -> pl.DataFrame: ...
    def touched_entities(self, after_seq: int) -> pl.Series: ...
    def inputs(self, entity_ids: pl.Series, fields: list[str]) -> pl.DataFrame: ...
    def all_inputs(self, fields: list[str]) -> Iterator[pl.DataFrame]: ...
    def member_count(self) -> int: ...
    def current(self, entity_ids: pl.Series) -> pl.DataFrame: ...
    def staging(self) -> Staging: ...
    def commit(self, *, resolution_seq: int, staged: Staging) -> tuple[int, int]: ...


class Staging(Protocol):
    """A publication being gathered part by part (warehouse.golden.GoldenStaging)."""

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc) -> None: ...
    def add(self, *, golden: pl.DataFrame, versions: pl.DataFrame, events: pl.DataFrame) -> None: ...


@dataclass
class GoldenSummary:
    entity_type: str
    resolution_seq: int
    entities_recomputed: int = 0
    events: int = 0
    seq_range: tuple[int, int] | None = None
    ops: dict[str, int] = field(default_factory=dict)
    # sub-step -> (seconds, process peak MB at its end): where a publication's time and memory go
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)


class _Clock:
    def __init__(self, into: dict[str, tuple[float, float]]):
        self.into, self.t = into, time.perf_counter()

    def lap(self, step: str) -> None:
        """Time since the last lap, added to `step`'s (parts add up)."""
        now = time.perf_counter()
        seconds = self.into.get(step, (0.0, 0.0))[0] + now - self.t
        self.into[step] = (seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        self.t = now


def event_id(entity_id: str, version: int, op: str) -> str:
    """Deterministic, so a rerun of the same change produces the same id (consumers dedupe on it)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{entity_id}:{version}:{op}"))


def event_ids(events: pl.DataFrame) -> pl.Series:
    """`event_id` of each row of a frame with entity_id, version and op: uuid5 as text. Only the
    SHA-1 is computed per event in Python (hashlib); setting the version and variant bits and
    the dashes is done by Polars over the whole column (2.2 -> 0.9 s at 889k events; a UUID
    object per event cost a third more again)."""
    names = events.select(pl.format("{}:{}:{}", "entity_id", "version", "op")).to_series()
    namespace = _NAMESPACE_SHA1

    def sha1_hex(name: str) -> str:
        h = namespace.copy()
        h.update(name.encode())
        return h.hexdigest()

    digests = pl.Series("h", [sha1_hex(n) for n in names], dtype=pl.String)
    h = pl.col("h")
    # RFC 4122: version 5 in the 13th hex digit, variant 10xx in the 17th
    text = pl.concat_str([h.str.slice(0, 8), pl.lit("-"), h.str.slice(8, 4), pl.lit("-5"), h.str.slice(13, 3),
                          pl.lit("-"), h.str.slice(16, 1).replace_strict(_VARIANT_DIGIT), h.str.slice(17, 3),
                          pl.lit("-"), h.str.slice(20, 12)])
    return digests.to_frame().select(text.alias("event_id")).to_series()


_NAMESPACE_SHA1 = hashlib.sha1(EVENT_NAMESPACE.bytes)
_VARIANT_DIGIT = {f"{i:x}": f"{(i & 0x3) | 0x8:x}" for i in range(16)}


def _as_text(frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """Every field as text (dates ISO), the form values are stored, compared and published in."""
    return frame.select("entity_id", *[
        (pl.col(f).dt.strftime("%Y-%m-%dT%H:%M:%S") if isinstance(frame.schema[f], pl.Datetime)
         else pl.col(f).cast(pl.String)).alias(f)
        for f in fields
    ])


def _record_json(fields: list[str]) -> pl.Expr:
    return pl.struct([pl.col(f) for f in fields]).struct.json_encode()


def _json_arrays(encoded: pl.DataFrame, keys: list[str], name: str) -> pl.DataFrame:
    """Rows of JSON objects (`_j`), sorted by `keys` and their order within a key, as one JSON
    array per key."""
    return encoded.group_by(keys, maintain_order=True).agg(pl.col("_j").str.join(",")).select(
        *keys, pl.concat_str(pl.lit("["), pl.col("_j"), pl.lit("]")).alias(name))


def run_golden(store: GoldenStore, settings: SurvivorshipSettings, *, entity_type: str,
               carried: Sequence[str] = (), links: Sequence[Linker] = ()) -> GoldenSummary:
    """Recompute the golden records of the entities resolution touched since the last step, and
    commit the real changes with their versions and events.

    `carried`: golden fields that survivorship does not produce but another step writes into the
    records (a relation's field, e.g. a person's dwelling id: core/entity_types.yaml
    `relations:`); a rebuilt record keeps their stored values, and they are never reported as
    changed or removed here.

    `links`: carried fields this step sets itself on each record it rebuilds (a relation's link:
    a new or moved person is published with its dwelling); a changed value is reported like a
    survivorship field's, with the sources of the fields the link is made of.

    The entities go through in parts of PART_ENTITIES (in entity id order; everything here is
    per entity), each part's rows staged as it is done, so a first publication of a million
    records never holds all of their JSON at once; the store commits all parts in one
    transaction, the events in the order one pass over all entities would give them.
    """
    last, latest = store.state(), store.latest_resolution_seq()
    summary = GoldenSummary(entity_type, latest)
    if latest <= last:
        return summary
    fields = list(settings.fields)
    carried = [f for f in dict.fromkeys([*carried, *(link.field for link in links)]) if f not in settings.fields]
    clock = _Clock(summary.timings)
    changes = store.entity_changes(last)
    active, retired = _affected(store, changes, last)
    clock.lap("affected")
    ids = pl.concat([active, retired["entity_id"]]).unique().sort()
    parts = [ids.slice(i, PART_ENTITIES) for i in range(0, ids.len(), PART_ENTITIES)]
    part_active = _within(active.sort(), parts)
    inputs = _part_inputs(store, settings, fields, active, part_active)
    # a type's golden rows are written only by a commit that also records its state: none yet,
    # no part has current rows to look up (a first publication)
    published = last > 0
    placed: dict[int, int] = {}  # events so far per op rank: their place in the publication's order
    ops: dict[str, int] = {}
    with store.staging() as staged:
        for part, active_here in zip(parts, part_active, strict=True):
            part = part.implode()
            events, golden_rows, versions = _publish_part(
                store, settings, fields, carried, links, published, active_here, next(inputs),
                retired.filter(pl.col("entity_id").is_in(part)), changes.filter(pl.col("entity_id").is_in(part)),
                clock)
            if events.height == 0:
                continue
            staged.add(golden=golden_rows, versions=versions, events=_ordered(events, placed))
            for op, n in events.group_by("op").len().iter_rows():
                ops[op] = ops.get(op, 0) + int(n)
            clock.lap("stage")
        inputs.close()
        first, last_seq = store.commit(resolution_seq=latest, staged=staged)
        clock.lap("commit")
    if not ops:
        return summary
    summary.entities_recomputed = int(active.len())
    summary.events = sum(ops.values())
    summary.seq_range = (first, last_seq)
    summary.ops = ops
    return summary


# Entities per part of a publication: bounds its memory (a part's survivorship inputs, provenance
# and JSON) at a few hundred megabytes whatever the number of entities.
PART_ENTITIES = 50_000
_RANK_SPAN = 1 << 27  # more events than any publication has per op; 10 spans fit a 32-bit seq


def _publish_part(store: GoldenStore, settings: SurvivorshipSettings, fields: list[str], carried: list[str],
                  links: Sequence[Linker], published: bool, active: pl.Series, inputs: pl.DataFrame,
                  retired: pl.DataFrame, changes: pl.DataFrame,
                  clock: _Clock) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(events, golden rows, versions) of some entities: active ones recomputed from `inputs`
    (their member records), retired ones closed, changes (entity_changes rows) those of these
    entities. `published`: whether the type has golden records at all (without any, a part
    has no current rows to look up)."""
    clock.lap("read inputs")
    golden, provenance = survive(inputs, settings)
    del inputs
    clock.lap("survive")
    here = pl.concat([active, retired["entity_id"]]).unique()
    current = store.current(here if published else here.clear())
    clock.lap("read current")
    before = _decode(current, [*fields, *carried])
    linked = [link.field for link in links]
    after = _as_text(golden, fields).join(before.select("entity_id", *(f for f in carried if f not in linked)),
                                          on="entity_id", how="left")
    for link in links:
        after = after.join(link.values(after.select("entity_id", *link.key)), on="entity_id", how="left")
    clock.lap("links")
    events = pl.concat([_value_events(before, after, active, [*fields, *linked]), _structural_events(changes, before)],
                       how="vertical_relaxed")
    clock.lap("diff")
    if events.height == 0:
        return events, pl.DataFrame(), pl.DataFrame()
    bumped = _bumped(events, current)
    events = _numbered(events, bumped, provenance, {link.field: link.key for link in links})
    clock.lap("events")
    # in entity id order, as parts come: the tables' keys then grow at their end
    golden_rows = _golden_rows(after, [*fields, *carried], provenance, before, retired, bumped).sort("entity_id")
    versions = _versions(golden_rows, events).sort("entity_id")
    clock.lap("rows and versions")
    return events, golden_rows, versions


def _within(ids: pl.Series, parts: list[pl.Series]) -> list[pl.Series]:
    """Per part (consecutive ranges of sorted ids), the slice of sorted `ids` that falls in it:
    two binary searches a part (a filter of all ids per part was 18 passes over a million ids
    at a first publication)."""
    out = []
    for part in parts:
        lo, hi = ids.search_sorted(part[0], side="left"), ids.search_sorted(part[-1], side="right")
        out.append(ids.slice(lo, hi - lo))
    return out


def _ordered(events: pl.DataFrame, placed: dict[int, int]) -> pl.DataFrame:
    """A part's events (op order, then entity id) with `_order`, their place among all parts':
    op order first, then entity id, as parts come in entity id order. `placed` counts the
    events of earlier parts per op rank, and is updated."""
    rank = _op_rank().cast(pl.Int64)
    offset = rank.replace_strict(placed, default=0, return_dtype=pl.Int64) if placed else pl.lit(0, pl.Int64)
    out = events.select("event_id", "entity_id", "op", "version", "changed_fields", "before", "after", "sources",
                        (rank * _RANK_SPAN + offset + pl.int_range(pl.len(), dtype=pl.Int64).over(rank)).alias("_order"))
    for r, n in events.group_by(rank.alias("r")).len().iter_rows():
        placed[int(r)] = placed.get(int(r), 0) + int(n)
    return out


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


# A publication that recomputes at least this share of the type's records reads them all in one
# ordered pass; a smaller one asks for each part's entities by key.
DENSE_SHARE = 0.5


def _part_inputs(store: GoldenStore, settings: SurvivorshipSettings, fields: list[str], active: pl.Series,
                 parts: list[pl.Series]) -> Iterator[pl.DataFrame]:
    """The member records of each part's active entities (`parts`: sorted, in entity id order),
    part after part."""
    wanted = settings.record_columns
    if not parts:
        return
    if active.len() < DENSE_SHARE * store.member_count():
        for part in parts:
            yield store.inputs(part, wanted)
        return
    chunks = store.all_inputs(wanted)  # in entity id order: a part's rows end where the next one's begin
    held = [next(chunks)]  # there is always a first chunk, empty or not
    read_upto = held[0]["entity_id"][-1] if held[0].height else None  # the entity id of the last row read
    exhausted = False
    try:
        for part in parts:
            if part.len() == 0:  # only retired entities in this part
                yield held[0].clear()
                continue
            last = part[-1]
            while not exhausted and (read_upto is None or read_upto <= last):
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                    break
                held.append(chunk)
                if chunk.height:
                    read_upto = chunk["entity_id"][-1]
            rows = pl.concat(held)
            upto = rows["entity_id"] <= last
            yield rows.filter(upto & rows["entity_id"].is_in(part.implode()))
            held = [rows.filter(~upto)]
    finally:
        chunks.close()  # the read and its snapshot end with the parts, before the commit


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


def _numbered(events: pl.DataFrame, bumped: pl.DataFrame, provenance: pl.DataFrame,
              made_of: dict[str, list[str]]) -> pl.DataFrame:
    """Events with their version, sources and deterministic event id, in op order, changed_fields
    as JSON text."""
    events = (
        events.join(bumped, on="entity_id")
        .join(_sources(events, provenance, made_of), on=["entity_id", "op"], how="left")
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
        .join(provenance_json(provenance), on="entity_id", how="left")
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
    return in_slices(current, lambda part: part.select(
        "entity_id",
        pl.col("record").str.json_decode(pl.Struct({f: pl.String for f in fields})).alias("_values"),
        pl.col("record").alias("_record"), pl.col("provenance").alias("_provenance"),
    ).unnest("_values"))


def _sources(events: pl.DataFrame, provenance: pl.DataFrame,
             made_of: dict[str, list[str]] | None = None) -> pl.DataFrame:
    """Per event, the distinct station records behind it (JSON list): for an update, the records
    that supplied the changed fields (for a linked field, the fields its link is made of: `made_of`);
    otherwise every record the golden values came from."""
    cols = ["entity_id", "op", "station_id", "record_key", "batch_id"]
    lineage = ["station_id", "record_key", "batch_id"]
    updates = events.filter(pl.col("op") == "update")
    fields = updates.select("entity_id", "op", pl.col("changed_fields").alias("field")).explode("field")
    if made_of:
        fields = fields.with_columns(pl.col("field").replace_strict(
            made_of, default=pl.concat_list("field"),
            return_dtype=pl.List(pl.String))).explode("field")
    by_field = fields.join(provenance, on=["entity_id", "field"])
    # each entity's records once (most entities are one record, named by all their fields)
    records = provenance.select("entity_id", *lineage).unique()
    whole = events.filter(pl.col("op") != "update").select("entity_id", "op").join(records, on="entity_id")
    src = pl.concat([by_field.select(cols), whole.select(cols)]).unique().sort(cols)
    return _json_arrays(src.select("entity_id", "op", pl.struct(*lineage).struct.json_encode().alias("_j")),
                        ["entity_id", "op"], "sources")


def _op_rank() -> pl.Expr:
    return pl.col("op").replace_strict(OP_ORDER, default=9, return_dtype=pl.Int8)
