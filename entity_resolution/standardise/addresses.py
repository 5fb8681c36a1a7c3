"""Free-text Chinese addresses: one normalised string plus the parts used by blocking and comparison.

Chinese addresses run from the largest unit to the smallest without separators
(重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室), so the parts are peeled off the front
in that order with short anchored regexes: province/municipality, prefecture city, district, street
(街道/镇/乡), community (社区/村); the remainder then yields road, number, building, unit and room.
Short anchored patterns are used instead of one large pattern because the regex engine's capture
pass is then bounded by a few characters per step instead of the whole address (measured about
twice as fast on a million rows).

The leading province or city is stripped from the parts only: stations disagree on whether they
write it, so comparing parts without it makes their addresses agree; `address` keeps it.

Each name-part pattern excludes the characters that end a smaller unit (路, 社, 号, ...), which is
what stops "民族路社区" from being read as a district when a station leaves the district out.

Building, unit and room come out in one canonical form whatever way a station wrote them, since a
dwelling (one room) is identified by them: 3栋 / 3幢 / 3号楼 / 3座 / 三栋 / 3#楼 -> "3栋",
二单元 / 2单元 -> "2单元", 501室 / 501 / 501号 -> "501室", and the compact "12号3-2-501"
(building-unit-room) or "12号3-501" (building-room) -> "3栋", "2单元", "501室". A village's
group (村民小组: 石坝村3组25号) is the road of a rural address, so it goes to `addr_road` ("3组")
when there is no road: without it, two houses of one village with the same number would be one.
"""

from __future__ import annotations

import polars as pl

from entity_resolution.standardise.text import normalise_text, normalise_text_value, py_regex

ADDRESS_PART_COLUMNS = (
    "addr_district", "addr_street", "addr_community", "addr_road", "addr_number",
    "addr_building", "addr_unit", "addr_room",
)

# Characters that cannot occur inside the name of a unit of that level (they end smaller units).
_NOT_IN_REGION = "省市区县街镇乡村社路小号栋幢楼单室巷"
_NOT_IN_STREET = "省市区县镇乡村社路号栋幢楼单室巷"
# 街 and 巷 may be in a community's name (青年街社区, 八一巷社区: named after their road); a
# match that holds a whole street (…街道…社区) is refused after the match instead.
_NOT_IN_COMMUNITY = "省市区县镇乡号栋幢楼单室"


def _han_except(chars: str, low: int, high: int) -> str:
    return rf"[\p{{Han}}--[{chars}]]{{{low},{high}}}?"


PROVINCE = (
    r"^((?:中国|中华人民共和国)?(?:(?:北京|天津|上海|重庆)市|"
    + _han_except("省市区县", 2, 6)
    + r"(?:省|自治区|特别行政区)))"
)
CITY_AND_DISTRICT = (
    r"^(" + _han_except(_NOT_IN_REGION, 1, 8) + r"(?:市|自治州|地区|盟))"
    r"(" + _han_except(_NOT_IN_REGION, 1, 10) + r"(?:区|县|市|旗))"
)
DISTRICT = r"^(" + _han_except(_NOT_IN_REGION, 1, 10) + r"(?:区|县|市|旗))"
# A street named after a road (两路街道, 南京东路街道) may hold 路 when it ends in 街道.
STREET = (r"^(" + _han_except(_NOT_IN_STREET, 1, 10) + r"(?:街道|镇|乡)|"
          + _han_except(_NOT_IN_STREET.replace("路", ""), 1, 10) + r"街道)")
COMMUNITY = r"^(" + _han_except(_NOT_IN_COMMUNITY, 1, 10) + r"(?:社区|村))"

_ROAD_SUFFIX = r"(?:大道|路|街|巷|道)"
ROAD = r"^(\p{Han}*?" + _ROAD_SUFFIX + ")"
NUMBER = r"([0-9]+(?:[-附之][0-9]+)?号)(?:[^楼]|$)"
_CN_DIGITS = "一二三四五六七八九十"
# The id of a building, unit, room or group (the part without its suffix); canonicalised below.
BUILDING = rf"([0-9]+|[0-9]*[A-Za-z]|[{_CN_DIGITS}]+)(?:号楼|#楼|#|栋|幢|座)"
UNIT = rf"([0-9]+|[{_CN_DIGITS}]+)单元"
ROOM = r"([0-9]+(?:-[0-9]+)?)室"
BARE_ROOM = r"(?:单元|栋|幢|座|楼|号|#)([0-9]+(?:-[0-9]+)?)号?$"
# "12号3-2-501" (building-unit-room) and "12号3-501" (building-room), right after the number.
COMPACT3 = r"号([0-9]+|[0-9]*[A-Za-z])-([0-9]+)-([0-9]+)$"
COMPACT2 = r"号([0-9]+|[0-9]*[A-Za-z])-([0-9]+)$"
GROUP = rf"^([0-9]+|[{_CN_DIGITS}]+)组"


