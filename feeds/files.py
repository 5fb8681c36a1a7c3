"""Delivery as files: per subscriber per run, the new events (or, the first time, the snapshot) in
the subscriber's outbox as JSON Lines, CSV and Parquet, each set with a manifest.

- Same content in every format: JSON Lines carries each event as one object; CSV and Parquet carry
  the same envelope columns with nested values (changed fields, before, after, sources) as JSON
  text. CSV is UTF-8 with a BOM, so Excel and WPS open Chinese text correctly.
- File names carry the kind and seq range (`events_000000000101-000000000250.csv`,
  `snapshot_000000000250.parquet`), and files are written to a temporary name and renamed: a
  re-run of the same range rewrites the same files, never a second copy.
- One pass for all subscribers: the outbox after the lowest cursor is read once, scoped and masked
  in bulk (feeds.build), then split per subscriber. Each subscriber's cursor advances and its
  delivery is audited in one transaction, after its files are in place.
- The same pass prepares the feed API's pages (feeds.prepared): each subscriber's events, as the
  API delivers them, stored up to the high water, so that a page request reads them rather than
  building them; those up to the subscriber's acknowledged API cursor are dropped.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from core.digests import file_sha256
from core.time import utcnow
from feeds.build import (
    ENVELOPE,
    RECORD,
    SCHEMA_VERSION,
    audit_fields,
    audit_ids,
    build_events,
    build_snapshot,
    build_task_snapshot,
)
from feeds.config import Subscriber, Subscriptions, outbox_dir
from feeds.scope import CORRECTION_TASK, snapshot_scope, subscriber_tables
from feeds.prepared import plan, store_prepared
from feeds.service import delivery_row, load_inputs, open_tasks, prefilter
from warehouse import Warehouse
from warehouse.deliveries import PreparedStore
from warehouse.feeds import FeedStore

CHANNEL = "file"
FEW = 20  # up to this many subscribers in a run, the outbox is narrowed to their events first
CHUNK = 25_000  # outbox events built at a time


@dataclass
class FileDelivery:
    """What one subscriber got in one run (for the CLI and the Dagster asset's metadata)."""

    subscriber_id: str
    outbox: Path
    events: int = 0
    snapshot_records: int = 0  # golden records in its snapshot
    snapshot_tasks: int = 0  # open correction tasks in its snapshot
    seq_range: tuple[int, int] | None = None
    entities: int = 0
    masked_fields: dict[str, int] = field(default_factory=dict)  # field -> values delivered masked
    files: list[str] = field(default_factory=list)
    api_prepared: int = 0  # events stored for the API's pages (feeds.prepared)


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


class FileSet:
    """One set of files (`stem`.jsonl/.csv/.parquet + `stem`.manifest.json) written a part at a
    time, so that a snapshot of a million records is never in memory whole: each part is appended
    to the JSON Lines and CSV files and written as a Parquet part; `finish` merges the Parquet
    parts (streaming), renames every file into place and writes the manifest. Until then only
    temporary names exist, so a failed build leaves no partial file under a delivered name."""

    def __init__(self, outbox: Path, *, stem: str, columns: tuple[str, ...], formats: tuple[str, ...]):
        outbox.mkdir(parents=True, exist_ok=True)
        self.outbox, self.stem, self.columns, self.formats = outbox, stem, list(columns), formats
        self.count = 0
        self._tmp = {fmt: outbox / f".{stem}.{fmt}.tmp" for fmt in formats}
        self._handles = {fmt: self._tmp[fmt].open("wb") for fmt in formats if fmt in ("jsonl", "csv")}
        self._parquet_parts: list[Path] = []

    def add(self, rows: pl.DataFrame) -> None:
        if rows.height == 0:
            return
        table = rows.select(self.columns)
        for fmt in self.formats:
            if fmt == "jsonl":
                # one JSON object per line as it is (JSON escapes every newline), written by Polars
                # without the GIL; a Python join of the lines cost four times as long
                rows.select("line").write_csv(self._handles[fmt], include_header=False, quote_style="never")
            elif fmt == "csv":
                table.write_csv(self._handles[fmt], include_header=self.count == 0, include_bom=self.count == 0)
            else:
                part = self.outbox / f".{self.stem}.parquet.{len(self._parquet_parts)}.tmp"
                table.write_parquet(part)
                self._parquet_parts.append(part)
        self.count += rows.height

    def finish(self, manifest: dict) -> list[str]:
        """The files in place and their manifest; returns their names."""
        for handle in self._handles.values():
            handle.close()
        if "parquet" in self._tmp:
            if len(self._parquet_parts) == 1:
                os.replace(self._parquet_parts[0], self._tmp["parquet"])
            else:
                pl.scan_parquet(self._parquet_parts).sink_parquet(self._tmp["parquet"])
        self._drop_parts()
        names, digests = [], {}
        for fmt in self.formats:
            path = self.outbox / f"{self.stem}.{fmt}"
            os.replace(self._tmp[fmt], path)
            digests[path.name] = {"format": fmt, "sha256": file_sha256(path), "bytes": path.stat().st_size}
            names.append(path.name)
        doc = {"schema_version": SCHEMA_VERSION, **manifest, "count": self.count, "columns": self.columns,
               "files": digests, "created_at": utcnow().isoformat()}
        mpath = self.outbox / f"{self.stem}.manifest.json"
        _atomic(mpath, lambda p: p.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8"))
        return [*names, mpath.name]

    def abort(self) -> None:
        """Nothing written stays (no rows, or the build failed)."""
        for handle in self._handles.values():
            handle.close()
        self._drop_parts()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)

    def _drop_parts(self) -> None:
        for part in self._parquet_parts:
            part.unlink(missing_ok=True)
        self._parquet_parts = []


def write_files(outbox: Path, *, stem: str, rows: pl.DataFrame, columns: tuple[str, ...], formats: tuple[str, ...],
                manifest: dict) -> list[str]:
    """One set of files from rows already in memory (a run's events); returns their names."""
    files = FileSet(outbox, stem=stem, columns=columns, formats=formats)
    try:
        files.add(rows)
        return files.finish(manifest)
    except BaseException:
        files.abort()
        raise


def _masked_counts(fields: pl.Series, levels: dict[str, str]) -> dict[str, int]:
    masked = [f for f, lv in levels.items() if lv == "masked"]
    if not masked or fields.len() == 0:
        return {}
    counts = fields.explode().drop_nulls().value_counts()
    return {r[0]: int(r[1]) for r in counts.iter_rows() if r[0] in masked}


def build_all(warehouse: Warehouse, subs: Subscriptions, *, config_dir: Path, data_dir: Path,
              subscriber_ids: list[str] | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> list[FileDelivery]:
    """Write every (or the named) subscriber's new feed files; returns what each one got.

    A subscriber without a file cursor gets the snapshot of its scope as of the outbox's high
    water; everyone else gets the events between their cursor and that high water.
    """
    store = FeedStore(warehouse)
    chosen = [s for s in subs.subscribers if subscriber_ids is None or s.id in subscriber_ids]
    unknown = sorted(set(subscriber_ids or []) - {s.id for s in chosen})
    if unknown:
        from feeds.service import UnknownSubscriber

        raise UnknownSubscriber(unknown[0])
    high = store.high_water()
    cursors = store.cursors(CHANNEL)
    after: dict[str, int] = {}
    new: list[Subscriber] = []
    for s in chosen:
        pos = _position(cursors.get(s.id))
        if pos is None:
            new.append(s)
        else:
            after[s.id] = pos
    results: dict[str, FileDelivery] = {}
    total, done = len(chosen), 0

    if _walk_together(store, new):
        def walked(records: int) -> None:  # the walk is one long step: its progress in records
            on_progress(f"{len(new)} snapshots, {records:,} records read", done, total)

        results |= _deliver_snapshots(store, subs, new, high, config_dir=config_dir, data_dir=data_dir,
                                      on_page=walked if on_progress else None)
    for s in new:
        if s.id not in results:
            results[s.id] = _deliver_snapshot(store, subs, s, high, config_dir=config_dir, data_dir=data_dir)
        done += 1
        if on_progress:
            on_progress(s.id, done, total)

    # the API's prepared stretch of each subscriber: from its API cursor (else where its files
    # are) when it starts again, else on from where the last build left it (feeds.prepared.plan)
    prep = PreparedStore(warehouse)
    api = store.cursors("api")
    floor = {s.id: _api_floor(api.get(s.id), after.get(s.id, high)) for s in chosen}
    build_from, resets, extends = plan(subs, chosen, prep.marks([s.id for s in chosen]), floor, high)
    olds = [s for s in chosen if s.id in after]
    builds = {s.id: min(after.get(s.id, high), build_from[s.id]) for s in chosen}
    building = [s for s in chosen if builds[s.id] < high]
    built = (_build_range(store, subs, building, builds, min(builds[s.id] for s in building), high)
             if building else pl.DataFrame())
    if olds:
        per = _slices(built)
        rows_audit, acks = [], {}
        for s in olds:
            rows = per.get(s.id)
            if rows is not None and builds[s.id] < after[s.id]:
                rows = rows.filter(pl.col("seq") > after[s.id])  # built lower for the API only
            out = outbox_dir(s, config_dir=config_dir, data_dir=data_dir)
            got = FileDelivery(s.id, out)
            if rows is not None and rows.height:
                levels = subs.levels(s)
                first, last = int(rows["seq"].min()), int(rows["seq"].max())
                stem = f"events_{after[s.id] + 1:012d}-{high:012d}"
                got.files = write_files(out, stem=stem, rows=rows, columns=ENVELOPE, formats=s.delivery.formats,
                                        manifest={"subscriber": s.id, "kind": "events", "seq_from": after[s.id] + 1,
                                                  "seq_to": high, "first_seq": first, "last_seq": last})
                got.events, got.seq_range = rows.height, (first, last)
                got.entities = rows["entity_id"].n_unique()
                got.masked_fields = _masked_counts(rows["fields"], levels)
                rows_audit.append(delivery_row(
                    s.id, channel=CHANNEL, kind="events", token_id=None, seq_from=first, seq_to=last,
                    event_count=rows.height, entity_ids=audit_ids(rows),
                    fields=audit_fields(rows["fields"], levels)))
            acks[s.id] = high
            results[s.id] = got
            done += 1
            if on_progress:
                on_progress(s.id, done, total)
        # before the cursors move: a crash in between rebuilds the files, and the prepared rows
        # already written are kept (only events after a mark are ever added to it)
        prepared = store_prepared(prep, built, resets, extends)
        store.commit_file_run(rows_audit, acked=acks, snapshots={})
    else:
        prepared = store_prepared(prep, built, resets, extends)
    for sid, n in prepared.items():
        if sid in results:
            results[sid].api_prepared = n
    prep.prune({s.id: api[s.id][0] for s in chosen if api.get(s.id, (None, None))[0] is not None})
    prep.forget([s.id for s in subs.subscribers])
    return [results[s.id] for s in chosen]


def prepare_api(warehouse: Warehouse, subs: Subscriptions, *, subscriber_ids: list[str] | None = None,
                start: int | None = None) -> dict[str, int]:
    """Prepare the API's pages without writing files (a deployment that serves only the API, the
    benchmarks): every (or the named) subscriber's events up to the high water, from `start` when
    its stretch starts again (default: its API cursor, else its file cursor, else the outbox's
    start). Returns how many rows each subscriber got."""
    store = FeedStore(warehouse)
    chosen = [s for s in subs.subscribers if subscriber_ids is None or s.id in subscriber_ids]
    high = store.high_water()
    prep = PreparedStore(warehouse)
    files, api = store.cursors(CHANNEL), store.cursors("api")
    floor = {s.id: start if start is not None else _api_floor(api.get(s.id), _position(files.get(s.id)) or 0)
             for s in chosen}
    build_from, resets, extends = plan(subs, chosen, prep.marks([s.id for s in chosen]), floor, high)
    building = [s for s in chosen if build_from[s.id] < high]
    built = (_build_range(store, subs, building, build_from, min(build_from[s.id] for s in building), high)
             if building else pl.DataFrame())
    return store_prepared(prep, built, resets, extends)


def _api_floor(api: tuple[int | None, int | None] | None, otherwise: int) -> int:
    """Where a subscriber's prepared API pages start when they start again: at its API cursor
    (what its client asks for next), else `otherwise`."""
    pos = _position(api)
    return otherwise if pos is None else pos


def _position(cursor: tuple[int | None, int | None] | None) -> int | None:
    """Where a subscriber's files are: its acknowledged seq, else its snapshot's, else nowhere."""
    acked, snap = cursor or (None, None)
    return acked if acked is not None else snap


def subscribers_behind(warehouse: Warehouse, subscriber_ids: list[str]) -> tuple[int, list[str]]:
    """The outbox's high water and the subscribers whose files have not reached it (or who never
    had their snapshot): what a build would deliver to, read from the cursors a build moves, so
    whoever built the feeds last (a daemon run or `enteronce run`) nothing is built twice."""
    store = FeedStore(warehouse)
    high = store.high_water()
    cursors = store.cursors(CHANNEL)
    return high, [sid for sid in subscriber_ids if (pos := _position(cursors.get(sid))) is None or pos < high]


def _slices(built: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per subscriber, its rows as a zero-copy slice of the (subscriber-sorted) frame."""
    if built.height == 0:
        return {}
    built = built.sort("subscriber_id", "seq", maintain_order=True)
    runs = built.select(pl.col("subscriber_id").rle()).unnest("subscriber_id")
    out, offset = {}, 0
    for length, sid in runs.iter_rows():
        out[sid] = built.slice(offset, length)
        offset += length
    return out


def _build_range(store: FeedStore, subs: Subscriptions, olds: list[Subscriber], after: dict[str, int], lowest: int,
                 high: int) -> pl.DataFrame:
    """Every subscriber's events in (lowest, high], read and built in stretches of CHUNK events so
    that memory holds one stretch's working frames (plus the lines delivered), not the outbox's."""
    parts, pos = [], lowest
    while pos < high:
        events = store.events(pos, until=high, limit=CHUNK)
        if events.height == 0:
            break
        pos = int(events["seq"].max())
        if len(olds) <= FEW:  # a few subscribers: read records for their events only
            events, inputs = prefilter(store, events, olds)
        else:
            inputs = load_inputs(store, events)
        if events.height:
            parts.append(build_events(events, inputs, subs, olds, after))
    return pl.concat(parts) if parts else pl.DataFrame()


class _Snapshot:
    """One subscriber's snapshot being written: its files, what it got, and what its audit row
    gathers (the entities and fields delivered), a part at a time."""

    def __init__(self, subs: Subscriptions, s: Subscriber, as_of: int, *, config_dir: Path, data_dir: Path):
        self.subscriber, self.as_of, self.levels = s, as_of, subs.levels(s)
        out = outbox_dir(s, config_dir=config_dir, data_dir=data_dir)
        self.got = FileDelivery(s.id, out)
        self.files = FileSet(out, stem=f"snapshot_{as_of:012d}", columns=RECORD, formats=s.delivery.formats)
        self.ids: list[str] = []
        self.seen: set[str] = set()

    def add(self, rows: pl.DataFrame, *, records: bool = True) -> None:
        if rows.height == 0:
            return
        self.files.add(rows)
        self.ids += audit_ids(rows)
        self.seen |= set(audit_fields(rows["fields"], self.levels))
        for f, n in _masked_counts(rows["fields"], self.levels).items():
            self.got.masked_fields[f] = self.got.masked_fields.get(f, 0) + n
        if records:
            self.got.snapshot_records += rows.height

    def finish(self, store: FeedStore, subs: Subscriptions) -> list[dict]:
        """The open correction tasks in its scope (if it takes them) after the records, the files
        in place; its audit row (none when there was nothing to deliver)."""
        s = self.subscriber
        tasks = open_tasks(store, s)
        self.add(build_task_snapshot(tasks, self.levels, subs), records=False)
        if not self.files.count:
            self.files.abort()
            return []
        self.got.files = self.files.finish({"subscriber": s.id, "kind": "snapshot", "as_of_seq": self.as_of,
                                           "seq_from": None, "seq_to": self.as_of, "tasks": tasks.height})
        self.got.snapshot_tasks = tasks.height
        self.got.entities = self.got.snapshot_records
        return [delivery_row(s.id, channel=CHANNEL, kind="snapshot", token_id=None, seq_from=None, seq_to=self.as_of,
                             event_count=0, entity_ids=self.ids,
                             fields={f: self.levels[f] for f in self.levels if f in self.seen})]


def _deliver_snapshot(store: FeedStore, subs: Subscriptions, s: Subscriber, as_of: int, *, config_dir: Path,
                      data_dir: Path) -> FileDelivery:
    """The subscriber's scope as of `as_of`, read by its own index SNAPSHOT_PART golden records at
    a time (a city-wide scope is every record), then its open correction tasks; one audit row."""
    snap = _Snapshot(subs, s, as_of, config_dir=config_dir, data_dir=data_dir)
    try:
        after = None
        while True:
            golden = store.golden_in_scope(entity_types=s.entity_types, area_prefixes=s.scope.area_codes,
                                           own_station=s.station_id if s.scope.own_records else None,
                                           after_entity=after, limit=SNAPSHOT_PART)
            if golden.height:
                snap.add(build_snapshot(golden, snap.levels, subs))
                after = golden["entity_id"][-1]
            if golden.height < SNAPSHOT_PART:
                break
        audit = snap.finish(store, subs)
    except BaseException:
        snap.files.abort()
        raise
    store.commit_file_run(audit, acked={s.id: as_of}, snapshots={s.id: as_of})
    return snap.got


SNAPSHOT_PART = 20_000  # golden records read, masked and written at a time
# Many new subscribers' snapshots walk the golden table once when their scopes add up to this
# share of it: read by its index, a scope's record costs about four times a walked one (at 1M
# records on SQLite: 40 stations' scopes, 1.4M records, in 36 s by index; the table in 8 s walked).
WALK_SHARE = 0.25


def _walk_together(store: FeedStore, new: list[Subscriber]) -> bool:
    """Whether the new subscribers' snapshots are cheaper from one walk of the golden table than
    each from its own scope's index (a first build of every subscriber, a network added at once).
    Their scopes are counted until they reach WALK_SHARE of the table."""
    if len(new) < 2:
        return False
    enough = WALK_SHARE * store.golden_rows({t for s in new for t in s.entity_types})
    sizes = store.scope_sizes((s.entity_types, s.scope.area_codes, s.station_id if s.scope.own_records else None)
                              for s in new)
    return any(n >= enough for n in itertools.accumulate(sizes))


def _deliver_snapshots(store: FeedStore, subs: Subscriptions, new: list[Subscriber], as_of: int, *,
                       config_dir: Path, data_dir: Path,
                       on_page: Callable[[int], None] | None = None) -> dict[str, FileDelivery]:
    """Every new subscriber's snapshot from one walk of the golden table (_walk_pages), each
    subscriber getting the rows, in the order, that _deliver_snapshot writes; then each one's
    open tasks, and one commit for all. The next page is read and masked on a thread of its own
    while this one is written (SQLite, Polars and the writers release the GIL), so the two
    overlap on two cores; at most two pages are held."""
    snaps = {s.id: _Snapshot(subs, s, as_of, config_dir=config_dir, data_dir=data_dir) for s in new}
    policies: dict[tuple, list[str]] = {}
    for s in new:
        policies.setdefault(tuple(snaps[s.id].levels.items()), []).append(s.id)
    pages = _walk_pages(store, subs, new, [(snaps[ids[0]].levels, ids) for ids in policies.values()])
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-walk") as ahead:
            pending = ahead.submit(next, pages, None)
            read = 0
            while (page := pending.result()) is not None:
                pending = ahead.submit(next, pages, None)
                read, rows_of = read + page[0], page[1]
                for sid, rows in rows_of.items():
                    snaps[sid].add(rows)
                if on_page:
                    on_page(read)
        audit = [row for s in new for row in snaps[s.id].finish(store, subs)]
    except BaseException:
        for snap in snaps.values():
            snap.files.abort()
        raise
    store.commit_file_run(audit, acked={s.id: as_of for s in new}, snapshots={s.id: as_of for s in new})
    return {sid: snap.got for sid, snap in snaps.items()}


def _walk_pages(store: FeedStore, subs: Subscriptions, new: list[Subscriber],
                policies: list[tuple[dict, list[str]]]) -> Iterator[tuple[int, dict[str, pl.DataFrame]]]:
    """The active golden records in entity id order, SNAPSHOT_PART at a time, each page as its
    number of records and every subscriber's rows of it: split by the subscribers' scopes
    (feeds.scope.snapshot_scope, the rule golden_in_scope reads one scope by) and masked once per
    policy (levels, the subscribers sharing them)."""
    tables = subscriber_tables(new)
    types = sorted({t for s in new for t in s.entity_types if t != CORRECTION_TASK})
    if not types:  # subscribers of correction tasks only
        return
    after = None
    while True:
        page = store.active_golden_page(types, after_entity=after, limit=SNAPSHOT_PART)
        if page.height == 0:
            return
        members = (store.memberships_between(after, page["entity_id"][-1]) if tables["own"].height
                   else pl.DataFrame(schema={"entity_id": pl.String, "record_key": pl.String}))
        scope = snapshot_scope(page, members, tables)
        rows: dict[str, pl.DataFrame] = {}
        for levels, ids in policies:
            wanted = scope.filter(pl.col("subscriber_id").is_in(ids))
            if wanted.height:
                built = build_snapshot(page.filter(pl.col("entity_id").is_in(wanted["entity_id"].implode())),
                                       levels, subs)
                split = built.join(wanted, on="entity_id", maintain_order="left").partition_by(
                    "subscriber_id", as_dict=True, include_key=False)
                rows |= {sid: part for (sid,), part in split.items()}
        yield page.height, rows
        if page.height < SNAPSHOT_PART:
            return
        after = page["entity_id"][-1]
