"""What data quality keeps in the warehouse: validation runs and results, station scores,
correction tasks (and their events in the outbox), batch holds. Frames in, frames out.

Held batches are read by resolution through `held_batch_ids`, so a batch that failed its checks
is never resolved into golden records nor published.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame, polars_type, read_bulk, read_chunks, read_frame, unindexed
from warehouse.outbox import Appended, outbox_transaction
from warehouse.resolution import entities_written_since, latest_resolution_seq
from core.time import utcnow
from warehouse.store import Warehouse

TASK_ENTITY_TYPE = "correction_task"
TASK_EVENT_NAMESPACE = uuid.UUID("0c6f4f39-5a55-4d0f-a3c8-7a0f6c1d2e10")
TASK_EVENT_FIELDS = ["task_id", "station_id", "record_key", "entity_type", "entity_id", "field", "station_value",
                     "expected_value", "reason", "source", "status", "opened_at", "closed_at", "evidence"]
TASK_AREA = "area_code"  # routing key of a task event (feeds.scope), never delivered
RAW_COLUMNS = ("record_key", "local_id", "row_hash", "payload")
TASK_SCHEMA = {c.name: polars_type(c) for c in s.correction_tasks.columns}
RUN_SCHEMA = {c.name: polars_type(c) for c in s.validation_runs.columns}
# The outbox rows apply_tasks writes, typed from the table, never inferred from the rows: a first
# pass opens thousands of tasks (`before` null) before the reopened ones (`before` text), past
# Polars' infer_schema_length, which then fails on the first text.
EVENT_SCHEMA = {c.name: polars_type(c) for c in s.change_events.columns}
# A task event as the outbox writer (warehouse.outbox) takes it: JSON columns as their text.
TASK_EVENT_SCHEMA = {"event_id": pl.String, "entity_type": pl.String, "entity_id": pl.String, "op": pl.String,
                     "version": pl.Int64, "changed_fields": pl.String, "before": pl.String, "after": pl.String,
                     "sources": pl.String}
# Per task, the version of its latest event and the area code that event was routed by; and the
# area code each task is routed by now (task_areas).
TASK_VERSIONS_SCHEMA = {"task_id": pl.String, "version": pl.Int64, "area": pl.String}
TASK_AREAS_SCHEMA = {"task_id": pl.String, "area": pl.String}


def held_batch_ids(engine: sa.Engine) -> set[str]:
    """Batches currently held back from publication (not yet released)."""
    h = s.batch_holds
    with engine.connect() as conn:
        return set(conn.scalars(sa.select(h.c.batch_id).where(h.c.released_at.is_(None))))


HELD_SCHEMA = {"batch_id": pl.String, "station_id": pl.String, "entity_type": pl.String, "reason": pl.String,
               "rate": pl.Float64, "threshold": pl.Float64, "records": pl.Int64,
               "held_at": pl.Datetime("us", "UTC"), "released_at": pl.Datetime("us", "UTC")}


def holds_select(record_tables: Iterable[sa.Table], *, with_rate: bool = True) -> sa.Select:
    """Holds with what they keep back: the batch's entity type and how many of its records stay
    out of resolution while it is held (records whose current batch is the held one, over
    `record_tables`: a warehouse's, Warehouse.record_tables, project types included), with the
    measured rate and the threshold it exceeded (null for a batch whose rows do not reconcile).
    `with_rate=False` for a warehouse from before migration 0008 (no rate columns)."""
    h, b = s.batch_holds, s.batches
    counts = [sa.select(sa.func.count()).where(t.c.station_id == h.c.station_id, t.c.batch_id == h.c.batch_id)
              .correlate(h).scalar_subquery() for t in record_tables]
    records = sum(counts[1:], counts[0]) if counts else sa.literal(0, sa.BigInteger)
    nothing = sa.cast(sa.null(), sa.Float)
    return (sa.select(h.c.batch_id, h.c.station_id, b.c.entity_type, h.c.reason,
                      (h.c.rate if with_rate else nothing).label("rate"),
                      (h.c.threshold if with_rate else nothing).label("threshold"),
                      records.label("records"), h.c.held_at, h.c.released_at)
            .select_from(h.outerjoin(b, b.c.batch_id == h.c.batch_id))
            .order_by(h.c.station_id, h.c.held_at, h.c.batch_id))


def not_superseded(t: sa.Table) -> sa.ColumnElement[bool]:
    """Tasks that are the stations' work: not those closed because another task on the same record
    and field took their place (quality.corrections.SUPERSEDED)."""
    return sa.or_(t.c.closed_batch.is_(None), ~t.c.closed_batch.startswith("superseded"))


class QualityStore:
    """The warehouse side of quality.service."""

    def __init__(self, store: Warehouse):
        self.store = store

    @property
    def engine(self) -> sa.Engine:
        return self.store.engine

    # -- what to validate ----------------------------------------------------------------------
    def unvalidated_batches(self, suite: str | None, station_ids: Iterable[str] | None = None,
                            entity_type: str | None = None) -> pl.DataFrame:
        """Loaded batches with no run of `suite` yet (None: of any suite, an ingest whose run
        stopped before its checks), oldest first."""
        b, r = s.batches, s.validation_runs
        done = sa.select(r.c.batch_id).where(r.c.batch_id.is_not(None))
        if suite is not None:
            done = done.where(r.c.suite == suite)
        stmt = (sa.select(b.c.batch_id, b.c.station_id, b.c.entity_type, b.c.started_at)
                .where(b.c.status == "loaded", b.c.batch_id.not_in(done))
                .order_by(b.c.started_at, b.c.batch_id))
        if station_ids is not None:
            stmt = stmt.where(b.c.station_id.in_(list(station_ids)))
        if entity_type is not None:
            stmt = stmt.where(b.c.entity_type == entity_type)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={"started_at": pl.Datetime("us", "UTC")})

    def raw_frame(self, batch_id: str) -> pl.DataFrame:
        r = s.raw_records
        stmt = sa.select(*(r.c[c] for c in RAW_COLUMNS)).where(r.c.batch_id == batch_id)
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt.order_by(r.c.row_number), {c: pl.String for c in RAW_COLUMNS})

    def record_frame(self, entity_type: str, batch_id: str, station_id: str | None = None) -> pl.DataFrame:
        """The current standardised records that came with `batch_id`.

        A record table has no index on batch_id, only on station_id: without `station_id` (the
        batch's station) the query scans the whole table once per batch, which grows with the
        warehouse (40 stations of 1M records: 120 scans of every record per run)."""
        t = self.store.record_table(entity_type)
        schema = {c.name: polars_type(c) for c in t.columns}
        stmt = sa.select(t).where(t.c.batch_id == batch_id)
        if station_id is not None:
            stmt = stmt.where(t.c.station_id == station_id)
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt.order_by(t.c.record_key), schema=schema)

    def last_drops(self) -> pl.DataFrame:
        """Per station and entity type: its latest loaded batch and when it arrived."""
        b = s.batches
        ranked = sa.select(
            b.c.station_id, b.c.entity_type, b.c.batch_id, b.c.started_at,
            sa.func.row_number().over(partition_by=[b.c.station_id, b.c.entity_type],
                                      order_by=[b.c.started_at.desc(), b.c.batch_id.desc()]).label("rn"),
        ).where(b.c.status == "loaded").subquery()
        stmt = sa.select(ranked.c.station_id, ranked.c.entity_type, ranked.c.batch_id, ranked.c.started_at).where(
            ranked.c.rn == 1).order_by(ranked.c.station_id, ranked.c.entity_type)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={"started_at": pl.Datetime("us", "UTC")})

    def unbalanced_batches(self, station_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Batches whose stored rows do not add up to the rows read (see Warehouse.reconciliation)."""
        recon = self.store.reconciliation(station_ids)
        return recon.filter(~pl.col("balanced"))

    def max_event_seq(self) -> int:
        return self.store.max_event_seq()

    def batch_order(self) -> pl.DataFrame:
        b = s.batches
        with self.engine.connect() as conn:
            return read_frame(conn, sa.select(b.c.batch_id, b.c.station_id, b.c.entity_type, b.c.started_at),
                              schema={"started_at": pl.Datetime("us", "UTC")})

    def active_golden(self, entity_type: str, entity_ids: list[str]) -> pl.DataFrame:
        """(entity_id, record) of the active golden records among `entity_ids` (every one of a
        type: active_golden_parts)."""
        g = s.golden_records
        with self.engine.connect() as conn:
            # by entity id alone, the type checked on the rows read: with the type in the query,
            # SQLite (no statistics) took the type index and read every golden record of the type,
            # 2.7 s for 3,000 of 1M, instead of one key lookup each (25 ms)
            frame = read_bulk(conn, sa.select(g.c.entity_id, g.c.record, g.c.entity_type).where(
                g.c.status == "active", in_keys(conn, g.c.entity_id, entity_ids)),
                schema={"entity_id": pl.String, "record": pl.String, "entity_type": pl.String})
        return frame.filter(pl.col("entity_type") == entity_type).drop("entity_type")

    def active_golden_between(self, entity_type: str, first: str, last: str) -> pl.DataFrame:
        """`active_golden` of every entity of the type with an id from `first` to `last`: for a
        pass over most entities, one range of the primary key instead of a key list (its ids
        bound into a temporary table, then looked up one by one)."""
        g = s.golden_records
        with self.engine.connect() as conn:
            # the type unindexed: without statistics SQLite would walk the type index instead
            return read_bulk(conn, sa.select(g.c.entity_id, g.c.record).where(
                g.c.entity_id.between(first, last), g.c.status == "active", unindexed(g.c.entity_type) == entity_type),
                schema={"entity_id": pl.String, "record": pl.String})

    def active_golden_parts(self, entity_type: str) -> Iterator[pl.DataFrame]:
        """Every active golden record of the type, (entity_id, record) a chunk at a time in no
        particular order: a whole type's JSON at once was gigabytes of Python strings at 1M."""
        g = s.golden_records
        with self.engine.connect() as conn:
            yield from read_chunks(conn, sa.select(g.c.entity_id, g.c.record).where(
                g.c.entity_type == entity_type, g.c.status == "active"),
                schema={"entity_id": pl.String, "record": pl.String})

    def warehouse_id(self) -> str:
        return self.store.warehouse_id()

    def _member_columns(self, entity_type: str, fields: Iterable[str]
                        ) -> tuple[sa.Table, list[sa.Column], dict[str, pl.DataType]]:
        """The record table, the columns a member read takes from it, and their Polars types."""
        t = self.store.record_table(entity_type)
        cols = [t.c.record_key, t.c.station_id, t.c.batch_id, *[t.c[f] for f in dict.fromkeys(fields) if f in t.c]]
        return t, cols, {c.name: polars_type(c) for c in cols}

    def members(self, entity_type: str, entity_ids: list[str], fields: Iterable[str]) -> pl.DataFrame:
        """Member records of the entities: record key, station, batch and the named fields."""
        m = s.entity_membership
        t, cols, schema = self._member_columns(entity_type, fields)
        with self.engine.connect() as conn:
            # by entity id alone (ids are unique across types): with the type too, SQLite would
            # take the type index and scan every membership row
            stmt = (sa.select(m.c.entity_id, *cols).join(t, t.c.record_key == m.c.record_key)
                    .where(in_keys(conn, m.c.entity_id, entity_ids)))
            return read_bulk(conn, stmt, {"entity_id": pl.String, **schema})

    def all_members(self, entity_type: str, fields: Iterable[str]) -> pl.DataFrame:
        """`members` of every entity of the type, for a pass that touches most of them (a first
        load): the record table and the membership read front to back and joined here. Fetching
        each record through the membership index, as `members` must, cost 23 s at 1M persons on
        SQLite against 6 s for this (a few random page reads per record against none). The frame
        is held whole: about 100 MiB for 1M persons' dozen columns."""
        m = s.entity_membership
        _, cols, schema = self._member_columns(entity_type, fields)
        with self.engine.connect() as conn:
            owners = read_bulk(conn, sa.select(m.c.record_key, m.c.entity_id).where(m.c.entity_type == entity_type),
                               {"record_key": pl.String, "entity_id": pl.String})
            # each chunk joined as it comes: the records are never held twice, bare and joined
            return pl.concat([owners.join(chunk, on="record_key").select("entity_id", *schema)
                              for chunk in read_chunks(conn, sa.select(*cols), schema)])

    def member_count(self, entity_type: str) -> int:
        m = s.entity_membership
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(m).where(m.c.entity_type == entity_type)))

    def entity_of(self, entity_type: str, record_keys: list[str]) -> pl.DataFrame:
        m = s.entity_membership
        with self.engine.connect() as conn:
            return read_frame(conn, sa.select(m.c.record_key, m.c.entity_id).where(
                m.c.entity_type == entity_type, in_keys(conn, m.c.record_key, record_keys)),
                schema={"record_key": pl.String, "entity_id": pl.String})

    def touched_entities(self, entity_type: str, after_resolution_seq: int, after_event_seq: int) -> pl.Series:
        """Entities whose members a resolution run wrote, or that got an event, since the marks;
        sorted, as a Series: after a first load they are every entity, and as a Python set and
        list a million ids held 160 MiB more."""
        e = s.change_events
        with self.engine.connect() as conn:
            # no DISTINCT (unique() is one): with it SQLite walked the whole outbox along its
            # entity id index instead of the seqs after the mark
            events = read_bulk(conn, sa.select(e.c.entity_id).where(
                e.c.entity_type == entity_type, e.c.seq > after_event_seq), {"entity_id": pl.String}).to_series()
        written = entities_written_since(self.store, entity_type, after_resolution_seq)
        return pl.concat([written, events]).unique().sort()

    def resolution_seq(self, entity_type: str) -> int:
        return latest_resolution_seq(self.store, entity_type)

    # -- state ---------------------------------------------------------------------------------
    def state(self, name: str) -> int:
        q = s.quality_state
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(q.c.value).where(q.c.name == name)) or 0)

    def set_state(self, name: str, value: int) -> None:
        q = s.quality_state
        with self.store.transaction() as conn:
            conn.execute(q.delete().where(q.c.name == name))
            conn.execute(q.insert().values(name=name, value=value, updated_at=utcnow()))

    # -- validation results --------------------------------------------------------------------
    def save_run(self, run: dict, results: pl.DataFrame) -> None:
        """One run and its per-expectation results, together."""
        with self.store.transaction() as conn:
            conn.execute(s.validation_results.delete().where(s.validation_results.c.run_id == run["run_id"]))
            conn.execute(s.validation_runs.delete().where(s.validation_runs.c.run_id == run["run_id"]))
            conn.execute(s.validation_runs.insert().values(**run))
            if results.height:
                insert_frame(conn, s.validation_results, results.with_columns(run_id=pl.lit(run["run_id"])))

    def runs(self, station_ids: Iterable[str] | None = None, *, suite: str | None = None,
             batch_ids: list[str] | None = None) -> pl.DataFrame:
        r = s.validation_runs
        stmt = sa.select(r).order_by(r.c.started_at, r.c.run_id)
        if station_ids is not None:
            stmt = stmt.where(r.c.station_id.in_(list(station_ids)))
        if suite is not None:
            stmt = stmt.where(r.c.suite == suite)
        with self.engine.connect() as conn:
            if batch_ids is None:
                return read_frame(conn, stmt, schema=RUN_SCHEMA)
            return read_frame(conn, stmt.where(in_keys(conn, r.c.batch_id, batch_ids)), schema=RUN_SCHEMA)

    def results(self, run_ids: list[str]) -> pl.DataFrame:
        v = s.validation_results
        schema = {c.name: polars_type(c) for c in v.columns}
        with self.engine.connect() as conn:
            return read_frame(conn, sa.select(v).where(in_keys(conn, v.c.run_id, run_ids)), schema=schema)

    def set_docs_path(self, path: str) -> None:
        r = s.validation_runs
        with self.store.transaction() as conn:
            conn.execute(r.update().where(r.c.data_docs_path.is_(None)).values(data_docs_path=path))

    # -- scores --------------------------------------------------------------------------------
    def save_scores(self, scores: pl.DataFrame) -> int:
        """Upsert (station, entity type, batch, dimension) -> score."""
        if scores.height == 0:
            return 0
        with self.store.transaction() as conn:
            return insert_frame(conn, s.station_scores, scores.with_columns(computed_at=pl.lit(utcnow())), replace=True)

    def scores(self, station_ids: Iterable[str] | None = None) -> pl.DataFrame:
        t = s.station_scores
        stmt = sa.select(t).order_by(t.c.station_id, t.c.entity_type, t.c.batch_id, t.c.dimension)
        if station_ids is not None:
            stmt = stmt.where(t.c.station_id.in_(list(station_ids)))
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={c.name: polars_type(c) for c in t.columns})

    # -- holds ---------------------------------------------------------------------------------
    def hold(self, batch_id: str, station_id: str, reason: str, *, rate: float | None = None,
             threshold: float | None = None) -> bool:
        """Hold a batch (once), with the measured rate and the threshold it exceeded when a rate
        held it (a batch whose rows do not reconcile has none); returns whether it is newly held."""
        h = s.batch_holds
        with self.store.transaction() as conn:
            if conn.scalar(sa.select(h.c.batch_id).where(h.c.batch_id == batch_id)) is not None:
                return False
            conn.execute(h.insert().values(batch_id=batch_id, station_id=station_id, reason=reason, held_at=utcnow(),
                                           rate=None if rate is None else float(rate),
                                           threshold=None if threshold is None else float(threshold)))
        return True

    def release(self, batch_id: str) -> bool:
        h = s.batch_holds
        with self.store.transaction() as conn:
            done = conn.execute(h.update().where(h.c.batch_id == batch_id, h.c.released_at.is_(None))
                                .values(released_at=utcnow()))
        return bool(done.rowcount)

    def holds(self, station_ids: Iterable[str] | None = None, *, active_only: bool = False) -> pl.DataFrame:
        h = s.batch_holds
        stmt = sa.select(h).order_by(h.c.held_at, h.c.batch_id)
        if station_ids is not None:
            stmt = stmt.where(h.c.station_id.in_(list(station_ids)))
        if active_only:
            stmt = stmt.where(h.c.released_at.is_(None))
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={c.name: polars_type(c) for c in h.columns})

    def held(self, station_ids: Iterable[str] | None = None, *, active_only: bool = True) -> pl.DataFrame:
        """Holds with their entity type, rate, threshold and the records they keep back
        (`holds_select`); by default only those still held."""
        h = s.batch_holds
        stmt = holds_select(self.store.record_tables.values())
        if station_ids is not None:
            stmt = stmt.where(h.c.station_id.in_(list(station_ids)))
        if active_only:
            stmt = stmt.where(h.c.released_at.is_(None))
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema=HELD_SCHEMA)

    # -- correction tasks ----------------------------------------------------------------------
    def tasks(self, *, station_ids: Iterable[str] | None = None, status: str | None = None,
              record_keys: list[str] | None = None, source: str | None = None) -> pl.DataFrame:
        t = s.correction_tasks
        stmt = sa.select(t).order_by(t.c.station_id, t.c.opened_at, t.c.task_id)
        if station_ids is not None:
            stmt = stmt.where(t.c.station_id.in_(list(station_ids)))
        if status is not None:
            stmt = stmt.where(t.c.status == status)
        if source is not None:
            stmt = stmt.where(t.c.source == source)
        with self.engine.connect() as conn:
            if record_keys is not None:
                stmt = stmt.where(in_keys(conn, t.c.record_key, record_keys))
            return read_bulk(conn, stmt, schema=TASK_SCHEMA)

    @contextmanager
    def task_transaction(self) -> Iterator["TaskTransaction"]:
        """One write transaction over correction tasks and their outbox events, holding the
        outbox lock from its first statement (warehouse.outbox): what the task state machine
        (quality.task_transitions, driven by quality.service) reads in it is what it writes over.
        Everything the block writes commits together."""
        with outbox_transaction(self.store) as outbox:
            yield TaskTransaction(outbox, self.store.record_tables)

    # -- supervision (quality.supervision) -----------------------------------------------------
    def supervision_tasks(self, station_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Every correction task, narrow: what the supervision figures read (task_id, station_id,
        status, opened_at, closed_at, reminded_at)."""
        t = s.correction_tasks
        stmt = (sa.select(t.c.task_id, t.c.station_id, t.c.status, t.c.opened_at, t.c.closed_at, t.c.reminded_at)
                .where(not_superseded(t))
                .order_by(t.c.station_id, t.c.opened_at, t.c.task_id))
        if station_ids is not None:
            stmt = stmt.where(t.c.station_id.in_(list(station_ids)))
        utc = pl.Datetime("us", "UTC")
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt, schema={"task_id": pl.String, "station_id": pl.String, "status": pl.String,
                                                 "opened_at": utc, "closed_at": utc, "reminded_at": utc})


class TaskTransaction:
    """Reads and writes of correction tasks inside QualityStore.task_transaction; no decisions."""

    def __init__(self, outbox, record_tables: Mapping[str, sa.Table]):
        self.outbox = outbox
        self.conn: sa.Connection = outbox.conn
        self.record_tables = record_tables  # entity type -> record table (Warehouse.record_tables)

    def current(self, task_ids: list[str], *, status: str | None = None) -> pl.DataFrame:
        """The tasks as they stand (TASK_SCHEMA), of these ids (and this status)."""
        t = s.correction_tasks
        stmt = sa.select(t).where(in_keys(self.conn, t.c.task_id, list(dict.fromkeys(task_ids))))
        if status is not None:
            stmt = stmt.where(t.c.status == status)
        return read_frame(self.conn, stmt, schema=TASK_SCHEMA)

    def versions(self, task_ids: list[str]) -> pl.DataFrame:
        """Per task: its latest event's version and area code (TASK_VERSIONS_SCHEMA)."""
        return _task_versions(self.conn, task_ids)

    def areas(self, *tasks: pl.DataFrame) -> pl.DataFrame:
        """Per task of these frames: the area code its events are routed by now (TASK_AREAS_SCHEMA;
        task_areas)."""
        areas = task_areas(self.conn, [row for frame in tasks for row in frame.iter_rows(named=True)],
                           self.record_tables)
        return pl.DataFrame({"task_id": list(areas), "area": list(areas.values())}, schema=TASK_AREAS_SCHEMA)

    def write_tasks(self, rows: pl.DataFrame) -> None:
        """Task rows over the old ones, in bulk (a first pass over a large network opens thousands)."""
        insert_frame(self.conn, s.correction_tasks, rows, replace=True)

    def mark_reminded(self, task_ids: list[str], at: dt.datetime) -> None:
        t = s.correction_tasks
        self.conn.execute(t.update().where(in_keys(self.conn, t.c.task_id, task_ids)).values(reminded_at=at))

    def append_events(self, events: pl.DataFrame, occurred_at: dt.datetime | None = None) -> Appended:
        """Task events (TASK_EVENT_SCHEMA) through the outbox's one writer."""
        return self.outbox.append(events, occurred_at or utcnow())


def event_frame(rows: list[dict]) -> pl.DataFrame:
    """Outbox rows as a frame with the table's dtypes (JSON columns as their text)."""
    schema = {k: pl.String if k in ("changed_fields", "sources") else v for k, v in EVENT_SCHEMA.items()}
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema)