def _chinese_numerals() -> dict[str, str]:
    """一 .. 九十九 -> "1" .. "99" (building, unit and group numbers are small)."""
    units = dict(zip(_CN_DIGITS[:9], "123456789", strict=True))
    out = dict(units)
    for tens_char, tens in [("", 1), *((c, int(d)) for c, d in units.items())]:
        out[f"{tens_char}十"] = str(tens * 10)
        for c, d in units.items():
            out[f"{tens_char}十{c}"] = str(tens * 10 + int(d))
    return out


CHINESE_NUMERALS = _chinese_numerals()


def _arabic(expr: pl.Expr) -> pl.Expr:
    """A part's id with Chinese numerals written as digits ("三" -> "3"); others unchanged."""
    return expr.replace(CHINESE_NUMERALS)


def _canonical(expr: pl.Expr, suffix: str) -> pl.Expr:
    return pl.concat_str(_arabic(expr).str.to_uppercase(), pl.lit(suffix))


def _canonical_value(part: str | None, suffix: str) -> str | None:
    """Per-value `_canonical` (the ids are ASCII digits, Latin letters or Chinese numerals)."""
    return None if part is None else CHINESE_NUMERALS.get(part, part).upper() + suffix

_SCRATCH = "__ad_"


def normalise_address(expr: pl.Expr) -> pl.Expr:
    """`address`: simplified, half-width (digits to ASCII), no whitespace; blank -> null."""
    return normalise_text(expr)


def _peel(lf: pl.LazyFrame, rest: str, pattern: str, part: str) -> pl.LazyFrame:
    """Extract `part` from the front of column `rest` and remove it from `rest`."""
    lf = lf.with_columns(pl.col(rest).str.extract(pattern, 1).alias(part))
    return lf.with_columns(pl.col(rest).str.strip_prefix(pl.col(part).fill_null("")))


def with_address(lf: pl.LazyFrame, raw_address: pl.Expr) -> pl.LazyFrame:
    """Add `address` and ADDRESS_PART_COLUMNS (a part that is absent is null)."""
    s = _SCRATCH
    rest = f"{s}rest"
    lf = lf.with_columns(normalise_address(raw_address).alias("address"))
    lf = lf.with_columns(pl.col("address").alias(rest))
    lf = _peel(lf, rest, PROVINCE, f"{s}province")

    pair = pl.col(rest).str.extract_groups(CITY_AND_DISTRICT)
    lf = lf.with_columns(
        pair.struct.field("1").alias(f"{s}city"), pair.struct.field("2").alias(f"{s}district")
    )
    lf = lf.with_columns(
        pl.col(rest).str.strip_prefix(
            pl.concat_str(pl.col(f"{s}city"), pl.col(f"{s}district")).fill_null("")
        )
    )
    lf = _peel(lf, rest, DISTRICT, f"{s}district_only")
    lf = lf.with_columns(
        pl.coalesce(pl.col(f"{s}district"), pl.col(f"{s}district_only")).alias("addr_district")
    )
    lf = _peel(lf, rest, STREET, "addr_street")
    community_match = pl.col(rest).str.extract(COMMUNITY, 1)
    lf = lf.with_columns(
        pl.when(community_match.str.contains("街道")).then(None).otherwise(community_match).alias(f"{s}community"))
    lf = lf.with_columns(pl.col(rest).str.strip_prefix(pl.col(f"{s}community").fill_null("")))

    r = pl.col(rest)
    lf = lf.with_columns(r.str.extract(ROAD, 1).alias(f"{s}road"))
    community, road = pl.col(f"{s}community"), pl.col(f"{s}road")
    # "新村路12号", "中关村大街27号": the community pattern took "…村", but a bare road suffix
    # (路, 大街, 东路) straight after it shows that it was the start of a road name instead.
    community_was_road = (
        community.str.ends_with("村").fill_null(False) & (road.str.len_chars() <= 2).fill_null(False)
    )
    compact3 = r.str.extract_groups(COMPACT3)
    building = r.str.extract(BUILDING, 1)
    compact2 = pl.when(building.is_null()).then(r.str.extract_groups(COMPACT2))
    lf = lf.with_columns(
        pl.when(community_was_road).then(None).otherwise(community).alias("addr_community"),
        pl.when(community_was_road)
        .then(pl.concat_str(community, road))
        .when(road.str.len_chars() > 1)
        .then(road)
        .otherwise(_canonical(r.str.extract(GROUP, 1), "组"))
        .alias("addr_road"),
        r.str.extract(NUMBER, 1).alias("addr_number"),
        _canonical(pl.coalesce(building, compact3.struct.field("1"), compact2.struct.field("1")), "栋")
        .alias("addr_building"),
        _canonical(pl.coalesce(r.str.extract(UNIT, 1), compact3.struct.field("2")), "单元").alias("addr_unit"),
        _canonical(pl.coalesce(compact3.struct.field("3"), compact2.struct.field("2"), r.str.extract(ROOM, 1),
                               r.str.extract(BARE_ROOM, 1)), "室").alias("addr_room"),
    )
    return lf.drop(
        rest, f"{s}province", f"{s}city", f"{s}district", f"{s}district_only",
        f"{s}community", f"{s}road",
    )


