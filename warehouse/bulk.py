"""Bulk paths from Polars frames into warehouse tables, per dialect.

Row-by-row inserts cost minutes at a million rows. PostgreSQL gets COPY (psycopg) inside the
batch's transaction. SQLite gets Arrow: each chunk is ingested through ADBC into a scratch
database beside the warehouse, and the batch's one transaction copies it over with
INSERT ... SELECT, so no Python object is made per value and the batch stays atomic.
"""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from warehouse.engine import PAGE_SIZE

_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%6f"


def polars_type(column: sa.Column) -> pl.DataType:
    """The Polars dtype a column reads back as."""
    t = column.type
    if isinstance(t, sa.Boolean):
        return pl.Boolean
    if isinstance(t, sa.Integer):
        return pl.Int64
    if isinstance(t, sa.Float):
        return pl.Float64
    if isinstance(t, sa.Date) and not isinstance(t, sa.DateTime):
        return pl.Date
    if isinstance(t, sa.DateTime):
        return pl.Datetime("us", "UTC") if t.timezone else pl.Datetime("us")
    return pl.String


def _write_type(column: sa.Column, dialect: str) -> pl.DataType:
    """The dtype a column is written as: what it reads back as, except that SQLite stores
    booleans as 0/1 and dates as ISO text, and timestamps go out naive (in UTC)."""
    dtype = polars_type(column)
    if dialect == "sqlite":
        if dtype == pl.Boolean:
            return pl.Int8
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            return pl.String
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us")
    return dtype


