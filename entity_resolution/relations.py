"""Relations between golden records (core/entity_types.yaml `relations:`): who lives where.

A relation links each golden record of its `from` type to the one golden record of its `to`
type whose key fields all agree (for `residence`: a person's current address, down to the room,
is a dwelling's address). The link is written into both records as golden values: the `from`
record's `from_field` holds the linked id, the `to` record's `to_field` the linked ids (sorted,
comma-separated: golden values are text, so feeds, masking and CSV carry it as they carry any
value). A move is therefore a new version and an `update` event of each record whose value
changed, published through the same outbox, scope, field policy and audit as every golden
change, and the links themselves are kept with their valid-from / valid-to (warehouse/relations.py).
Where the `to` type is published first, a `from` record is published with its link already
(PublishedLinks, below): the step then opens that link without a version of the `from` record,
and what it versions is mostly the `to` records' `to_field`.

Each run starts from the outbox: the records of either type with events since its last run, and
every record sharing a key with one of them (before or after the change; each record's key is
kept by the store), are relinked; the result is compared with the stored open links (moves:
links ended, links begun) and with the values the records carry (the events). So a drop costs
what it changed, and the first run, which sees every record's `create`, links everything.
Everything here is a pure function over Polars frames; the store reads and commits (one
transaction with the outbox). A relation never reads a record's provenance whole: the first run
changes every record, and their provenance is about half of a golden row's bytes. The
version a change adds carries its golden row's provenance, which the store copies inside the
database; the sources of a move's event come from the key fields' provenance, read a part at a
time.

Matching rules, chosen to link only what is certain:
- key values compare as text; null agrees with null (a flat without a unit number has none on
  either side), but a record whose key is all null links nowhere;
- a key shared by several `to` records (two dwellings not (yet) resolved into one) links nowhere:
  picking one would publish a guess; they are counted as `ambiguous`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from core.entity_types import Relation
from core.errors import ConfigError
from core.json_columns import in_slices
from core.provenance import provenance_rows
from entity_resolution.propagation import event_ids

SEPARATOR = ","  # between the ids of a `to_field` (entity ids never contain one)
GOLDEN_SCHEMA = {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "status": pl.String,
                 "area_code": pl.String, "record": pl.String}
# what a changed record's new version is made of (the store adds the provenance, which is unchanged)
CHANGE_SCHEMA = {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "record": pl.String,
                 "changed_fields": pl.String, "sources": pl.String}


class RelationStore(Protocol):
    def last_seen(self, relation: str) -> int: ...
    def has_run(self, relation: str) -> bool: ...
    def high_water(self) -> int: ...
    def changed_entities(self, relation: Relation, after_seq: int, until_seq: int, *,
                         types: list[str] | None = None) -> pl.Series: ...
    def golden_rows(self, entity_ids: pl.Series) -> pl.DataFrame: ...
    def record_field(self, entity_ids: pl.Series, field: str) -> pl.DataFrame: ...
    def provenance(self, entity_ids: pl.Series) -> Iterator[pl.DataFrame]: ...
    def keys_of(self, relation: str, entity_ids: pl.Series) -> pl.DataFrame: ...
    def keys_matching(self, relation: str, keys: pl.Series) -> pl.DataFrame: ...
    def open_links(self, relation: str, *, from_ids: pl.Series | None = None,
                   to_ids: pl.Series | None = None) -> pl.DataFrame: ...
    def open_link_count(self, relation: str) -> int: ...
    def commit(self, relation: Relation, *, changes: pl.DataFrame, events: pl.DataFrame,
               opened: pl.DataFrame, closed: pl.DataFrame, keys_dropped: pl.Series, keys_added: pl.DataFrame,
               seen_seq: int, stats: dict, own_events: list[tuple[int, int]] = ()) -> tuple[int, int]: ...


@dataclass
class RelationSummary:
    relation: str
    ran: bool = False  # false: neither type's golden records changed since the last run
    links: int = 0  # current links
    moved_in: int = 0  # links begun this run
    moved_out: int = 0  # links ended this run
    ambiguous: int = 0  # `from` records whose key several `to` records share
    events: int = 0
    seq_range: tuple[int, int] | None = None


def check_relation(relation: Relation, golden_fields: dict[str, list[str]], *, source: str) -> None:
    """The key must be golden fields of both types (their survivorship fields in resolution.yaml),
    and the relation's own fields none of theirs; else a ConfigError naming file and key."""
    for end, etype in (("from", relation.from_type), ("to", relation.to_type)):
        fields = golden_fields[etype]
        missing = [k for k in relation.key if k not in fields]
        if missing:
            raise ConfigError(f"{source}: relations.{relation.name}.key: {missing} are not golden fields of "
                              f"{etype!r} (its survivorship fields in resolution.yaml: {sorted(fields)})")
        own = relation.from_field if end == "from" else relation.to_field
        if own in fields:
            raise ConfigError(f"{source}: relations.{relation.name}.{end}_field: {own!r} is already a golden "
                              f"field of {etype!r} (survivorship): a relation writes a field of its own")


