"""Survivorship: each rule alone and in combination, follow, provenance, settings validation."""

from __future__ import annotations

import copy
import random
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from core.config import load_yaml
from core.errors import ConfigError
from entity_resolution.config import default_resolution_path
from entity_resolution.standardise.addresses import ADDRESS_PART_COLUMNS
from entity_resolution.survivorship import (
    FieldRule,
    SurvivorshipSettings,
    parse_survivorship,
    survive,
)

def shipped_survivorship(entity: str) -> dict:
    """The `survivorship` section of an entity in the bundled resolution.yaml, as data."""
    return copy.deepcopy(load_yaml(default_resolution_path())["entities"][entity]["survivorship"])


T = datetime
SCHEMA = {
    "entity_id": pl.String,
    "record_key": pl.String,
    "station_id": pl.String,
    "batch_id": pl.String,
    "source_updated_at": pl.Datetime("us"),
}
PROVENANCE_COLUMNS = ["entity_id", "field", "value", "record_key", "station_id", "batch_id", "source_updated_at"]


def frame(rows: list[dict], **dtypes: pl.DataType) -> pl.DataFrame:
    """Records with the lineage columns filled in: record_key from the row number, station s1,
    batch b1, no update time, unless the row says otherwise."""
    filled = []
    for i, row in enumerate(rows):
        filled.append(
            {
                "entity_id": "E1",
                "record_key": f"s1:{i:03d}",
                "station_id": "s1",
                "batch_id": "b1",
                "source_updated_at": None,
                **row,
            }
        )
    columns = list(dict.fromkeys(k for row in filled for k in row))
    schema = {c: SCHEMA.get(c) or dtypes.get(c) for c in columns}
    return pl.DataFrame(filled, schema=schema)


def settings(fields: dict, default: list[str] | None = None) -> SurvivorshipSettings:
    data: dict = {"fields": fields}
    if default is not None:
        data["default"] = default
    return parse_survivorship(data, source="test")


def golden_of(records: pl.DataFrame, s: SurvivorshipSettings, entity: str = "E1") -> dict:
    golden, _ = survive(records, s)
    return golden.filter(pl.col("entity_id") == entity).row(0, named=True)


def winner(records: pl.DataFrame, s: SurvivorshipSettings, field: str, entity: str = "E1") -> dict:
    _, prov = survive(records, s)
    rows = prov.filter((pl.col("entity_id") == entity) & (pl.col("field") == field))
    assert rows.height == 1, rows
    return rows.row(0, named=True)


# --------------------------------------------------------------------------- single rules


def test_valid_only_beats_a_more_recent_invalid_id() -> None:
    records = frame(
        [
            {"id_number": "110101199003077777", "id_valid": True, "source_updated_at": T(2019, 1, 1)},
            {"id_number": "110101199003077778", "id_valid": False, "source_updated_at": T(2024, 1, 1)},
            {"id_number": "110101199003077779", "id_valid": None, "source_updated_at": T(2024, 6, 1)},
        ]
    )
    s = settings({"id_number": {"rules": ["valid_only", "most_recent"], "valid_flag": "id_valid"}})
    assert golden_of(records, s)["id_number"] == "110101199003077777"
    prov = winner(records, s, "id_number")
    assert prov["record_key"] == "s1:000"
    assert prov["source_updated_at"] == T(2019, 1, 1)


def test_valid_only_without_any_valid_value_keeps_all_candidates() -> None:
    records = frame(
        [
            {"id_number": "A", "id_valid": False, "source_updated_at": T(2019, 1, 1)},
            {"id_number": "B", "id_valid": None, "source_updated_at": T(2024, 1, 1)},
        ]
    )
    s = settings({"id_number": {"rules": ["valid_only", "most_recent"], "valid_flag": "id_valid"}})
    assert golden_of(records, s)["id_number"] == "B"


def test_valid_only_ignores_records_without_a_value() -> None:
    # The only "valid" record has no value: it is not a candidate, so it cannot hide the others.
    records = frame(
        [
            {"id_number": None, "id_valid": True, "source_updated_at": T(2024, 1, 1)},
            {"id_number": "A", "id_valid": False, "source_updated_at": T(2019, 1, 1)},
        ]
    )
    s = settings({"id_number": {"rules": ["valid_only", "most_recent"], "valid_flag": "id_valid"}})
    assert golden_of(records, s)["id_number"] == "A"


