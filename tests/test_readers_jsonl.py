"""JSON Lines reader against real files: bad lines, non-objects, numbers, missing keys."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers import read_drop

COLUMNS = {"人员编号": "local_id", "姓名": "name", "公民身份号码": "id_number"}


def source(**kw) -> SourceConfig:
    return SourceConfig(name="residents", entity="person", kind="jsonl", path="x.jsonl", columns=COLUMNS, **kw)


def write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


def test_objects_bad_lines_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_lines(
        path,
        [
            json.dumps({"人员编号": "1", "姓名": "张三", "公民身份号码": "500101199001011234"}, ensure_ascii=False),
            '{"人员编号": "2", "姓名": "李四"',  # truncated
            "",
            '["not", "an", "object"]',
            json.dumps({"人员编号": "3", "姓名": " 王五 ", "备注": "新"}, ensure_ascii=False),
            "42",
        ],
    )
    chunks = list(read_drop(source(), path))
    rows = pl.concat([c.rows for c in chunks])
    rejects = sorted((r for c in chunks for r in c.rejects), key=lambda r: r.row_number)

    assert rows.columns == [*COLUMNS, "备注", "__row__", "__row_hash__"]
    assert rows.select(*COLUMNS, "备注").rows() == [
        ("1", "张三", "500101199001011234", None),
        ("3", "王五", None, "新"),  # missing key -> null; extra key kept
    ]
    assert rows["__row__"].to_list() == [1, 5]
    assert [(r.row_number, r.original) for r in rejects] == [
        (2, '{"人员编号": "2", "姓名": "李四"'),
        (4, '["not", "an", "object"]'),
        (6, "42"),
    ]
    assert rejects[0].reason.startswith("invalid JSON")
    assert rejects[1].reason == "JSON value is not an object (got array)"
    assert rejects[2].reason == "JSON value is not an object (got number)"


def test_non_string_scalars_become_their_text(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_lines(
        path,
        [
            '{"人员编号": 1, "公民身份号码": 500101199001011234, "姓名": null, "身高": 1.75, '
            '"体重": 60.0, "在册": true, "标签": ["a", "b"], "大数": 1e3}'
        ],
    )
    rows = pl.concat([c.rows for c in read_drop(source(), path)])
    row = rows.row(0, named=True)
    assert row["人员编号"] == "1"
    assert row["公民身份号码"] == "500101199001011234"  # exact, not via float
    assert row["姓名"] is None
    assert row["身高"] == "1.75"
    assert row["体重"] == "60"
    assert row["在册"] == "true"
    assert row["标签"] == '["a","b"]'
    assert row["大数"] == "1000"


def test_gbk_jsonl_and_chunking(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_lines(
        path,
        [json.dumps({"人员编号": str(i), "姓名": f"张{i}"}, ensure_ascii=False) for i in range(1, 11)],
        encoding="gbk",
    )
    chunks = list(read_drop(source(chunk_rows=3), path))
    assert [c.rows.height for c in chunks] == [3, 3, 3, 1]
    assert pl.concat([c.rows for c in chunks])["姓名"].to_list() == [f"张{i}" for i in range(1, 11)]


def test_row_hash_ignores_key_order_but_not_values(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_lines(
        path,
        [
            '{"人员编号": "1", "姓名": "张三"}',
            '{"姓名": "张三", "人员编号": "1"}',
            '{"人员编号": "1", "姓名": "张四"}',
        ],
    )
    hashes = pl.concat([c.rows for c in read_drop(source(), path)])["__row_hash__"].to_list()
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


def test_local_id_key_never_present_fails(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    write_lines(path, ['{"编号": "1", "姓名": "张三"}', '{"编号": "2", "姓名": "李四"}'])
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "人员编号" in str(err.value)
    assert "local_id" in str(err.value)


def test_empty_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(SourceError, match="file is empty"):
        read_drop(source(), path)
