"""Where people live (issue 14): the residence relation, person -> dwelling, declared in config.

- the relation's config: bundled, replaced or added by a project, bad declarations named by file and key;
- the links, pure: every key field agrees, null with null, a shared key links nowhere; moves; the
  values records should hold; only changed values make versions;
- the step on a warehouse (SQLite and PostgreSQL): only what changes reach is relinked, and the
  result equals a full relink, through registrations, an ambiguous duplicate, merges;
- under the daemon: the automation requests the links after either type's records;
- the dwelling story, through `enteronce run` on SQLite and PostgreSQL: a resident moves between two
  dwellings in different stations' areas; both stations' feeds show the right residents of their
  dwellings. Two stations are onboarded by config next to a small simulated network: 杨家坪 (area
  500107001), whose register holds dwelling D1 where the mover and a neighbour live, and 小龙坎
  (500106001), whose register holds D2 (written in a variant form: 2幢一单元1201), where one
  resident lives. A later export of 小龙坎 records the mover (same ID number) at D2, more recently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from connectors.simulate import simulate_network
from core.entity_types import load_entity_types
from core.errors import ConfigError
from entity_resolution.entity_types import load_registry
from entity_resolution.relations import (check_relation, current_links, desired_values, field_changes, key_rows,
                                         moves, set_field)
from entity_resolution.standardise.id_numbers import id_check_char
from feeds.config import load_subscriptions, outbox_dir
from pipelines.project import Project
from pipelines.runner import materialize_project
from warehouse.golden import events
from warehouse.relations import RelationStore

A, B = "s9101", "s9102"
AREA_A, AREA_B = "500107001", "500106001"
D1_ADDRESS = "重庆市九龙坡区杨家坪街道西郊路社区西郊路27号3栋2单元502室"
D2_ADDRESS = "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室"
D2_VARIANT = "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2幢一单元1201"
PERSON = {"编号": "local_id", "姓名": "name", "性别": "sex", "出生日期": "birth_date", "身份证号": "id_number",
          "联系电话": "phone", "现住址": "address", "行政区划": "area_code", "更新时间": "source_updated_at"}
HOUSING = {"房屋编号": "local_id", "房屋地址": "address", "房主姓名": "owner_name", "房主身份证号": "owner_id_number",
           "房屋用途": "use", "居住人数": "occupants", "行政区划": "area_code", "更新时间": "source_updated_at"}
FEED_FIELDS = ["name_norm", "address", "area_code", "dwelling_id", "residents"]


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


MOVER = {"name": "司马青云", "sex": "男", "birth_date": "1990-03-07", "id_number": valid_id("50010719900307051"),
         "phone": "13612345678"}
NEIGHBOUR = {"name": "欧阳晓岚", "sex": "女", "birth_date": "1985-11-02", "id_number": valid_id("50010719851102062"),
             "phone": "13787654321"}
RESIDENT_B = {"name": "诸葛文华", "sex": "男", "birth_date": "1972-06-15", "id_number": valid_id("50010619720615033"),
              "phone": "13598765432"}


# -- the relation, declared in config ----------------------------------------------------------------
def test_the_bundled_residence_relation_and_its_fields() -> None:
    reg = load_registry()
    rel = reg.relations["residence"]
    assert (rel.from_type, rel.to_type, rel.from_field, rel.to_field) == ("person", "dwelling", "dwelling_id",
                                                                         "residents")
    assert rel.key[0] == "addr_district" and rel.key[-1] == "addr_room"
    assert reg.relation_fields("person") == ["dwelling_id"] and reg.relation_fields("dwelling") == ["residents"]
    assert reg.relation_fields("organisation") == []
    # a registry of fewer types keeps only the relations whose two types it has
    assert reg.subset(["person", "organisation"]).relations == {}
    assert list(reg.subset(["person", "dwelling"]).relations) == ["residence"]


@pytest.mark.parametrize(("text", "message"), [
    ("relations:\n  lives:\n    {from: person, to: house, key: [address], from_field: house_id, to_field: people}\n",
     "relations.lives.to: unknown entity type 'house'"),
    ("relations:\n  lives:\n    {from: person, to: person, key: [address], from_field: a_id, to_field: b_ids}\n",
     "relations.lives: from and to are the same type"),
    ("relations:\n  lives:\n    {from: person, to: dwelling, key: [], from_field: a_id, to_field: b_ids}\n",
     "relations.lives.key"),
    ("relations:\n  lives:\n    {from: person, to: dwelling, key: [Address], from_field: a_id, to_field: b_ids}\n",
     "relations.lives.key"),
    ("relations:\n  lives:\n    {from: person, to: dwelling, key: [address], from_field: a_id}\n",
     "relations.lives.to_field"),
    ("relations:\n  lives:\n    {from: person, to: dwelling, key: [address], from_field: area_code, to_field: b}\n",
     "relations.lives.from_field"),
    ("relations:\n  lives:\n    {from: person, to: dwelling, key: [address], from_field: dwelling_id, to_field: b}\n",
     "several relations write the golden field(s) ['person.dwelling_id']"),
])
def test_a_bad_relation_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "entity_types.yaml").write_text("version: 1\n" + text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_entity_types(tmp_path)
    assert str(tmp_path / "entity_types.yaml") in str(err.value) and message in str(err.value)


def test_a_project_replaces_a_bundled_relation_and_adds_its_own(tmp_path: Path) -> None:
    (tmp_path / "entity_types.yaml").write_text(
        "version: 1\nrelations:\n"
        "  residence: {from: person, to: dwelling, key: [addr_district, addr_road, addr_number, addr_room],"
        " from_field: dwelling_id, to_field: residents}\n"
        "  seat: {from: organisation, to: dwelling, key: [address], from_field: premises_id,"
        " to_field: organisations}\n",
        encoding="utf-8")
    reg = load_entity_types(tmp_path)
    assert reg.relations["residence"].key == ["addr_district", "addr_road", "addr_number", "addr_room"]
    assert reg.relation_fields("dwelling") == ["residents", "organisations"]


def test_persons_are_linked_as_they_are_published_unless_a_relation_goes_back(tmp_path: Path) -> None:
    """A person is published with its dwelling (dwellings publish first); a relation the other way
    round would make each type wait for the other, so it is left to its own step."""
    reg = load_registry()
    assert [r.name for r in reg.linked_at_publication("person")] == ["residence"]
    assert reg.linked_at_publication("dwelling") == [] and reg.linked_at_publication("organisation") == []
    (tmp_path / "entity_types.yaml").write_text(
        "version: 1\nrelations:\n"
        "  tenancy: {from: dwelling, to: person, key: [addr_district, addr_road], from_field: tenant_id,"
        " to_field: tenancies}\n", encoding="utf-8")
    reg = load_entity_types(tmp_path)
    assert [r.name for r in reg.linked_at_publication("person")] == ["residence"]
    assert reg.linked_at_publication("dwelling") == []


def test_the_key_must_be_golden_fields_of_both_types() -> None:
    rel = load_registry().relations["residence"]
    fields = {"person": ["name_norm", *rel.key], "dwelling": ["address", *rel.key]}
    check_relation(rel, fields, source="entity_types.yaml")
    with pytest.raises(ConfigError, match=r"entity_types.yaml: relations.residence.key: \['addr_room'\] are not "
                                          r"golden fields of 'dwelling'"):
        check_relation(rel, {**fields, "dwelling": ["address", *rel.key[:-1]]}, source="entity_types.yaml")
    with pytest.raises(ConfigError, match="relations.residence.from_field: 'dwelling_id' is already a golden field"):
        check_relation(rel, {**fields, "person": [*fields["person"], "dwelling_id"]}, source="entity_types.yaml")


# -- the links, pure ---------------------------------------------------------------------------------------
KEY = ["road", "number", "room"]


def keys(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"entity_id": pl.String, **{k: pl.String for k in KEY}}, orient="row")


def test_links_need_every_key_field_to_agree_and_one_dwelling_only() -> None:
    people = keys([("P1", "西郊路", "27号", "502室"), ("P2", "西郊路", "27号", "502室"), ("P3", "西郊路", "27号", None),
                   ("P4", "西郊路", "27号", "503室"), ("P5", None, None, None), ("P6", "正街", "88号", "1201室")])
    homes = keys([("H1", "西郊路", "27号", "502室"), ("H2", "西郊路", "27号", None), ("H3", None, None, None),
                  ("H4", "正街", "88号", "1201室"), ("H5", "正街", "88号", "1201室")])
    links, ambiguous = current_links(pl.concat([key_rows(people, KEY, "from"), key_rows(homes, KEY, "to")]))
    # null agrees with null (a house without room numbers), an all-null key links nowhere, a key
    # two dwellings share links nowhere (and is counted), another room is another dwelling
    assert links.rows() == [("P1", "H1"), ("P2", "H1"), ("P3", "H2")]
    assert ambiguous == 1


def test_moves_and_the_values_records_should_hold() -> None:
    links = pl.DataFrame({"from_id": ["P1", "P2", "P3"], "to_id": ["H2", "H1", "H2"]})
    stored = pl.DataFrame({"from_id": ["P1", "P2", "P9"], "to_id": ["H1", "H1", "H1"]})
    opened, closed = moves(links, stored)
    assert opened.rows() == [("P1", "H2"), ("P3", "H2")] and closed.rows() == [("P1", "H1"), ("P9", "H1")]
    # a dwelling's residents are every open link into it, also of records this run did not relink
    into = pl.concat([links, pl.DataFrame({"from_id": ["P7"], "to_id": ["H3"]})])
    from_v, to_v = desired_values(links, into, pl.Series(["P1", "P2", "P3", "P4"]), pl.Series(["H1", "H2", "H3", "H4"]))
    assert from_v.sort("entity_id").rows() == [("P1", "H2"), ("P2", "H1"), ("P3", "H2"), ("P4", None)]
    assert to_v.sort("entity_id").rows() == [("H1", "P2"), ("H2", "P1,P3"), ("H3", "P7"), ("H4", None)]


def test_only_changed_values_make_versions_and_the_rest_of_the_record_stays() -> None:
    golden = pl.DataFrame({
        "entity_id": ["P1", "P2", "P3", "P4"], "version": [1, 4, 2, 1], "status": ["active"] * 4,
        "area_code": ["500107001002"] * 4, "provenance": ["[]"] * 4,
        "record": ['{"name_norm":"司马青云","note":"a \\"quoted\\" value","dwelling_id":"H1"}',
                   '{"name_norm":"欧阳晓岚","dwelling_id":"H1","area_code":"500107001002"}',
                   '{"name_norm":"诸葛文华"}',
                   '{"name_norm":"王五","dwelling_id":null}'],
    })
    current = pl.DataFrame({"entity_id": ["P1", "P2", "P3", "P4"], "dwelling_id": ["H1", "H1", None, None]})
    desired = pl.DataFrame({"entity_id": ["P1", "P2", "P3", "P4"], "value": ["H2", "H1", "H3", None]})
    out = field_changes(golden, current, desired, "dwelling_id", "person").sort("entity_id")
    assert out["entity_id"].to_list() == ["P1", "P3"]  # P2 stays, P4 null == absent
    assert out["version"].to_list() == [2, 3] and set(out["entity_type"]) == {"person"}
    assert [json.loads(r) for r in out["record"]] == [
        {"name_norm": "司马青云", "note": 'a "quoted" value', "dwelling_id": "H2"},
        {"name_norm": "诸葛文华", "dwelling_id": "H3"}]
    assert [json.loads(b) for b in out["before"]] == [{"dwelling_id": "H1"}, {"dwelling_id": None}]
    assert out["changed_fields"].to_list() == ['["dwelling_id"]'] * 2
    assert pl.select(set_field(pl.lit("{}"), "x", pl.lit('{"x":"1"}'))).item() == '{"x":"1"}'


# -- the step on a warehouse: only what changed is relinked, and the result is what a full relink gives --
def _publish(store, rows: list[tuple[str, str, str, dict | None]]) -> None:
    """Golden records as the golden step leaves them (entity_id, type, status, address parts),
    each with its event in the outbox."""
    from core.time import utcnow
    from warehouse import schema as s
    from warehouse.bulk import insert_frame
    from warehouse.outbox import outbox_transaction

    current = {r["entity_id"]: r for r in RelationStore(store).golden_rows(
        pl.Series([r[0] for r in rows])).iter_rows(named=True)}
    frame = []
    for entity_id, etype, status, parts in rows:
        old = current.get(entity_id)
        record = json.loads(old["record"]) if old else {}
        record.update({"name": entity_id, **(parts or {})})
        frame.append({"entity_id": entity_id, "entity_type": etype, "version": (old["version"] if old else 0) + 1,
                      "status": status, "area_code": "500107001002", "record": json.dumps(record, ensure_ascii=False,
                                                                                         separators=(",", ":")),
                      "provenance": json.dumps([{"field": "road", "station_id": "s1", "batch_id": "b",
                                                 "record_key": f"s1:{entity_id}"}]), "updated_at": utcnow()})
    golden = pl.DataFrame(frame)
    with outbox_transaction(store) as outbox:
        insert_frame(outbox.conn, s.golden_records, golden, replace=True)
        outbox.append(golden.select(
            pl.concat_str(pl.col("entity_id"), pl.lit("-"), pl.col("version").cast(pl.String)).alias("event_id"),
            "entity_type", "entity_id", pl.when(pl.col("status") == "active").then(pl.lit("update"))
            .otherwise(pl.lit("retire")).alias("op"), "version", pl.lit("[]").alias("changed_fields"),
            pl.lit("{}").alias("before"), pl.lit("{}").alias("after"), pl.lit("[]").alias("sources")), utcnow())


def _rows(store, entity_id: str) -> tuple[dict, list[dict]]:
    """An entity's golden row and its version rows, oldest first."""
    with store.engine.connect() as conn:
        golden = conn.exec_driver_sql("SELECT version, record, provenance FROM golden_records WHERE entity_id = ?"
                                      if store.dialect == "sqlite" else
                                      "SELECT version, record, provenance FROM golden_records WHERE entity_id = %s",
                                      (entity_id,)).mappings().one()
        versions = conn.exec_driver_sql("SELECT version, op, provenance, valid_to FROM golden_versions WHERE "
                                        + ("entity_id = ?" if store.dialect == "sqlite" else "entity_id = %s")
                                        + " ORDER BY version", (entity_id,)).mappings().all()
    return dict(golden), [dict(v) for v in versions]