def test_source_priority_picks_the_priority_station_even_if_older() -> None:
    records = frame(
        [
            {"station_id": "s_police", "address": "新址", "source_updated_at": T(2024, 5, 1)},
            {"station_id": "s_hukou", "address": "户籍地址", "source_updated_at": T(2015, 5, 1)},
            {"station_id": "s_other", "address": "别处", "source_updated_at": None},
        ]
    )
    s = settings({"address": {"rules": ["source_priority", "most_recent"], "priority": ["s_hukou", "s_police"]}})
    assert golden_of(records, s)["address"] == "户籍地址"
    assert winner(records, s, "address")["station_id"] == "s_hukou"
    # The first-priority station absent: the second one wins.
    s2 = settings({"address": {"rules": ["source_priority", "most_recent"], "priority": ["s_x", "s_other"]}})
    assert golden_of(records, s2)["address"] == "别处"


def test_source_priority_is_a_no_op_when_no_station_is_listed() -> None:
    records = frame(
        [
            {"station_id": "s2", "address": "旧", "source_updated_at": T(2015, 5, 1)},
            {"station_id": "s3", "address": "新", "source_updated_at": T(2024, 5, 1)},
        ]
    )
    for priority in ([], ["s9"]):
        s = settings({"address": {"rules": ["source_priority", "most_recent"], "priority": priority}})
        assert golden_of(records, s)["address"] == "新"


def test_most_recent_null_time_loses_and_null_values_are_no_candidates() -> None:
    records = frame(
        [
            {"phone": "13800000001", "source_updated_at": T(2020, 1, 1)},
            {"phone": "13800000002", "source_updated_at": None},
            {"phone": None, "source_updated_at": T(2025, 1, 1)},  # newest, but no phone
        ]
    )
    s = settings({"phone": {"rules": ["most_recent"]}})
    assert golden_of(records, s)["phone"] == "13800000001"


def test_most_frequent_wins_over_a_more_recent_single_value() -> None:
    records = frame(
        [
            {"name_norm": "张三", "source_updated_at": T(2010, 1, 1)},
            {"name_norm": "张三", "source_updated_at": T(2012, 1, 1)},
            {"name_norm": "张叁", "source_updated_at": T(2024, 1, 1)},
        ]
    )
    s = settings({"name_norm": {"rules": ["most_frequent", "most_recent"]}})
    assert golden_of(records, s)["name_norm"] == "张三"
    # Provenance: the more recent of the two records that hold the winning value.
    assert winner(records, s, "name_norm")["record_key"] == "s1:001"


def test_most_frequent_tie_falls_to_most_recent() -> None:
    records = frame(
        [
            {"name_norm": "张三", "source_updated_at": T(2010, 1, 1)},
            {"name_norm": "张叁", "source_updated_at": T(2011, 1, 1)},
            {"name_norm": "张三", "source_updated_at": T(2012, 1, 1)},
            {"name_norm": "张叁", "source_updated_at": T(2023, 1, 1)},
        ]
    )
    s = settings({"name_norm": {"rules": ["most_frequent", "most_recent"]}})
    assert golden_of(records, s)["name_norm"] == "张叁"
    assert winner(records, s, "name_norm")["record_key"] == "s1:003"


def test_rule_order_matters() -> None:
    records = frame(
        [
            {"sex": "男", "source_updated_at": T(2010, 1, 1)},
            {"sex": "男", "source_updated_at": T(2011, 1, 1)},
            {"sex": "女", "source_updated_at": T(2020, 1, 1)},
            {"sex": "女", "source_updated_at": T(2020, 1, 1), "batch_id": "b2"},
            {"sex": "男", "source_updated_at": T(2020, 1, 1)},
        ]
    )
    # most_frequent first: 男 (3) beats 女 (2).
    assert golden_of(records, settings({"sex": ["most_frequent", "most_recent"]}))["sex"] == "男"
    # most_recent first: the 2020 records only, among which 女 (2) beats 男 (1).
    s = settings({"sex": ["most_recent", "most_frequent"]})
    assert golden_of(records, s)["sex"] == "女"
    assert winner(records, s, "sex")["batch_id"] == "b2"  # tie-break: the largest batch