def _value_expr(name: str, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if want == pl.String and have == pl.Date:
        return col.dt.strftime("%Y-%m-%d")
    if want == pl.String and isinstance(have, pl.Datetime):
        return col.dt.strftime(_SQLITE_DATETIME)  # SQLAlchemy's own SQLite storage format
    if want == pl.Int8 and have == pl.Boolean:
        return col.cast(pl.Int8)
    return col.cast(want)


def coerce(table: sa.Table, frame: pl.DataFrame, dialect: str) -> pl.DataFrame:
    """The table's columns in table order, each in the one dtype its dialect stores.

    Fixing dtypes from the schema (not from the data) keeps every chunk of a batch identical in
    shape, even when a column happens to be all null in one of them. A column the frame lacks is
    written as null, unless the table gives it a default: then it is left out, for the default.
    """
    exprs = []
    for column in table.columns:
        if column.name not in frame.columns and (
                (column.primary_key and column.autoincrement is True) or column.server_default is not None):
            continue
        want = _write_type(column, dialect)
        if column.name in frame.columns:
            exprs.append(_value_expr(column.name, frame.schema[column.name], want).alias(column.name))
        else:
            exprs.append(pl.lit(None, want).alias(column.name))
    return frame.select(exprs)


def chunks(items: list, size: int = 5000) -> list[list]:
    """Slices for IN lists that every database accepts."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def key_table(conn: sa.Connection, values: list[str], name: str = "_keys") -> sa.Table:
    """A temporary one-column table holding `values`, to join against instead of IN lists.

    Thousands of chunked `IN (...)` queries made the first publication of a million entities
    take minutes; one bulk-filled temporary table and one join take seconds. The table lives
    as long as the connection (or, on PostgreSQL, the transaction), and is refilled per call.
    """
    table = sa.Table(name, sa.MetaData(), sa.Column("key", sa.String, primary_key=True), prefixes=["TEMPORARY"])
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS "{name}" (key text PRIMARY KEY) ON COMMIT DROP')
    else:
        conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS "{name}" (key TEXT PRIMARY KEY)')
    conn.exec_driver_sql(f'DELETE FROM "{name}"')
    if conn.dialect.name == "sqlite":  # one JSON array bound once: SQLite parses it, no Python row per key
        conn.exec_driver_sql(f'INSERT OR IGNORE INTO "{name}" (key) SELECT value FROM json_each(?)',
                             (json.dumps(values, ensure_ascii=False, default=str),))
        return table
    keys = pl.DataFrame({"key": values}, schema={"key": pl.String}).unique()
    insert_frame(conn, table, keys)
    return table


def unindexed(column: sa.ColumnElement) -> sa.ColumnElement:
    """`column` as an expression no SQLite index serves (`column || ''`: the same text). Without
    planner statistics SQLite takes an index on a low-selectivity column such as the entity type
    beside a key range or key list, and reads every row of the type; with that column wrapped it
    walks the key's index and stops where the query does."""
    return column.concat("")


def in_keys(conn: sa.Connection, column: sa.ColumnElement, keys, *, table: str = "_keys") -> sa.ColumnElement[bool]:
    """`column IN keys` for any number of keys, in one statement: a plain IN list while it is
    short (cheapest for a page of a feed), a temporary key table beyond (a million keys bind as
    one bulk insert, not as thousands of chunked queries). Use one `table` name per key set
    that a statement needs at the same time."""
    keys = list(dict.fromkeys(keys))
    if len(keys) <= IN_LIST_MAX:
        return column.in_(keys)
    return column.in_(sa.select(key_table(conn, keys, name=table).c.key))


IN_LIST_MAX = 5000


def not_journalled(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> list[dict]:
    """The audit rows whose `journal_key` the table does not hold yet (rows without a key are all
    new): an audit journal replayed after a crash (feeds/journal.py) writes each row once."""
    keys = [r["journal_key"] for r in rows if r.get("journal_key")]
    if not keys:
        return rows
    seen = set(conn.scalars(sa.select(table.c.journal_key).where(in_keys(conn, table.c.journal_key, keys))))
    return [r for r in rows if r.get("journal_key") not in seen]


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in names)


def insert_frame(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, *, replace: bool = False) -> int:
    """Append (or, with replace=True, upsert on the primary key) every row of `frame` into `table`."""
    if frame.height == 0:
        return 0
    dialect = conn.dialect.name
    frame = coerce(table, frame, dialect)
    if dialect == "postgresql":
        _copy_postgres(conn, table, frame, replace=replace)
    elif dialect == "sqlite":
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        stages = conn.info.get(_STAGES)
        if stages is not None and frame.height >= STAGED_INSERT_ROWS and len(stages) < MAX_STAGES:
            _insert_staged(conn, verb, table, frame)
            return frame.height
        marks = ", ".join("?" for _ in frame.columns)
        conn.exec_driver_sql(f'{verb} INTO "{table.name}" ({_quoted(frame.columns)}) VALUES ({marks})', frame.rows())
    else:  # any other SQLAlchemy dialect: portable Core executemany
        if replace:
            pk = list(table.primary_key.columns)
            for part in chunks(frame.select([c.name for c in pk]).rows(), 1000):
                conn.execute(table.delete().where(sa.tuple_(*pk).in_(part)))
        conn.execute(table.insert(), frame.to_dicts())
    return frame.height


# Large inserts into a SQLite file inside `staged_inserts`: from this many rows a frame goes into
# a scratch file through ADBC (Arrow, no Python row) and across by one INSERT ... SELECT, about
# 40 % less time than binding every row through Python's sqlite3 (1.4M relation keys: 5.9 -> 3.4 s).
STAGED_INSERT_ROWS = 50_000
MAX_STAGES = 8  # scratch files attached at once (SQLite attaches at most 10 databases)
_STAGES = "enteronce.staged_inserts"  # conn.info: the scratch files of the connection's transaction


@contextmanager
def staged_inserts(conn: sa.Connection) -> Iterator[None]:
    """Around a large write transaction on `conn` (begun and ended inside the block): scratch
    files attached to it (`attach_stage`; its large `insert_frame`s make their own) are detached
    after the transaction ends (SQLite detaches nothing a transaction has read), and the ones
    made here deleted. Elsewhere nothing changes: PostgreSQL has COPY, an in-memory database
    has no file to stage beside."""
    if sqlite_file(conn) is None:
        yield
        return
    stages: list[tuple[str, SqliteStage, bool]] = []  # (alias, stage, made here)
    conn.info[_STAGES] = stages
    try:
        yield
    finally:
        conn.info.pop(_STAGES, None)
        for alias, stage, made in stages:
            try:
                stage.detach(conn, alias)
            finally:
                if made:
                    stage.close()


def attach_stage(conn: sa.Connection, stage: SqliteStage, *, made: bool = False) -> str:
    """Attach a filled stage to the large transaction on `conn` (`staged_inserts`); the schema
    name its tables are read under. Detached once the transaction ends."""
    stages = conn.info.get(_STAGES)
    if stages is None:
        raise RuntimeError("a stage is attached inside Warehouse.transaction(large=True) only")
    alias = f"stage{len(stages)}"
    stages.append((alias, stage, made))
    stage.attach(conn, alias)
    return alias


def _insert_staged(conn: sa.Connection, verb: str, table: sa.Table, frame: pl.DataFrame) -> None:
    stage = sqlite_stage(conn)
    stage.add(table, frame)
    alias = attach_stage(conn, stage, made=True)
    cols = _quoted(frame.columns)
    # unqualified: a temporary table of that name comes first, as with the plain INSERT
    conn.exec_driver_sql(f'{verb} INTO "{table.name}" ({cols}) SELECT {cols} FROM "{alias}"."{table.name}" '
                         f"ORDER BY rowid")


# A SQLite insert of at least this many rows into a table that holds fewer builds the table's
# own indexes after it (indexes_built_after).
DEFERRED_INDEX_ROWS = 50_000


@contextmanager
def indexes_built_after(conn: sa.Connection, table: str, incoming: int) -> Iterator[None]:
    """SQLite, inside a write transaction about to insert `incoming` rows into `table`: when the
    table holds fewer rows than that (a first publication), its indexes other than the primary
    key's are dropped for the insert and built again after it. Keeping an index while inserting
    costs a B-tree descent per row, in random order for a random key (an event's uuid5);
    building it costs one sort. Measured at a first publication of 889k persons: the events'
    insert with their indexes built after 3.2-3.8 s against 4.9-8.7 s, the golden rows' 3.4-3.9
    against 4.8 s. The drop and the build are in the caller's transaction: a failed insert or a
    unique index that no longer holds rolls both back with it, and readers (WAL) see the
    indexes throughout. Nothing changes elsewhere: on PostgreSQL dropping an index locks the
    table against every reader until the commit."""
    if conn.dialect.name != "sqlite" or incoming < DEFERRED_INDEX_ROWS:
        yield
        return
    held = conn.exec_driver_sql(f'SELECT max(rowid) FROM main."{table}"').scalar() or 0  # at least the count
    if held >= incoming:
        yield
        return
    if not conn.connection.dbapi_connection.in_transaction:  # pysqlite begins one before DML only
        conn.exec_driver_sql("BEGIN")
    indexes = conn.exec_driver_sql("SELECT name, sql FROM main.sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                   "AND sql IS NOT NULL", (table,)).all()  # declared ones: not the keys' own
    for name, _ in indexes:
        conn.exec_driver_sql(f'DROP INDEX main."{name}"')
    yield
    for _, sql in indexes:
        conn.exec_driver_sql(sql)


COPY_CHUNK_ROWS = 100_000


def _copy_csv(copy, frame: pl.DataFrame) -> None:
    """The frame into an open COPY, as CSV a slice at a time: the text of a whole million-row
    frame (golden records carry hundreds of bytes of JSON each) is never in memory at once."""
    for start in range(0, frame.height, COPY_CHUNK_ROWS):
        buf = io.BytesIO()
        frame.slice(start, COPY_CHUNK_ROWS).write_csv(buf, include_header=False, null_value="\\N",
                                                      datetime_format="%Y-%m-%d %H:%M:%S%.f")
        copy.write(buf.getvalue())


def _copy_postgres(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, *, replace: bool) -> None:
    cols = _quoted(frame.columns)
    options = "(FORMAT csv, NULL '\\N')"
    raw = conn.connection.driver_connection  # psycopg.Connection, inside SQLAlchemy's transaction
    with raw.cursor() as cur:
        if not replace:
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN {options}') as copy:
                _copy_csv(copy, frame)
            return
        stage = f"_stage_{table.name}"
        cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP')
        cur.execute(f'TRUNCATE "{stage}"')
        with cur.copy(f'COPY "{stage}" ({cols}) FROM STDIN {options}') as copy:
            _copy_csv(copy, frame)
        pk = [c.name for c in table.primary_key.columns]
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in frame.columns if c not in pk)
        cur.execute(
            f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{stage}" '
            f"ON CONFLICT ({_quoted(pk)}) DO UPDATE SET {updates}"
        )


class SqliteStage:
    """A scratch SQLite file filled through ADBC (Arrow in, no Python rows), copied in at commit."""

    def __init__(self, beside: Path):
        import adbc_driver_sqlite.dbapi as adbc

        self.path = beside.with_name(f".{beside.name}.stage-{uuid.uuid4().hex[:12]}")
        # A scratch file rebuilt on any failure: no journal, no fsync.
        self._conn = adbc.connect(str(self.path), autocommit=True)
        with self._conn.cursor() as cur:
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # as the warehouse's: rows of 1-2 KB
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
        self._tables: dict[str, tuple[bool, list[str]]] = {}  # name -> (upsert?, columns)

    def add(self, table: sa.Table, frame: pl.DataFrame, *, replace: bool = False) -> int:
        if frame.height == 0:
            return 0
        frame = coerce(table, frame, "sqlite")
        self._tables.setdefault(table.name, (replace, frame.columns))
        with self._conn.cursor() as cur:
            cur.adbc_ingest(table.name, frame, mode="create_append")
        return frame.height

    def staged(self, name: str) -> bool:
        return name in self._tables

    def index(self, name: str, column: str) -> None:
        """An index on a staged table's column, built in the scratch file (sorted there, on
        disk), so that the copy can read the rows in that order without sorting them in memory."""
        if self._conn is not None and name in self._tables:
            with self._conn.cursor() as cur:
                cur.execute(f'CREATE INDEX IF NOT EXISTS "ix_{name}_{column}" ON "{name}" ("{column}")')

    def attach(self, conn: sa.Connection, alias: str) -> None:
        """Attach the scratch file to `conn` as schema `alias` (once; `detach` after the
        transaction, since SQLite refuses to detach a database a transaction has read: use
        `attach_stage`, whose transaction does).

        ADBC links its own copy of SQLite; two copies must never hold the same file open at
        once (closing one drops the other's POSIX locks), so ADBC lets go before we attach.
        """
        self._release()
        if not _attached(conn, alias):
            conn.exec_driver_sql(f'ATTACH DATABASE ? AS "{alias}"', (str(self.path),))

    def copy_into(self, conn: sa.Connection) -> None:
        """Inside the caller's large transaction on the warehouse: move every staged row across."""
        alias = attach_stage(conn, self)
        for name, (replace, columns) in self._tables.items():
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            cols = _quoted(columns)
            conn.exec_driver_sql(f'{verb} INTO main."{name}" ({cols}) SELECT {cols} FROM "{alias}"."{name}" '
                                 f"ORDER BY rowid")

    @staticmethod
    def detach(conn: sa.Connection, alias: str) -> None:
        """After the transaction: pooled connections must not keep the scratch file attached."""
        if _attached(conn, alias):
            conn.exec_driver_sql(f'DETACH DATABASE "{alias}"')

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _attached(conn: sa.Connection, alias: str) -> bool:
    return any(row[1] == alias for row in conn.exec_driver_sql("PRAGMA database_list"))


def sqlite_stage(conn_or_engine: sa.Connection | sa.Engine) -> SqliteStage | None:
    """A scratch stage beside a SQLite warehouse file; None elsewhere (PostgreSQL has COPY, and
    an in-memory database has no file to put one beside)."""
    path = sqlite_file(conn_or_engine)
    return None if path is None else SqliteStage(path)


def sqlite_file(conn_or_engine: sa.Connection | sa.Engine) -> Path | None:
    """The warehouse's database file, if it is SQLite on a file."""
    url = conn_or_engine.engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


@contextmanager
def scoped_pragmas(conn: sa.Connection, **settings: object) -> Iterator[None]:
    """SQLite: PRAGMAs of `conn`'s connection set for the block and put back to their values
    from before it afterwards, outside SQLAlchemy's transaction bookkeeping. Use it around a
    transaction, not inside one (temp_store refuses to change inside a transaction). If they
    cannot be put back (a transaction a failure left open), the connection is invalidated
    rather than pooled with them."""
    raw = conn.connection.dbapi_connection
    before = {name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in settings}
    for name, value in settings.items():
        raw.execute(f"PRAGMA {name}={value}")
    try:
        yield
    finally:
        try:
            for name, value in before.items():
                raw.execute(f"PRAGMA {name}={value}")
        except sqlite3.Error:
            conn.invalidate()


READ_CHUNK_ROWS = 50_000


def read_bulk(conn: sa.Connection, query: sa.Select, schema: dict[str, pl.DataType], *,
              rows: int = READ_CHUNK_ROWS) -> pl.DataFrame:
    """`read_frame` for large reads: the same frame, but the rows come straight from the DBAPI
    cursor, a chunk at a time, and dates, timestamps and booleans are converted by Polars over
    whole columns. SQLAlchemy's result processing parses each SQLite timestamp in Python, which
    is most of the time of reading a million records; a chunk of raw rows is the only Python
    object per value that ever exists, for one chunk at a time."""
    parts = list(read_chunks(conn, query, schema, rows=rows))
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def read_chunks(conn: sa.Connection, query: sa.Select, schema: dict[str, pl.DataType], *,
                rows: int = READ_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """`read_bulk` a chunk of `rows` at a time (at least one frame, maybe empty), streamed from
    the server (PostgreSQL: a server-side cursor), for results too large to hold at once."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positional:
        params = tuple(params[k] for k in compiled.positiontup)
    # options for this statement only: Connection.execution_options() would set them on the
    # connection for good, and on PostgreSQL its next statement (a key list's CREATE TEMP TABLE)
    # would go through a server-side cursor too and fail
    result = conn.exec_driver_sql(compiled.string, params,
                                  execution_options={"stream_results": True, "max_row_buffer": rows})
    names = list(result.keys())
    want = {n: schema.get(n, pl.String) for n in names}
    sqlite = conn.dialect.name == "sqlite"
    raw = {n: (_sqlite_raw(t) if sqlite else t) for n, t in want.items()}
    convert = [_from_sqlite(n, t) for n, t in want.items() if raw[n] != t] if sqlite else []
    empty = True
    while chunk := result.fetchmany(rows):
        columns = zip(*chunk)  # column by column: half the time of building a frame from row tuples
        del chunk
        frame = pl.DataFrame([pl.Series(n, next(columns), dtype=t) for n, t in raw.items()])
        empty = False
        yield frame.with_columns(convert) if convert else frame
    if empty:
        frame = pl.DataFrame(schema=raw)
        yield frame.with_columns(convert) if convert else frame


def _sqlite_raw(dtype: pl.DataType) -> pl.DataType:
    """What SQLite hands back for a column read as `dtype`: booleans as 0/1, dates as text."""
    if dtype == pl.Boolean:
        return pl.Int64
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return pl.String
    return dtype


def _from_sqlite(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if dtype == pl.Boolean:
        return col.cast(pl.Boolean)
    if dtype == pl.Date:
        return col.str.slice(0, 10).str.to_date("%Y-%m-%d")
    # SQLAlchemy's and the stage's storage format alike: "2026-11-26 09:00:00.000000"
    parsed = col.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
    return (parsed.dt.replace_time_zone(dtype.time_zone) if dtype.time_zone else parsed).alias(name)


def read_frame(conn: sa.Connection, query: sa.Select, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Run a Core query into a Polars frame (rows through the DBAPI cursor, no pandas)."""
    result = conn.execute(query)
    names = list(result.keys())
    rows = result.fetchall()
    if schema is None:
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return pl.DataFrame(rows, schema={n: schema.get(n, pl.String) for n in names}, orient="row")
