"""The person frame as a whole: columns, pass-through, missing fields, order, never raising."""

from __future__ import annotations

from datetime import date

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entity_resolution.standardise import PERSON_COLUMNS, PERSON_FIELDS, standardise_persons

TODAY = date(2025, 1, 1)

EXPECTED_SCHEMA = {
    "name": pl.String, "name_norm": pl.String, "name_pinyin": pl.String, "sex": pl.String,
    "birth_date": pl.Date, "id_number": pl.String, "id_upgraded": pl.Boolean,
    "id_valid": pl.Boolean, "id_issue": pl.String, "id_birth_date": pl.Date, "id_sex": pl.String,
    "id_consistent": pl.Boolean, "phone": pl.String, "phone_kind": pl.String,
    "phone_valid": pl.Boolean, "address": pl.String, "addr_district": pl.String,
    "addr_street": pl.String, "addr_community": pl.String, "addr_road": pl.String,
    "addr_number": pl.String, "addr_building": pl.String, "addr_unit": pl.String,
    "addr_room": pl.String, "area_code": pl.String, "area_code_valid": pl.Boolean,
    "source_updated_at": pl.Datetime("us"), "issues": pl.String,
}


def test_output_columns_and_types() -> None:
    out = standardise_persons(pl.DataFrame({"name": ["张伟"]}))
    assert out.columns == list(PERSON_COLUMNS)
    assert dict(out.schema) == EXPECTED_SCHEMA


def test_full_record() -> None:
    raw = pl.DataFrame(
        {
            "record_key": ["s07:0001"],
            "station_id": ["s07"],
            "batch_id": ["b1"],
            "row_number": [1],
            "local_id": ["0001"],
            "name": ["張偉"],
            "sex": ["男"],
            "birth_date": ["1990年3月7日"],
            "id_number": ["'50010319900307123９"],
            "phone": ["+86 138 1234 5678"],
            "address": ["重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室"],
            "area_code": ["500103"],
            "source_updated_at": ["2024-05-01 10:20:30"],
        }
    )
    out = standardise_persons(raw, today=TODAY)
    row = out.row(0, named=True)
    assert row == {
        "record_key": "s07:0001", "station_id": "s07", "batch_id": "b1", "row_number": 1,
        "local_id": "0001",
        "name": "張偉", "name_norm": "张伟", "name_pinyin": "zhang wei", "sex": "M",
        "birth_date": date(1990, 3, 7), "id_number": "500103199003071239", "id_upgraded": False,
        "id_valid": True, "id_issue": None, "id_birth_date": date(1990, 3, 7), "id_sex": "M",
        "id_consistent": True, "phone": "13812345678", "phone_kind": "mobile",
        "phone_valid": True, "address": "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室",
        "addr_district": "渝中区", "addr_street": "解放碑街道", "addr_community": "民族路社区",
        "addr_road": "民族路", "addr_number": "12号", "addr_building": "3栋", "addr_unit": "2单元",
        "addr_room": "501室", "area_code": "500103", "area_code_valid": True,
        "source_updated_at": row["source_updated_at"], "issues": None,
    }
    assert str(row["source_updated_at"]) == "2024-05-01 10:20:30"


def test_pass_through_columns_unchanged_and_first() -> None:
    raw = pl.DataFrame(
        {
            "row_number": [3, 1, 2],
            "name": ["张三", "李四", "王五"],
            "record_key": ["s1:c", "s1:a", "s1:b"],
            "payload": [{"x": 1}, {"x": 2}, None],
        }
    )
    out = standardise_persons(raw)
    assert out.columns[:3] == ["row_number", "record_key", "payload"]
    assert out.select("row_number", "record_key", "payload").equals(
        raw.select("row_number", "record_key", "payload")
    )
    assert out["name"].to_list() == ["张三", "李四", "王五"]  # row order preserved


def test_all_fields_missing() -> None:
    out = standardise_persons(pl.DataFrame({"record_key": ["a", "b"]}))
    assert out.columns == ["record_key", *PERSON_COLUMNS]
    assert out.height == 2
    assert out["issues"].to_list() == ["name: missing; id_number: missing"] * 2
    assert out["id_valid"].to_list() == [False, False]
    assert out["id_consistent"].to_list() == [None, None]


def test_empty_frame() -> None:
    out = standardise_persons(pl.DataFrame(schema={f: pl.String for f in PERSON_FIELDS}))
    assert out.height == 0
    assert dict(out.schema) == {"local_id": pl.String, **EXPECTED_SCHEMA}


def test_non_string_inputs_are_read_as_text() -> None:
    raw = pl.DataFrame(
        {
            "name": ["张伟"],
            "birth_date": [date(1990, 3, 7)],
            "id_number": [500103199003071239],
            "area_code": [500103],
            "phone": [13812345678],
        }
    )
    row = standardise_persons(raw, today=TODAY).row(0, named=True)
    assert row["birth_date"] == date(1990, 3, 7)
    assert row["id_valid"] is True
    assert row["area_code"] == "500103"
    assert row["phone"] == "13812345678"


def test_sex_values() -> None:
    values = ["男", "女", "1", "2", "M", "F", "m", "f", "male", "Female", " 男 ", "Ｍ", "0", "9",
              "未知", None, "", "x"]
    out = standardise_persons(pl.DataFrame({"name": ["张伟"] * len(values), "sex": values,
                                            "id_number": ["11010519491231002X"] * len(values)}))
    assert out["sex"].to_list() == ["M", "F", "M", "F", "M", "F", "M", "F", "M", "F", "M", "M",
                                    None, None, None, None, None, None]
    flagged = [issues is not None and "sex: " in issues for issues in out["issues"]]
    assert flagged == [False] * (len(values) - 1) + [True]
    assert "sex: unrecognised value 'x'" in out["issues"][-1]


_junk = st.one_of(st.none(), st.text(max_size=25),
                  st.sampled_from(["5.00101E+17", "１２", "'", "1990-02-30", "+86", "（）", "·",
                                   "区", "号楼", "\u3000", "\x00"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({f: _junk for f in PERSON_FIELDS}), min_size=1, max_size=8))
def test_never_raises_on_junk(rows: list[dict]) -> None:
    raw = pl.DataFrame(rows, schema={f: pl.String for f in PERSON_FIELDS})
    out = standardise_persons(raw, today=TODAY)
    assert out.height == raw.height
    assert out["local_id"].to_list() == raw["local_id"].to_list()
    assert dict(out.drop("local_id").schema) == EXPECTED_SCHEMA


def test_standardisers_do_not_import_orchestration_or_storage() -> None:
    import subprocess
    import sys

    code = (
        "import sys, entity_resolution.standardise as s; "
        "s.standardise_persons(__import__('polars').DataFrame({'name': ['張偉']})); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'dagster', 'pipelines', 'warehouse', 'sqlalchemy'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
