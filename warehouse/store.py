"""The warehouse as the rest of the project sees it: batches, raw rows, quarantine, records.

All SQL lives here (and in bulk.py); callers hand in and get back Polars frames and plain values.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from core.entity_types import load_entity_types
from core.errors import ConfigError
from core.memory import release_freed_memory
from core.time import utcnow
from warehouse import checkpoints, sqlite_memory
from warehouse import schema as s
from warehouse.bulk import insert_frame, read_bulk, read_frame, sqlite_file, staged_inserts
from warehouse.engine import create_engine, migrate
from warehouse.locks import warehouse_lock


_SQLITE_WRITERS: dict[str, threading.Lock] = {}


def not_held(batch_id: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """Records of a batch that quality holds back (quality/, batch_holds) take no part in
    resolution or golden records until the hold is released: they are not published."""
    h = s.batch_holds
    return ~sa.exists().where(h.c.batch_id == batch_id, h.c.released_at.is_(None))


def writer_lock(engine: sa.Engine) -> threading.Lock | nullcontext:
    """This process's queue for an SQLite warehouse's one writer (see `Warehouse.transaction`);
    nothing on a database that takes concurrent writers."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    return _SQLITE_WRITERS.setdefault(str(engine.url.database), threading.Lock())


class Warehouse:
    def __init__(self, url: str, *, engine: sa.Engine | None = None, cache_dir: Path | None = None,
                 record_tables: Mapping[str, sa.Table] | None = None):
        self.url = url
        self.engine = engine or create_engine(url)
        # Derived, disposable copies of large reads (Parquet); the warehouse stays the truth.
        self.cache_dir = cache_dir
        # entity type -> its record table: the bundled types' (Alembic) plus a project's own,
        # built from its registered fields (warehouse.schema.record_table; see migrate).
        self.record_tables: dict[str, sa.Table] = {
            **{t.name: s.BUNDLED_RECORD_TABLES[t.record_table] for t in load_entity_types()},
            **(record_tables or {})}

    def record_table(self, entity_type: str) -> sa.Table:
        try:
            return self.record_tables[entity_type]
        except KeyError:
            raise KeyError(f"no record table for entity type {entity_type!r}; known: {sorted(self.record_tables)}") from None

    def table_named(self, name: str) -> sa.Table:
        """A table of the schema, or a project type's record table, by name."""
        if name in s.metadata.tables:
            return s.metadata.tables[name]
        return next(t for t in self.record_tables.values() if t.name == name)

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> "Warehouse":
        """To head; processes that start together (a daemon's runs, two CLI commands) queue on
        the warehouse's migrate lock rather than race to create the same tables."""
        with warehouse_lock(self.engine, "migrate", purpose="migrate"):
            migrate(self.engine)
            self._create_project_tables()
        return self

    def _create_project_tables(self) -> None:
        """The record tables of a project's own entity types are not in the Alembic migrations:
        they are built from the registry's field declarations and created here when absent. A
        table that exists gets the columns its declaration gained (ALTER TABLE ADD COLUMN, through
        Alembic's operations: SQLite and PostgreSQL); a column whose type changed, or one the
        declaration no longer produces, is refused with a ConfigError naming the type, the column
        and what to do - migrate never drops or converts data."""
        own = {name: t for name, t in self.record_tables.items() if t.name not in s.metadata.tables}
        if not own:
            return
        with self.engine.begin() as conn:
            inspector = sa.inspect(conn)
            for entity_type, t in own.items():
                if not inspector.has_table(t.name):
                    t.create(conn)
                    continue
                missing = project_table_changes(entity_type, t, inspector.get_columns(t.name))
                if missing:
                    ops = Operations(MigrationContext.configure(conn))
                    for c in missing:
                        ops.add_column(t.name, sa.Column(c.name, c.type))

    def release_memory(self) -> None:
        """After a large step, in a process that goes on (a pipeline's run): the pooled
        connections are closed, so their page caches (warehouse.engine.CACHE_KIB each on SQLite) go, and the
        freed heap goes back to the system (core.memory). The engine opens new ones on demand."""
        if sqlite_file(self.engine) is not None:  # an in-memory database would go with its connection
            self.engine.dispose()
        release_freed_memory()

    def dispose(self) -> None:
        """Close the engine's connections once its background checkpoints are done (a copy of
        the folder made afterwards holds every committed row in the database file)."""
        checkpoints.wait(self.engine)
        self.engine.dispose()

    # Autovacuum's own analyze threshold (PostgreSQL's defaults): rows changed since the table
    # was last analyzed beyond this base plus this share of its rows.
    ANALYZE_BASE_ROWS, ANALYZE_SHARE = 50, 0.1

    def refresh_statistics(self) -> list[str]:
        """PostgreSQL: ANALYZE the tables whose rows changed beyond autovacuum's threshold since
        they were last analyzed, and name them; elsewhere nothing.

        The planner chooses by these statistics, and a bulk load leaves them missing until
        autovacuum comes round (a minute later, or never where it is off). Without them, a 10k
        drop into 1M records closed its old versions by reading every version row (a 3.5 s
        sequential scan of 3 GB instead of 20,000 index lookups). ANALYZE reads a fixed sample
        (30,000 rows at the default target), so its cost does not grow with the table."""
        if self.dialect != "postgresql":
            return []
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            names = list(conn.execute(sa.text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = ANY (current_schemas(false)) "
                "AND n_mod_since_analyze > :base + :share * n_live_tup ORDER BY relname"),
                {"base": self.ANALYZE_BASE_ROWS, "share": self.ANALYZE_SHARE}).scalars())
            if names:
                conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{n}"' for n in names))
        return names

    @contextmanager
    def transaction(self, *, large: bool = False) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite, writers of this process queue on a lock first: SQLite
        takes one writer at a time, and threads that met its busy timeout instead would sleep in
        growing steps (seconds, under the feed API's concurrent audit writes). `large` (up to
        gigabytes written): on a SQLite file its large inserts go through scratch files
        (warehouse.bulk.staged_inserts), its temporary tables and sorts through temporary files,
        its page cache is given back after it (warehouse.sqlite_memory), and its WAL checkpoint
        runs in the background after the commit (warehouse.checkpoints)."""
        if not large:
            with writer_lock(self.engine), self.engine.begin() as conn:
                yield conn
            return
        with (writer_lock(self.engine), self.engine.connect() as conn, sqlite_memory.bounded(conn),
              checkpoints.deferred(conn), staged_inserts(conn), conn.begin()):
            yield conn

    def resolution_store(self, entity_type: str, record_table: str):
        from warehouse.resolution import ResolutionStore

        return ResolutionStore(self, entity_type, record_table)

    def golden_store(self, entity_type: str, record_table: str):
        from warehouse.golden import GoldenStore

        return GoldenStore(self, entity_type, record_table)

    # -- stations ----------------------------------------------------------------------------
    def sync_stations(self, rows: Iterable[dict]) -> None:
        """Insert or update station rows (station_id, name, jurisdiction)."""
        rows = list(rows)
        if not rows:
            return
        now = utcnow()
        with self.transaction() as conn:
            existing = set(conn.scalars(sa.select(s.stations.c.station_id)))
            new = [{**r, "updated_at": now} for r in rows if r["station_id"] not in existing]
            if new:
                conn.execute(s.stations.insert(), new)
            for r in rows:
                if r["station_id"] in existing:
                    conn.execute(
                        s.stations.update()
                        .where(s.stations.c.station_id == r["station_id"])
                        .values(name=r["name"], jurisdiction=r["jurisdiction"], updated_at=now)
                    )

    def record_station_version(self, station_id: str, version: str) -> None:
        """Note that every drop of `station_id` as of `version` (connectors.versions) has been
        ingested, whoever ran it: a drop sensor in any Dagster instance compares against this.

        A station the warehouse does not know yet (never synced) is left alone.
        """
        t = s.stations
        with self.transaction() as conn:
            conn.execute(
                t.update().where(t.c.station_id == station_id).values(drops_version=version, drops_version_at=utcnow())
            )

    def station_versions(self) -> dict[str, str]:
        """Station id -> the version its last completed ingest started from (stations never
        ingested since migration 0007 are absent). One query, for a sensor tick."""
        t = s.stations
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.station_id, t.c.drops_version).where(t.c.drops_version.is_not(None)))
            return {station_id: version for station_id, version in rows}

    # -- the warehouse itself ----------------------------------------------------------------
    def warehouse_id(self) -> str:
        """This warehouse's id: a uuid4 hex made once by migration 0007, the same on every open,
        so runs and cursors of different Dagster instances can say which warehouse they mean."""
        with self.engine.connect() as conn:
            value = conn.scalar(sa.select(s.hub_info.c.value).where(s.hub_info.c.key == "warehouse_id"))
        if value is None:
            raise RuntimeError(f"{self.display_url}: no warehouse_id in hub_info; run `enteronce migrate`")
        return value

    # -- batches -----------------------------------------------------------------------------
    def batch_state(self, batch_id: str) -> tuple[str, str | None] | None:
        """(status, config digest) of a batch, or None if it was never recorded: whether a drop is
        done, or was rejected under a config that has since changed (connectors.ingest)."""
        b = s.batches
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(b.c.status, b.c.config_digest).where(b.c.batch_id == batch_id)).first()
        return None if row is None else (row.status, row.config_digest)

    @contextmanager
    def load_batch(self, header: dict) -> Iterator["BatchLoad"]:
        """One batch, all or nothing: what the block writes commits together when it exits cleanly.

        A rerun of the same batch id first clears what an earlier attempt left (a drop rejected
        under an older config, retried): in the same transaction, so a failure in between keeps
        the earlier attempt, never nothing.
        """
        load = BatchLoad(self, header)
        try:
            yield load
            load.commit()
        finally:
            load.close()

    def record_rejected_batch(self, header: dict, quarantined: pl.DataFrame, error: str) -> None:
        with self.load_batch({**header, "status": "rejected", "error": error}) as load:
            load.append_quarantine(quarantined)
            load.finish(status="rejected", error=error)

    # -- SQL sources' watermarks -------------------------------------------------------------
    def watermark(self, station_id: str, source_name: str) -> str | None:
        t = s.source_state
        with self.engine.connect() as conn:
            return conn.scalar(
                sa.select(t.c.watermark).where(t.c.station_id == station_id, t.c.source_name == source_name)
            )

    @staticmethod
    def _set_watermark(conn: sa.Connection, station_id: str, source_name: str, watermark: str) -> None:
        t = s.source_state
        where = (t.c.station_id == station_id) & (t.c.source_name == source_name)
        done = conn.execute(t.update().where(where).values(watermark=watermark, updated_at=utcnow()))
        if done.rowcount == 0:
            conn.execute(
                t.insert().values(
                    station_id=station_id, source_name=source_name, watermark=watermark, updated_at=utcnow()
                )
            )

    # -- reads for summaries, checks and metadata --------------------------------------------
    def batches(self, station_ids: Iterable[str] | None = None) -> pl.DataFrame:
        b = s.batches
        q = sa.select(
            b.c.batch_id, b.c.station_id, b.c.source_name, b.c.entity_type, b.c.source_kind,
            b.c.source_ref, b.c.encoding, b.c.rows_read, b.c.rows_loaded, b.c.rows_quarantined,
            b.c.rows_unchanged, b.c.status, b.c.error, b.c.started_at, b.c.finished_at, b.c.config_digest,
        ).order_by(b.c.station_id, b.c.started_at)
        if station_ids is not None:
            q = q.where(b.c.station_id.in_(list(station_ids)))
        with self.engine.connect() as conn:
            return read_frame(conn, q, schema=_BATCH_SCHEMA)

    def reconciliation(self, station_ids: Iterable[str] | None = None) -> pl.DataFrame:
        """Per batch: rows read against rows actually stored in raw and in quarantine, and the
        rows it repeated unchanged (stored by an earlier batch: `current_rows`).

        Counts what is in the tables rather than trusting the batch's own counters, so a lost or
        doubled row shows up even if the counters were written wrong.
        """
        b, r, q = s.batches, s.raw_records, s.quarantine
        # counted batch by batch along each table's batch index: a grouped count of the whole
        # table would read every stored row of the warehouse to check a few stations' batches
        raw_n = sa.select(sa.func.count()).where(r.c.batch_id == b.c.batch_id).scalar_subquery()
        q_n = (sa.select(sa.func.count()).where(q.c.batch_id == b.c.batch_id, q.c.row_number.is_not(None))
               .scalar_subquery())
        stmt = (
            sa.select(
                b.c.batch_id, b.c.station_id, b.c.status, b.c.rows_read, b.c.rows_loaded,
                b.c.rows_quarantined, b.c.rows_unchanged,
                raw_n.label("raw_stored"), q_n.label("quarantine_stored"),
            )
            .order_by(b.c.batch_id)
        )
        if station_ids is not None:
            stmt = stmt.where(b.c.station_id.in_(list(station_ids)))
        with self.engine.connect() as conn:
            frame = read_frame(conn, stmt, schema=_RECON_SCHEMA)
        return frame.with_columns(
            balanced=(pl.col("rows_read")
                      == pl.col("raw_stored") + pl.col("quarantine_stored") + pl.col("rows_unchanged"))
            & (pl.col("rows_loaded") == pl.col("raw_stored"))
            & (pl.col("rows_quarantined") == pl.col("quarantine_stored"))
        )

    def current_rows(self, entity_type: str, station_id: str, config_digest: str | None) -> pl.DataFrame:
        """(record_key, row_hash) of the station's current records that a drop may repeat without
        storing them again: read under this source config (`config_digest`: a changed mapping
        standardises the same row differently) from a loaded batch that is not held (a held
        record comes back with the next drop that carries it, as it always did)."""
        schema = {"record_key": pl.String, "row_hash": pl.String}
        if config_digest is None:
            return pl.DataFrame(schema=schema)
        t, b = self.record_table(entity_type), s.batches
        stmt = (sa.select(t.c.record_key, t.c.row_hash)
                .join(b, b.c.batch_id == t.c.batch_id)
                .where(t.c.station_id == station_id, b.c.status == "loaded", b.c.config_digest == config_digest,
                       not_held(t.c.batch_id)))
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt, schema=schema)

    def quarantine_rows(self, station_ids: Iterable[str] | None = None, limit: int | None = None) -> pl.DataFrame:
        q = s.quarantine
        stmt = sa.select(
            q.c.batch_id, q.c.station_id, q.c.row_number, q.c.field, q.c.reason, q.c.original, q.c.stored_path
        ).order_by(q.c.quarantine_id)
        if station_ids is not None:
            stmt = stmt.where(q.c.station_id.in_(list(station_ids)))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={"row_number": pl.Int64})

    def record_profile(
        self, entity_type: str, fields: Iterable[str], station_ids: Iterable[str] | None = None,
        code: tuple[str, str] | None = None,
    ) -> dict:
        """Row count, fill rate per named field and invalid-code rate of current records.

        `code` is (code column, validity flag): the registered type's `code` (the caller reads the
        project's registry); None: no invalid-code rate (0)."""
        t = self.record_table(entity_type)
        cols = [t.c[f] for f in fields if f in t.c]
        code_col, valid_col = (t.c[code[0]], t.c[code[1]]) if code is not None else (None, None)
        stmt = sa.select(
            sa.func.count().label("rows"),
            *[sa.func.count(c).label(c.name) for c in cols],
            (sa.func.count(code_col) if code_col is not None else sa.literal(0)).label("_codes"),
            (sa.func.sum(sa.case((valid_col.is_(False), 1), else_=0)) if valid_col is not None
             else sa.literal(0)).label("_invalid"),
            sa.func.count(t.c.issues).label("_with_issues"),
        )
        if station_ids is not None:
            stmt = stmt.where(t.c.station_id.in_(list(station_ids)))
        with self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().one()
        n = row["rows"] or 0
        return {
            "rows": n,
            "fill_rate": {c.name: (row[c.name] / n if n else 0.0) for c in cols},
            "invalid_code_rate": (int(row["_invalid"] or 0) / row["_codes"]) if row["_codes"] else 0.0,
            "rows_with_issues": int(row["_with_issues"] or 0),
        }

    def max_event_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(s.change_events.c.seq), 0))))

    def count(self, table: str, station_ids: Iterable[str] | None = None) -> int:
        t = s.metadata.tables[table]
        stmt = sa.select(sa.func.count()).select_from(t)
        if station_ids is not None:
            stmt = stmt.where(t.c.station_id.in_(list(station_ids)))
        with self.engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)


