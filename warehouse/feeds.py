"""The warehouse side of feeds: bulk reads of events, versions, memberships and golden records for
the feed builder, subscribers' cursors, and the append-only delivery audit log.

Callers get Polars frames and plain values; JSON columns come back as JSON text (cast in SQL) so
that the builder decodes them with Polars rather than one Python object per value.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Iterator

import orjson
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame, not_journalled, read_bulk, read_frame, unindexed
from core.time import utcnow
from warehouse.store import Warehouse
from warehouse.unchanged import Reader

EVENT_SCHEMA = {
    "seq": pl.Int64, "event_id": pl.String, "entity_type": pl.String, "entity_id": pl.String, "op": pl.String,
    "version": pl.Int64, "changed_fields": pl.String, "before": pl.String, "after": pl.String,
    "sources": pl.String, "occurred_at": pl.Datetime("us", "UTC"),
}
VERSION_SCHEMA = {"entity_id": pl.String, "version": pl.Int64, "record": pl.String}
MEMBER_SCHEMA = {"entity_id": pl.String, "record_key": pl.String}
GOLDEN_SCHEMA = {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "area_code": pl.String,
                 "record": pl.String, "provenance": pl.String}
TASK_ENTITY_TYPE = "correction_task"
DELIVERY_SCHEMA = {
    "delivery_id": pl.Int64, "subscriber_id": pl.String, "token_id": pl.String, "channel": pl.String,
    "kind": pl.String, "seq_from": pl.Int64, "seq_to": pl.Int64, "event_count": pl.Int64,
    "entity_count": pl.Int64, "entity_ids": pl.String, "fields": pl.String,
    "delivered_at": pl.Datetime("us", "UTC"),
}


def _as_utc(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """SQLite hands timestamps back naive (they were written in UTC)."""
    if frame.height and frame.schema[column] == pl.Datetime("us"):
        return frame.with_columns(pl.col(column).dt.replace_time_zone("UTC"))
    return frame


def read_access_rows(engine: sa.Engine, stmt: sa.Select, *, subscriber: sa.Column, at: sa.Column,
                     subscriber_id: str | None, since: dt.datetime | None, limit: int | None,
                     schema: dict) -> pl.DataFrame:
    """Rows of an access log (feed deliveries, front-desk calls): one subscriber's or everyone's,
    from `since`, at most `limit`, with the time column in UTC."""
    if subscriber_id is not None:
        stmt = stmt.where(subscriber == subscriber_id)
    if since is not None:
        stmt = stmt.where(at >= since)
    if limit is not None:
        stmt = stmt.limit(limit)
    with engine.connect() as conn:
        return _as_utc(read_frame(conn, stmt, schema=schema), at.name)


# A scope of more parts than this (a department's dozens of district prefixes) is read in one
# walk of the entity id order per page: read part by part, every part would give up to a page of
# ids for every page (36 prefixes made a city-wide department's 1M-record snapshot read 36 pages'
# worth of ids per page); a scope that wide is dense, so the walk finds its page soon.
PAGE_PARTS = 4
# A scope part is walked in id order from this many rows (see _dense_from): never below DENSE.
DENSE = 20_000


def _successor(prefix: str) -> str:
    """The least string above every string starting with `prefix` (prefixes here are digits or
    identifiers: the last character is never the largest one)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_GOLDEN_COLUMNS = tuple(s.golden_records.c[c] for c in GOLDEN_SCHEMA)


def _starts_with(conn: sa.Connection, column: sa.Column, etype: sa.Column, prefix: str,
                 types: list[str], dense: int) -> tuple[sa.ColumnElement[bool], sa.ColumnElement]:
    """`column` starts with `prefix` among rows of `types`, as (condition, the entity type
    expression to filter `types` with), written for the dialect (see _golden_in_scope_parts):
    on SQLite a key range, through the index while the part is sparse and past it (both
    columns wrapped) once it holds `dense` rows; elsewhere LIKE, the planner choosing."""
    cond = _prefix_range(conn, column, prefix)
    if conn.dialect.name == "sqlite" and _at_least(conn, sa.select(sa.literal(1)).where(etype.in_(types), cond), dense):
        return _prefix_range(conn, unindexed(column), prefix), unindexed(etype)
    return cond, etype


