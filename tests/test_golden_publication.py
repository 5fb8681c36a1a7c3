"""A large publication goes through in parts and through a stage (warehouse.golden.GoldenStaging);
what it writes must be what one pass over all entities, held in memory, writes: the same golden
rows, versions and events, with the same seqs and event ids.

Two hubs get the same drops; one publishes in one part held in memory (the small-publication
path, the logic of one pass), the other in parts of a few dozen entities spilled to the stage
(SQLite scratch file or PostgreSQL temporary tables). The drops bring creates, updates, a merge
(a retire with merged_into) and a split, so events of every op interleave across parts.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from conftest import fresh_pg_database
from scenario_network import NEW_HOME, Hub, network_with_csv_station

import warehouse.bulk as bulk
import warehouse.golden as golden_store
from core.provenance import provenance_json, provenance_rows
from entity_resolution import propagation
from entity_resolution.propagation import (
    _sources,
    event_id,
    event_ids,
    run_golden,
)
from entity_resolution.service import run_resolution


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("net"), stations=4, persons=700, seed=23)


@pytest.fixture(params=["sqlite", "postgresql"])
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'one.sqlite'}", f"sqlite:///{tmp_path / 'parts.sqlite'}"
        return
    server = request.getfixturevalue("pg_server")
    with fresh_pg_database(server) as one, fresh_pg_database(server) as parts:
        yield one, parts


def _cycle(hub: Hub, monkeypatch: pytest.MonkeyPatch, *, in_parts: bool) -> propagation.GoldenSummary:
    for station in hub.stations.stations:
        hub.ingest(station)
    run_resolution(hub.rs, hub.settings, entity_type="person", prefix="P")
    monkeypatch.setattr(propagation, "PART_ENTITIES", 37 if in_parts else 10**9)
    monkeypatch.setattr(golden_store, "SPILL_ROWS", 1 if in_parts else 10**9)
    # the parts' first publication also builds the indexes after its inserts (SQLite: it fills
    # empty tables); later ones, into tables that hold more than they add, keep them
    monkeypatch.setattr(bulk, "DEFERRED_INDEX_ROWS", 1 if in_parts else 10**9)
    spilled = []
    original = golden_store.GoldenStaging.commit

    def commit(self, resolution_seq):
        spilled.append(self.spilled)
        return original(self, resolution_seq)

    monkeypatch.setattr(golden_store.GoldenStaging, "commit", commit)
    summary = run_golden(hub.gs, hub.survivorship, entity_type="person")
    monkeypatch.setattr(golden_store.GoldenStaging, "commit", original)
    assert spilled == [in_parts]  # each hub took the path it is here for
    return summary


def _published(hub: Hub) -> dict[str, pl.DataFrame]:
    """Everything a publication writes, but the times (now, by design)."""
    with hub.store.engine.connect() as conn:
        def frame(sql: str) -> pl.DataFrame:
            result = conn.exec_driver_sql(sql)
            rows = [tuple(json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v for v in r) for r in result]
            return pl.DataFrame(rows, schema=list(result.keys()), orient="row", infer_schema_length=None)

        return {
            "golden": frame("SELECT entity_id, entity_type, version, status, area_code, record, provenance "
                            "FROM golden_records ORDER BY entity_id"),
            "versions": frame("SELECT entity_id, version, entity_type, op, record, provenance, changed_fields, "
                              "sources, valid_to IS NULL AS open FROM golden_versions ORDER BY entity_id, version"),
            "events": frame("SELECT seq, event_id, entity_type, entity_id, op, version, changed_fields, before, after, "
                            "sources FROM change_events ORDER BY seq"),
            "state": frame("SELECT entity_type, resolution_seq FROM golden_state ORDER BY entity_type"),
            "indexes": frame("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
                             if conn.dialect.name == "sqlite" else
                             "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                             "ORDER BY indexname"),
        }


def _row(local_id: str, **values) -> dict:
    return {"local_id": local_id, "source_updated_at": "2026-11-20 09:00:00", **values}


def _residents(hub: Hub, n: int) -> list[dict]:
    rows = hub.store.engine.connect().exec_driver_sql(
        "SELECT name_norm, sex, birth_date, id_number, phone FROM person_records WHERE id_valid AND phone IS NOT NULL "
        "AND birth_date IS NOT NULL ORDER BY record_key").all()[:n]
    return [dict(zip(["name", "sex", "birth_date", "id_number", "phone"], [str(v) for v in r], strict=True))
            for r in rows]


def _changes(residents: list[dict]) -> list[dict]:
    """Known residents re-entered with a new phone and address (updates), new people (creates),
    and two records a third one bridges (a merge, the run after they were published apart)."""
    sex = {"M": "男", "F": "女"}
    moved = [_row(f"U{i}", name=p["name"], sex=sex.get(p["sex"], p["sex"]), birth_date=p["birth_date"],
                  id_number=p["id_number"], phone=f"1390000{i:04d}", address=NEW_HOME, area_code="500106001001",
                  source_updated_at="2026-11-25 10:00:00") for i, p in enumerate(residents)]
    new = [_row(f"N{i}", name=f"新居民{chr(0x4e00 + i)}", sex="女", birth_date=f"1990-01-{i % 28 + 1:02d}",
                phone=f"1370000{i:04d}", address=NEW_HOME, area_code="500106001001") for i in range(40)]
    return moved + new


BRIDGE_ID = "500106199205170023"
Q1 = _row("Q1", name="司马青青", sex="女", birth_date="1992-05-17", id_number=BRIDGE_ID, address=NEW_HOME,
          area_code="500106001001")
Q2 = _row("Q2", name="司马青青", sex="女", phone="13600003333", address="重庆市沙坪坝区渝碚路街道",
          area_code="500106002001")
Q3 = _row("Q3", name="司马青青", sex="女", birth_date="1992-05-17", id_number=BRIDGE_ID, phone="13600003333",
          address=NEW_HOME, area_code="500106001001", source_updated_at="2026-11-22 09:00:00")


def test_publication_in_parts_through_the_stage_writes_what_one_pass_writes(
        base_network: Path, two_urls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hubs = []
    for name, url in zip(("one", "parts"), two_urls, strict=True):
        root = tmp_path / name
        shutil.copytree(base_network, root)
        # the parts' hub keeps resolution's caches, as a pipeline does: its first publication
        # reads its inputs from them, the other's from the database's join
        hubs.append(Hub(root, url, cache_dir=root / "cache" if name == "parts" else None))
    one, parts = hubs
    inputs_from = []
    records = golden_store.GoldenStore.records

    def cached_records(self, columns):
        inputs_from.append("caches")
        return records(self, columns)

    monkeypatch.setattr(golden_store.GoldenStore, "records", cached_records)
    residents = None
    steps = [[], [Q1, Q2], None, "judge"]  # first publication; creates; moves, creates and a merge; a split
    for step in steps:
        for hub in hubs:
            if step == "judge":
                hub.rs.add_judgement("s9001:Q2", "s9001:Q3", "different", "auditor", "different people")
                hub.rs.add_judgement("s9001:Q1", "s9001:Q2", "different", "auditor", "different people")
            elif step is None:
                residents = residents or _residents(one, 30)
                hub.drop([Q1, Q2, Q3, *_changes(residents)])
            else:
                hub.drop(step)
        a = _cycle(one, monkeypatch, in_parts=False)
        b = _cycle(parts, monkeypatch, in_parts=True)
        assert (a.events, a.ops, a.seq_range, a.entities_recomputed) == (b.events, b.ops, b.seq_range,
                                                                        b.entities_recomputed)
        got, want = _published(parts), _published(one)
        for table in want:
            assert got[table].equals(want[table]), table
    assert inputs_from == ["caches"]  # the first publication, in the parts' hub
    ops = set(want["events"]["op"].to_list())
    assert {"create", "update", "merge", "split"} <= ops  # every kind went through both paths
    every = want["events"]
    assert every["seq"].to_list() == list(range(1, every.height + 1))
    assert every["event_id"].to_list() == [event_id(e, v, o) for e, v, o in
                                           every.select("entity_id", "version", "op").iter_rows()]


def test_event_ids_are_uuid5_of_entity_version_and_op() -> None:
    frame = pl.DataFrame({"entity_id": ["P00002f565267", "P1", "Pé中", *(f"P{i:012x}" for i in range(500))],
                          "version": [1, 12, 3, *range(500)], "op": ["create", "update", "merge", *["split"] * 500]})
    want = [str(uuid.uuid5(propagation.EVENT_NAMESPACE, f"{e}:{v}:{o}")) for e, v, o in frame.iter_rows()]
    assert {w[19] for w in want} == set("89ab")  # every variant digit occurs
    assert event_ids(frame).to_list() == want
    assert event_ids(frame.clear()).to_list() == []


def _provenance() -> pl.DataFrame:
    return pl.DataFrame({
        "entity_id": ["P2", "P1", "P1", "P1", "P2"],
        "field": ["phone", "phone", "name_norm", "address", "name_norm"],
        "value": ["139", "138", "张\"三", "重庆\\市", "李四"],
        "record_key": ["s1:2", "s1:1", "s2:1", "s1:1", "s1:2"],
        "station_id": ["s1", "s1", "s2", "s1", "s1"],
        "batch_id": ["b1", "b1", "b2", "b1", "b1"],
        "source_updated_at": pl.Series([None, "2026-11-20 09:00:00", "2026-11-21 09:00:00", "2026-11-20 09:00:00",
                                        None]).str.to_datetime(),
    })


def test_provenance_json_names_each_source_record_once_with_its_fields() -> None:
    got = dict(provenance_json(_provenance()).iter_rows())
    p1 = json.loads(got["P1"])
    assert p1 == [
        {"station_id": "s1", "batch_id": "b1", "record_key": "s1:1", "source_updated_at": "2026-11-20 09:00:00.000000",
         "fields": ["address", "phone"]},
        {"station_id": "s2", "batch_id": "b2", "record_key": "s2:1", "source_updated_at": "2026-11-21 09:00:00.000000",
         "fields": ["name_norm"]},
    ]
    assert json.loads(got["P2"]) == [{"station_id": "s1", "batch_id": "b1", "record_key": "s1:2",
                                      "source_updated_at": None, "fields": ["name_norm", "phone"]}]
    # read back, one row per value, as it went in
    back = provenance_rows(pl.DataFrame({"entity_id": list(got), "provenance": list(got.values())}))
    want = _provenance().drop("value").with_columns(pl.col("source_updated_at").dt.to_string("%Y-%m-%d %H:%M:%S%.6f"))
    assert back.sort("entity_id", "field").equals(want.select(back.columns).sort("entity_id", "field"))


def test_sources_name_each_record_once() -> None:
    events = pl.DataFrame({"entity_id": ["P1", "P2"], "op": ["create", "update"],
                           "changed_fields": [["address", "name_norm", "phone"], ["phone"]]})
    got = {(e, o): json.loads(s) for e, o, s in _sources(events, _provenance()).iter_rows()}
    assert got[("P1", "create")] == [{"station_id": "s1", "record_key": "s1:1", "batch_id": "b1"},
                                     {"station_id": "s2", "record_key": "s2:1", "batch_id": "b2"}]
    assert got[("P2", "update")] == [{"station_id": "s1", "record_key": "s1:2", "batch_id": "b1"}]


def test_staged_commit_leaves_no_stage_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite stage is a scratch file beside the warehouse, attached only while it commits."""
    from warehouse import Warehouse

    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    monkeypatch.setattr(golden_store, "SPILL_ROWS", 2)
    gs = store.golden_store("person", "person_records")
    rows = [{"entity_id": f"P{i}", "version": 1, "status": "active", "area_code": None,
             "record": json.dumps({"phone": str(i)}), "provenance": "[]"} for i in range(5)]
    versions = [{"entity_id": f"P{i}", "version": 1, "op": "create", "record": json.dumps({"phone": str(i)}),
                 "provenance": "[]", "changed_fields": '["phone"]', "sources": "[]"} for i in range(5)]
    events = [{"event_id": event_id(f"P{i}", 1, "create"), "entity_id": f"P{i}", "op": "create", "version": 1,
               "changed_fields": '["phone"]', "before": None, "after": json.dumps({"phone": str(i)}),
               "sources": "[]", "_order": 10 - i} for i in range(5)]  # the order says: P4 first
    first, last = gs.commit(golden=pl.DataFrame(rows), versions=pl.DataFrame(versions), events=pl.DataFrame(events),
                            resolution_seq=1)
    assert (first, last) == (1, 5)
    assert not [p.name for p in tmp_path.iterdir() if ".stage-" in p.name]  # the scratch file is gone
    with store.engine.connect() as conn:
        assert "stage" not in [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")]
        seqs = conn.execute(sa.text("SELECT entity_id FROM change_events ORDER BY seq")).scalars().all()
    assert seqs == ["P4", "P3", "P2", "P1", "P0"]