def decode(golden: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """entity_id plus the named fields of each stored golden record, as text."""
    rec = pl.Struct({f: pl.String for f in fields})
    if golden.height == 0:
        return pl.DataFrame(schema={"entity_id": pl.String, **{f: pl.String for f in fields}})
    return in_slices(golden, lambda part: part.select("entity_id", pl.col("record").str.json_decode(rec).alias("_r"))
                     .unnest("_r"))


KEY_SCHEMA = {"entity_id": pl.String, "side": pl.String, "key": pl.String}


def key_rows(decoded: pl.DataFrame, key: list[str], side: str) -> pl.DataFrame:
    """(entity_id, side, key): each record's key as one text (the key fields as a JSON object, so
    null and empty stay distinct), for records whose key is not all null."""
    has_key = pl.any_horizontal([pl.col(k).is_not_null() for k in key])
    return decoded.filter(has_key).select(
        "entity_id", pl.lit(side).alias("side"), pl.struct(*key).struct.json_encode().alias("key"))


def current_links(keys: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """The links that records' keys make (keys: KEY_SCHEMA rows of both sides): (from_id, to_id)
    sorted by from_id, and how many `from` records were left unlinked because several `to`
    records share their key."""
    to = keys.filter(pl.col("side") == "to").select(pl.col("entity_id").alias("to_id"), "key",
                                                    (pl.len().over("key") > 1).alias("_shared"))
    joined = keys.filter(pl.col("side") == "from").select(pl.col("entity_id").alias("from_id"), "key").join(
        to, on="key", how="inner")
    ambiguous = joined.filter(pl.col("_shared"))["from_id"].n_unique()
    return joined.filter(~pl.col("_shared")).select("from_id", "to_id").sort("from_id"), int(ambiguous)


def moves(links: pl.DataFrame, stored: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(opened, closed): the links begun since the stored open links, and the stored ones that ended."""
    on = ["from_id", "to_id"]
    opened = links.join(stored.select(on), on=on, how="anti").sort(on)
    closed = stored.select(on).join(links, on=on, how="anti").sort(on)
    return opened, closed


def desired_values(from_links: pl.DataFrame, to_links: pl.DataFrame, from_ids: pl.Series,
                   to_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What each record's relation field should hold, as (entity_id, value): each of `from_ids` its
    linked id in `from_links` (or null); each of `to_ids` the ids linked to it in `to_links`
    (every open link into it, not only this run's), sorted and joined (or null)."""
    from_v = pl.DataFrame({"entity_id": from_ids}, schema={"entity_id": pl.String}).join(
        from_links.select(pl.col("from_id").alias("entity_id"), pl.col("to_id").alias("value")), on="entity_id",
        how="left")
    grouped = to_links.group_by("to_id").agg(pl.col("from_id").unique().sort().str.join(SEPARATOR).alias("value"))
    to_v = pl.DataFrame({"entity_id": to_ids}, schema={"entity_id": pl.String}).join(
        grouped.rename({"to_id": "entity_id"}), on="entity_id", how="left")
    return from_v, to_v


def field_changes(golden: pl.DataFrame, current: pl.DataFrame, desired: pl.DataFrame, field: str,
                  entity_type: str) -> pl.DataFrame:
    """The records whose `field` must change: their stored row (GOLDEN_SCHEMA) with the new value
    set in the record, the version bumped, and the event's changed_fields / before / after.

    golden: the type's stored active rows; current: entity_id + field (as stored; absent reads as
    null); desired: entity_id + value."""
    changed = (
        current.select("entity_id", pl.col(field).alias("_old"))
        .join(desired, on="entity_id")
        .filter(pl.col("_old").ne_missing(pl.col("value")))
    )
    if changed.height == 0:
        return pl.DataFrame(schema={**GOLDEN_SCHEMA, "changed_fields": pl.String, "before": pl.String,
                                    "after": pl.String})
    one = lambda c: pl.struct(pl.col(c).alias(field)).struct.json_encode()  # noqa: E731  {"field": value}
    return (
        golden.join(changed, on="entity_id")
        .with_columns(
            pl.lit(entity_type).alias("entity_type"),
            (pl.col("version") + 1).cast(pl.Int64).alias("version"),
            set_field(pl.col("record"), field, one("value")).alias("record"),
            pl.lit(f'["{field}"]').alias("changed_fields"),
            one("_old").alias("before"),
            one("value").alias("after"),
        )
        .select(*GOLDEN_SCHEMA, "changed_fields", "before", "after")
    )


def set_field(record: pl.Expr, field: str, fragment_object: pl.Expr) -> pl.Expr:
    """A stored record (a JSON object as Polars encodes it: no whitespace, text values) with
    `field` set to the value of a one-field JSON object: the field's old `"field":value` pair is
    cut out and the new one appended; nothing else in the record changes."""
    value = r'(?:null|"(?:[^"\\]|\\.)*")'
    stripped = (record.str.replace(f',"{field}":{value}', "", literal=False)
                .str.replace(f'"{field}":{value},?', "", literal=False))
    body = stripped.str.strip_suffix("}")
    pair = fragment_object.str.strip_prefix("{").str.strip_suffix("}")
    return pl.concat_str(body, pl.when(body == "{").then(pl.lit("")).otherwise(pl.lit(",")), pair, pl.lit("}"))


def _key_sources(parts: Iterator[pl.DataFrame], key: list[str]) -> pl.DataFrame:
    """Per `from` record, the station records its key fields came from (its provenance), as the
    structs change events carry in `sources`. parts: (entity_id, provenance) a part at a time, so
    only one part's provenance is ever decoded."""
    found = [
        provenance_rows(part).filter(pl.col("field").is_in(key))
        .select("entity_id", "station_id", "record_key", "batch_id").unique()
        for part in parts if part.height
    ]
    schema = {"entity_id": pl.String, "station_id": pl.String, "record_key": pl.String, "batch_id": pl.String}
    return pl.concat(found) if found else pl.DataFrame(schema=schema)


def _sources_json(frame: pl.DataFrame) -> pl.DataFrame:
    """entity_id -> JSON list of {station_id, record_key, batch_id}, sorted, as run_golden writes them."""
    cols = ["station_id", "record_key", "batch_id"]
    return frame.unique().sort("entity_id", *cols).group_by("entity_id", maintain_order=True).agg(
        pl.struct(*cols).struct.json_encode().alias("s")
    ).select("entity_id", pl.concat_str(pl.lit("["), pl.col("s").list.join(","), pl.lit("]")).alias("sources"))


KEY_READ_PART = 5_000  # `to` records whose golden rows are read at a time to take their keys (measured so)


class PublishedLinks:
    """The `from_field` a `from` record is published with (entity_resolution.propagation
    run_golden `links`): the `to` record it links to by the rule above, against the `to` records
    as they are now, so a new or moved record is published once, with its link. Without it, the
    relation's step gave every new record a second version and an `update` event (at 1M records,
    its first run rewrote every golden row a second time).

    The `to` type is published before (core.entity_types Registry.linked_at_publication). Its
    records are read as the relation's step would read them: those changed since the step last
    ran by their golden rows (their keys taken once per publication, KEY_READ_PART at a time),
    the others by their stored keys. The changed ones' keys are held as 64-bit hashes (a first
    publication at 1M holds 370k dwellings' keys: 76 MB as text, 7 MB so); two keys sharing a
    hash would at worst publish a link the step then corrects, since it compares the keys' text.
    The step runs after the publication and changes nothing of these records then, except where
    a `to` record changed in between; it still opens the links and updates the `to` records'
    `to_field`."""

    def __init__(self, store: RelationStore, relation: Relation):
        self.store = store
        self.relation = relation
        self._changed: pl.Series | None = None
        self._fresh: pl.DataFrame | None = None  # the changed `to` records: entity_id, side, key (hashed)
        self._stored = True

    @property
    def field(self) -> str:
        return self.relation.from_field

    @property
    def key(self) -> list[str]:
        return self.relation.key

    def values(self, records: pl.DataFrame) -> pl.DataFrame:
        """(entity_id, `field`): for each of `records` (entity_id + the key fields as text, active
        records being published), the id of the one `to` record sharing its key, or null."""
        mine = key_rows(records, self.relation.key, "from")
        links, _ = current_links(pl.concat([_hashed(mine), self._to_keys(mine["key"].unique())]))
        return records.select("entity_id").join(
            links.select(pl.col("from_id").alias("entity_id"), pl.col("to_id").alias(self.field)),
            on="entity_id", how="left")

    def _to_keys(self, keys: pl.Series) -> pl.DataFrame:
        """The `to` records whose current key is one of `keys` (KEY_SCHEMA, the key hashed)."""
        rel = self.relation
        if self._changed is None:
            self._stored = self.store.has_run(rel.name)
            changed = self.store.changed_entities(rel, self.store.last_seen(rel.name), self.store.high_water(),
                                                  types=[rel.to_type])
            parts = [_hashed(_keys(self.store.golden_rows(changed.slice(i, KEY_READ_PART)), rel)
                             .filter(pl.col("side") == "to")) for i in range(0, changed.len(), KEY_READ_PART)]
            self._fresh = pl.concat(parts) if parts else _hashed(pl.DataFrame(schema=KEY_SCHEMA))
            self._changed = changed
        fresh = self._fresh.filter(pl.col("key").is_in(_hashed_keys(keys).implode()))
        if not self._stored:
            return fresh
        stored = self.store.keys_matching(rel.name, keys).filter(
            (pl.col("side") == "to") & ~pl.col("entity_id").is_in(self._changed.implode()))
        return pl.concat([_hashed(stored), fresh])


def _hashed_keys(keys: pl.Series | pl.Expr) -> pl.Series | pl.Expr:
    return keys.hash(seed=0)


def _hashed(keys: pl.DataFrame) -> pl.DataFrame:
    return keys.with_columns(_hashed_keys(pl.col("key")))


def run_relation(store: RelationStore, relation: Relation) -> RelationSummary:
    """Bring the relation up to date with the golden records changed since its last run.

    Only what those changes can reach is recomputed: the changed records, every record that
    shares a key with one of them (before or after the change), and the `to` records whose
    links open or close. A no-op when neither type's golden records changed.

    Many changes (a first run changes every record) are relinked in parts of about
    RELATION_PART records made of whole values of the key's first field (for `residence` the
    district): records in different parts can share no key, so each part links what one pass
    would and each record changes once. Each part commits on its own; the run counts as seen
    only with the last, so a run stopped halfway is done again whole (the parts already done
    change nothing then).

    The first run (no part of one committed yet) reads no stored keys or links: there are none,
    and its parts share no key. On PostgreSQL those reads by a million keys cost about 20 s."""
    summary = RelationSummary(relation.name)
    last, high = store.last_seen(relation.name), store.high_water()
    changed = store.changed_entities(relation, last, high)
    summary.links = store.open_link_count(relation.name)
    if changed.len() == 0:
        return summary
    summary.ran = True
    stored = store.has_run(relation.name)
    parts = relation_parts(store, relation, changed)
    own: list[tuple[int, int]] = []
    for i, part in enumerate(parts):
        done = i == len(parts) - 1
        seq_range = _relink(store, relation, part, summary, seen_seq=high if done else last, own_events=own,
                            stored=stored)
        if seq_range is not None:
            own.append(seq_range)
    summary.seq_range = (own[0][0], own[-1][1]) if own else None
    return summary


RELATION_PART = 200_000  # changed records relinked at a time, about (whole values of the key's first field)


def relation_parts(store: RelationStore, relation: Relation, changed: pl.Series) -> list[pl.Series]:
    """`changed` in parts of about RELATION_PART, each made of whole values of the key's first
    field (a value with more records is a part of its own); one part when they are few. Records
    without that field (retired, or no key) go with the first part."""
    if changed.len() <= RELATION_PART:
        return [changed]
    first = relation.key[0]
    values = store.record_field(changed, first).rename({"value": first}).drop_nulls(first)
    sizes = values.group_by(first).len().sort(first)
    part_of, current, filled = [], 0, 0
    for n in sizes["len"].to_list():
        if filled and filled + n > RELATION_PART:
            current, filled = current + 1, 0
        part_of.append(current)
        filled += n
    numbered = values.join(sizes.select(first, pl.Series("part", part_of, dtype=pl.Int64)), on=first)
    numbered = pl.DataFrame({"entity_id": changed}).join(numbered, on="entity_id", how="left").with_columns(
        pl.col("part").fill_null(0))
    return [g["entity_id"].sort() for _, g in numbered.sort("part").group_by("part", maintain_order=True)]


def _relink(store: RelationStore, relation: Relation, changed: pl.Series, summary: RelationSummary, *,
            seen_seq: int, own_events: list[tuple[int, int]], stored: bool = True) -> tuple[int, int] | None:
    """Relink the records `changed` reaches, commit, add to `summary`; the events' seq range.
    stored: whether there are stored keys and links to read (not before the first run)."""
    own = {relation.from_type: relation.from_field, relation.to_type: relation.to_field}
    no_links = pl.DataFrame(schema={"from_id": pl.String, "to_id": pl.String})
    rows = store.golden_rows(changed)
    new_keys = _keys(rows, relation)
    old_keys = store.keys_of(relation.name, changed) if stored else new_keys.clear()
    around = (store.keys_matching(relation.name, pl.concat([old_keys["key"], new_keys["key"]]).unique())
              if stored else new_keys.clear())
    keys = pl.concat([around.filter(~pl.col("entity_id").is_in(changed.implode())), new_keys])
    # the `from` records to relink: those changed, and those sharing a key with a changed record
    from_ids = pl.concat([keys.filter(pl.col("side") == "from")["entity_id"],
                          rows.filter(pl.col("entity_type") == relation.from_type)["entity_id"]]).unique()
    links, ambiguous = current_links(keys)
    opened, closed = moves(links, store.open_links(relation.name, from_ids=from_ids) if stored else no_links)
    to_ids = pl.concat([keys.filter(pl.col("side") == "to")["entity_id"],
                        rows.filter(pl.col("entity_type") == relation.to_type)["entity_id"],
                        opened["to_id"], closed["to_id"]]).unique()
    into = (store.open_links(relation.name, to_ids=to_ids) if stored else no_links).join(
        closed, on=["from_id", "to_id"], how="anti")
    from_v, to_v = desired_values(links, pl.concat([into, opened]).unique(), from_ids, to_ids)

    reached = pl.concat([from_ids, to_ids]).unique()
    others = store.golden_rows(reached.filter(~reached.is_in(changed.implode())).rename("entity_id"))
    active = pl.concat([rows, others]).filter(pl.col("status") == "active")
    del rows, others
    changes = []
    for etype, desired in ((relation.from_type, from_v), (relation.to_type, to_v)):
        mine = active.filter(pl.col("entity_type") == etype)
        changes.append(field_changes(mine, decode(mine, [own[etype]]), desired, own[etype], etype))
    moved = pl.concat([opened, closed])
    moved_from = moved["from_id"].unique()
    by_from = _key_sources(store.provenance(moved_from.filter(moved_from.is_in(active["entity_id"].implode()))),
                           relation.key)
    changed_rows, events = _publication(pl.concat(changes), by_from, moved)
    summary.moved_in += opened.height
    summary.moved_out += closed.height
    summary.ambiguous += ambiguous
    summary.links += opened.height - closed.height
    stats = {"links": summary.links, "moved_in": opened.height, "moved_out": closed.height,
             "ambiguous": ambiguous, "events": events.height, "recomputed": int(from_ids.len())}
    first, last_seq = store.commit(relation, changes=changed_rows, events=events, opened=opened,
                                   closed=closed, keys_dropped=changed if stored else changed.clear(),
                                   keys_added=new_keys, seen_seq=seen_seq,
                                   stats=stats, own_events=own_events)
    summary.events += events.height
    return (first, last_seq) if events.height else None


def _keys(rows: pl.DataFrame, relation: Relation) -> pl.DataFrame:
    """The keys of the active records among `rows` (KEY_SCHEMA)."""
    active = rows.filter(pl.col("status") == "active")
    return pl.concat([
        key_rows(decode(active.filter(pl.col("entity_type") == t), relation.key), relation.key, side)
        for t, side in ((relation.from_type, "from"), (relation.to_type, "to"))])


def _publication(changes: pl.DataFrame, by_from: pl.DataFrame,
                 moved: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The changed records' new versions (CHANGE_SCHEMA) and their events. An event's sources are
    the station records that placed the `from` record where it is (by_from: its key fields'
    provenance); for a `to` record, those of every `from` record that moved in or out of it."""
    sources = _sources_json(pl.concat([
        by_from,
        moved.join(by_from.rename({"entity_id": "from_id"}), on="from_id")
        .select(pl.col("to_id").alias("entity_id"), "station_id", "record_key", "batch_id"),
    ]))
    changes = changes.join(sources, on="entity_id", how="left").with_columns(pl.col("sources").fill_null("[]"))
    events = changes.sort("entity_type", "entity_id").with_columns(pl.lit("update").alias("op"))
    # uuid5, as run_golden's: a rerun of the same move has the same ids
    events = events.with_columns(event_ids(events)).select(
        "event_id", "entity_type", "entity_id", "op", "version", "changed_fields", "before",
        "after", "sources")
    return changes.select(*CHANGE_SCHEMA), events