# ---------------------------------------------------------------------------------------------
# Per-value twin (standardise/rows.py): `with_address` for one value, the same patterns in order.


def _group(pattern: str, text: str, group: int = 1) -> str | None:
    """`str.extract(pattern, group)`: the group of the first match, None without one."""
    m = py_regex(pattern).search(text)
    return None if m is None else m.group(group)


def _peel_value(rest: str, pattern: str) -> tuple[str | None, str]:
    part = _group(pattern, rest)
    return part, rest.removeprefix(part or "")


def address_parts_value(raw: str | None) -> dict[str, str | None]:
    """`address` and ADDRESS_PART_COLUMNS of one raw address, as `with_address` gives them."""
    address = normalise_address_value(raw)
    if address is None:
        return dict.fromkeys(("address", *ADDRESS_PART_COLUMNS))
    _, rest = _peel_value(address, PROVINCE)
    pair = py_regex(CITY_AND_DISTRICT).search(rest)
    district = None if pair is None else pair.group(2)
    if pair is not None:
        rest = rest.removeprefix(pair.group(1) + pair.group(2))
    district_only, rest = _peel_value(rest, DISTRICT)
    street, rest = _peel_value(rest, STREET)
    community = _group(COMMUNITY, rest)
    if community is not None and "街道" in community:
        community = None
    rest = rest.removeprefix(community or "")
    road = _group(ROAD, rest)
    community_was_road = community is not None and community.endswith("村") and road is not None and len(road) <= 2
    compact3 = py_regex(COMPACT3).search(rest)
    building = _group(BUILDING, rest)
    compact2 = py_regex(COMPACT2).search(rest) if building is None else None
    c3 = (None, None, None) if compact3 is None else compact3.groups()
    c2 = (None, None) if compact2 is None else compact2.groups()
    if community_was_road:
        road_part = community + road
    elif road is not None and len(road) > 1:
        road_part = road
    else:
        road_part = _canonical_value(_group(GROUP, rest), "组")
    return {
        "address": address,
        "addr_district": district if district is not None else district_only,
        "addr_street": street,
        "addr_community": None if community_was_road else community,
        "addr_road": road_part,
        "addr_number": _group(NUMBER, rest),
        "addr_building": _canonical_value(_first(building, c3[0], c2[0]), "栋"),
        "addr_unit": _canonical_value(_first(_group(UNIT, rest), c3[1]), "单元"),
        "addr_room": _canonical_value(_first(c3[2], c2[1], _group(ROOM, rest), _group(BARE_ROOM, rest)), "室"),
    }


def _first(*values: str | None) -> str | None:
    """`pl.coalesce` of values."""
    return next((v for v in values if v is not None), None)


def normalise_address_value(raw: str | None) -> str | None:
    """Per-value `normalise_address`."""
    return normalise_text_value(raw)
