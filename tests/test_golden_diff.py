"""diff_golden: create / update / gone rows with the changed fields' JSON, unchanged entities absent."""

from __future__ import annotations

import json
from datetime import date, datetime

import polars as pl
import pytest

from entity_resolution.golden import diff_golden
from entity_resolution.survivorship import parse_survivorship, survive

FIELDS = ["name_norm", "birth_date", "phone", "updated"]
SCHEMA = {
    "entity_id": pl.String,
    "name_norm": pl.String,
    "birth_date": pl.Date,
    "phone": pl.String,
    "updated": pl.Datetime("us"),
}


def golden(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA, orient="row")


BEFORE = golden(
    ("P1", "张三", date(1990, 3, 7), "13800000001", datetime(2024, 1, 1, 8, 30)),
    ("P2", "李四", None, None, None),
    ("P3", "王五", date(1985, 1, 2), "13800000003", None),
)


def by_id(diff: pl.DataFrame) -> dict[str, dict]:
    return {row["entity_id"]: row for row in diff.iter_rows(named=True)}


def test_create_update_gone_and_unchanged_absent() -> None:
    after = golden(
        ("P1", "张三", date(1990, 3, 7), "13900000009", datetime(2024, 1, 1, 8, 30)),  # phone changed
        ("P2", "李四", None, None, None),  # unchanged
        ("P4", "赵六", date(2001, 12, 31), None, datetime(2025, 6, 1, 0, 0, 1)),  # new
    )
    diff = diff_golden(BEFORE, after, FIELDS)
    assert diff.columns == ["entity_id", "kind", "changed_fields", "before", "after"]
    assert diff.schema["changed_fields"] == pl.List(pl.String)
    assert diff["entity_id"].to_list() == ["P1", "P3", "P4"]  # sorted; P2 absent
    rows = by_id(diff)

    p1 = rows["P1"]
    assert p1["kind"] == "update"
    assert p1["changed_fields"] == ["phone"]
    assert json.loads(p1["before"]) == {"phone": "13800000001"}
    assert json.loads(p1["after"]) == {"phone": "13900000009"}

    p4 = rows["P4"]
    assert p4["kind"] == "create"
    assert p4["changed_fields"] == sorted(FIELDS)
    assert p4["before"] is None
    assert json.loads(p4["after"]) == {
        "birth_date": "2001-12-31", "name_norm": "赵六", "phone": None, "updated": "2025-06-01T00:00:01",
    }
    assert "赵六" in p4["after"]  # not \u-escaped
    assert list(json.loads(p4["after"])) == sorted(FIELDS)  # keys in changed_fields order

    p3 = rows["P3"]
    assert p3["kind"] == "gone"
    assert p3["changed_fields"] == sorted(FIELDS)
    assert json.loads(p3["before"]) == {
        "birth_date": "1985-01-02", "name_norm": "王五", "phone": "13800000003", "updated": None,
    }
    assert p3["after"] is None


def test_nulls_compare_safely_and_several_changes_are_sorted() -> None:
    after = golden(
        ("P1", "张叁", date(1990, 3, 7), None, datetime(2024, 2, 1)),  # name, phone cleared, time
        ("P2", "李四", date(1970, 1, 1), None, None),  # null -> value
        ("P3", "王五", date(1985, 1, 2), "13800000003", None),  # null == null: unchanged
    )
    rows = by_id(diff_golden(BEFORE, after, FIELDS))
    assert set(rows) == {"P1", "P2"}
    assert rows["P1"]["changed_fields"] == ["name_norm", "phone", "updated"]
    assert json.loads(rows["P1"]["before"]) == {
        "name_norm": "张三", "phone": "13800000001", "updated": "2024-01-01T08:30:00",
    }
    assert json.loads(rows["P1"]["after"]) == {"name_norm": "张叁", "phone": None, "updated": "2024-02-01T00:00:00"}
    assert rows["P2"]["changed_fields"] == ["birth_date"]
    assert json.loads(rows["P2"]["before"]) == {"birth_date": None}
    assert json.loads(rows["P2"]["after"]) == {"birth_date": "1970-01-01"}


def test_identical_frames_give_no_rows_and_only_listed_fields_count() -> None:
    assert diff_golden(BEFORE, BEFORE, FIELDS).height == 0
    after = BEFORE.with_columns(pl.lit("x").alias("phone"))
    assert diff_golden(BEFORE, after, ["name_norm", "birth_date"]).height == 0


def test_first_run_against_an_empty_before() -> None:
    empty = pl.DataFrame(schema={"entity_id": pl.String, **{f: pl.Null for f in FIELDS}})
    diff = diff_golden(empty, BEFORE, FIELDS)
    assert diff["kind"].to_list() == ["create"] * 3
    assert json.loads(by_id(diff)["P2"]["after"]) == dict.fromkeys(sorted(FIELDS)) | {"name_norm": "李四"}


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="repeats entity_id"):
        diff_golden(pl.concat([BEFORE, BEFORE.head(1)]), BEFORE, FIELDS)
    with pytest.raises(ValueError, match=r"after lacks column\(s\) \['phone'\]"):
        diff_golden(BEFORE, BEFORE.drop("phone"), FIELDS)


def test_survive_then_diff() -> None:
    """A new record changes one golden field; the diff names that field only."""
    s = parse_survivorship({"fields": {"name_norm": ["most_frequent", "most_recent"], "phone": None}}, source="t")
    base = pl.DataFrame(
        {
            "entity_id": ["P1", "P1", "P2"],
            "record_key": ["s1:1", "s2:1", "s1:2"],
            "station_id": ["s1", "s2", "s1"],
            "batch_id": ["b1", "b1", "b1"],
            "source_updated_at": [datetime(2020, 1, 1), datetime(2021, 1, 1), None],
            "name_norm": ["张三", "张三", "李四"],
            "phone": ["1", "2", None],
        }
    )
    newer = pl.DataFrame(
        {
            "entity_id": ["P1", "P3"],
            "record_key": ["s3:1", "s3:2"],
            "station_id": ["s3", "s3"],
            "batch_id": ["b2", "b2"],
            "source_updated_at": [datetime(2024, 1, 1), datetime(2024, 1, 1)],
            "name_norm": ["张叁", "孙七"],
            "phone": ["3", None],
        }
    )
    g1, _ = survive(base, s)
    g2, prov = survive(pl.concat([base, newer]), s)
    rows = by_id(diff_golden(g1, g2, list(s.fields)))
    assert set(rows) == {"P1", "P3"}
    assert rows["P1"]["changed_fields"] == ["phone"]  # name keeps 张三 (2 of 3)
    assert json.loads(rows["P1"]["after"]) == {"phone": "3"}
    assert rows["P3"]["kind"] == "create"
    assert prov.filter(entity_id="P1", field="phone")["record_key"].to_list() == ["s3:1"]
