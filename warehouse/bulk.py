"""Bulk paths from Polars frames into warehouse tables, per dialect.

Row-by-row ORM inserts cost minutes at a million rows; these paths cost seconds:
PostgreSQL gets COPY (through psycopg), SQLite a single prepared executemany per chunk.
"""

from __future__ import annotations

import io

import polars as pl
import sqlalchemy as sa

_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%6f"


def _frame_for(table: sa.Table, frame: pl.DataFrame) -> pl.DataFrame:
    """Select the table's columns in table order; columns the frame lacks become nulls."""
    exprs = []
    for col in table.columns:
        if col.name in frame.columns:
            exprs.append(pl.col(col.name))
        elif col.primary_key and col.autoincrement is True:
            continue
        else:
            exprs.append(pl.lit(None).alias(col.name))
    return frame.select(exprs)


def _sqlite_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Render values the way SQLAlchemy's SQLite types store them, so reads through Core agree."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Date:
            exprs.append(pl.col(name).dt.strftime("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).dt.strftime(_SQLITE_DATETIME))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.Int8))
        elif dtype == pl.Null:
            exprs.append(pl.col(name).cast(pl.String))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def insert_frame(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, *, replace: bool = False) -> int:
    """Append (or, with replace=True, upsert on the primary key) every row of `frame` into `table`."""
    if frame.height == 0:
        return 0
    frame = _frame_for(table, frame)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        _copy_postgres(conn, table, frame, replace=replace)
    elif dialect == "sqlite":
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        marks = ", ".join("?" for _ in frame.columns)
        sql = f'{verb} INTO "{table.name}" ({cols}) VALUES ({marks})'
        conn.exec_driver_sql(sql, _sqlite_values(frame).rows())
    else:  # any other SQLAlchemy dialect: portable Core executemany
        if replace:
            pk = [c for c in table.primary_key.columns]
            keys = frame.select([c.name for c in pk]).rows()
            for start in range(0, len(keys), 1000):
                part = keys[start : start + 1000]
                conn.execute(table.delete().where(sa.tuple_(*pk).in_(part)))
        conn.execute(table.insert(), frame.to_dicts())
    return frame.height


def _copy_postgres(conn: sa.Connection, table: sa.Table, frame: pl.DataFrame, *, replace: bool) -> None:
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, null_value="\\N", datetime_format="%Y-%m-%d %H:%M:%S%.f")
    cols = ", ".join(f'"{c}"' for c in frame.columns)
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
        conflict = ", ".join(f'"{c}"' for c in pk)
        cur.execute(
            f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{stage}" '
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        )


def read_frame(conn: sa.Connection, query: sa.Select, schema: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Run a Core query into a Polars frame (rows through the DBAPI cursor, no pandas)."""
    result = conn.execute(query)
    names = list(result.keys())
    rows = result.fetchall()
    if schema is None:
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return pl.DataFrame(rows, schema={n: schema.get(n, pl.String) for n in names}, orient="row")