def test_most_frequent_counts_only_the_remaining_candidates() -> None:
    records = frame(
        [
            {"id_number": "X", "id_valid": False},
            {"id_number": "X", "id_valid": False},
            {"id_number": "X", "id_valid": False},
            {"id_number": "A", "id_valid": True},
            {"id_number": "B", "id_valid": True, "source_updated_at": T(2020, 1, 1)},
            {"id_number": "A", "id_valid": True},
        ]
    )
    s = settings({"id_number": {"rules": ["valid_only", "most_frequent"], "valid_flag": "id_valid"}})
    assert golden_of(records, s)["id_number"] == "A"


def test_most_complete_keeps_the_longest_value() -> None:
    records = frame(
        [
            {"address": "重庆市渝中区解放碑街道民族路88号", "source_updated_at": T(2015, 1, 1)},
            {"address": "民族路88号", "source_updated_at": T(2024, 1, 1)},
            {"address": "重庆市渝中区民族路88号", "source_updated_at": T(2023, 1, 1)},
        ]
    )
    s = settings({"address": ["most_complete", "most_recent"]})
    assert golden_of(records, s)["address"] == "重庆市渝中区解放碑街道民族路88号"
    assert winner(records, s, "address")["record_key"] == "s1:000"


def test_final_tie_break_recent_then_largest_batch_then_smallest_record_key() -> None:
    same = T(2022, 2, 2)
    records = frame(
        [
            {"record_key": "s1:3", "batch_id": "b1", "phone": "1", "source_updated_at": same},
            {"record_key": "s1:2", "batch_id": "b2", "phone": "2", "source_updated_at": same},
            {"record_key": "s1:1", "batch_id": "b2", "phone": "3", "source_updated_at": same},
            {"record_key": "s1:0", "batch_id": "b9", "phone": "4", "source_updated_at": None},
        ]
    )
    # No rules at all ("most_complete" ties everywhere): recency, then batch, then record key.
    s = settings({"phone": ["most_complete"]})
    assert golden_of(records, s)["phone"] == "3"
    assert winner(records, s, "phone")["record_key"] == "s1:1"


def test_default_rules_apply_to_fields_listed_without_rules() -> None:
    records = frame(
        [
            {"phone": "1", "source_updated_at": T(2010, 1, 1)},
            {"phone": "1", "source_updated_at": T(2011, 1, 1)},
            {"phone": "2", "source_updated_at": T(2024, 1, 1)},
        ]
    )
    assert golden_of(records, settings({"phone": None}))["phone"] == "2"  # default: most_recent
    assert golden_of(records, settings({"phone": {}}, default=["most_frequent"]))["phone"] == "1"


def test_combined_person_defaults() -> None:
    """Default person settings on one resident seen by three stations."""
    rows = [
        # household-registration station: old, valid ID, full address
        {"record_key": "s_hk:1", "station_id": "s_hk", "source_updated_at": T(2016, 3, 1),
         "name_norm": "王小明", "sex": "男", "birth_date": date(1990, 3, 7),
         "id_number": "110101199003077777", "id_valid": True, "phone": "13800000001",
         "address": "渝中区解放碑街道民族路88号", "addr_district": "渝中区", "addr_street": "解放碑街道",
         "addr_road": "民族路", "addr_number": "88号", "area_code": "500103"},
        # patrol station: recent, mistyped (invalid) ID, new phone, another address
        {"record_key": "s_pa:9", "station_id": "s_pa", "source_updated_at": T(2024, 8, 1),
         "name_norm": "王晓明", "sex": "男", "birth_date": date(1990, 3, 7),
         "id_number": "110101199003077778", "id_valid": False, "phone": "13900000002",
         "address": "江北区观音桥街道建新北路1号", "addr_district": "江北区", "addr_street": None,
         "addr_road": "建新北路", "addr_number": "1号", "area_code": "500105"},
        # third station: agrees on the name, no address, no time
        {"record_key": "s_x:4", "station_id": "s_x", "source_updated_at": None,
         "name_norm": "王小明", "sex": None, "birth_date": date(1990, 7, 3),
         "id_number": None, "id_valid": None, "phone": None,
         "address": None, "addr_district": None, "addr_street": None,
         "addr_road": None, "addr_number": None, "area_code": None},
    ]
    data = shipped_survivorship("person")
    data["fields"]["address"]["priority"] = ["s_hk"]
    s = parse_survivorship(data, source="defaults")
    records = frame(rows, birth_date=pl.Date, id_valid=pl.Boolean).with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in ADDRESS_PART_COLUMNS if c not in rows[0]
    )
    golden, prov = survive(records, s)
    g = golden.row(0, named=True)
    assert g["name_norm"] == "王小明"  # 2 of 3
    assert g["birth_date"] == date(1990, 3, 7)  # 2 of 3
    assert g["id_number"] == "110101199003077777"  # valid beats more recent invalid
    assert g["phone"] == "13900000002"  # most recent
    assert g["address"] == "渝中区解放碑街道民族路88号"  # priority station, although older
    assert (g["addr_district"], g["addr_street"], g["area_code"]) == ("渝中区", "解放碑街道", "500103")
    from_hk = prov.filter(pl.col("field").is_in(["address", "addr_district", "addr_road", "area_code"]))
    assert from_hk["record_key"].unique().to_list() == ["s_hk:1"]
    assert prov.filter(field="birth_date")["value"].to_list() == ["1990-03-07"]


