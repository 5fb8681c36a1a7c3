"""Golden records, their versions and the change-event outbox, as entity_resolution.propagation
sees them. Golden rows, versions and events of one step commit in one transaction."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Self

import polars as pl
import sqlalchemy as sa

from core.time import utcnow
from warehouse import schema as s
from warehouse.bulk import (
    READ_CHUNK_ROWS,
    SqliteStage,
    attach_stage,
    in_keys,
    indexes_built_after,
    insert_frame,
    polars_type,
    read_bulk,
    read_chunks,
    sqlite_stage,
    unindexed,
)
from warehouse.outbox import OUTBOX, Appended, lock_outbox, outbox_transaction, prepared
from warehouse.resolution import EntityTypeStore, entities_written_since
from warehouse.store import Warehouse, not_held

# A publication holds up to this many rows in memory; beyond, they go to a stage (a scratch
# SQLite file through Arrow, or PostgreSQL temporary tables through COPY) part by part, and the
# commit copies them across inside the database.
SPILL_ROWS = 50_000


class GoldenStore(EntityTypeStore):
    """The warehouse side of golden records and change events (see entity_resolution.propagation)."""

    # -- what changed upstream -----------------------------------------------------------------
    def state(self) -> int:
        t = s.golden_state
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(t.c.resolution_seq).where(t.c.entity_type == self.entity_type)) or 0)

    def entity_changes(self, after_seq: int) -> pl.DataFrame:
        c = s.entity_changes
        # parts as JSON text, decoded by Polars: a first publication reads a million changes
        stmt = sa.select(c.c.run_seq, c.c.entity_id, c.c.op, c.c.merged_into, sa.cast(c.c.parts, sa.Text).label("parts")
                         ).where(c.c.entity_type == self.entity_type, c.c.run_seq > after_seq
                                 ).order_by(c.c.run_seq, c.c.entity_id)
        schema = {"run_seq": pl.Int64, "entity_id": pl.String, "op": pl.String, "merged_into": pl.String,
                  "parts": pl.String}
        with self.engine.connect() as conn:
            frame = read_bulk(conn, stmt, schema=schema)
        # a JSON null, like SQL NULL, is no parts; ids as text whatever JSON type they were stored as
        parts = pl.col("parts").replace("null", None).str.json_decode(pl.List(pl.String))
        return frame.with_columns(parts.fill_null(pl.lit([], pl.List(pl.String))))

    def touched_entities(self, after_seq: int) -> pl.Series:
        return entities_written_since(self.store, self.entity_type, after_seq)

    def inputs(self, entity_ids: pl.Series, fields: Iterable[str]) -> pl.DataFrame:
        """Member records of the given entities with the fields survivorship reads."""
        stmt, schema = self._inputs_query(fields)
        with self.engine.connect() as conn:
            # entity ids are unique across types: filtering by type too would steer SQLite to
            # the type index and a scan of every membership row
            return read_bulk(conn, stmt.where(in_keys(conn, s.entity_membership.c.entity_id, entity_ids)),
                             schema=schema)

    def all_inputs(self, fields: Iterable[str]) -> Iterator[pl.DataFrame]:
        """`inputs` of every entity of the type, in entity id order (bytewise), a chunk at a
        time: one pass for a publication that recomputes most of them (the first one), where a
        key list per part would have the database scan the records once per part.

        With a cache folder, from resolution's cached records and membership (Parquet, checked
        against the warehouse), joined here: the database's join looked each member's record up
        by key, a random read per record (12 s of SQLite's time at a million records, against
        about 2 s for the whole frame this way)."""
        stmt, schema = self._inputs_query(fields)
        if self.store.cache_dir is not None:
            members = self.membership().select("entity_id", "record_key").sort("entity_id")
            records = self.records([c for c in schema if c != "entity_id"])
            # the narrow membership sorted, joined to the records' row numbers only; the wide rows
            # are gathered in its order a chunk at a time (joined whole, they were held twice:
            # the publication's peak in `enteronce run`)
            at = members.join(records.select("record_key").with_row_index("_at"), on="record_key", how="inner",
                              maintain_order="left").select("entity_id", "_at")
            del members
            for offset in range(0, max(at.height, 1), READ_CHUNK_ROWS):  # (one empty chunk when none)
                part = at.slice(offset, READ_CHUNK_ROWS)
                yield records.select(pl.all().gather(part["_at"])).with_columns(part["entity_id"]).select(list(schema))
            return
        m = s.entity_membership
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                stmt = stmt.where(m.c.entity_type == self.entity_type).order_by(m.c.entity_id.collate("C"))
            else:  # SQLite walks the entity id index, rows come in order as they are read,
                # instead of taking the type index and sorting them all first
                stmt = stmt.where(unindexed(m.c.entity_type) == self.entity_type).order_by(m.c.entity_id)
            yield from read_chunks(conn, stmt, schema)

    def member_count(self) -> int:
        """Records resolved into entities of the type."""
        m = s.entity_membership
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(m).where(m.c.entity_type == self.entity_type)))

    def _inputs_query(self, fields: Iterable[str]) -> tuple[sa.Select, dict[str, pl.DataType]]:
        m, t = s.entity_membership, self.record_table
        base = [m.c.entity_id, t.c.record_key, t.c.station_id, t.c.batch_id, t.c.source_updated_at]
        names = {c.name for c in base}
        cols = [t.c[f] for f in dict.fromkeys(fields) if f in t.c and f not in names]
        schema = {c.name: polars_type(c) for c in [*base, *cols]}
        stmt = sa.select(*base, *cols).join(t, t.c.record_key == m.c.record_key).where(not_held(t.c.batch_id))
        return stmt, schema

    def current(self, entity_ids: pl.Series) -> pl.DataFrame:
        g = s.golden_records
        schema = {"entity_id": pl.String, "version": pl.Int64, "status": pl.String, "record": pl.String,
                  "provenance": pl.String}
        if entity_ids.len() == 0:  # nothing to look up (a first publication asks for none)
            return pl.DataFrame(schema=schema)
        with self.engine.connect() as conn:
            stmt = sa.select(g.c.entity_id, g.c.version, g.c.status, g.c.record, g.c.provenance).where(
                in_keys(conn, g.c.entity_id, entity_ids))  # an index lookup per key, not a scan
            return read_bulk(conn, stmt, schema=schema)

    # -- the one write -------------------------------------------------------------------------
    def staging(self) -> GoldenStaging:
        """Where a publication's golden rows, versions and events gather, part by part, until
        `commit(staged=...)` writes them in one transaction (use it as a context manager)."""
        return GoldenStaging(self)

    def commit(self, *, golden: pl.DataFrame | None = None, versions: pl.DataFrame | None = None,
               events: pl.DataFrame | None = None, resolution_seq: int,
               staged: GoldenStaging | None = None) -> tuple[int, int]:
        """Golden rows, versions and events in one transaction; returns the events' seq range.

        Either the frames themselves or a `staging()` they were added to, part by part. Events
        are appended in their `_order` column's order (row order without one).

        The events go through the outbox's one writer (warehouse.outbox: locked, next seq after
        the outbox's maximum, event ids already there skipped), so `seq` is strictly increasing
        and has no gaps even after a failed attempt.
        """
        if staged is not None:
            return staged.commit(resolution_seq)
        with self.staging() as one:
            one.add(golden=golden, versions=versions, events=events)
            return self.commit(resolution_seq=resolution_seq, staged=one)

    # -- reads for people ----------------------------------------------------------------------
    def history(self, entity_id: str) -> pl.DataFrame:
        v = s.golden_versions
        stmt = sa.select(v.c.version, v.c.op, v.c.changed_fields, v.c.sources, v.c.record, v.c.valid_from,
                         v.c.valid_to).where(v.c.entity_id == entity_id).order_by(v.c.version)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return pl.DataFrame(
            [(r[0], r[1], list(r[2] or []), r[3], r[4], r[5], r[6]) for r in rows],
            schema={"version": pl.Int64, "op": pl.String, "changed_fields": pl.List(pl.String),
                    "sources": pl.Object, "record": pl.String, "valid_from": pl.Object, "valid_to": pl.Object},
            orient="row",
        )


def events(store: Warehouse, *, after: int = 0, limit: int | None = None) -> pl.DataFrame:
    """The outbox after a sequence number, in order (for feeds and for people)."""
    e = s.change_events
    stmt = sa.select(e.c.seq, e.c.event_id, e.c.entity_type, e.c.entity_id, e.c.op, e.c.version,
                     e.c.changed_fields, e.c.before, e.c.after, e.c.sources, e.c.occurred_at).where(
        e.c.seq > after).order_by(e.c.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pl.DataFrame(
        [(*r[:6], list(r[6] or []), r[7], r[8], r[9], r[10]) for r in rows],
        schema={"seq": pl.Int64, "event_id": pl.String, "entity_type": pl.String, "entity_id": pl.String,
                "op": pl.String, "version": pl.Int64, "changed_fields": pl.List(pl.String), "before": pl.String,
                "after": pl.String, "sources": pl.Object, "occurred_at": pl.Object},
        orient="row",
    )



class GoldenStaging:
    """A publication in the making (GoldenStore.staging): golden rows, versions and events added
    part by part, written by one transaction at commit.

    A small publication (a drop's) stays in memory and is written as frames. A large one (the
    first publication of a million records) would hold gigabytes of JSON text in memory, so past
    SPILL_ROWS its parts go to a stage as they come: on a SQLite file a scratch database beside
    it, filled through Arrow (warehouse.bulk.SqliteStage, as ingest does), which the commit
    copies across inside the database. On PostgreSQL the publication's transaction opens at the
    first spill, with the outbox lock (every outbox writer takes it first); golden rows and
    versions are COPYed into their tables and the events into a temporary table, from which
    the commit numbers them. Either way nothing is visible before the commit, all of it after.
    """

    def __init__(self, store: GoldenStore):
        self.store = store
        self.now = utcnow()
        self._frames: dict[str, list[pl.DataFrame]] = {"golden": [], "versions": [], "events": []}
        self._held = 0
        self._sqlite: SqliteStage | None = None
        self._pg: sa.Connection | None = None
        self._pg_txn = None
        # Spilled parts are written by one thread while the caller computes the next part (ADBC
        # and psycopg release the GIL; PostgreSQL works on its own core): at most one waits.
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, *, golden: pl.DataFrame | None = None, versions: pl.DataFrame | None = None,
            events: pl.DataFrame | None = None) -> None:
        """One part. Events carry their place in the publication's order in `_order` (any
        increasing integers across parts; row order without one) and event ids unique across
        parts."""
        entity_type, now = self.store.entity_type, self.now
        if golden is not None and golden.height:
            self._frames["golden"].append(golden.with_columns(entity_type=pl.lit(entity_type), updated_at=pl.lit(now)))
        if versions is not None and versions.height:
            self._frames["versions"].append(versions.with_columns(
                entity_type=pl.lit(entity_type), valid_from=pl.lit(now), valid_to=pl.lit(None, pl.Datetime("us", "UTC"))))
        if events is not None and events.height:
            if "_order" not in events.columns:  # row order, after what earlier parts added
                base = sum(f.height for f in self._frames["events"]) + self._spilled_events
                events = events.with_columns(_order=pl.int_range(base + 1, base + events.height + 1, dtype=pl.Int64))
            self._frames["events"].append(prepared(events.with_columns(entity_type=pl.lit(entity_type)), now))
        self._held = sum(f.height for frames in self._frames.values() for f in frames)
        if self._held >= SPILL_ROWS:
            self._spill()

    _spilled_events = 0

    @property
    def spilled(self) -> bool:
        return self._sqlite is not None or self._pg is not None

    def _spill(self) -> None:
        if not self.spilled:
            self._sqlite = sqlite_stage(self.store.engine)
            if self._sqlite is None and self.store.store.dialect == "postgresql":
                self._pg = self.store.engine.connect()
                self._pg_txn = self._pg.begin()
                lock_outbox(self._pg)  # first, as every outbox writer does: no lock-order deadlock
                self._pg.exec_driver_sql(f'CREATE TEMP TABLE "{_pg_stage(OUTBOX)}" (LIKE "{OUTBOX.name}" '
                                         f"INCLUDING DEFAULTS) ON COMMIT DROP")
            if not self.spilled:  # an in-memory SQLite or another dialect: it all stays in memory
                return
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="golden-stage")
        frames, self._frames = self._frames, {k: [] for k in self._frames}
        self._spilled_events += sum(f.height for f in frames["events"])
        self._held = 0
        while len(self._pending) >= 1:
            self._pending.popleft().result()
        self._pending.append(self._writer.submit(self._write, frames))

    def _write(self, frames: dict[str, list[pl.DataFrame]]) -> None:
        """On the writer thread: the frames into the stage (SQLite) or the tables (PostgreSQL)."""
        for key, table in zip(("golden", "versions", "events"), _STAGED, strict=True):
            for frame in frames[key]:
                if self._sqlite is not None:
                    self._sqlite.add(table, frame, replace=key == "golden")
                elif key == "events":
                    insert_frame(self._pg, _pg_table(table), frame)
                else:  # straight into the table, invisible until the commit
                    self._pg_write(table, frame)

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def _pg_write(self, table: sa.Table, frame: pl.DataFrame) -> None:
        """A part's golden rows or versions, COPYed into their table inside the publication's
        transaction: the records replaced (versions ended) first, those of a version 1 have none."""
        older = frame.filter(pl.col("version") > 1)["entity_id"]
        if older.len():
            if table is s.golden_records:
                self._pg.execute(table.delete().where(in_keys(self._pg, table.c.entity_id, older)))
            else:
                _close_versions(self._pg, older, self.now)
        insert_frame(self._pg, table, frame)

    def commit(self, resolution_seq: int) -> tuple[int, int]:
        if self.spilled:
            self._spill()
            self._drain()
            appended = self._commit_staged(resolution_seq)
        else:
            appended = self._commit_frames(resolution_seq)
        return appended.first_seq, appended.last_seq

    def _commit_frames(self, resolution_seq: int) -> Appended:
        golden, versions, events = (pl.concat(self._frames[k], how="diagonal_relaxed") if self._frames[k]
                                    else pl.DataFrame() for k in ("golden", "versions", "events"))
        if events.height:
            events = events.sort("seq", maintain_order=True).unique("event_id", keep="first", maintain_order=True)
        with outbox_transaction(self.store.store) as outbox:
            conn = outbox.conn
            if versions.height:
                _close_versions(conn, versions.filter(pl.col("version") > 1)["entity_id"], self.now)
            insert_frame(conn, s.golden_records, golden, replace=True)
            insert_frame(conn, s.golden_versions, versions)
            appended = outbox.append_prepared(events)
            self._advance(conn, resolution_seq)
        return appended

    def _commit_staged(self, resolution_seq: int) -> Appended:
        if self._pg is not None:  # golden rows and versions are in place already
            with outbox_transaction(self.store.store, conn=self._pg, locked=True) as outbox:
                appended = outbox.append_staged(f'"{_pg_stage(OUTBOX)}"')
                self._advance(outbox.conn, resolution_seq)
            self._pg_txn.commit()
            return appended
        stage = self._sqlite
        stage.index(OUTBOX.name, "seq")  # the events are numbered in this order
        with (self.store.store.transaction(large=True) as conn,
              outbox_transaction(self.store.store, conn=conn) as outbox):
            alias = attach_stage(conn, stage)
            src = {t.name: f'"{alias}"."{t.name}"' for t in _STAGED if stage.staged(t.name)}  # the tables with rows
            return self._copy_across(outbox, src, resolution_seq)

    def _copy_across(self, outbox, src: dict[str, str], resolution_seq: int) -> Appended:
        """SQLite: the staged rows into the warehouse, in the transaction that holds the outbox."""
        conn = outbox.conn
        g, v, _ = _STAGED
        if v.name in src:
            older = sa.select(sa.column("entity_id")).select_from(sa.text(src[v.name])).where(sa.column("version") > 1)
            conn.execute(v.update().where(v.c.valid_to.is_(None), v.c.entity_id.in_(older)).values(valid_to=self.now))
        for t, verb in ((g, "INSERT OR REPLACE"), (v, "INSERT")):
            if t.name in src:
                cols = ", ".join(f'"{c.name}"' for c in t.columns)
                staged = conn.exec_driver_sql(f"SELECT max(rowid) FROM {src[t.name]}").scalar() or 0
                with indexes_built_after(conn, t.name, staged):
                    conn.exec_driver_sql(f'{verb} INTO main."{t.name}" ({cols}) SELECT {cols} FROM {src[t.name]} '
                                         f"ORDER BY rowid")
        appended = (outbox.append_staged(src[OUTBOX.name]) if OUTBOX.name in src
                    else outbox.append_prepared(pl.DataFrame()))
        self._advance(conn, resolution_seq)
        return appended

    def _advance(self, conn: sa.Connection, resolution_seq: int) -> None:
        t = s.golden_state
        conn.execute(t.delete().where(t.c.entity_type == self.store.entity_type))
        conn.execute(t.insert().values(entity_type=self.store.entity_type, resolution_seq=resolution_seq,
                                       updated_at=self.now))

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            if self._pg_txn is not None and self._pg_txn.is_active:
                self._pg_txn.rollback()
            self._pg.close()
            self._pg = None
        self._frames = {k: [] for k in self._frames}


_STAGED = (s.golden_records, s.golden_versions, OUTBOX)


def _pg_stage(table: sa.Table) -> str:
    return f"_pub_{table.name}"


def _pg_table(table: sa.Table) -> sa.Table:
    """The temporary twin of `table` (same columns, no keys) that COPY fills."""
    return sa.Table(_pg_stage(table), sa.MetaData(), *[sa.Column(c.name, c.type) for c in table.columns])


def _close_versions(conn: sa.Connection, entity_ids: pl.Series, now: dt.datetime) -> None:
    """The entities' open versions end now (a version 1 has none before it: not asked for)."""
    if entity_ids.len():
        v = s.golden_versions
        conn.execute(v.update().where(in_keys(conn, v.c.entity_id, entity_ids), v.c.valid_to.is_(None))
                     .values(valid_to=now))