def _prefix_range(conn: sa.Connection, column: sa.Column, prefix: str) -> sa.ColumnElement[bool]:
    """`column` starts with `prefix`, as the column's index serves it: a key range on SQLite, LIKE
    elsewhere (PostgreSQL's text_pattern_ops indexes, migration 0015)."""
    if conn.dialect.name == "sqlite":
        return sa.and_(column >= prefix, column < _successor(prefix))
    return column.startswith(prefix, autoescape=True)


def _dense_from(total: int, limit: int) -> int:
    """The rows from which a scope part is cheaper walked in id order than read by its index.

    Read by its index, a part of n rows is read and sorted for every page: n * n / limit rows
    over a whole snapshot. Walked, each page goes on along the id order until it has `limit`
    rows of the part: about the table's `total` rows over the snapshot, however small the part
    (and a walk reads each row it passes, records and all). So the index serves a part below
    sqrt(total * limit). A fixed 20,000 had every station's part of a 1M-record network (25,000
    rows) walked: each of 40 station snapshots read the whole golden table (667 s of feeds)."""
    return max(DENSE, math.isqrt(max(total, 0) * max(limit, 1)))


def _at_least(conn: sa.Connection, rows: sa.Select, n: int) -> bool:
    """Whether the query has at least n rows, counting no further than that."""
    return conn.scalar(sa.select(sa.func.count()).select_from(rows.limit(n).subquery())) >= n


def _insert_deliveries(conn: sa.Connection, rows: list[dict]) -> None:
    """Audit rows, their JSON columns given as text that orjson wrote: the API's audit writer
    encodes a page's 1,000 entity ids per row, and the standard library's encoder held the GIL
    from the requests for half of that thread's time. SQLite stores the text as it is (a CAST to
    JSON would take numeric affinity); PostgreSQL casts it."""
    d, json_columns = s.feed_deliveries, ("entity_ids", "fields")

    def text(name: str) -> sa.ColumnElement:
        param = sa.bindparam(name, type_=sa.Text)
        return param if conn.dialect.name == "sqlite" else sa.cast(param, d.c[name].type)

    conn.execute(d.insert().values({c: text(c) for c in json_columns}),
                 [{**r, **{c: orjson.dumps(r[c]).decode() for c in json_columns}} for r in rows])


