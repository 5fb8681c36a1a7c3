"""XLSX reader against real workbooks written with xlsxwriter."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers import read_drop

COLUMNS = {"人员编号": "local_id", "姓名": "name", "公民身份号码": "id_number", "出生日期": "birth_date"}


def source(**kw) -> SourceConfig:
    return SourceConfig(name="residents", entity="person", kind="xlsx", path="x.xlsx", columns=COLUMNS, **kw)


def read_rows(src: SourceConfig, path: Path) -> pl.DataFrame:
    chunks = list(read_drop(src, path))
    assert all(c.rejects == [] for c in chunks)
    return pl.concat([c.rows for c in chunks])


def write_people(path: Path, sheet: str = "实有人口") -> None:
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet(sheet)
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws.merge_range(0, 0, 0, 4, "XX派出所实有人口登记表")
    ws.write_row(2, 0, ["人员编号", "姓名", "公民身份号码", "出生日期", "备注"])
    ws.write_string(3, 0, "1")
    ws.write_string(3, 1, "张三")
    ws.write_string(3, 2, "500101199001011234")  # ID stored as text
    ws.write_string(3, 3, "1990-01-01")
    ws.write_number(4, 0, 2)  # local id stored as a number
    ws.write_string(4, 1, " 李四 ")
    ws.write_number(4, 2, 110105194912310000)  # ID stored as a number (Excel keeps 15 digits)
    ws.write_datetime(4, 3, dt.datetime(1949, 12, 31), date_fmt)
    ws.write_number(4, 4, 1.5)
    # row 6 left empty: skipped, not counted
    ws.write_string(6, 0, "3")
    ws.write_string(6, 1, "王五")
    wb.close()


def test_title_row_text_and_numeric_ids(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    write_people(path)
    rows = read_rows(source(), path)

    assert rows.columns == [*COLUMNS, "备注", "__row__", "__row_hash__"]
    assert all(rows.schema[c] == pl.String for c in [*COLUMNS, "备注"])
    assert rows["__row__"].to_list() == [4, 5, 7]  # sheet row numbers
    assert rows["人员编号"].to_list() == ["1", "2", "3"]  # numeric 2 without ".0"
    ids = rows["公民身份号码"].to_list()
    assert ids[0] == "500101199001011234"  # text cell exactly
    assert ids[1] == "110105194912310000"  # numeric cell: integer digits, no float notation
    assert rows["姓名"].to_list() == ["张三", "李四", "王五"]
    assert rows["出生日期"].to_list() == ["1990-01-01", "1949-12-31", None]
    assert rows["备注"].to_list() == [None, "1.5", None]


def test_named_sheet_and_header_row(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("说明").write(0, 0, "本表仅供测试")
    ws = wb.add_worksheet("数据")
    ws.write_row(1, 0, ["人员编号", "姓名", "公民身份号码", "出生日期"])
    ws.write_row(2, 0, ["7", "赵六", "440301200002291234", "2000-02-29"])
    wb.close()
    rows = read_rows(source(sheet="数据", header_row=2), path)
    assert rows.select(*COLUMNS, "__row__").rows() == [("7", "赵六", "440301200002291234", "2000-02-29", 3)]


def test_chunking(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, list(COLUMNS))
    for i in range(1, 11):
        ws.write_row(i, 0, [str(i), f"人{i}", f"id{i}", "1990-01-01"])
    wb.close()
    chunks = list(read_drop(source(chunk_rows=3), path))
    assert [c.rows.height for c in chunks] == [3, 3, 3, 1]
    assert chunks[-1].rows["__row__"].to_list() == [11]


def test_missing_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    write_people(path)
    with pytest.raises(SourceError) as err:
        read_drop(source(sheet="Sheet9"), path)
    assert "sheet 'Sheet9' not found" in str(err.value)
    assert "实有人口" in str(err.value)


def test_malformed_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "not a readable XLSX workbook:" in str(err.value)
    assert err.value.file == str(path)


def test_empty_and_missing_xlsx(tmp_path: Path) -> None:
    empty = tmp_path / "empty.xlsx"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="file is empty"):
        read_drop(source(), empty)
    with pytest.raises(SourceError, match="file not found"):
        read_drop(source(), tmp_path / "missing.xlsx")


def test_header_lacking_column_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["人员编号", "姓名", "出生日期"])
    wb.close()
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "公民身份号码" in str(err.value) and "row 1" in str(err.value)

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["人员编号", "姓名", "公民身份号码", "出生日期", "姓名"])
    wb.close()
    with pytest.raises(SourceError, match="duplicate header '姓名'"):
        read_drop(source(), path)


def test_empty_sheet_and_header_only_sheet(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("空")
    ws = wb.add_worksheet("表头")
    ws.write_row(0, 0, list(COLUMNS))
    wb.close()
    with pytest.raises(SourceError, match="sheet '空' is empty"):
        read_drop(source(), path)
    chunks = list(read_drop(source(sheet="表头"), path))
    assert len(chunks) == 1 and chunks[0].rows.height == 0
    assert chunks[0].rows.columns == [*COLUMNS, "__row__", "__row_hash__"]
