"""The feed service: what the HTTP API and the file delivery ask of feeds.

One subscriber at a time here (the API's requests); `feeds.files.build_all` builds every
subscriber's files in one pass. Both log every delivery that carried data in the append-only
audit log, and both read the same builder, so a file and an API page carry the same content.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from core.errors import EnteronceError
from feeds import scope as sc
from feeds.build import (
    LINE_SCHEMA,
    SNAPSHOT_SCHEMA,
    FeedInputs,
    audit_fields,
    audit_ids,
    build_events,
    build_snapshot,
    build_task_snapshot,
)
from feeds.config import Subscriber, Subscriptions
from feeds.prepared import FIELD_SEP, policy_digest
from warehouse import Warehouse
from warehouse.deliveries import LINE_SEP, LINE_SEP_UTF8, PreparedStore
from warehouse.feeds import EVENT_SCHEMA, FeedStore

CHANNELS = ("file", "api")
MAX_LIMIT = 10_000
SCAN_MIN, SCAN_MAX = 2_000, 50_000  # outbox rows read per later round while filling a page
# A snapshot pages through golden records (by entity id), then open correction tasks (by task id);
# a page cursor in the tasks' part carries this prefix (`after_entity=task:<task id>`).
TASK_CURSOR = "task:"
PAGE_COLUMNS = ("seq", "entity_id", "about", "fields", "line")


class UnknownSubscriber(EnteronceError):
    """No subscriber by that id in subscriptions.yaml (deny by default)."""

    def __init__(self, subscriber_id: str):
        self.subscriber_id = subscriber_id
        super().__init__(f"subscriptions.yaml: no subscriber {subscriber_id!r}")


@dataclass
class FeedPage:
    next_after: int
    has_more: bool
    high_water: int
    # the events' JSON lines in seq order, as LINE_SEP-joined UTF-8 (prepared blocks as stored)
    chunks: list[bytes] = field(default_factory=list, repr=False)
    prepared: int = 0  # how many of them were read as prepared by the feed build (the rest built now)

    @functools.cached_property
    def lines(self) -> list[str]:
        """The events as JSON text, one per event."""
        return [x.decode("utf-8") for c in self.chunks for x in c.split(LINE_SEP_UTF8)]

    @functools.cached_property
    def events(self) -> list[dict]:
        """The events decoded (the API sends `body` as it is and never pays for this)."""
        return [json.loads(x) for x in self.lines]


@dataclass
class SnapshotPage:
    records: list[dict]
    next_after_entity: str | None
    has_more: bool
    as_of_seq: int
    lines: list[str] = field(default_factory=list, repr=False)


def _involved(events: pl.DataFrame) -> list[str]:
    empty_v = pl.DataFrame(schema={"entity_id": pl.String, "version": pl.Int64, "area_code": pl.String})
    empty_c = pl.DataFrame(schema={"entity_id": pl.String, "area_code": pl.String})
    keys = sc.event_scope_keys(events, empty_v, empty_c)
    return pl.concat([events["entity_id"], sc.related_ids(keys), sc.task_entity(events)]).unique().to_list()


def load_inputs(store: FeedStore, events: pl.DataFrame) -> FeedInputs:
    """Versions (whole records), members and current areas of every entity the events involve."""
    ids = _involved(events)
    return FeedInputs(versions=store.version_records(ids), members=store.memberships(ids),
                      current=store.golden_areas(ids))


def prefilter(store: FeedStore, events: pl.DataFrame,
              subscribers: list[Subscriber]) -> tuple[pl.DataFrame, FeedInputs]:
    """Only the events some of the subscribers are to receive, with the builder's inputs for them.

    Scope is decided from area codes (read by the database out of the versions' JSON) and
    memberships alone; the records' text is then read for the remaining events only. Scope does
    not depend on the other events, so the builder's answer on the remainder is the same."""
    ids = _involved(events) if events.height else []
    current, members = store.golden_areas(ids), store.memberships(ids)
    if events.height and subscribers:
        keys = sc.event_scope_keys(events, store.version_areas(ids), current)
        pairs = sc.deliveries(keys, sc.subscriber_tables(subscribers), members, current)
        events = events.filter(pl.col("seq").is_in(pairs["seq"].unique().implode()))
    else:
        events = events.clear()
    return events, FeedInputs(versions=store.version_records(events["entity_id"].unique().to_list()),
                              members=members, current=current)


def wants_tasks(sub: Subscriber) -> list[str]:
    """The record types whose correction tasks the subscriber takes (none unless it lists
    `correction_task` among its entity types: deny by default)."""
    if sc.CORRECTION_TASK not in sub.entity_types:
        return []
    return [t for t in sub.entity_types if t != sc.CORRECTION_TASK]


def open_tasks(store: FeedStore, sub: Subscriber, *, after_task: str | None = None,
               limit: int | None = None) -> pl.DataFrame:
    """The subscriber's open correction tasks now (the latest event of each, in task id order),
    scoped exactly as their events are (feeds.scope, as of now: the area each task's latest event
    carries), up to `limit` of them after `after_task`. Candidates are read in growing rounds,
    so a department with a narrow area does not page through the network's tasks row by row."""
    types = wants_tasks(sub)
    if not types:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    station = sub.station_id if sub.kind == "station" else None  # a station gets only its own
    tables = sc.subscriber_tables([sub])
    members = pl.DataFrame(schema={"entity_id": pl.String, "record_key": pl.String})
    versions = pl.DataFrame(schema={"entity_id": pl.String, "version": pl.Int64, "area_code": pl.String})
    got: list[pl.DataFrame] = []
    pos, scan = after_task, SCAN_MIN if limit is None else max(limit + 1, 100)
    while limit is None or sum(g.height for g in got) < limit:
        chunk, pos = store.open_task_events(record_types=types, station_id=station, after_task=pos, limit=scan)
        if chunk.height:
            now = chunk.with_columns(pl.lit(None, pl.String).alias("before"))  # in scope now
            current = store.golden_areas(sc.task_entity(now).to_list())
            keys = sc.event_scope_keys(now, versions, current)
            seqs = sc.deliveries(keys, tables, members, current)["seq"]
            got.append(chunk.filter(pl.col("seq").is_in(seqs.implode())))
        if pos is None:
            break
        scan = min(scan * 4, SCAN_MAX)
    rows = pl.concat(got) if got else pl.DataFrame(schema=EVENT_SCHEMA)
    return rows if limit is None else rows.head(limit)


def delivery_row(subscriber_id: str, *, channel: str, kind: str, token_id: str | None, seq_from: int | None,
                 seq_to: int | None, event_count: int, entity_ids: list[str], fields: dict[str, str]) -> dict:
    # each once, in the order delivered: sorting a city page's thousand ids was an eighth of the
    # API's loop time per page
    ids = list(dict.fromkeys(entity_ids))
    return {"subscriber_id": subscriber_id, "token_id": token_id, "channel": channel, "kind": kind,
            "seq_from": seq_from, "seq_to": seq_to, "event_count": event_count, "entity_count": len(ids),
            "entity_ids": ids, "fields": fields}


class FeedService:
    def __init__(self, warehouse: Warehouse, subscriptions: Subscriptions, *,
                 record_deliveries: Callable[[list[dict]], object] | None = None, page_cache_bytes: int = 0):
        """`record_deliveries` takes the audit rows of the pages handed out: by default they are
        committed before the page is returned; the API gives its audit journal's `record`
        (feeds/journal.py), which commits them after, never losing one. `page_cache_bytes`: the
        prepared blocks read for pages are kept in memory up to this size (the API's, a
        long-running reader: warehouse.deliveries.BlockCache)."""
        self.warehouse = warehouse
        self.subscriptions = subscriptions
        self.store = FeedStore(warehouse)
        self.record_deliveries = record_deliveries or self.store.record_deliveries
        self.prepared = PreparedStore(warehouse, cache_bytes=page_cache_bytes)
        self._digests: dict[str, str] = {}
        self._by_id = {s.id: s for s in subscriptions.subscribers}

    def digest(self, sub: Subscriber) -> str:
        """The subscriber's policy digest under these subscriptions (feeds.prepared)."""
        got = self._digests.get(sub.id)
        if got is None:
            got = self._digests[sub.id] = policy_digest(self.subscriptions, sub)
        return got

    def subscriber(self, subscriber_id: str) -> Subscriber:
        sub = self._by_id.get(subscriber_id)  # a dict: a thousand subscribers, every request
        if sub is None:
            raise UnknownSubscriber(subscriber_id)
        return sub

    @staticmethod
    def _channel(channel: str) -> str:
        if channel not in CHANNELS:
            raise EnteronceError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
        return channel

    # -- cursors --------------------------------------------------------------------------------
    def cursor(self, subscriber_id: str, *, channel: str = "api") -> int | None:
        """The acknowledged seq; before any acknowledgement, the snapshot's seq; None for a new
        subscriber (who starts with a snapshot)."""
        self.subscriber(subscriber_id)
        got = self.store.cursor(subscriber_id, self._channel(channel))
        if got is None:
            return None
        acked, snap = got
        return acked if acked is not None else snap

    def acknowledge(self, subscriber_id: str, seq: int, *, channel: str = "api") -> int:
        """Advance the cursor to `seq`: never backwards, never beyond the outbox's high water."""
        self.subscriber(subscriber_id)
        if seq < 0:
            raise EnteronceError(f"acknowledged seq must be >= 0, got {seq}")
        seq = min(int(seq), self.store.high_water())
        acked, snap = self.store.advance(subscriber_id, self._channel(channel), acked=seq)
        return acked if acked is not None else (snap or 0)

    # -- events -----------------------------------------------------------------------------------
    def events(self, subscriber_id: str, *, after: int | None, limit: int, channel: str,
               token_id: str | None = None, prepared_only: bool = False) -> FeedPage | None:
        """Up to `limit` events after `after` (None: after the acknowledged cursor), up to the
        outbox's high water taken at the start; `next_after` is where the next page starts (the
        last delivered seq when full, else the high water: events in between are not for this
        subscriber).

        Where the feed build prepared the subscriber's events under its current policy
        (feeds.prepared), the page is read from them; what lies beyond the prepared stretch (events
        written since the last build) is built now, as is a page starting before the stretch or
        under a policy changed since. Either way the page holds the same events. `prepared_only`:
        None instead of building any (nothing is audited then), for a caller that builds
        elsewhere (the API's event loop hands such a page to a worker thread)."""
        sub = self.subscriber(subscriber_id)
        self._channel(channel)
        limit = max(1, min(int(limit), MAX_LIMIT))
        if after is None:
            after = self.cursor(subscriber_id, channel=channel) or 0
        after = max(int(after), 0)
        prep = self.prepared.read(sub.id, self.digest(sub), after=after, limit=limit)
        high, pos = prep.high, after
        if prep.to >= 0:
            # a full page goes on from its last event; else the prepared stretch was read to its end
            pos = prep.last if prep.count == limit and (prep.more or prep.to < high) else max(min(prep.to, high), after)
        built = None
        if prep.count < limit and pos < high:
            if prepared_only:
                return None
            built, pos = self._build_page(sub, pos, high, limit - prep.count)
        count = prep.count + (built.height if built is not None else 0)
        last = int(built["seq"][-1]) if built is not None and built.height else prep.last
        next_after = last if count == limit and pos < high else max(pos, after)
        chunks = prep.chunks
        if count:  # committed, or journalled, before the page leaves
            first = prep.first if prep.count else int(built["seq"][0])
            ids, abouts, fields = prep.entity_ids, prep.abouts, list(prep.fields)
            if built is not None and built.height:
                chunks.append(LINE_SEP.join(built["line"]).encode("utf-8"))
                ids = ids + built["entity_id"].to_list()
                abouts = abouts + built["about"].drop_nulls().to_list()
                fields += built["fields"].to_list()
            self._log_events(sub, first=first, last=last, count=count, entity_ids=ids + abouts, fields=fields,
                             channel=channel, token_id=token_id)
        # has_more against the high water the page was read under: an event committed since is
        # the next poll's, as it would be had it come a moment later
        return FeedPage(next_after=next_after, has_more=next_after < high, high_water=high, chunks=chunks,
                        prepared=prep.count)

    def _build_page(self, sub: Subscriber, after: int, high: int, limit: int) -> tuple[pl.DataFrame, int]:
        """Up to `limit` of the subscriber's events in (after, high] built now, and how far the
        outbox was read (the last delivered seq when the page is full). Reads the outbox in
        rounds: a dense subscriber fills its page from the first read; a sparse one reads on in
        growing rounds rather than one row-sized query per event."""
        types = list(sub.entity_types)  # correction tasks only for a subscriber that lists them
        pos, got, scan = after, [], limit + 1
        while pos < high and sum(len(g) for g in got) < limit:
            chunk = self.store.events(pos, until=high, limit=scan, entity_types=types)
            scan = min(max(scan * 4, SCAN_MIN), SCAN_MAX)
            if chunk.height == 0:
                pos = high
                break
            mine, inputs = prefilter(self.store, chunk, [sub])
            if mine.height:
                got.append(build_events(mine, inputs, self.subscriptions, [sub], {sub.id: pos}))
            pos = int(chunk["seq"].max())
        rows = pl.concat(got) if got else pl.DataFrame(schema={c: LINE_SCHEMA[c] for c in PAGE_COLUMNS})
        if rows.height > limit:
            rows = rows.head(limit)
            pos = int(rows["seq"][-1])
        return rows.select(PAGE_COLUMNS), pos

    def _log_events(self, sub: Subscriber, *, first: int, last: int, count: int, entity_ids: list[str],
                    fields: list, channel: str, token_id: str | None) -> None:
        """The page's audit row: its seq range, the entities it carries data about (a task's
        golden entity too) and the personal fields delivered, with their levels (`fields`: field
        lists as stored, FIELD_SEP-joined, each distinct one once, or as built, lists)."""
        lists = [x.split(FIELD_SEP) if isinstance(x, str) else x for x in fields]
        self.record_deliveries([delivery_row(
            sub.id, channel=channel, kind="events", token_id=token_id, seq_from=first, seq_to=last,
            event_count=count, entity_ids=entity_ids, fields=audit_fields(lists, self.subscriptions.levels(sub)))])

    # -- snapshot ---------------------------------------------------------------------------------
    def snapshot(self, subscriber_id: str, *, after_entity: str | None, limit: int, channel: str,
                 token_id: str | None = None) -> SnapshotPage:
        """A page of the subscriber's snapshot: its in-scope active golden records ordered by
        entity id, then (if it takes correction tasks) its open tasks in scope ordered by task id,
        as `entity_type: correction_task` rows; `next_after_entity` is `task:<id>` in that part.

        The first page fixes `as_of_seq` (the outbox's high water then) in the subscriber's cursor
        row; later pages report the same one. Increments continue from it (events after it);
        records and tasks read after it may already hold later changes, which then arrive again as
        events: at least once, never lost (a task's version says which is newer).
        """
        sub = self.subscriber(subscriber_id)
        self._channel(channel)
        limit = max(1, min(int(limit), MAX_LIMIT))
        got = self.store.cursor(sub.id, channel)
        as_of = got[1] if got and got[1] is not None else None
        if as_of is None:
            as_of = self.store.high_water()
            _acked, snap = self.store.advance(sub.id, channel, snapshot=as_of)
            as_of = snap if snap is not None else as_of
        levels = self.subscriptions.levels(sub)
        in_tasks = after_entity is not None and after_entity.startswith(TASK_CURSOR)
        built = pl.DataFrame(schema=SNAPSHOT_SCHEMA)
        next_after, has_more = None, False
        if not in_tasks:
            page = self.store.golden_in_scope(
                entity_types=sub.entity_types, area_prefixes=sub.scope.area_codes,
                own_station=sub.station_id if sub.scope.own_records else None,
                after_entity=after_entity, limit=limit + 1)
            has_more = page.height > limit
            page = page.head(limit)
            built = build_snapshot(page, levels, self.subscriptions)
            if page.height:
                next_after = page["entity_id"][-1]
        if not has_more and wants_tasks(sub):
            room = limit - built.height
            tasks = open_tasks(self.store, sub, limit=room + 1,
                               after_task=after_entity[len(TASK_CURSOR):] if in_tasks else None)
            has_more = tasks.height > room
            tasks = tasks.head(room)
            if tasks.height:
                built = pl.concat([built, build_task_snapshot(tasks, levels, self.subscriptions)])
                next_after = TASK_CURSOR + tasks["entity_id"][-1]
        lines = built["line"].to_list()
        if built.height:
            self.record_deliveries([delivery_row(
                sub.id, channel=channel, kind="snapshot", token_id=token_id, seq_from=None, seq_to=as_of,
                event_count=0, entity_ids=audit_ids(built), fields=audit_fields(built["fields"], levels))])
        return SnapshotPage(records=[json.loads(x) for x in lines], next_after_entity=next_after if has_more else None,
                            has_more=has_more, as_of_seq=as_of, lines=lines)