def _state(store, relation) -> tuple[list, dict]:
    """(open links, relation field per active record) as stored, and as a full relink of every
    active golden record gives them."""
    from entity_resolution.relations import decode

    rs = RelationStore(store)
    with store.engine.connect() as conn:
        ids = pl.Series([r[0] for r in conn.exec_driver_sql("SELECT entity_id FROM golden_records").all()])
    rows = rs.golden_rows(ids).filter(pl.col("status") == "active")
    keys = pl.concat([key_rows(decode(rows.filter(pl.col("entity_type") == t), relation.key), relation.key, side)
                      for t, side in ((relation.from_type, "from"), (relation.to_type, "to"))])
    full, _ = current_links(keys)
    stored = sorted(rs.open_links(relation.name).iter_rows())
    assert stored == sorted(full.iter_rows())  # incremental == from scratch
    fields = {r["entity_id"]: json.loads(r["record"]).get(relation.from_field if r["entity_type"] == "person"
                                                             else relation.to_field) for r in rows.iter_rows(named=True)}
    return stored, fields


def test_the_step_relinks_only_what_changes_reach_and_agrees_with_a_full_relink(warehouse_url: str) -> None:
    from core.entity_types import Relation, RelationSpec
    from entity_resolution.relations import run_relation
    from warehouse import Warehouse

    store = Warehouse(warehouse_url).migrate()
    rel = Relation("residence", RelationSpec.model_validate(
        {"from": "person", "to": "dwelling", "key": ["road", "number", "room"], "from_field": "dwelling_id",
         "to_field": "residents"}))
    x, y = {"road": "西郊路", "number": "27号", "room": "502室"}, {"road": "正街", "number": "88号", "room": "1201室"}
    try:
        _publish(store, [("P1", "person", "active", x), ("P2", "person", "active", x), ("P3", "person", "active", y),
                         ("H1", "dwelling", "active", x)])
        first = run_relation(RelationStore(store), rel)
        links, fields = _state(store, rel)
        assert links == [("P1", "H1"), ("P2", "H1")] and (first.links, first.moved_in) == (2, 2)
        assert RelationStore(store).open_link_count("residence") == 2
        assert fields == {"P1": "H1", "P2": "H1", "P3": None, "H1": "P1,P2"}
        # each change is a version carrying its golden row's provenance (copied in the database)
        golden, versions = _rows(store, "P1")
        assert (golden["version"], json.loads(golden["record"])["dwelling_id"]) == (2, "H1")
        assert [(v["version"], v["op"], v["provenance"], v["valid_to"]) for v in versions] == [
            (2, "update", golden["provenance"], None)]
        assert json.loads(golden["provenance"])[0]["record_key"] == "s1:P1"

        # a dwelling registered later: the resident already there is found by key, without an event of its own
        _publish(store, [("H2", "dwelling", "active", y)])
        run_relation(RelationStore(store), rel)
        links, fields = _state(store, rel)
        assert ("P3", "H2") in links and fields["P3"] == "H2" and fields["H2"] == "P3"

        # a second, unresolved dwelling at the same address: nobody is linked there (a guess is not published)
        _publish(store, [("H3", "dwelling", "active", x)])
        third = run_relation(RelationStore(store), rel)
        links, fields = _state(store, rel)
        assert links == [("P3", "H2")] and third.ambiguous == 2 and third.moved_out == 2
        assert third.links == RelationStore(store).open_link_count("residence") == 1
        assert fields["P1"] is None and fields["H1"] is None and fields["H3"] is None
        golden, versions = _rows(store, "P1")  # the relation's earlier version ended as this one began
        assert [(v["version"], v["valid_to"] is None) for v in versions] == [(2, False), (3, True)]
        assert golden["version"] == 3 and versions[-1]["provenance"] == golden["provenance"]

        # resolution merges it into H1 (retired), and later P2 into P1
        _publish(store, [("H3", "dwelling", "retired", None)])
        run_relation(RelationStore(store), rel)
        assert _state(store, rel)[1]["H1"] == "P1,P2"
        _publish(store, [("P2", "person", "retired", None)])
        fifth = run_relation(RelationStore(store), rel)
        links, fields = _state(store, rel)
        assert links == [("P1", "H1"), ("P3", "H2")] and fields["H1"] == "P1" and fifth.moved_out == 1
        with store.engine.connect() as conn:  # the count kept by the commits is the links' own
            open_now = conn.exec_driver_sql("SELECT count(*) FROM relation_links WHERE valid_to IS NULL").scalar()
        assert fifth.links == RelationStore(store).open_link_count("residence") == open_now == 2
        assert "P2" not in fields  # a retired record is left as it was retired

        # nothing new: nothing to do; every link ever made is kept with its dates
        assert run_relation(RelationStore(store), rel).ran is False
        history = RelationStore(store).links("residence", to_id="H1")
        assert history.select("from_id", pl.col("valid_to").is_null()).rows() == [
            ("P1", False), ("P2", False), ("P1", True), ("P2", False)]
    finally:
        store.dispose()


