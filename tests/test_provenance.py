"""The stored provenance (core/provenance.py): a source record named once with its fields, read back
as one row per value; rows of the form older warehouses hold (a source per field) read the same,
through every reader that delivers or uses them."""

from __future__ import annotations

import json

import polars as pl

from core.provenance import provenance_json, provenance_rows, source_fields
from entity_resolution.relations import _key_sources
from feeds.build import snapshot_frame
from feeds.config import parse_subscriptions
from feeds.snapshot_rows import snapshot_rows

FIELDS = ["address", "birth_date", "id_number", "name_norm", "phone", "sex"]
SOURCES = {"address": "sA:1", "birth_date": "sA:1", "id_number": "sA:1", "name_norm": "sB:7", "phone": "sA:1",
           "sex": "sA:1"}


def _long() -> pl.DataFrame:
    return pl.DataFrame({
        "entity_id": ["P1"] * len(FIELDS) + ["P2"],
        "field": [*FIELDS, "phone"],
        "station_id": [SOURCES[f].split(":")[0] for f in FIELDS] + ["sB"],
        "batch_id": [f"{SOURCES[f].split(':')[0]}/residents/ab12" for f in FIELDS] + ["sB/residents/cd34"],
        "record_key": [SOURCES[f] for f in FIELDS] + ["sB:9"],
        "source_updated_at": ["2026-11-20 09:00:00.000000"] * (len(FIELDS) + 1),
    })


def _older_form(long: pl.DataFrame) -> pl.DataFrame:
    """The same provenance as an older warehouse stored it: one object per field."""
    rows = {}
    for r in long.sort("entity_id", "field").iter_rows(named=True):
        rows.setdefault(r["entity_id"], []).append({k: r[k] for k in ("field", "station_id", "batch_id", "record_key",
                                                                        "source_updated_at")})
    return pl.DataFrame({"entity_id": list(rows), "provenance": [json.dumps(v, ensure_ascii=False) for v in rows.values()]})


def _golden(prov: pl.DataFrame) -> pl.DataFrame:
    record = json.dumps({"address": "重庆市渝中区解放碑街道1号", "name_norm": "张三", "phone": "13812345678", "sex": "M",
                         "birth_date": "1990-03-07", "id_number": "500103199003074312"}, ensure_ascii=False)
    return prov.select("entity_id", pl.lit("person").alias("entity_type"), pl.lit(1, pl.Int64).alias("version"),
                       pl.lit(record).alias("record"), "provenance")


def test_one_source_record_is_named_once() -> None:
    stored = dict(provenance_json(_long()).iter_rows())
    p1 = json.loads(stored["P1"])
    assert [(s["record_key"], s["fields"]) for s in p1] == [
        ("sA:1", ["address", "birth_date", "id_number", "phone", "sex"]), ("sB:7", ["name_norm"])]
    older = dict(_older_form(_long()).iter_rows())
    assert len(stored["P1"]) * 2 < len(older["P1"])  # each source once, not once per field
    assert provenance_json(_long().reverse()).equals(provenance_json(_long()))  # same provenance, same text


def test_both_forms_read_back_as_the_same_rows() -> None:
    cols = list(_long().columns)
    new = provenance_rows(provenance_json(_long())).sort("entity_id", "field")
    old = provenance_rows(_older_form(_long())).sort("entity_id", "field")
    assert new.equals(old) and new.select(cols).equals(_long().sort("entity_id", "field").select(cols))
    empty = provenance_rows(pl.DataFrame({"entity_id": ["P3", "P4"], "provenance": ["[]", None]}))
    assert empty.height == 0 and empty.columns == cols
    assert source_fields({"field": "phone"}) == ["phone"] and source_fields({"fields": ["a", "b"]}) == ["a", "b"]
    assert source_fields({"station_id": "sA"}) == []


def test_delivered_provenance_is_the_same_from_either_form() -> None:
    subs = parse_subscriptions({
        "roles": {"r": {"fields": {"name_norm": "full", "phone": "masked", "address": "full"}}},
        "subscribers": [{"id": "x", "kind": "department", "entity_types": ["person"],
                         "scope": {"area_codes": ["5"]}, "fields": ["name_norm", "phone", "address"], "role": "r"}],
    })
    levels = subs.levels(subs.subscribers[0])
    new, old = _golden(provenance_json(_long())), _golden(_older_form(_long()))
    frames = [snapshot_frame(new, levels, subs), snapshot_frame(old, levels, subs),
              snapshot_rows(new, levels, subs), snapshot_rows(old, levels, subs)]
    assert all(f.equals(frames[0]) for f in frames[1:])
    delivered = json.loads(frames[0].filter(pl.col("entity_id") == "P1")["provenance"][0])
    # only the role's visible fields, each with the station record it came from
    assert delivered == {"address": {"station_id": "sA", "record_key": "sA:1"},
                         "name_norm": {"station_id": "sB", "record_key": "sB:7"},
                         "phone": {"station_id": "sA", "record_key": "sA:1"}}


def test_relation_sources_are_the_same_from_either_form() -> None:
    key = ["address"]
    new = _key_sources(iter([provenance_json(_long())]), key).sort("entity_id")
    old = _key_sources(iter([_older_form(_long())]), key).sort("entity_id")
    assert new.equals(old) and new.to_dicts() == [
        {"entity_id": "P1", "station_id": "sA", "record_key": "sA:1", "batch_id": "sA/residents/ab12"}]
