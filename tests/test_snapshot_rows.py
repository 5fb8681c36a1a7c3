"""The plain-Python snapshot builder (feeds.snapshot_rows) against the Polars one it stands in for:
on generated golden records (Chinese text, quotes, backslashes, control characters, keys missing
or null, addresses with and without parsed parts, dates ISO and not, provenance of visible and
hidden fields) under generated policies (every masking rule, every level), the rows are equal
column for column; and it declines what it cannot read as Polars would.
"""

from __future__ import annotations

import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.build import SNAPSHOT_SCHEMA, build_snapshot, snapshot_frame
from feeds.config import parse_subscriptions
from feeds.snapshot_rows import snapshot_rows

FIELDS = ["name_norm", "id_number", "phone", "birth_date", "sex", "address", "area_code", "nickname",
          "addr_district", "addr_street", "addr_community"]
TEXT = st.text(alphabet=st.sampled_from(list("张王李小明重庆市渝中区街道社区12345-0X \"\\/\n\t\x01\x7f😀é")), max_size=14)
VALUES = st.one_of(st.none(), TEXT, st.sampled_from(["1990-05-17", "1990-5", "１９９０-01-02", "2001-12", ""]))
RULES = st.sampled_from([
    {"keep_first": 6, "keep_last": 4}, {"keep_first": 1}, {"keep_last": 2, "mask_char": "#"},
    {"kind": "address", "level": "district"}, {"kind": "address", "level": "street"},
    {"kind": "address"}, {"kind": "date", "keep": "year"}, {"kind": "date", "keep": "month"},
    {"kind": "redact", "text": "已隐藏"}, {"kind": "redact"},
])


@st.composite
def golden(draw) -> pl.DataFrame:
    rows = []
    for i in range(draw(st.integers(1, 6))):
        record = {}
        for f in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
            record[f] = draw(VALUES)
        # either stored form: a source per field (older warehouses) or a source naming its fields
        if draw(st.booleans()):
            prov = [{"field": draw(st.sampled_from(FIELDS)), "station_id": draw(st.sampled_from(["s1", "s2", None])),
                     "record_key": draw(st.one_of(st.none(), TEXT))} for _ in range(draw(st.integers(0, 4)))]
        else:
            prov = [{"station_id": draw(st.sampled_from(["s1", "s2", None])), "record_key": draw(st.one_of(st.none(), TEXT)),
                     "fields": draw(st.lists(st.sampled_from(FIELDS), unique=True))}
                    for _ in range(draw(st.integers(0, 3)))]
        spaced = draw(st.booleans())  # Python's default separators: the key test must still read it
        rows.append({"entity_id": f"P{i:04d}", "entity_type": "person", "version": draw(st.integers(1, 9)),
                     "record": json.dumps(record, ensure_ascii=draw(st.booleans()),
                                          separators=None if spaced else (",", ":")),
                     "provenance": draw(st.sampled_from([json.dumps(prov, ensure_ascii=False), None, "[]"]))})
    return pl.DataFrame(rows, schema={"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64,
                                      "record": pl.String, "provenance": pl.String})


@st.composite
def policy(draw):
    fields = draw(st.lists(st.sampled_from(FIELDS[:8]), unique=True, min_size=1))
    levels = {f: draw(st.sampled_from(["full", "masked", "hidden"])) for f in fields}
    masking = {f: draw(RULES) for f in fields}
    subs = parse_subscriptions({
        "masking": masking,
        "roles": {"r": {"fields": {f: lv for f, lv in levels.items()}}},
        "subscribers": [{"id": "x", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["5"]},
                         "fields": fields, "role": "r"}],
    })
    return subs, subs.levels(subs.subscribers[0])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(golden(), policy())
def test_the_twin_builds_the_rows_polars_builds(frame: pl.DataFrame, pol) -> None:
    subs, levels = pol
    twin = snapshot_rows(frame, levels, subs)
    assert twin is not None
    want = snapshot_frame(frame, levels, subs)
    assert twin.schema == pl.Schema(SNAPSHOT_SCHEMA)
    assert twin.to_dicts() == want.select(list(SNAPSHOT_SCHEMA)).to_dicts()
    assert build_snapshot(frame, levels, subs).equals(twin)


def test_the_twin_declines_what_polars_might_read_otherwise() -> None:
    subs = parse_subscriptions({
        "masking": {"phone": {"keep_first": 3, "mask_char": "$"}},
        "roles": {"r": {"fields": {"phone": "masked", "name_norm": "full"}}},
        "subscribers": [{"id": "x", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["5"]},
                         "fields": ["phone", "name_norm"], "role": "r"}],
    })
    levels = subs.levels(subs.subscribers[0])

    def one(record: str, prov: str | None = "[]") -> pl.DataFrame:
        return pl.DataFrame([{"entity_id": "P1", "entity_type": "person", "version": 1, "record": record,
                              "provenance": prov}])

    assert snapshot_rows(one('{"phone": "13812345678"}'), levels, subs) is None  # "$" in Polars' replacement
    plain = parse_subscriptions({
        "roles": {"r": {"fields": {"name_norm": "full"}}},
        "subscribers": [{"id": "x", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["5"]},
                         "fields": ["name_norm"], "role": "r"}],
    })
    lv = plain.levels(plain.subscribers[0])
    for record, prov in (('{"name_norm": 5}', "[]"), ('{"name_norm": ["a"]}', "[]"), ("not json", "[]"),
                         ('["a"]', "[]"), ('{"name_norm": "张三"}', '{"a": 1}')):
        assert snapshot_rows(one(record, prov), lv, plain) is None, record
    # then build_snapshot goes the Polars way
    assert build_snapshot(one('{"name_norm": 5}'), lv, plain).equals(snapshot_frame(one('{"name_norm": 5}'), lv, plain))
