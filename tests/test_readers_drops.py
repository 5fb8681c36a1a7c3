"""Finding drops and versioning them for sensors."""

from __future__ import annotations

import os
from pathlib import Path

from connectors.config import SourceConfig
from connectors.readers import file_version, list_drops

COLUMNS = {"人员编号": "local_id"}


def source(path: str, kind: str = "csv") -> SourceConfig:
    return SourceConfig(name="residents", entity="person", kind=kind, path=path, columns=COLUMNS)


def test_glob_relative_to_base_dir_sorted_by_name(tmp_path: Path) -> None:
    drops = tmp_path / "drops" / "s001"
    drops.mkdir(parents=True)
    for name in ["people_20240103.csv", "people_20240101.csv", "people_20240102.csv", "notes.txt"]:
        (drops / name).write_text("x", encoding="utf-8")
    (drops / "people_dir.csv").mkdir()  # a directory matching the glob is not a drop

    found = list_drops(source("drops/s001/people_*.csv"), tmp_path)

    assert found == [drops / f"people_2024010{i}.csv" for i in (1, 2, 3)]


def test_single_file_absolute_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("x", encoding="utf-8")
    assert list_drops(source(str(path)), Path("/somewhere/else")) == [path]
    assert list_drops(source("people.csv"), tmp_path) == [path]
    assert list_drops(source("absent.csv"), tmp_path) == []


def test_sql_source_has_no_drops(tmp_path: Path) -> None:
    sql = SourceConfig(
        name="db", entity="person", kind="sql", url="sqlite:///x.sqlite", table="t",
        watermark="w", columns=COLUMNS,
    )
    assert list_drops(sql, tmp_path) == []


def test_file_version_changes_when_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("a", encoding="utf-8")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert file_version(path) == "1000000000-1"
    path.write_text("ab", encoding="utf-8")
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    assert file_version(path) == "2000000000-2"