_BATCH_SCHEMA = {
    "rows_read": pl.Int64, "rows_loaded": pl.Int64, "rows_quarantined": pl.Int64, "rows_unchanged": pl.Int64,
    "started_at": pl.Datetime("us", "UTC"), "finished_at": pl.Datetime("us", "UTC"),
}
_RECON_SCHEMA = {
    "rows_read": pl.Int64, "rows_loaded": pl.Int64, "rows_quarantined": pl.Int64, "rows_unchanged": pl.Int64,
    "raw_stored": pl.Int64, "quarantine_stored": pl.Int64,
}


MAX_PENDING = 3  # frames queued for the writer thread: about two chunks' worth


def _clear_batch(conn: sa.Connection, batch_id: str) -> None:
    """Remove an earlier attempt of `batch_id` and everything hanging off it, before its rerun.

    Raw rows and quarantine are the attempt's own. Quality rows (validation runs and results,
    scores, a hold) only ever describe loaded batches, so a rejected attempt has none; should
    one exist, it describes rows about to be replaced, and would make the quality pass take the
    new attempt as already validated. Correction tasks and current records are left: they
    belong to records, which a later batch may have moved on.
    """
    runs = sa.select(s.validation_runs.c.run_id).where(s.validation_runs.c.batch_id == batch_id)
    conn.execute(s.validation_results.delete().where(s.validation_results.c.run_id.in_(runs)))
    for table in (s.validation_runs, s.station_scores, s.batch_holds, s.raw_records, s.quarantine):
        conn.execute(table.delete().where(table.c.batch_id == batch_id))
    conn.execute(s.batches.delete().where(s.batches.c.batch_id == batch_id))