def _task_versions(conn: sa.Connection, task_ids: list[str]) -> pl.DataFrame:
    """Per task: the version of its latest event, and the area code that event was routed by
    (TASK_VERSIONS_SCHEMA)."""
    e = s.change_events
    latest = (sa.select(e.c.entity_id, sa.func.max(e.c.version).label("version"))
              .where(e.c.entity_type == TASK_ENTITY_TYPE, in_keys(conn, e.c.entity_id, task_ids))
              .group_by(e.c.entity_id).subquery())
    rows = conn.execute(sa.select(e.c.entity_id, e.c.version, e.c.after).join(
        latest, (e.c.entity_id == latest.c.entity_id) & (e.c.version == latest.c.version))
        .where(e.c.entity_type == TASK_ENTITY_TYPE)).all()
    out = []
    for tid, version, after in rows:  # one row per task: its latest event
        try:
            area = (json.loads(after) or {}).get(TASK_AREA) if after else None
        except (ValueError, AttributeError):
            area = None
        out.append((tid, int(version), area))
    return pl.DataFrame(out, schema=TASK_VERSIONS_SCHEMA, orient="row")


def task_areas(conn: sa.Connection, tasks: Iterable[dict],
               record_tables: Mapping[str, sa.Table]) -> dict[str, str | None]:
    """task_id -> the area code a task event is routed by (feeds scope it like the record it is
    about): the current golden area of the entity that holds the record now (by membership; else
    the task's entity_id), else the record's own area code (a record not resolved yet), read
    from its type's table of `record_tables` (entity type -> table: Warehouse.record_tables)."""
    tasks = [t for t in tasks if t]
    if not tasks:
        return {}
    g, m = s.golden_records, s.entity_membership
    keys_of: dict[str | None, list[str]] = {}
    for t in tasks:  # a task of a raw suite (type "any") may be about a record of any type
        keys_of.setdefault(t.get("entity_type") if t.get("entity_type") in record_tables else None,
                           []).append(t["record_key"])
    entity: dict[str, str] = {}
    for etype, keys in keys_of.items():
        # by the membership's key, (type, record key), where the type is known: by record key
        # alone SQLite reads every membership row
        typed = [m.c.entity_type == etype] if etype is not None else []
        entity.update((r[0], r[1]) for r in conn.execute(sa.select(m.c.record_key, m.c.entity_id).where(
            *typed, in_keys(conn, m.c.record_key, keys, table="_task_keys"))))
    ids = {t["task_id"]: entity.get(t["record_key"]) or t.get("entity_id") for t in tasks}
    golden = {r[0]: r[1] for r in conn.execute(sa.select(g.c.entity_id, g.c.area_code).where(
        in_keys(conn, g.c.entity_id, [i for i in ids.values() if i], table="_task_entities")))}
    own: dict[str, str | None] = {}
    for etype, table in record_tables.items():
        wanted = [t["record_key"] for t in tasks if t.get("entity_type") == etype]
        if wanted and "area_code" in table.c:
            own.update({r[0]: r[1] for r in conn.execute(sa.select(table.c.record_key, table.c.area_code).where(
                in_keys(conn, table.c.record_key, wanted, table="_task_records")))})
    return {t["task_id"]: golden.get(ids[t["task_id"]]) or own.get(t["record_key"]) for t in tasks}