class FeedStore:
    # How long a count of golden rows (_golden_rows) stands for the table's size: it only
    # chooses between two plans, and a feed API's store lives as long as its server.
    SIZE_SECONDS = 300.0

    def __init__(self, store: Warehouse):
        self.store = store
        self.engine = store.engine
        self._sizes: dict[tuple[str, ...], tuple[float, int]] = {}

    def _golden_rows(self, conn: sa.Connection, types: list[str]) -> int:
        """Golden rows of these types (any status), counted at most every SIZE_SECONDS."""
        key, now = tuple(sorted(types)), time.monotonic()
        known = self._sizes.get(key)
        if known is None or now - known[0] > self.SIZE_SECONDS:
            g = s.golden_records
            known = (now, int(conn.scalar(sa.select(sa.func.count()).where(g.c.entity_type.in_(list(key)))) or 0))
            self._sizes[key] = known
        return known[1]

    # -- the outbox and what the builder needs around it -------------------------------------
    def high_water(self) -> int:
        return self.store.max_event_seq()

    def events(self, after: int, *, until: int | None = None, limit: int | None = None,
               entity_types: Iterable[str] | None = None) -> pl.DataFrame:
        """Change events with after < seq (<= until), in seq order, JSON columns as text."""
        e = s.change_events
        stmt = sa.select(
            e.c.seq, e.c.event_id, e.c.entity_type, e.c.entity_id, e.c.op, e.c.version,
            sa.cast(e.c.changed_fields, sa.Text).label("changed_fields"), e.c.before, e.c.after,
            sa.cast(e.c.sources, sa.Text).label("sources"), e.c.occurred_at,
        ).where(e.c.seq > after).order_by(e.c.seq)
        if until is not None:
            stmt = stmt.where(e.c.seq <= until)
        if entity_types is not None:
            stmt = stmt.where(e.c.entity_type.in_(list(entity_types)))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return _as_utc(read_bulk(conn, stmt, schema=EVENT_SCHEMA), "occurred_at")

    def version_records(self, entity_ids: Iterable[str]) -> pl.DataFrame:
        """Every stored golden version of the given entities (the record as of each version)."""
        v = s.golden_versions
        with self.engine.connect() as conn:
            stmt = sa.select(v.c.entity_id, v.c.version, v.c.record).where(in_keys(conn, v.c.entity_id, entity_ids))
            return read_bulk(conn, stmt, schema=VERSION_SCHEMA)

    def version_areas(self, entity_ids: Iterable[str]) -> pl.DataFrame:
        """Each version's area code (entity_id, version, area_code), extracted from the record's
        JSON by the database where it can, so that scoping a long stretch of the outbox does not
        move every record's text."""
        v = s.golden_versions
        dialect = self.store.dialect
        if dialect == "sqlite":
            area = sa.func.json_extract(v.c.record, "$.area_code")
        elif dialect == "postgresql":
            area = sa.cast(v.c.record, postgresql.JSONB)["area_code"].astext
        else:
            frame = self.version_records(entity_ids)
            return frame.select("entity_id", "version",
                                pl.col("record").str.json_path_match("$.area_code").alias("area_code"))
        schema = {"entity_id": pl.String, "version": pl.Int64, "area_code": pl.String}
        with self.engine.connect() as conn:
            stmt = sa.select(v.c.entity_id, v.c.version, sa.cast(area, sa.String).label("area_code")).where(
                in_keys(conn, v.c.entity_id, entity_ids))
            return read_bulk(conn, stmt, schema=schema)

    def memberships(self, entity_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Which record keys (`station:local id`) each entity holds now; all when ids is None."""
        m = s.entity_membership
        base = sa.select(m.c.entity_id, m.c.record_key)
        with self.engine.connect() as conn:
            if entity_ids is None:
                return read_bulk(conn, base, schema=MEMBER_SCHEMA)
            return read_bulk(conn, base.where(in_keys(conn, m.c.entity_id, entity_ids)), schema=MEMBER_SCHEMA)

    def memberships_between(self, after: str | None, last: str) -> pl.DataFrame:
        """The record keys of the entities with ids in (after, last]: a walk's page's members, by
        a range of the entity id index (no key table to fill)."""
        m = s.entity_membership
        stmt = sa.select(m.c.entity_id, m.c.record_key).where(m.c.entity_id <= last)
        if after is not None:
            stmt = stmt.where(m.c.entity_id > after)
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt, schema=MEMBER_SCHEMA)

    def golden_areas(self, entity_ids: Iterable[str]) -> pl.DataFrame:
        """The current golden area code of the given entities."""
        g = s.golden_records
        schema = {"entity_id": pl.String, "area_code": pl.String}
        with self.engine.connect() as conn:
            return read_bulk(conn, sa.select(g.c.entity_id, g.c.area_code).where(
                in_keys(conn, g.c.entity_id, entity_ids)), schema=schema)

    def golden_in_scope(self, *, entity_types: Iterable[str], area_prefixes: Iterable[str] = (),
                        own_station: str | None = None, after_entity: str | None = None,
                        limit: int | None = None) -> pl.DataFrame:
        """Active golden records of the given types whose area code starts with a prefix, or that
        hold a record of `own_station`, ordered by entity id (the snapshot's page key)."""
        g, m = s.golden_records, s.entity_membership
        entity_types, area_prefixes = list(entity_types), list(area_prefixes)
        if limit is not None and 0 < len(area_prefixes) + bool(own_station) <= PAGE_PARTS:
            return self._golden_in_scope_parts(entity_types, area_prefixes, own_station, after_entity, limit)
        conds = [g.c.area_code.startswith(p, autoescape=True) for p in area_prefixes]
        if own_station:
            own = sa.select(m.c.entity_id)
            if self.store.dialect == "sqlite":  # the key's range, by the primary key (LIKE reads every row)
                own = own.where(m.c.entity_type.in_(entity_types), m.c.record_key >= f"{own_station}:",
                                m.c.record_key < f"{own_station};")
            else:
                own = own.where(m.c.record_key.startswith(f"{own_station}:", autoescape=True))
            conds.append(g.c.entity_id.in_(own))
        if not conds:
            return pl.DataFrame(schema=GOLDEN_SCHEMA)
        return self.active_golden_page(entity_types, after_entity=after_entity, limit=limit, where=sa.or_(*conds))

    def _golden_in_scope_parts(self, types: list[str], prefixes: list[str], own_station: str | None,
                               after: str | None, limit: int) -> pl.DataFrame:
        """golden_in_scope's page: each part of the scope (an area prefix, the station's own
        records) gives its first `limit` entity ids after `after`, merged here, then the rows.

        One query with `area LIKE … OR entity_id IN (the station's members)` walked the whole
        table in id order for every page and subscriber (PostgreSQL filtered 486,000 of 500,000
        rows to find one station's 14,000; SQLite built the member set per page), so a
        snapshot's cost grew with stations times records. Per part, an index serves it:
        - SQLite: a part with few rows (under _dense_from: sqrt(golden rows * limit), at least
          DENSE) is read by its index and sorted; a larger one walks the entity id order and stops
          at `limit` (its other conditions written so that no index serves them: SQLite would
          otherwise pick that index and sort the whole part per page). Ranges, not LIKE, which
          SQLite serves by no index.
        - PostgreSQL: LIKE, which the text_pattern_ops indexes of migration 0015 turn into an
          index range in any collation, and the planner's own choice between that and the id order.
        (_starts_with writes the condition for each.)"""
        g, m = s.golden_records, s.entity_membership
        after = after if after is not None else ""
        parts: list[list[str]] = []
        with self.engine.connect() as conn:
            dense = _dense_from(self._golden_rows(conn, types), limit)
            for prefix in prefixes:
                in_area, etype = _starts_with(conn, g.c.area_code, g.c.entity_type, prefix, types, dense)
                part = sa.select(g.c.entity_id).where(g.c.entity_id > after, etype.in_(types), in_area,
                                                      g.c.status == "active").order_by(g.c.entity_id).limit(limit)
                if len(prefixes) == 1 and not own_station:  # the page is this part's: its rows at once
                    return read_frame(conn, part.with_only_columns(*_GOLDEN_COLUMNS), schema=GOLDEN_SCHEMA)
                parts.append(list(conn.scalars(part)))
            if own_station:
                mine, etype = _starts_with(conn, m.c.record_key, m.c.entity_type, f"{own_station}:", types, dense)
                parts.append(list(conn.scalars(
                    sa.select(m.c.entity_id).join(g, g.c.entity_id == m.c.entity_id)
                    .where(m.c.entity_id > after, etype.in_(types), mine, g.c.status == "active",
                           unindexed(g.c.entity_type).in_(types))
                    .group_by(m.c.entity_id).order_by(m.c.entity_id).limit(limit))))
            ids = sorted(set().union(*parts))[:limit]
            if not ids:
                return pl.DataFrame(schema=GOLDEN_SCHEMA)
            stmt = sa.select(*_GOLDEN_COLUMNS).where(in_keys(conn, g.c.entity_id, ids)).order_by(g.c.entity_id)
            return read_frame(conn, stmt, schema=GOLDEN_SCHEMA)

    def open_task_events(self, *, record_types: Iterable[str], station_id: str | None = None,
                         after_task: str | None = None, limit: int | None = None) -> tuple[pl.DataFrame, str | None]:
        """The latest outbox event of each open correction task (EVENT_SCHEMA), in task id order
        as the database sorts them (the snapshot's page key): tasks about records of the given
        entity types, addressed to `station_id` if given, with ids after `after_task`, at most
        `limit` tasks; and the last task id read when there may be more (None: no more). Open
        tasks come from `correction_tasks` (written with their events in one transaction, indexed
        by station and status), their content from the outbox."""
        t, e = s.correction_tasks, s.change_events
        stmt = (sa.select(t.c.task_id)
                .where(t.c.status == "open", t.c.entity_type.in_(list(record_types))).order_by(t.c.task_id))
        if station_id is not None:
            stmt = stmt.where(t.c.station_id == station_id)
        if after_task is not None:
            stmt = stmt.where(t.c.task_id > after_task)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            ids = list(conn.scalars(stmt))
            more = ids[-1] if limit is not None and len(ids) >= limit else None
            if not ids:
                return pl.DataFrame(schema=EVENT_SCHEMA), None
            events = read_frame(conn, sa.select(
                e.c.seq, e.c.event_id, e.c.entity_type, e.c.entity_id, e.c.op, e.c.version,
                sa.cast(e.c.changed_fields, sa.Text).label("changed_fields"), e.c.before, e.c.after,
                sa.cast(e.c.sources, sa.Text).label("sources"), e.c.occurred_at,
            ).where(e.c.entity_type == TASK_ENTITY_TYPE, in_keys(conn, e.c.entity_id, ids)), schema=EVENT_SCHEMA)
        order = pl.DataFrame({"entity_id": ids}, schema={"entity_id": pl.String}).with_row_index("_order")
        latest = (_as_utc(events, "occurred_at").sort("version").group_by("entity_id").last()
                  .filter(pl.col("after").str.json_path_match("$.status") == "open"))
        return order.join(latest, on="entity_id").sort("_order").select(list(EVENT_SCHEMA)), more

    def active_golden_page(self, entity_types: Iterable[str], *, after_entity: str | None, limit: int | None,
                           where: sa.ColumnElement[bool] | None = None) -> pl.DataFrame:
        """Active golden records of the given types (and `where`) after `after_entity`, in entity
        id order, at most `limit`: a page of a walk of the table (a wide scope's snapshot, or
        many subscribers' at once). SQLite walks the entity id order and stops at `limit`; by the
        type index it read every record of the type and sorted them, for every page."""
        g = s.golden_records
        etype = unindexed(g.c.entity_type) if self.store.dialect == "sqlite" else g.c.entity_type
        stmt = sa.select(*_GOLDEN_COLUMNS).where(g.c.status == "active", etype.in_(list(entity_types)))
        if where is not None:
            stmt = stmt.where(where)
        if after_entity is not None:
            stmt = stmt.where(g.c.entity_id > after_entity)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt.order_by(g.c.entity_id).limit(limit), schema=GOLDEN_SCHEMA)

    def golden_rows(self, entity_types: Iterable[str]) -> int:
        """Golden rows of these types, any status (counted at most every SIZE_SECONDS)."""
        with self.engine.connect() as conn:
            return self._golden_rows(conn, list(entity_types))

    def scope_sizes(self, scopes: Iterable[tuple[Iterable[str], Iterable[str], str | None]]) -> Iterator[int]:
        """For each scope (entity types, area prefixes, own station), its golden rows, about:
        counted on the indexes alone (an area prefix's range, the station's member keys),
        whatever the records' status, a record both in the area and the station's own counted
        twice; one at a time on one connection, so a caller that has seen enough stops there."""
        g, m = s.golden_records, s.entity_membership
        with self.engine.connect() as conn:
            for types, prefixes, own_station in scopes:
                types = list(types)
                parts = [(g, _prefix_range(conn, g.c.area_code, p)) for p in prefixes]
                if own_station:
                    parts.append((m, _prefix_range(conn, m.c.record_key, f"{own_station}:")))
                yield sum(int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
                    t.c.entity_type.in_(types), cond)) or 0) for t, cond in parts)

    def load_frames(self, frames: dict[str, pl.DataFrame]) -> None:
        """Bulk-load prepared rows (golden records replace by id; the other tables append), in one
        transaction: how tests and the feeds benchmark stage an outbox without the whole pipeline."""
        with self.store.transaction() as conn:
            for name in ("golden_records", "golden_versions", "entity_membership", "change_events", "correction_tasks"):
                frame = frames.get(name)
                if frame is not None and frame.height:
                    table = s.metadata.tables[name]
                    insert_frame(conn, table, frame,
                                 replace=name in ("golden_records", "entity_membership", "correction_tasks"))

    # -- cursors ----------------------------------------------------------------------------
    def cursors(self, channel: str) -> dict[str, tuple[int | None, int | None]]:
        """subscriber id -> (acked_seq, snapshot_seq) for one channel."""
        c = s.feed_cursors
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(c.c.subscriber_id, c.c.acked_seq, c.c.snapshot_seq)
                                .where(c.c.channel == channel)).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    def cursor(self, subscriber_id: str, channel: str) -> tuple[int | None, int | None] | None:
        c = s.feed_cursors
        with Reader(self.engine) as reader:  # never kept (an acknowledgement moves it): always read
            row = reader.conn().execute(sa.select(c.c.acked_seq, c.c.snapshot_seq).where(
                c.c.subscriber_id == subscriber_id, c.c.channel == channel)).first()
        return None if row is None else (row[0], row[1])

    def advance(self, subscriber_id: str, channel: str, *, acked: int | None = None,
                snapshot: int | None = None) -> tuple[int | None, int | None]:
        """Move a cursor forward, never back: acked_seq to max(acked_seq, acked), snapshot_seq set
        once. Concurrent callers are safe: the update itself compares, and a lost insert race
        falls back to the update."""
        c = s.feed_cursors
        where = (c.c.subscriber_id == subscriber_id) & (c.c.channel == channel)
        for _attempt in range(3):
            with self.store.transaction() as conn:
                exists = conn.scalar(sa.select(sa.func.count()).select_from(c).where(where))
                if not exists:
                    try:
                        with conn.begin_nested():
                            conn.execute(c.insert().values(subscriber_id=subscriber_id, channel=channel,
                                                           acked_seq=acked, snapshot_seq=snapshot,
                                                           updated_at=utcnow()))
                        break
                    except sa.exc.IntegrityError:
                        continue
                if acked is not None:
                    conn.execute(c.update().where(where, sa.or_(c.c.acked_seq.is_(None), c.c.acked_seq < acked))
                                 .values(acked_seq=acked, updated_at=utcnow()))
                if snapshot is not None:
                    conn.execute(c.update().where(where, c.c.snapshot_seq.is_(None))
                                 .values(snapshot_seq=snapshot, updated_at=utcnow()))
                break
        return self.cursor(subscriber_id, channel) or (None, None)

    def commit_file_run(self, deliveries: list[dict], *, acked: dict[str, int], snapshots: dict[str, int],
                        channel: str = "file") -> None:
        """One file run's audit rows and cursor moves, in one transaction (after the files are
        written): a crash before it leaves the cursors where they were, and the re-run rewrites
        the same files."""
        c = s.feed_cursors
        now = utcnow()
        with self.store.transaction() as conn:
            if deliveries:
                _insert_deliveries(conn, [{"delivered_at": now, "token_id": None, **r} for r in deliveries])
            ids = sorted(set(acked) | set(snapshots))
            have = set(conn.scalars(sa.select(c.c.subscriber_id).where(
                c.c.channel == channel, in_keys(conn, c.c.subscriber_id, ids))))
            fresh = [{"subscriber_id": i, "channel": channel, "acked_seq": acked.get(i), "snapshot_seq": snapshots.get(i),
                      "updated_at": now} for i in ids if i not in have]
            if fresh:
                conn.execute(c.insert(), fresh)
            moves = [{"sid": i, "seq": acked[i]} for i in ids if i in have and i in acked]
            if moves:
                conn.execute(c.update().where(
                    c.c.subscriber_id == sa.bindparam("sid"), c.c.channel == channel,
                    sa.or_(c.c.acked_seq.is_(None), c.c.acked_seq < sa.bindparam("seq")),
                ).values(acked_seq=sa.bindparam("seq"), updated_at=now), moves)
            snaps = [{"sid": i, "seq": snapshots[i]} for i in ids if i in have and i in snapshots]
            if snaps:
                conn.execute(c.update().where(
                    c.c.subscriber_id == sa.bindparam("sid"), c.c.channel == channel, c.c.snapshot_seq.is_(None),
                ).values(snapshot_seq=sa.bindparam("seq"), updated_at=now), snaps)

    # -- audit log (append-only: there is no update or delete here, by design) ----------------
    def record_deliveries(self, rows: list[dict], *, replay: bool = False) -> int:
        """Append audit rows in one transaction; how many were written. A row may bring its own
        `delivered_at` and `journal_key` (feeds/journal.py); with `replay`, rows whose key is
        already in the log are skipped, so a journal replayed after a crash writes each once."""
        if not rows:
            return 0
        now = utcnow()
        with self.store.transaction() as conn:
            if replay:
                rows = not_journalled(conn, s.feed_deliveries, rows)
            if rows:
                _insert_deliveries(conn, [{"delivered_at": now, "token_id": None, "journal_key": None, **r} for r in rows])
        return len(rows)

    def deliveries(self, *, subscriber_id: str | None = None, since: dt.datetime | None = None,
                   limit: int | None = None) -> pl.DataFrame:
        d = s.feed_deliveries
        stmt = sa.select(
            d.c.delivery_id, d.c.subscriber_id, d.c.token_id, d.c.channel, d.c.kind, d.c.seq_from, d.c.seq_to,
            d.c.event_count, d.c.entity_count, sa.cast(d.c.entity_ids, sa.Text).label("entity_ids"),
            sa.cast(d.c.fields, sa.Text).label("fields"), d.c.delivered_at,
        ).order_by(d.c.delivery_id)
        return read_access_rows(self.engine, stmt, subscriber=d.c.subscriber_id, at=d.c.delivered_at,
                                subscriber_id=subscriber_id, since=since, limit=limit, schema=DELIVERY_SCHEMA)