class BatchLoad:
    """Collects one batch's rows and commits them in one transaction (see Warehouse.load_batch).

    PostgreSQL streams each chunk with COPY inside the open transaction; SQLite stages chunks
    through Arrow and copies them in at commit, because SQLite allows one writer at a time.
    """

    def __init__(self, store: Warehouse, header: dict):
        self.store = store
        self.header = header
        self.batch_id = header["batch_id"]
        self.station_id = header["station_id"]
        self._new_station: dict[str, bool] = {}
        self._finish: dict = {}
        self._watermark: tuple[str, str, str] | None = None
        self._stage = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer")
        self._pending: deque[Future] = deque()
        self._conn: sa.Connection | None = None
        self._txn = None
        if store.dialect == "sqlite" and store.engine.url.database not in (None, "", ":memory:"):
            from warehouse.bulk import SqliteStage

            self._stage = SqliteStage(Path(store.engine.url.database))
        else:
            self._conn = store.engine.connect()
            self._txn = self._conn.begin()
            self._start(self._conn)

    def _start(self, conn: sa.Connection) -> None:
        b = s.batches
        if conn.scalar(sa.select(sa.literal(1)).where(b.c.batch_id == self.batch_id)) is not None:
            _clear_batch(conn, self.batch_id)
        conn.execute(b.insert().values(started_at=utcnow(), **self.header))

    def _write(self, table: sa.Table, frame: pl.DataFrame, replace: bool) -> int:
        if self._stage is not None:
            return self._stage.add(table, frame, replace=replace)
        if replace and self._station_is_new(table):
            replace = False  # a station's first drop: no key can collide, so plain COPY will do
        return insert_frame(self._conn, table, frame, replace=replace)

    def _station_is_new(self, table: sa.Table) -> bool:
        if table.name not in self._new_station:
            exists = self._conn.scalar(
                sa.select(sa.literal(1)).where(table.c.station_id == self.station_id).limit(1)
            )
            self._new_station[table.name] = exists is None
        return self._new_station[table.name]

    def _add(self, table: sa.Table, frame: pl.DataFrame, replace: bool = False) -> int:
        """Queue a write on the batch's writer thread; the caller goes on with the next chunk.

        ADBC and psycopg release the GIL while they write, so reading and standardising the next
        chunk overlaps with writing this one. At most MAX_PENDING frames wait in memory, and the
        connection is only ever used by that one thread until commit.
        """
        if frame.height == 0:
            return 0
        while len(self._pending) >= MAX_PENDING:
            self._pending.popleft().result()
        self._pending.append(self._writer.submit(self._write, table, frame, replace))
        return frame.height

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def append_raw(self, frame: pl.DataFrame) -> int:
        return self._add(s.raw_records, frame)

    def append_quarantine(self, frame: pl.DataFrame) -> int:
        return self._add(s.quarantine, frame)

    def upsert_records(self, entity_type: str, frame: pl.DataFrame) -> int:
        return self._add(self.store.record_table(entity_type), frame, replace=True)

    def finish(self, **values) -> None:
        self._finish = values

    def set_watermark(self, station_id: str, source_name: str, watermark: str) -> None:
        self._watermark = (station_id, source_name, watermark)

    def _complete(self, conn: sa.Connection) -> None:
        conn.execute(
            s.batches.update()
            .where(s.batches.c.batch_id == self.batch_id)
            .values(finished_at=utcnow(), **self._finish)
        )
        if self._watermark is not None:
            Warehouse._set_watermark(conn, *self._watermark)

    def commit(self) -> None:
        self._drain()
        if self._stage is None:
            self._complete(self._conn)
            self._txn.commit()
            return
        with self.store.transaction(large=True) as conn:
            self._start(conn)
            self._stage.copy_into(conn)
            self._complete(conn)

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._writer.shutdown(wait=True)
        if self._stage is not None:
            self._stage.close()
        if self._conn is not None:
            if self._txn is not None and self._txn.is_active:
                self._txn.rollback()
            self._conn.close()