def task_event_id(task_id: str, version: int) -> str:
    """Deterministic, so a rerun of the same task change makes the same event (deduplicated)."""
    return str(uuid.uuid5(TASK_EVENT_NAMESPACE, f"{task_id}:{version}"))


def _task_json(task: dict | None, area: str | None = None) -> str | None:
    if task is None:
        return None
    out = {}
    for k in TASK_EVENT_FIELDS:
        v = task.get(k)
        if k == "entity_type":
            k = "record_entity_type"
        out[k] = v.isoformat() if isinstance(v, (dt.datetime, dt.date)) else v
    out[TASK_AREA] = area
    return json.dumps(out, ensure_ascii=False, sort_keys=True)


def task_event(new: dict, old: dict | None, op: str, version: int, batch_id: str | None, *,
               area: str | None = None, area_before: str | None = None) -> dict:
    """One task change as an outbox event. `after` and `before` carry, besides the task, the area
    code it is routed by (now, and when its previous event was written), so that the feeds scope a
    task before and after like any change; the feeds never deliver that routing key."""
    after, before = _task_json(new, area), _task_json(old, area_before)
    if old is None:
        changed = [k for k in TASK_EVENT_FIELDS if new.get(k) is not None]
    else:
        changed = [k for k in ("status", "station_value", "expected_value", "reason", "closed_at", "opened_at",
                               "evidence")
                   if new.get(k) != old.get(k)]
    return {
        "event_id": task_event_id(new["task_id"], version),
        "entity_type": TASK_ENTITY_TYPE,
        "entity_id": new["task_id"],
        "op": op,
        "version": version,
        "changed_fields": changed,
        "before": before,
        "after": after,
        "sources": [{"station_id": new["station_id"], "record_key": new["record_key"], "batch_id": batch_id}],
    }


def task_events_frame(events: list[dict]) -> pl.DataFrame:
    """task_event's dicts as the outbox writer takes them (changed_fields and sources as JSON text)."""
    return pl.DataFrame([{k: (json.dumps(ev[k]) if k in ("changed_fields", "sources") else ev.get(k))
                          for k in TASK_EVENT_SCHEMA} for ev in events], schema=TASK_EVENT_SCHEMA, orient="row")