# --------------------------------------------------------------------------- follow


def _address_settings(priority: list[str] | None = None) -> SurvivorshipSettings:
    return settings(
        {
            "address": {"rules": ["source_priority", "most_recent"], "priority": priority or []},
            "addr_district": {"follow": "address"},
            "addr_street": {"follow": "address"},
            "area_code": {"follow": "address"},
        }
    )


def test_follow_keeps_address_parts_from_the_winning_record() -> None:
    records = frame(
        [
            {"address": "江北区建新北路1号", "addr_district": "江北区", "addr_street": None,
             "area_code": "500105", "source_updated_at": T(2024, 1, 1)},
            {"address": "渝中区解放碑街道民族路88号", "addr_district": "渝中区", "addr_street": "解放碑街道",
             "area_code": "500103", "source_updated_at": T(2016, 1, 1)},
            # newest street and area code, but no address: never stitched in
            {"address": None, "addr_district": None, "addr_street": "观音桥街道",
             "area_code": "500199", "source_updated_at": T(2025, 1, 1)},
        ]
    )
    g = golden_of(records, _address_settings())
    assert (g["address"], g["addr_district"], g["addr_street"], g["area_code"]) == (
        "江北区建新北路1号", "江北区", None, "500105",
    )
    _, prov = survive(records, _address_settings())
    assert set(prov["field"]) == {"address", "addr_district", "area_code"}  # null street: no row
    assert prov["record_key"].unique().to_list() == ["s1:000"]
    # With a priority station, the parts switch together.
    records = records.with_columns(
        pl.when(pl.col("record_key") == "s1:001").then(pl.lit("s_hk")).otherwise("station_id").alias("station_id")
    )
    g = golden_of(records, _address_settings(["s_hk"]))
    assert (g["address"], g["addr_district"], g["addr_street"], g["area_code"]) == (
        "渝中区解放碑街道民族路88号", "渝中区", "解放碑街道", "500103",
    )


def test_follower_falls_back_to_default_rules_when_the_leader_has_no_value() -> None:
    records = frame(
        [
            {"entity_id": "E1", "address": None, "addr_district": None, "addr_street": "甲街道",
             "area_code": "500101", "source_updated_at": T(2020, 1, 1)},
            {"entity_id": "E1", "address": None, "addr_district": None, "addr_street": None,
             "area_code": "500102", "source_updated_at": T(2021, 1, 1)},
            {"entity_id": "E2", "address": "某地", "addr_district": None, "addr_street": None,
             "area_code": "500109", "source_updated_at": T(2021, 1, 1)},
        ]
    )
    golden, prov = survive(records, _address_settings())
    rows = {r["entity_id"]: r for r in golden.iter_rows(named=True)}
    assert rows["E1"]["address"] is None
    assert rows["E1"]["addr_street"] == "甲街道"  # default most_recent over its own values
    assert rows["E1"]["area_code"] == "500102"
    assert rows["E2"]["area_code"] == "500109"
    assert prov.filter(entity_id="E1", field="area_code")["record_key"].to_list() == ["s1:001"]