def test_a_record_published_with_its_link_is_not_versioned_again_by_the_step(warehouse_url: str) -> None:
    from core.entity_types import Relation, RelationSpec
    from entity_resolution.relations import PublishedLinks, run_relation
    from warehouse import Warehouse

    store = Warehouse(warehouse_url).migrate()
    rel = Relation("residence", RelationSpec.model_validate(
        {"from": "person", "to": "dwelling", "key": KEY, "from_field": "dwelling_id", "to_field": "residents"}))
    x, y, z = ({"road": "西郊路", "number": "27号", "room": "502室"}, {"road": "正街", "number": "88号", "room": "1201室"},
               {"road": "正街", "number": "90号", "room": "101室"})
    try:
        _publish(store, [("P1", "person", "active", x), ("H1", "dwelling", "active", x),
                         ("H2", "dwelling", "active", y)])
        run_relation(RelationStore(store), rel)
        # since the step ran: a dwelling registered at z, a second one at y (not resolved into H2)
        _publish(store, [("H4", "dwelling", "active", z), ("H5", "dwelling", "active", y)])
        links = PublishedLinks(RelationStore(store), rel)
        new = keys([("P7", *x.values()), ("P8", *y.values()), ("P9", *z.values()), ("P10", None, None, None)])
        # H1 by its stored key, H4 by its golden row (newer than the step), y shared: no guess
        assert links.values(new).sort("entity_id").rows() == [("P10", None), ("P7", "H1"), ("P8", None),
                                                               ("P9", "H4")]

        _publish(store, [("P7", "person", "active", {**x, "dwelling_id": "H1"}),
                         ("P9", "person", "active", {**z, "dwelling_id": "H4"})])
        run = run_relation(RelationStore(store), rel)
        links_now, fields = _state(store, rel)  # the same as a full relink
        assert ("P7", "H1") in links_now and ("P9", "H4") in links_now
        assert fields["H1"] == "P1,P7" and fields["H4"] == "P9" and fields["H2"] is None
        for person in ("P7", "P9"):  # the step opened their links without a version of theirs
            golden, versions = _rows(store, person)
            assert golden["version"] == 1 and versions == []
        stepped = events(store).filter(pl.col("seq").is_between(*run.seq_range))
        assert sorted(stepped["entity_id"]) == ["H1", "H4"]  # the residents' lists only
    finally:
        store.dispose()


