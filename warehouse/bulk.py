"""Bulk paths from Polars frames into warehouse tables, per dialect.

Row-by-row inserts cost minutes at a million rows. PostgreSQL gets COPY (psycopg) inside the
batch's transaction. SQLite gets Arrow: each chunk is ingested through ADBC into a scratch
database beside the warehouse, and the batch's one transaction copies it over with
INSERT ... SELECT, so no Python object is made per value and the batch stays atomic.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import polars as pl
import sqlalchemy as sa

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
    shape, even when a column happens to be all null in one of them.
    """
    exprs = []
    for column in table.columns:
        if column.primary_key and column.autoincrement is True and column.name not in frame.columns:
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
    keys = pl.DataFrame({"key": values}, schema={"key": pl.String}).unique()
    insert_frame(conn, table, keys)
    return table


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
        marks = ", ".join("?" for _ in frame.columns)
        conn.exec_driver_sql(f'{verb} INTO "{table.name}" ({_quoted(frame.columns)}) VALUES ({marks})', frame.rows())
    else:  # any other SQLAlchemy dialect: portable Core executemany
        if replace:
            pk = list(table.primary_key.columns)
            for part in chunks(frame.select([c.name for c in pk]).rows(), 1000):
                conn.execute(table.delete().where(sa.tuple_(*pk).in_(part)))
        conn.execute(table.insert(), frame.to_dicts())
    return frame.height


def _copy_postgres(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, *, replace: bool) -> None:
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, null_value="\\N", datetime_format="%Y-%m-%d %H:%M:%S%.f")
    cols = _quoted(frame.columns)
    options = "(FORMAT csv, NULL '\\N')"
    raw = conn.connection.driver_connection  # psycopg.Connection, inside SQLAlchemy's transaction
    with raw.cursor() as cur:
        if not replace:
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN {options}') as copy:
                copy.write(buf.getvalue())
            return
        stage = f"_stage_{table.name}"
        cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DROP')
        cur.execute(f'TRUNCATE "{stage}"')
        with cur.copy(f'COPY "{stage}" ({cols}) FROM STDIN {options}') as copy:
            copy.write(buf.getvalue())
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

    def copy_into(self, conn: sa.Connection) -> None:
        """Inside the caller's transaction on the warehouse: move every staged row across.

        ADBC links its own copy of SQLite; two copies must never hold the same file open at
        once (closing one drops the other's POSIX locks), so ADBC lets go before we attach.
        """
        self._release()
        conn.exec_driver_sql("ATTACH DATABASE ? AS stage", (str(self.path),))
        for name, (replace, columns) in self._tables.items():
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            cols = _quoted(columns)
            conn.exec_driver_sql(f'{verb} INTO main."{name}" ({cols}) SELECT {cols} FROM stage."{name}" ORDER BY rowid')

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


def read_frame(conn: sa.Connection, query: sa.Select, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Run a Core query into a Polars frame (rows through the DBAPI cursor, no pandas)."""
    result = conn.execute(query)
    names = list(result.keys())
    rows = result.fetchall()
    if schema is None:
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return pl.DataFrame(rows, schema={n: schema.get(n, pl.String) for n in names}, orient="row")