# --------------------------------------------------------------------------- output shape


def test_all_null_entity_gets_a_row_and_no_provenance() -> None:
    records = frame(
        [
            {"entity_id": "E1", "phone": "1", "birth_date": date(2000, 1, 1)},
            {"entity_id": "E2", "phone": None, "birth_date": None},
            {"entity_id": "E2", "phone": None, "birth_date": None},
        ],
        birth_date=pl.Date,
    )
    golden, prov = survive(records, settings({"phone": None, "birth_date": None}))
    assert golden.to_dicts() == [
        {"entity_id": "E1", "phone": "1", "birth_date": date(2000, 1, 1)},
        {"entity_id": "E2", "phone": None, "birth_date": None},
    ]
    assert prov["entity_id"].to_list() == ["E1", "E1"]


def test_output_schema_dtypes_and_provenance_values() -> None:
    records = frame(
        [
            {"entity_id": "B", "n": 7, "d": date(1990, 3, 7), "flag": True, "t": T(2020, 1, 2, 3, 4, 5),
             "record_key": "s2:9", "station_id": "s2", "batch_id": "s2/x/abc",
             "source_updated_at": T(2023, 4, 5, 6, 7, 8)},
            {"entity_id": "A", "n": None, "d": None, "flag": None, "t": None},
        ],
        n=pl.Int64, d=pl.Date, flag=pl.Boolean, t=pl.Datetime("us"),
    )
    golden, prov = survive(records, settings({"n": None, "d": None, "flag": None, "t": None}))
    assert golden.schema == pl.Schema(
        {"entity_id": pl.String, "n": pl.Int64, "d": pl.Date, "flag": pl.Boolean, "t": pl.Datetime("us")}
    )
    assert golden["entity_id"].to_list() == ["A", "B"]  # sorted
    assert prov.columns == PROVENANCE_COLUMNS
    assert prov.schema["value"] == pl.String
    assert prov.schema["source_updated_at"] == pl.Datetime("us")
    assert prov.select("field", "value").rows() == [
        ("n", "7"), ("d", "1990-03-07"), ("flag", "true"), ("t", "2020-01-02T03:04:05"),
    ]
    assert set(prov.select("entity_id", "record_key", "station_id", "batch_id", "source_updated_at").rows()) == {
        ("B", "s2:9", "s2", "s2/x/abc", T(2023, 4, 5, 6, 7, 8))
    }


def test_empty_records() -> None:
    records = frame([{"phone": "1"}]).head(0)
    golden, prov = survive(records, settings({"phone": None}))
    assert golden.columns == ["entity_id", "phone"] and golden.height == 0
    assert prov.columns == PROVENANCE_COLUMNS and prov.height == 0


def test_custom_entity_column_and_missing_columns() -> None:
    records = frame([{"phone": "1"}]).rename({"entity_id": "org_id"})
    golden, prov = survive(records, settings({"phone": None}), entity_col="org_id")
    assert golden.columns == ["org_id", "phone"]
    assert prov.columns[0] == "org_id"
    with pytest.raises(ValueError, match=r"lack column\(s\) \['entity_id'\]"):
        survive(records, settings({"phone": None}))
    with pytest.raises(ValueError, match="id_valid"):
        survive(records, settings({"phone": {"rules": ["valid_only"], "valid_flag": "id_valid"}}), entity_col="org_id")


# --------------------------------------------------------------------------- against a reference


