"""Addresses: normalised text and its parts; area codes."""

from __future__ import annotations

import polars as pl
import pytest

from entity_resolution.standardise import standardise_organisations, standardise_persons

PARTS = ("addr_district", "addr_street", "addr_community", "addr_road", "addr_number",
         "addr_building", "addr_unit", "addr_room")


def parse(*values: str | None) -> pl.DataFrame:
    frame = pl.DataFrame({"address": list(values)}, schema={"address": pl.String})
    return standardise_persons(frame).select("address", *PARTS)


def parts(value: str | None) -> dict:
    return parse(value).row(0, named=True)


FULL = "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室"


def test_full_chongqing_address() -> None:
    assert parts(FULL) == {
        "address": FULL,
        "addr_district": "渝中区",
        "addr_street": "解放碑街道",
        "addr_community": "民族路社区",
        "addr_road": "民族路",
        "addr_number": "12号",
        "addr_building": "3栋",
        "addr_unit": "2单元",
        "addr_room": "501室",
    }


def test_traditional_fullwidth_and_spaces_normalise_to_the_same_address() -> None:
    variants = [
        "重慶市渝中區解放碑街道民族路社區民族路１２號３棟２單元５０１室",
        " 重庆市 渝中区 解放碑街道 民族路社区 民族路12号 3栋 2单元 501室 ",
        "重庆市渝中区解放碑街道民族路社区民族路１２号３栋２单元５０１室",
    ]
    frame = parse(*variants)
    assert frame["address"].to_list() == [FULL] * 3
    assert frame.select(PARTS).unique().height == 1
    assert frame["addr_number"].to_list() == ["12号"] * 3


def test_province_or_city_prefix_is_stripped_from_parts_but_kept_in_address() -> None:
    with_prefix, without = parse(FULL, FULL.removeprefix("重庆市")).iter_rows(named=True)
    assert with_prefix["address"].startswith("重庆市")
    assert without["address"].startswith("渝中区")
    assert {k: with_prefix[k] for k in PARTS} == {k: without[k] for k in PARTS}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "重庆市渝北区龙溪街道金紫山社区金开大道68号5幢1单元1201",
            ("渝北区", "龙溪街道", "金紫山社区", "金开大道", "68号", "5栋", "1单元", "1201室"),
        ),
        (
            "重庆市沙坪坝区小龙坎街道新村路12号3号楼501",
            ("沙坪坝区", "小龙坎街道", None, "新村路", "12号", "3栋", None, "501室"),
        ),
        (
            "重庆市江津区白沙镇石坝村3组25号",
            ("江津区", "白沙镇", "石坝村", "3组", "25号", None, None, None),
        ),
        (
            "重庆市石柱土家族自治县南宾街道城南社区万安路8附3号",
            ("石柱土家族自治县", "南宾街道", "城南社区", "万安路", "8附3号", None, None, None),
        ),
        (
            "重庆市九龙坡区杨家坪正街12号A栋3-2",
            ("九龙坡区", None, None, "杨家坪正街", "12号", "A栋", None, "3-2室"),
        ),
        (
            "四川省成都市都江堰市幸福镇灌口路5号",
            ("都江堰市", "幸福镇", None, "灌口路", "5号", None, None, None),
        ),
        (
            "都江堰市幸福镇灌口路5号",  # a county-level city is the district, not a prefix
            ("都江堰市", "幸福镇", None, "灌口路", "5号", None, None, None),
        ),
        (
            "北京市海淀区中关村大街27号",  # "…村" followed by a road suffix is a road
            ("海淀区", None, None, "中关村大街", "27号", None, None, None),
        ),
        (
            "新疆维吾尔自治区乌鲁木齐市天山区人民路1号",
            ("天山区", None, None, "人民路", "1号", None, None, None),
        ),
        (
            "重庆市解放碑街道民族路12号",  # district left out
            (None, "解放碑街道", None, "民族路", "12号", None, None, None),
        ),
        (
            "民族路社区民族路12号",  # community not misread as a district
            (None, None, "民族路社区", "民族路", "12号", None, None, None),
        ),
    ],
)
def test_parts(raw: str, expected: tuple) -> None:
    row = parts(raw)
    assert tuple(row[k] for k in PARTS) == expected


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_address(raw: str | None) -> None:
    row = parts(raw)
    assert all(v is None for v in row.values())


def test_unparseable_address_is_kept_with_null_parts() -> None:
    row = parts("不详")
    assert row["address"] == "不详"
    assert all(row[k] is None for k in PARTS)


@pytest.mark.parametrize(
    ("raw", "code", "valid"),
    [
        ("500103", "500103", True),
        ("５００１０３", "500103", True),
        (" 500103001 ", "500103001", True),
        ("500103001001", "500103001001", True),
        ("5001-03", "500103", True),
        ("5001", "5001", False),
        ("abc", None, False),
        (None, None, None),
        ("", None, None),
    ],
)
def test_area_code(raw: str | None, code: str | None, valid: bool | None) -> None:
    frame = standardise_persons(
        pl.DataFrame({"name": ["张伟"], "id_number": ["11010519491231002X"], "area_code": [raw]},
                     schema_overrides={"area_code": pl.String})
    )
    assert frame["area_code"][0] == code
    assert frame["area_code_valid"][0] is valid
    if valid is False:
        assert frame["issues"][0] == f"area_code: not 6, 9 or 12 digits '{raw}'"
    else:
        assert frame["issues"][0] is None


def test_organisation_address_parts() -> None:
    frame = standardise_organisations(pl.DataFrame({"address": [FULL], "area_code": ["500103"]}))
    row = frame.row(0, named=True)
    assert row["address"] == FULL
    assert row["addr_district"] == "渝中区"
    assert row["addr_room"] == "501室"
    assert row["area_code_valid"] is True