def _column_kind(dtype: sa.types.TypeEngine) -> str:
    """A column type as the registry's value types name it (reflected types differ by dialect:
    FLOAT / DOUBLE PRECISION, DATETIME / TIMESTAMP)."""
    for kind, base in (("boolean", sa.Boolean), ("timestamp", sa.DateTime), ("date", sa.Date),
                       ("integer", sa.Integer), ("number", sa.Numeric), ("number", sa.Float), ("text", sa.String)):
        if isinstance(dtype, base):
            return kind
    return type(dtype).__name__.lower()


def project_table_changes(entity_type: str, table: sa.Table, existing: list[dict]) -> list[sa.Column]:
    """The columns of a project type's declared record table that its warehouse table lacks
    (`existing`: the inspector's columns); a ConfigError when a column's type changed or a
    column is no longer declared, naming the type, the column and what to do."""
    have = {c["name"]: c for c in existing}
    changed = [(c.name, _column_kind(have[c.name]["type"]), _column_kind(c.type)) for c in table.columns
               if c.name in have and _column_kind(have[c.name]["type"]) != _column_kind(c.type)]
    removed = [n for n in have if n not in table.c]
    problems = [f"field {name!r}: the warehouse column is {was} but the declaration now makes it {now}; declare "
                f"the new values under a new field name (the old column stays), or change the type back, or convert "
                f"the column yourself (ALTER TABLE {table.name} ALTER COLUMN {name} ...) and migrate again"
                for name, was, now in changed]
    problems += [f"field {name!r}: the warehouse table has this column but the declaration no longer produces it "
                 f"(a field removed or renamed, or its standardiser changed); declare it again, or keep what you need "
                 f"and drop it yourself (ALTER TABLE {table.name} DROP COLUMN {name}) and migrate again"
                 for name in removed]
    if problems:
        raise ConfigError(f"entity type {entity_type!r} (table {table.name}): migrate adds new fields but never "
                          f"changes or drops stored data:\n  - " + "\n  - ".join(problems))
    return [c for c in table.columns if c.name not in have]