def _reference(rows: list[dict], s: SurvivorshipSettings) -> tuple[dict, dict]:
    """Per-entity Python loops, written straight from the rule definitions."""

    def tie_break(cands: list[dict]) -> dict:
        ordered = sorted(cands, key=lambda r: r["record_key"])
        ordered = sorted(ordered, key=lambda r: r["batch_id"], reverse=True)
        ordered = sorted(ordered, key=lambda r: r["source_updated_at"] is None)
        ordered = sorted(ordered, key=lambda r: r["source_updated_at"] or T(1, 1, 1), reverse=True)
        ordered = sorted(ordered, key=lambda r: r["source_updated_at"] is None)
        return ordered[0]

    def pick(recs: list[dict], field: str, rule: FieldRule | None, rules: list[str]) -> dict | None:
        cands = [r for r in recs if r[field] is not None]
        for name in rules:
            if not cands:
                return None
            if name == "valid_only":
                valid = [r for r in cands if r[rule.valid_flag]]
                cands = valid or cands
            elif name == "source_priority" and rule.priority:
                rank = {st: i for i, st in enumerate(rule.priority)}
                best = min(rank.get(r["station_id"], len(rank)) for r in cands)
                cands = [r for r in cands if rank.get(r["station_id"], len(rank)) == best]
            elif name == "most_recent":
                times = [r["source_updated_at"] for r in cands if r["source_updated_at"] is not None]
                if times:
                    cands = [r for r in cands if r["source_updated_at"] == max(times)]
            elif name == "most_frequent":
                counts = Counter(str(r[field]) for r in cands)
                top = max(counts.values())
                cands = [r for r in cands if counts[str(r[field])] == top]
            elif name == "most_complete":
                longest = max(len(str(r[field])) for r in cands)
                cands = [r for r in cands if len(str(r[field])) == longest]
        return tie_break(cands) if cands else None

    by_entity: dict[str, list[dict]] = {}
    for r in rows:
        by_entity.setdefault(r["entity_id"], []).append(r)
    golden, source = {}, {}
    for entity, recs in by_entity.items():
        won = {f: pick(recs, f, s.fields[f], s.rules_for(f)) for f in s.leaders()}
        for f, rule in s.fields.items():
            if rule.follow is not None:
                lead = won[rule.follow]
                won[f] = lead if lead is not None else pick(recs, f, None, list(s.default))
        golden[entity] = {f: (w[f] if w else None) for f, w in won.items()}
        source[entity] = {f: w["record_key"] for f, w in won.items() if w and w[f] is not None}
    return golden, source


def _random_records(seed: int, n: int = 1500) -> pl.DataFrame:
    rng = random.Random(seed)
    times = [None, T(2020, 1, 1), T(2021, 6, 1), T(2022, 1, 1), T(2023, 3, 3)]

    def maybe(values: list) -> object:
        return rng.choice([*values, None])

    rows = []
    for i in range(n):
        rows.append(
            {
                "entity_id": f"E{rng.randrange(n // 4):04d}",
                "record_key": f"s:{i:05d}",
                "station_id": rng.choice(["s1", "s2", "s3", "s4"]),
                "batch_id": rng.choice(["b1", "b2", "b3"]),
                "source_updated_at": rng.choice(times),
                "name_norm": maybe(["张三", "张叁", "张三丰"]),
                "id_number": maybe(["110101199003077777", "11010119900307777X", "1101011990030777"]),
                "id_valid": maybe([True, False]),
                "birth_date": maybe([date(1990, 3, 7), date(1990, 7, 3)]),
                "address": maybe(["甲地", "乙地一号", "丙地二十号"]),
                "addr_district": maybe(["甲区", "乙区"]),
                "area_code": maybe(["500101", "500102"]),
            }
        )
    schema = {**SCHEMA, "id_valid": pl.Boolean, "birth_date": pl.Date}
    return pl.DataFrame(rows, schema={k: schema.get(k, pl.String) for k in rows[0]})


RANDOM_CONFIGS = [
    {
        "name_norm": ["most_frequent", "most_recent"],
        "id_number": {"rules": ["valid_only", "most_frequent", "most_recent"], "valid_flag": "id_valid"},
        "birth_date": ["most_recent", "most_frequent"],
        "address": {"rules": ["source_priority", "most_recent"], "priority": ["s3", "s1"]},
        "addr_district": {"follow": "address"},
        "area_code": {"follow": "address"},
    },
    {
        "name_norm": ["most_complete", "most_frequent"],
        "id_number": {"rules": ["most_frequent", "valid_only"], "valid_flag": "id_valid"},
        "birth_date": None,
        "address": ["most_complete"],
        "addr_district": {"follow": "name_norm"},
        "area_code": {"rules": ["source_priority", "most_frequent", "most_recent"], "priority": ["s4"]},
    },
]


