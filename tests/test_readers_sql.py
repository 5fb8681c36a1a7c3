"""SQL reader: incremental reads by watermark against MariaDB (a station system) and SQLite."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers import Chunk, read_drop

COLUMNS = {"人员编号": "local_id", "姓名": "name", "出生日期": "birth_date", "更新时间": "source_updated_at"}


def make_table(url: str) -> tuple[sa.Engine, sa.Table]:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "实有人口",
        meta,
        sa.Column("人员编号", sa.String(32), primary_key=True),
        sa.Column("姓名", sa.String(64)),
        sa.Column("出生日期", sa.Date),
        sa.Column("身高", sa.Float),
        sa.Column("版本", sa.Integer),
        sa.Column("更新时间", sa.DateTime),
    )
    meta.create_all(engine)
    return engine, table


def insert(engine: sa.Engine, table: sa.Table, start: int, stop: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {
                    "人员编号": f"P{i:03d}",
                    "姓名": f"张{i}",
                    "出生日期": dt.date(1990, 1, i),
                    "身高": 170.0 if i % 2 else 171.5,
                    "版本": i,
                    "更新时间": dt.datetime(2024, 1, 1, 8, 0, 0) + dt.timedelta(minutes=i),
                }
                for i in range(start, stop)
            ],
        )


def source(url: str, watermark: str = "更新时间", **kw) -> SourceConfig:
    return SourceConfig(
        name="residents", entity="person", kind="sql", url=url, table="实有人口",
        watermark=watermark, columns=COLUMNS, **kw,
    )


def rows_of(chunks: list[Chunk]) -> pl.DataFrame:
    return pl.concat([c.rows for c in chunks])


def check_incremental(url: str, base_dir: Path | None = None, source_url: str | None = None) -> None:
    engine, table = make_table(url)
    try:
        insert(engine, table, 1, 8)
        src = source(source_url or url, chunk_rows=3)

        chunks = list(read_drop(src, None, base_dir=base_dir))
        assert [c.rows.height for c in chunks] == [3, 3, 1]
        rows = rows_of(chunks)
        assert rows.columns == ["人员编号", "姓名", "出生日期", "身高", "版本", "更新时间", "__row__", "__row_hash__"]
        assert rows["__row__"].to_list() == list(range(1, 8))
        assert rows.row(0)[:6] == ("P001", "张1", "1990-01-01", "170", "1", "2024-01-01 08:01:00")
        assert rows["身高"][1] == "171.5"
        assert [c.watermark_max for c in chunks] == [
            "2024-01-01 08:03:00", "2024-01-01 08:06:00", "2024-01-01 08:07:00"
        ]
        cursor = chunks[-1].watermark_max

        again = list(read_drop(src, None, watermark_after=cursor, base_dir=base_dir))
        assert sum(c.rows.height for c in again) == 0
        assert again[0].watermark_max is None

        insert(engine, table, 8, 10)
        new = list(read_drop(src, None, watermark_after=cursor, base_dir=base_dir))
        assert rows_of(new)["人员编号"].to_list() == ["P008", "P009"]
        assert rows_of(new)["__row__"].to_list() == [1, 2]
        assert new[-1].watermark_max == "2024-01-01 08:09:00"

        # An INT watermark works the same way; the cursor text is converted to int, not compared as text.
        by_version = source(source_url or url, watermark="版本")
        after = list(read_drop(by_version, None, watermark_after="7", base_dir=base_dir))
        assert rows_of(after)["版本"].to_list() == ["8", "9"]
        assert after[-1].watermark_max == "9"

        # Row hashes are stable between reads.
        first = rows_of(list(read_drop(src, None, base_dir=base_dir)))
        assert first["__row_hash__"].to_list()[:7] == rows["__row_hash__"].to_list()
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_incremental_read_mariadb(mariadb_url: str) -> None:
    check_incremental(mariadb_url)


def test_incremental_read_sqlite_relative_to_base_dir(tmp_path: Path) -> None:
    check_incremental(
        f"sqlite:///{tmp_path / 'station_systems.sqlite'}",
        base_dir=tmp_path,
        source_url="sqlite:///station_systems.sqlite",
    )


@pytest.mark.mariadb
def test_missing_table_mariadb_hides_password(mariadb_url: str) -> None:
    with pytest.raises(SourceError) as err:
        read_drop(source(mariadb_url), None)
    assert "table '实有人口' not found" in str(err.value)
    assert err.value.file == sa.make_url(mariadb_url).render_as_string(hide_password=True)

    # A URL with a password (wrong here, so the connection fails): the message must not leak it.
    url = sa.make_url(mariadb_url).set(password="s3cret-pw")
    with pytest.raises(SourceError) as err:
        read_drop(source(url.render_as_string(hide_password=False)), None)
    assert "s3cret-pw" not in str(err.value)
    assert "***" in str(err.value)


def test_missing_table_and_column_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE other (x INTEGER)"))
        conn.execute(sa.text('CREATE TABLE "实有人口" ("人员编号" TEXT, "姓名" TEXT, "更新时间" DATETIME)'))
    engine.dispose()

    bad_table = source(url).model_copy(update={"table": "不存在"})
    with pytest.raises(SourceError) as err:
        read_drop(bad_table, None)
    assert "table '不存在' not found" in str(err.value)
    assert "s.sqlite" in str(err.value)

    with pytest.raises(SourceError) as err:
        read_drop(source(url), None)
    assert "lacks column(s) ['出生日期']" in str(err.value)
    assert err.value.field == "出生日期"


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="database file not found"):
        read_drop(source("sqlite:///nope.sqlite"), None, base_dir=tmp_path)
    assert not (tmp_path / "nope.sqlite").exists()


def test_bad_cursor_names_the_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    engine, table = make_table(url)
    engine.dispose()
    with pytest.raises(SourceError) as err:
        read_drop(source(url), None, watermark_after="yesterday")
    assert "not a valid datetime" in str(err.value)
    assert err.value.field == "更新时间"
