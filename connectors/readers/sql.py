"""SQL tables of station systems, read incrementally by a watermark column.

The table is reflected rather than declared: each station system has its own schema (Chinese
column names included) and onboarding one is config, not code. Rows come back ordered by the
watermark and streamed, so a caller can keep the last chunk's `watermark_max` as its cursor and
resume after it; values are rendered as text so SQL drops look like file drops downstream.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from connectors.config import SourceConfig, within_roots, sqlite_file
from core.errors import SourceError
from connectors.readers.model import ROW, Chunk, empty_raw_frame, finalize, screen


def resolve_url(url: str, base_dir: Path | None) -> sa.URL:
    """The SQLAlchemy URL, with a relative SQLite path taken relative to the config folder.

    Without this a relative path would depend on the process's working directory, which differs
    between the CLI, `dagster dev` and the daemon.
    """
    parsed = sa.make_url(url)
    db = parsed.database
    if (
        parsed.get_backend_name() == "sqlite"
        and db
        and db != ":memory:"
        and not db.startswith("file:")
        and not Path(db).is_absolute()
        and base_dir is not None
    ):
        parsed = parsed.set(database=str(Path(base_dir) / db))
    return parsed


def read_sql(
    source: SourceConfig, *, watermark_after: str | None = None, base_dir: Path | None = None
) -> Iterator[Chunk]:
    """Chunks of the rows with watermark > `watermark_after` (all rows when None), in watermark order.

    Rows whose watermark is NULL are read only by a full read (None): no cursor can point past them.
    File-level problems (connection, missing table or column, bad cursor) raise here.
    """
    engine, table, label = open_table(source, base_dir)
    try:
        require_columns(table, [*source.columns, source.watermark], label)
        mark = table.c[source.watermark]
        stmt = sa.select(table).order_by(mark)
        if watermark_after is not None:
            stmt = stmt.where(mark > _cursor_value(watermark_after, mark, label))
    except BaseException:
        engine.dispose()
        raise
    return _stream(engine, stmt, list(table.c.keys()), source.watermark, source.chunk_rows, label,
                   source.effective_limits.max_field_bytes)


def open_table(source: SourceConfig, base_dir: Path | None) -> tuple[sa.Engine, sa.Table, str]:
    """Engine, reflected table and display label (password hidden) of a sql source.

    Shared by `read_sql` and the sensors' versions (connectors.versions), so both fail with the
    same SourceError for a missing database file, an unreachable server or a missing table, and
    neither creates an empty SQLite file where the station's database should be.
    The caller disposes of the engine.
    """
    assert source.url and source.table and source.watermark  # guaranteed by SourceConfig
    url = resolve_url(source.url, base_dir)
    label = url.render_as_string(hide_password=True)
    db = sqlite_file(url.render_as_string(hide_password=False))
    if db is not None and source.roots is not None:
        real = os.path.realpath(db if os.path.isabs(db) or base_dir is None else os.path.join(base_dir, db))
        if not within_roots(real, source.roots):
            raise SourceError(label, f"SQLite database resolves to {real}, outside the config folder and allowed_roots")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not url.database.startswith("file:") and not Path(url.database).is_file():
            raise SourceError(label, "database file not found")
    engine = sa.create_engine(url)
    try:
        return engine, _reflect(engine, source.table, label), label
    except BaseException:
        engine.dispose()
        raise


def require_columns(table: sa.Table, wanted: list[str], label: str) -> None:
    """Raise naming the columns of `wanted` the table lacks, and the ones it has."""
    missing = [c for c in dict.fromkeys(wanted) if c not in table.c]
    if missing:
        raise SourceError(
            label,
            f"table {table.fullname!r} lacks column(s) {missing}; it has {list(table.c.keys())}",
            field=missing[0],
        )


def _reflect(engine: sa.Engine, name: str, label: str) -> sa.Table:
    schema, _, table_name = name.rpartition(".")
    try:
        return sa.Table(table_name, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise SourceError(label, f"table {name!r} not found", field=None) from None
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(label, f"cannot read table {name!r}: {_short(exc)}") from None


def _cursor_value(text: str, column: sa.Column, label: str) -> Any:
    """The text cursor as the column's Python type, so the database compares values, not strings."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return text
    try:
        if kind is bool:
            return text.strip().lower() in ("1", "true")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is Decimal:
            return Decimal(text)
        if kind is dt.datetime:
            return dt.datetime.fromisoformat(text)
        if kind is dt.date:
            return dt.datetime.fromisoformat(text).date()
        if kind is dt.time:
            return dt.time.fromisoformat(text)
    except (ValueError, ArithmeticError):
        raise SourceError(
            label,
            f"watermark cursor {text!r} is not a valid {kind.__name__} for column {column.name!r}",
            field=column.name,
        ) from None
    return text


def _stream(
    engine: sa.Engine, stmt: sa.Select, columns: list[str], watermark: str, chunk_rows: int, label: str,
    max_field_bytes: int,
) -> Iterator[Chunk]:
    mark_idx = columns.index(watermark)
    ordinal = 0
    emitted = False
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
            for part in result.partitions():
                texts = [[render(v) for v in row] for row in part]
                marks = [row[mark_idx] for row in part if row[mark_idx] is not None]
                frame = pl.DataFrame(
                    [pl.Series(c, col, dtype=pl.String) for c, col in zip(columns, zip(*texts))]
                    + [pl.Series(ROW, range(ordinal + 1, ordinal + len(texts) + 1), dtype=pl.Int64)]
                )
                ordinal += len(texts)
                emitted = True
                # A value over max_field_bytes or with a NUL (PostgreSQL cannot store it) quarantines its row.
                frame, rejects = screen(frame, columns, max_field_bytes)
                yield Chunk(
                    rows=finalize(frame, columns),
                    rejects=rejects,
                    watermark_max=render(max(marks)) if marks else None,
                )
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(label, f"reading failed: {_short(exc)}") from None
    finally:
        engine.dispose()
    if not emitted:
        yield Chunk(rows=finalize(empty_raw_frame(columns), columns), rejects=[])


def render(value: Any) -> str | None:
    """A database value as the text a file export of the same row would hold."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")  # DECIMAL(12,10) 171.5000000000 -> "171.5"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")  # "YYYY-MM-DD HH:MM:SS" (+ .ffffff / offset when present)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value)


def _short(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0] if text else ''}"