@pytest.mark.parametrize("config", range(len(RANDOM_CONFIGS)))
def test_matches_a_per_entity_reference_on_random_records(config: int) -> None:
    records = _random_records(seed=config)
    s = settings(RANDOM_CONFIGS[config], default=["most_frequent", "most_recent"])
    golden, prov = survive(records, s)
    expected, sources = _reference(records.to_dicts(), s)
    assert golden.height == len(expected)
    for row in golden.iter_rows(named=True):
        assert {f: row[f] for f in s.fields} == expected[row["entity_id"]], row["entity_id"]
    got_sources: dict[str, dict] = {}
    for entity, field, key in prov.select("entity_id", "field", "record_key").iter_rows():
        got_sources.setdefault(entity, {})[field] = key
    assert got_sources == {e: src for e, src in sources.items() if src}
    # Provenance lineage is that of the named record.
    joined = prov.join(records, on="record_key", suffix="_rec")
    assert joined.height == prov.height
    for col in ("entity_id", "station_id", "batch_id", "source_updated_at"):
        assert joined[col].eq_missing(joined[f"{col}_rec"]).all(), col


def test_deterministic_under_row_shuffling() -> None:
    records = _random_records(seed=7, n=2000)
    s = settings(RANDOM_CONFIGS[0])
    golden, prov = survive(records, s)
    for seed in range(3):
        g2, p2 = survive(records.sample(fraction=1.0, shuffle=True, seed=seed), s)
        assert g2.equals(golden)
        assert p2.equals(prov)


# --------------------------------------------------------------------------- settings


def test_shipped_defaults_parse() -> None:
    person = parse_survivorship(shipped_survivorship("person"), source="resolution.yaml")
    org = parse_survivorship(shipped_survivorship("organisation"), source="resolution.yaml")
    for s in (person, org):
        assert s.default == ["most_recent"]
        assert all(s.fields[p].follow == "address" for p in (*ADDRESS_PART_COLUMNS, "area_code"))
    assert person.fields["id_number"].valid_flag == "id_valid"
    assert org.fields["credit_code"].valid_flag == "credit_code_valid"
    assert person.rules_for("phone") == ["most_recent"]
    assert set(org.leaders()) == {"name_norm", "credit_code", "legal_rep_norm", "phone", "address"}


def _error(data: object, key: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        parse_survivorship(data, source=Path("/cfg/resolution.yaml"), key=key)
    message = str(info.value)
    assert message.startswith("/cfg/resolution.yaml: invalid survivorship configuration"), message
    return message


@pytest.mark.parametrize(
    ("fields", "where", "what"),
    [
        ({"phone": ["most_recnet"]}, "fields.phone.rules.0", "most_recnet"),
        ({"id_number": ["valid_only"]}, "fields.id_number", "valid_only needs valid_flag"),
        ({"id_number": {"rules": ["most_recent"], "valid_flag": "id_valid"}}, "fields.id_number",
         "valid_flag is only used by rule valid_only"),
        ({"address": {"rules": ["most_recent"], "priority": ["s1"]}}, "fields.address",
         "priority is only used by rule source_priority"),
        ({"address": {"rules": ["source_priority"], "priority": ["s1", "s1"]}}, "fields.address",
         "more than once"),
        ({"phone": ["most_recent", "most_recent"]}, "fields.phone", "must not repeat"),
        ({"phone": {"rules": ["most_recent"], "colour": 1}}, "fields.phone.colour", "unknown key"),
        ({"addr_room": {"follow": "address"}}, "(top level)", "not a configured field"),
        ({"address": None, "addr_road": {"follow": "address"}, "addr_room": {"follow": "addr_road"}},
         "(top level)", "follow the leading field directly"),
        ({"address": None, "addr_room": {"follow": "address", "rules": ["most_recent"]}},
         "fields.addr_room", "takes no rules"),
        ({"record_key": None}, "(top level)", "not allowed as a golden field name"),
        ({}, "fields", "at least 1"),
    ],
)
def test_bad_settings_name_file_key_and_expectation(fields: dict, where: str, what: str) -> None:
    message = _error({"fields": fields})
    assert f"  - {where}: " in message, message
    assert what in message, message


def test_bad_default_and_key_prefix() -> None:
    message = _error({"fields": {"phone": None}, "default": ["valid_only"]}, key="entities.person.survivorship")
    assert "  - entities.person.survivorship.default.0: " in message, message
    assert "'valid_only'" in message
    assert "unknown key" in _error({"fields": {"phone": None}, "defaults": []})
    assert "  - (top level): " in _error(["phone"])