# -- under the daemon ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("records", ["person_records", "dwelling_records"])
def test_the_daemon_recomputes_the_links_after_either_types_records(records: str) -> None:
    """The `publication` sensor's automation (as `enteronce run`'s phases) requests the links in
    the same run as the golden records they read, whichever side's station records changed."""
    from pipelines.definitions import defs
    from pipelines.partitions import stations_partitions

    selection = dg.AssetSelection.groups("resolution", "golden", "quality", "report")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(stations_partitions.name, ["s0001"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    instance.report_runless_asset_event(dg.AssetMaterialization(records, partition="s0001"))
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=first.cursor)
    wanted = {r.key.to_user_string() for r in second.results if r.true_subset.size > 0}
    side = records.removesuffix("_records")
    assert {f"{side}_golden_records", "residence_links"} <= wanted
    assert defs.get_assets_def("residence_links").asset_deps[dg.AssetKey("residence_links")] == {
        dg.AssetKey("person_golden_records"), dg.AssetKey("dwelling_golden_records")}


# -- the story ----------------------------------------------------------------------------------------------
def write_csv(path: Path, header: dict[str, str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame([{h: r.get(f) for h, f in header.items()} for r in rows],
                         schema={h: pl.String for h in header})
    path.write_text(frame.write_csv(), encoding="utf-8")


def source(name: str, entity: str, station: str, columns: dict[str, str]) -> dict:
    return {"name": name, "entity": entity, "kind": "csv", "path": f"{station}/{name}.csv", "columns": columns}


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated network (its own housing registers included) plus the story's stations
    and their subscribers: each station's feed has persons and dwellings of its area, with the
    residence fields."""
    root = tmp_path_factory.mktemp("homes")
    simulate_network(root, stations=2, persons=300, seed=14)
    stations = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    for sid, name, area in ((A, "杨家坪派出所", AREA_A), (B, "小龙坎派出所", AREA_B)):
        stations["stations"].append({"id": sid, "name": name, "jurisdiction": [area], "sources": [
            source("residents", "person", sid, PERSON), source("housing", "dwelling", sid, HOUSING)]})
    (root / "stations.yaml").write_text(yaml.safe_dump(stations, allow_unicode=True), encoding="utf-8")
    subs = yaml.safe_load((root / "subscriptions.yaml").read_text(encoding="utf-8"))
    subs["roles"]["housing_officer"] = {"default": "hidden", "fields": {f: "full" for f in FEED_FIELDS}}
    for sid, area in ((A, AREA_A), (B, AREA_B)):
        subs["subscribers"].append({"id": sid, "kind": "station", "station_id": sid,
                                    "entity_types": ["person", "dwelling"], "scope": {"area_codes": [area]},
                                    "fields": FEED_FIELDS, "role": "housing_officer",
                                    "delivery": {"formats": ["jsonl", "csv"]}})
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subs, allow_unicode=True), encoding="utf-8")

    at = "2026-01-05 09:00:00"
    write_csv(root / A / "residents.csv", PERSON, [
        {"local_id": "R1", **MOVER, "address": D1_ADDRESS, "area_code": f"{AREA_A}002", "source_updated_at": at},
        {"local_id": "R2", **NEIGHBOUR, "address": D1_ADDRESS, "area_code": f"{AREA_A}002", "source_updated_at": at},
    ])
    write_csv(root / A / "housing.csv", HOUSING, [
        {"local_id": "H1", "address": D1_ADDRESS, "owner_name": NEIGHBOUR["name"],
         "owner_id_number": NEIGHBOUR["id_number"],
         "use": "自住", "occupants": "2", "area_code": f"{AREA_A}002", "source_updated_at": at}])
    write_csv(root / B / "residents.csv", PERSON, [
        {"local_id": "Q1", **RESIDENT_B, "address": D2_ADDRESS, "area_code": f"{AREA_B}001", "source_updated_at": at}])
    write_csv(root / B / "housing.csv", HOUSING, [
        {"local_id": "H2", "address": D2_VARIANT, "owner_name": RESIDENT_B["name"],
         "owner_id_number": RESIDENT_B["id_number"],
         "use": "出租", "occupants": "2", "area_code": f"{AREA_B}001", "source_updated_at": at}])
    return root


def entity_of(store, entity_type: str, record_key: str) -> str:
    t = store.record_table(entity_type)
    members = store.resolution_store(entity_type, t.name).membership()
    return members.filter(pl.col("record_key") == record_key)["entity_id"][0]


def golden(store, entity_id: str) -> dict:
    return json.loads(store.golden_store("person", "person_records").current(pl.Series([entity_id]))["record"][0])


def link_metadata(results: list[dg.ExecuteInProcessResult]) -> dict:
    mats = [e.materialization for r in results for e in r.get_asset_materialization_events()
            if e.materialization.asset_key == dg.AssetKey("residence_links")]
    assert len(mats) == 1
    return {k: v.value for k, v in mats[0].metadata.items()}


def feed_lines(project: Project, subscriber_id: str, pattern: str) -> list[dict]:
    sub = next(s for s in load_subscriptions(project.config_dir).subscribers if s.id == subscriber_id)
    out = outbox_dir(sub, config_dir=project.config_dir, data_dir=project.data_dir)
    return [json.loads(line) for f in sorted(out.glob(pattern)) for line in f.read_text(encoding="utf-8").splitlines()]


def test_a_resident_moves_between_stations_and_both_feeds_show_the_right_residents(
        base_network: Path, tmp_path: Path, warehouse_url: str) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    project = Project.load(root, warehouse_url)
    first = materialize_project(project, project.station_ids)
    store = project.open_warehouse()
    try:
        mover, neighbour, resident_b = (entity_of(store, "person", k) for k in (f"{A}:R1", f"{A}:R2", f"{B}:Q1"))
        d1, d2 = entity_of(store, "dwelling", f"{A}:H1"), entity_of(store, "dwelling", f"{B}:H2")
        assert d1 != d2 and d1.startswith("H")
        assert golden(store, mover)["dwelling_id"] == d1 and golden(store, neighbour)["dwelling_id"] == d1
        assert golden(store, resident_b)["dwelling_id"] == d2  # its register wrote the address another way
        assert golden(store, d1)["residents"] == ",".join(sorted([mover, neighbour]))
        assert golden(store, d2)["residents"] == resident_b
        meta = link_metadata(first)
        assert meta["moves_in"] == meta["links"] >= 3 and meta["moves_out"] == 0
        created = events(store).filter(pl.col("entity_id") == mover)  # one event: created with its dwelling
        assert created["op"].to_list() == ["create"] and json.loads(created["after"][0])["dwelling_id"] == d1
        # the stations' first feeds are snapshots of their areas: each sees its own dwelling and residents
        snap_a = {r["entity_id"]: r for r in feed_lines(project, A, "snapshot_*.jsonl")}
        snap_b = {r["entity_id"]: r for r in feed_lines(project, B, "snapshot_*.jsonl")}
        assert snap_a[d1]["record"]["residents"] == ",".join(sorted([mover, neighbour])) and d2 not in snap_a
        assert snap_b[d2]["record"]["residents"] == resident_b and d1 not in snap_b
        assert snap_a[mover]["record"]["dwelling_id"] == d1
        seq = int(events(store)["seq"].max())

        # the mover is recorded at 小龙坎, at D2, more recently
        write_csv(root / B / "residents.csv", PERSON, [
            {"local_id": "Q1", **RESIDENT_B, "address": D2_ADDRESS, "area_code": f"{AREA_B}001",
             "source_updated_at": "2026-01-05 09:00:00"},
            {"local_id": "Q2", **MOVER, "address": D2_ADDRESS, "area_code": f"{AREA_B}001",
             "source_updated_at": "2026-11-20 10:00:00"}])
        second = materialize_project(project, project.station_ids)
        assert entity_of(store, "person", f"{B}:Q2") == mover  # the same person, one entity
        assert golden(store, mover)["dwelling_id"] == d2
        assert golden(store, d1)["residents"] == neighbour
        assert golden(store, d2)["residents"] == ",".join(sorted([mover, resident_b]))
        meta = link_metadata(second)
        assert (meta["moves_in"], meta["moves_out"], meta["recomputed"]) == (1, 1, True)

        # one update event per changed record, through the outbox: the mover's is published with
        # its new address and its new dwelling at once (linked at publication), the dwellings' by the links
        new = events(store, after=seq)
        moves = new.filter(pl.col("changed_fields").list.contains("residents")
                           | pl.col("changed_fields").list.contains("dwelling_id"))
        got = sorted((r["entity_id"], r["changed_fields"], json.loads(r["before"]), json.loads(r["after"]))
                     for r in moves.filter(pl.col("entity_type") == "dwelling").iter_rows(named=True))
        assert got == sorted([
            (d1, ["residents"], {"residents": ",".join(sorted([mover, neighbour]))}, {"residents": neighbour}),
            (d2, ["residents"], {"residents": resident_b}, {"residents": ",".join(sorted([mover, resident_b]))}),
        ])
        moved = new.filter(pl.col("entity_id") == mover)
        assert moved.height == 1 and {"address", "dwelling_id"} <= set(moved["changed_fields"][0])
        before, after = json.loads(moved["before"][0]), json.loads(moved["after"][0])
        assert (before["dwelling_id"], after["dwelling_id"]) == (d1, d2) and after["address"] == D2_ADDRESS
        assert set(moves["op"]) == {"update"} and set(moves["entity_id"]) == {mover, d1, d2}
        assert all(any(s["record_key"] == f"{B}:Q2" for s in src) for src in moves["sources"])

        # each station's feed files: the update of its own dwelling only
        feed_a = feed_lines(project, A, "events_*.jsonl")
        feed_b = feed_lines(project, B, "events_*.jsonl")
        res_a = [e for e in feed_a if "residents" in e["changed_fields"]]
        res_b = [e for e in feed_b if "residents" in e["changed_fields"]]
        assert [(e["entity_id"], e["after"]) for e in res_a] == [(d1, {"residents": neighbour})]
        assert [(e["entity_id"], e["after"]) for e in res_b] == [
            (d2, {"residents": ",".join(sorted([mover, resident_b]))})]
        # 小龙坎 learns where its new resident lives; 杨家坪 learns that they left its area
        assert [(e["entity_id"], e["after"]["dwelling_id"], e["after"]["address"])
                for e in feed_b if "dwelling_id" in e["changed_fields"]] == [(mover, d2, D2_ADDRESS)]
        left = [e for e in feed_a if e["entity_id"] == mover]
        assert [(e["scope"], e["after"]["dwelling_id"]) for e in left] == [("left", d2)]  # one event: the move
        csv_a = "".join(f.read_text(encoding="utf-8-sig") for f in
                        outbox_dir(next(s for s in load_subscriptions(root).subscribers if s.id == A),
                                   config_dir=root, data_dir=project.data_dir).glob("events_*.csv"))
        assert f",dwelling,{d1}," in csv_a and f",dwelling,{d2}," not in csv_a  # (d2 is named in the move only)

        # the relation's history is kept: versions and links
        history = store.golden_store("person", "person_records").history(mover)
        assert [("dwelling_id" in c) for c in history["changed_fields"]] == [True, True]  # created with it, moved
        assert [json.loads(r).get("dwelling_id") for r in history["record"]][-1] == d2
        assert any(json.loads(r).get("dwelling_id") == d1 for r in history["record"])
        d1_history = store.golden_store("dwelling", "dwelling_records").history(d1)
        assert [json.loads(r).get("residents") for r in d1_history["record"]][-2:] == [
            ",".join(sorted([mover, neighbour])), neighbour]
        links = RelationStore(store).links("residence", from_id=mover)
        assert links["to_id"].to_list() == [d1, d2]
        assert links["valid_to"][0] is not None and links["valid_to"][1] is None
        assert links["closed_run"][0] == links["opened_run"][1]

        # a rerun with nothing new changes nothing
        seq = int(events(store)["seq"].max())
        third = materialize_project(project, project.station_ids)
        assert events(store, after=seq).height == 0
        assert link_metadata(third)["recomputed"] is False
    finally:
        store.dispose()


def test_a_large_run_relinks_in_parts_of_whole_districts_as_one_pass_would(
        warehouse_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """A first run over many records goes a part at a time (entity_resolution.relations.RELATION_PART),
    each part whole values of the key's first field: the links, the relation fields and the events
    are those of one pass (one update per record), and the run counts its own parts' events as
    seen, so the next run has nothing to do."""
    import entity_resolution.relations as relations
    from core.entity_types import Relation, RelationSpec
    from warehouse import Warehouse
    from warehouse import schema as s

    rel = Relation("residence", RelationSpec.model_validate(
        {"from": "person", "to": "dwelling", "key": ["district", "road", "number"], "from_field": "dwelling_id",
         "to_field": "residents"}))
    rows = []
    for d, district in enumerate(["渝中区", "江北区", "沙坪坝区", "九龙坡区"]):
        for h in range(3):
            address = {"district": district, "road": "正街", "number": f"{h + 1}号"}
            rows.append((f"H{d}{h}", "dwelling", "active", address))
            rows += [(f"P{d}{h}{p}", "person", "active", address) for p in range(h + 1)]
    rows.append(("P999", "person", "active", {"road": "正街", "number": "1号"}))  # no district: links nowhere

    def run(part: int, url: str):
        monkeypatch.setattr(relations, "RELATION_PART", part)
        store = Warehouse(url).migrate()
        try:
            _publish(store, rows)
            summary = relations.run_relation(RelationStore(store), rel)
            with store.engine.connect() as conn:
                runs = conn.execute(sa.select(s.relation_runs.c.outbox_seq)).scalars().all()
                updates = conn.execute(sa.select(s.change_events.c.entity_id).where(
                    s.change_events.c.op == "update", s.change_events.c.seq > len(rows))).scalars().all()
            again = relations.run_relation(RelationStore(store), rel)
            # the parts' first field, as the database reads it out of each record's JSON
            district = RelationStore(store).record_field(pl.Series(["H10", "P221", "P999", "nobody"]), "district")
            assert dict(district.iter_rows()) == {"H10": "江北区", "P221": "沙坪坝区", "P999": None}
            return summary, _state(store, rel), len(runs), sorted(updates), again.ran
        finally:
            store.dispose()

    one, one_state, one_runs, one_updates, _ = run(1_000, warehouse_url)
    if warehouse_url.startswith("sqlite"):
        other = warehouse_url.replace("warehouse.sqlite", "parts.sqlite")
        parts, parts_state, parts_runs, parts_updates, ran_again = run(7, other)
    else:
        from conftest import fresh_pg_database

        with fresh_pg_database(request.getfixturevalue("pg_server")) as other:
            parts, parts_state, parts_runs, parts_updates, ran_again = run(7, other)
    assert one_runs == 1 and parts_runs == 4  # a district of 7 records per part
    assert parts_state == one_state and one_state[0]  # the same links and fields, equal to a full relink
    assert parts_updates == one_updates and len(parts_updates) == len(set(parts_updates))  # one update each
    assert (parts.links, parts.moved_in, parts.events) == (one.links, one.moved_in, one.events) == (24, 24, 36)
    assert parts.seq_range[1] - parts.seq_range[0] + 1 == parts.events
    assert ran_again is False
