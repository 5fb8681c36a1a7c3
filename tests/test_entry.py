"""POST /v1/records (entry of a verified record) over real HTTP, then the real pipeline.

A simulated network run by `enteronce run`'s materialisation; station s9001's officer enters a new
resident through the API. Checked: the batch of one (raw row, standardised record, lineage), the
drop sensor launching the station's run for it, the pipeline carrying it into golden records and
into the change events of another station whose feed scope covers the resident; a bad record is
422 with its errors field by field and a quarantine row, nothing lost; the same record twice is one
batch; no entry grant is 403 (and a department cannot be given one); every entry is in the audit
log with hashed keys only.
"""

from __future__ import annotations

import json
import os
import signal
import time

import dagster as dg
import httpx
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from live_processes import live_processes
from scenario_network import NEW_HOME, NEW_HOME_AREA, an_id_number, network_with_csv_station

from connectors.simulate.codes import id_check_char
from core.errors import ConfigError
from feeds.api import BackgroundServer, create_app
from feeds.config import load_subscriptions
from feeds.tokens import issue_token
from pipelines.entry import project_entry
from pipelines.entry_publisher import LAUNCHED_BY, EntryPublisher
from pipelines.frontdesk import LiveMatcher
from pipelines.instance import open_instance
from pipelines.project import Project
from pipelines.resources import ProjectResource
from pipelines.runner import materialize_project
from pipelines.sensors import station_drops_sensor
from warehouse import schema as s
from warehouse.frontdesk import access_log

KEY = b"entry test audit key"
FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", "area_code"]
STATION = "s9001"


def subscriptions() -> dict:
    officer = {"name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked", "phone": "masked",
               "address": "full", "area_code": "full"}
    return {
        "version": 1,
        "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
        "roles": {"officer": {"fields": officer}},
        "subscribers": [
            {"id": "desk", "kind": "station", "station_id": STATION, "entity_types": ["person"],
             "scope": {"own_records": True}, "fields": FIELDS, "role": "officer",
             "query": {"scope": {"network": True}, "entry": True, "per_minute": 1000}},
            {"id": "neighbour", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
             "scope": {"area_codes": [NEW_HOME_AREA[:6]]}, "fields": FIELDS, "role": "officer",
             "query": {"scope": {"network": True}, "per_minute": 1000}},
        ],
    }


def resident(**changes) -> dict:
    number = an_id_number()
    sex = "男" if int(number[16]) % 2 else "女"
    return {"local_id": "FD-0001", "name": "柳如烟", "sex": sex, "birth_date": "1990-03-07", "id_number": number,
            "phone": "13912345678", "address": NEW_HOME, "area_code": NEW_HOME_AREA, **changes}


@pytest.fixture(scope="module")
def hub(module_warehouse_url: str, tmp_path_factory: pytest.TempPathFactory):
    root = network_with_csv_station(tmp_path_factory.mktemp("net"), stations=3, persons=300, seed=7)
    url = module_warehouse_url
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subscriptions(), allow_unicode=True), encoding="utf-8")
    project = Project.load(root, url)
    materialize_project(project, project.station_ids)
    store = project.open_warehouse()
    matcher = LiveMatcher(store, project, check_every=0.0, background=False)
    app = create_app(url, root, matcher=matcher, audit_key=KEY, store=store, entry=project_entry(project, store))
    tokens = {sid: issue_token(store, sid).token for sid in ("desk", "neighbour")}
    with BackgroundServer(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        yield {"http": http, "tokens": tokens, "store": store, "project": project, "root": root, "url": url}
    store.dispose()


def post(hub: dict, who: str, record: dict, entity_type: str = "person") -> httpx.Response:
    return hub["http"].post("/v1/records", json={"entity_type": entity_type, "record": record},
                            headers={"Authorization": f"Bearer {hub['tokens'][who]}"})


def rows(hub: dict, table: sa.Table, *where) -> list[dict]:
    with hub["store"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]


def events_after(hub: dict, who: str, after: int) -> list[dict]:
    out, headers = [], {"Authorization": f"Bearer {hub['tokens'][who]}"}
    while True:
        page = hub["http"].get(f"/v1/feeds/{who}/events", params={"after": after, "limit": 500}, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        out += body["events"]
        after = body["next_after"]
        if not body["has_more"]:
            return out


def high_water(hub: dict) -> int:
    with hub["store"].engine.connect() as conn:
        return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.max(s.change_events.c.seq), 0))))


def test_an_entered_record_is_a_batch_that_reaches_golden_records_and_another_stations_feed(hub: dict) -> None:
    before = high_water(hub)
    record = resident()
    r = post(hub, "desk", record)
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["status"] == "loaded" and answer["errors"] == [] and answer["quarantine_id"] is None
    assert answer["record_key"] == f"{STATION}:FD-0001" and answer["batch_id"].startswith(f"{STATION}/front_desk/")
    [batch] = rows(hub, s.batches, s.batches.c.batch_id == answer["batch_id"])
    assert (batch["station_id"], batch["source_kind"], batch["rows_read"], batch["rows_loaded"],
            batch["rows_quarantined"], batch["status"]) == (STATION, "entry", 1, 1, 0, "loaded")
    [raw] = rows(hub, s.raw_records, s.raw_records.c.batch_id == answer["batch_id"])
    assert raw["record_key"] == f"{STATION}:FD-0001" and json.loads(raw["payload"])["id_number"] == record["id_number"]
    people = hub["store"].record_table("person")
    [stored] = rows(hub, people, people.c.record_key == f"{STATION}:FD-0001")
    assert stored["id_number"] == record["id_number"] and stored["id_valid"] and stored["batch_id"] == answer["batch_id"]

    # the drop sensor sees the entry as new for this station only, as it would a drop
    resources = {"project": ProjectResource(config_dir=str(hub["root"]), warehouse_url=hub["url"])}
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as ctx:
        result = station_drops_sensor(ctx)
    assert [q.partition_key for q in result.run_requests] == [STATION]

    materialize_project(hub["project"], hub["project"].station_ids)
    rs = hub["store"].resolution_store("person", "person_records")
    member = rs.membership().filter(pl.col("record_key") == f"{STATION}:FD-0001")
    assert member.height == 1
    entity = member["entity_id"][0]
    [golden] = rows(hub, s.golden_records, s.golden_records.c.entity_id == entity)
    assert golden["status"] == "active"
    golden_record = golden["record"] if isinstance(golden["record"], dict) else json.loads(golden["record"])
    assert golden_record["id_number"] == record["id_number"] and golden_record["name_norm"] == "柳如烟"

    # the neighbour's feed (area scope covering the new home) has the create, masked by its role
    mine = [e for e in events_after(hub, "neighbour", before) if e["entity_id"] == entity]
    assert [e["op"] for e in mine] == ["create"]
    assert mine[0]["after"]["name_norm"] == "柳如烟"
    assert mine[0]["after"]["id_number"] != record["id_number"] and mine[0]["after"]["id_number"].endswith(
        record["id_number"][-4:])

    # after the run, the station's version is the one recorded: nothing more to launch
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as ctx:
        assert station_drops_sensor(ctx).run_requests == []

    # the same record again: the same batch, nothing new stored
    again = post(hub, "desk", record)
    assert again.status_code == 200 and again.json()["batch_id"] == answer["batch_id"] and again.json()["duplicate"]
    assert len(rows(hub, s.batches, s.batches.c.batch_id == answer["batch_id"])) == 1


def test_a_correction_of_its_own_record_replaces_it(hub: dict) -> None:
    first = post(hub, "desk", resident(local_id="FD-0002", phone="13700000001"))
    assert first.status_code == 201, first.text
    fixed = post(hub, "desk", resident(local_id="FD-0002", phone="13700000002"))
    assert fixed.status_code == 201 and fixed.json()["batch_id"] != first.json()["batch_id"]
    people = hub["store"].record_table("person")
    [stored] = rows(hub, people, people.c.record_key == f"{STATION}:FD-0002")
    assert stored["phone"] == "13700000002" and stored["batch_id"] == fixed.json()["batch_id"]


def test_a_bad_record_is_quarantined_with_its_errors_field_by_field(hub: dict) -> None:
    good = resident(local_id="FD-0003")
    wrong_digit = good["id_number"][:17] + ("0" if good["id_number"][17] != "0" else "1")
    bad = {**good, "id_number": wrong_digit, "birth_date": "1990-02-30", "phone": "12345"}
    r = post(hub, "desk", bad)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["status"] == "quarantined" and answer["quarantine_id"] is not None
    fields = {e["field"] for e in answer["errors"]}
    assert {"id_number", "birth_date", "phone"} <= fields
    assert any("check digit" in e["message"] for e in answer["errors"] if e["field"] == "id_number")
    [q] = rows(hub, s.quarantine, s.quarantine.c.quarantine_id == answer["quarantine_id"])
    assert q["batch_id"] == answer["batch_id"] and q["station_id"] == STATION and q["row_number"] == 1
    assert json.loads(q["original"])["id_number"] == wrong_digit  # nothing lost
    [batch] = rows(hub, s.batches, s.batches.c.batch_id == answer["batch_id"])
    assert (batch["rows_read"], batch["rows_loaded"], batch["rows_quarantined"]) == (1, 0, 1)
    people = hub["store"].record_table("person")
    assert rows(hub, people, people.c.record_key == f"{STATION}:FD-0003") == []
    recon = hub["store"].reconciliation([STATION]).filter(pl.col("batch_id") == answer["batch_id"])
    assert recon["balanced"].to_list() == [True]
    # again: the same batch and quarantine row
    again = post(hub, "desk", bad)
    assert again.status_code == 422 and again.json()["quarantine_id"] == answer["quarantine_id"]
    assert again.json()["batch_id"] == answer["batch_id"]

    # no local id: quarantined by the drop's own row check
    nolid = post(hub, "desk", {k: v for k, v in good.items() if k != "local_id"})
    assert nolid.status_code == 422 and nolid.json()["quarantine_id"] is not None
    assert nolid.json()["errors"][0]["field"] == "local_id"
    # not a record of the type at all: refused, nothing stored
    before = len(rows(hub, s.batches))
    unknown = post(hub, "desk", {**good, "station_id": "s0001"})
    assert unknown.status_code == 422 and unknown.json()["status"] == "refused"
    assert unknown.json()["errors"][0]["field"] == "station_id"
    assert len(rows(hub, s.batches)) == before


def test_entry_needs_the_grant_and_is_audited(hub: dict) -> None:
    r = post(hub, "neighbour", resident(local_id="FD-0004"))
    assert r.status_code == 403 and "query.entry" in r.json()["detail"]
    assert post(hub, "desk", resident(), entity_type="organisation").status_code == 403
    no_token = hub["http"].post("/v1/records", json={"entity_type": "person", "record": resident()})
    assert no_token.status_code == 401
    log = access_log(hub["store"]).filter(pl.col("kind") == "entry")
    outcomes = log.group_by("subscriber_id", "outcome").len()
    got = {(a, b) for a, b, _ in outcomes.iter_rows()}
    assert {("desk", "ok"), ("desk", "duplicate"), ("desk", "quarantined"), ("neighbour", "refused")} <= got
    ok = log.filter(pl.col("outcome") == "ok").row(0, named=True)
    assert ok["batch_id"].startswith(f"{STATION}/front_desk/")  # the batch the entry made
    assert log.filter(pl.col("outcome") == "refused")["batch_id"].null_count() == log.filter(
        pl.col("outcome") == "refused").height  # refused before anything was stored
    hashes = json.loads(ok["key_hashes"])
    assert {"id_number", "name", "local_id"} <= set(hashes)
    assert an_id_number() not in ok["key_hashes"] and "柳如烟" not in ok["key_hashes"]
    assert all(len(h) == 64 for h in hashes.values())


def test_only_a_station_may_be_granted_entry(tmp_path) -> None:
    doc = subscriptions()
    doc["subscribers"].append({"id": "city", "kind": "department", "entity_types": ["person"],
                               "scope": {"area_codes": ["50"]}, "fields": FIELDS, "role": "officer",
                               "query": {"scope": {"network": True}, "entry": True}})
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="only a station subscriber may enter"):
        load_subscriptions(tmp_path)


def _sensor_launches(hub: dict) -> list[str]:
    resources = {"project": ProjectResource(config_dir=str(hub["root"]), warehouse_url=hub["url"])}
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as ctx:
        return [q.partition_key for q in station_drops_sensor(ctx).run_requests]


def _wait(predicate, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the entry publisher did not finish in time"
        time.sleep(0.1)


def test_the_publisher_publishes_an_entry_itself_and_gives_it_back_when_it_fails(hub: dict) -> None:
    """With an EntryPublisher (the hub's API), an entry is resolved and published by the serving
    process and the drop sensor launches nothing for it; a publication that fails gives the entry
    back to the drop sensor.

    The process ignores SIGTERM, as one started in the background does after a Dagster run in its
    main thread (SIGTERM takes SIGINT's ignored disposition): the publisher's runs capture no output,
    so they leave no `tail` child behind (one that ignores its SIGTERM would hold each run for a
    minute and outlive it)."""
    project, store = hub["project"], hub["store"]
    materialize_project(project, project.station_ids)  # what the earlier tests entered, published
    assert _sensor_launches(hub) == []
    tails_before = _output_tails()
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    publisher = EntryPublisher(project, store, gather_seconds=0.0)
    try:
        _publish_and_give_back(hub, publisher)
    finally:  # no publisher thread outlives the test: the next test's Dagster runs would share its logging
        publisher.close()
        signal.signal(signal.SIGTERM, previous)
    assert _output_tails() - tails_before == set()


def _output_tails() -> set[int]:
    """This process's `tail -F` children: Dagster's mirrors of a run's captured output."""
    return {pid for pid, parent, argv in live_processes() if argv[:2] == ["tail", "-F"] and parent == os.getpid()}


def _publish_and_give_back(hub: dict, publisher: EntryPublisher) -> None:
    project, store = hub["project"], hub["store"]
    enter = project_entry(project, store, publisher=publisher)
    before = high_water(hub)
    body = "50010619850612123"
    record = resident(local_id="FD-0100", name="林晚照", birth_date="1985-06-12", id_number=body + id_check_char(body),
                      sex="男", phone="13755550100")
    assert enter(STATION, "person", record, ref="test")["status"] == "loaded"
    _wait(lambda: publisher.published == 1, seconds=600.0)  # three Dagster runs on a busy CI worker
    assert _sensor_launches(hub) == []  # claimed when entered: no station run for it
    people = hub["store"].resolution_store("person", "person_records").membership()
    assert people.filter(pl.col("record_key") == f"{STATION}:FD-0100").height == 1
    mine = [e for e in events_after(hub, "neighbour", before) if (e.get("after") or {}).get("phone") == "137****0100"]
    assert [e["op"] for e in mine] == ["create"]
    runs = [r.dagster_run for r in open_instance(project).get_run_records(limit=10)]
    assert {r.tags["enteronce/stage"] for r in runs if r.tags.get("enteronce/launched_by") == LAUNCHED_BY} == {
        "ingest", "publication", "feeds"}

    def broken(*_args, **_kwargs):
        raise RuntimeError("the instance is gone")

    failing = EntryPublisher(project, store, runner=broken, gather_seconds=0.0)
    enter = project_entry(project, store, publisher=failing)
    assert enter(STATION, "person", resident(local_id="FD-0101"), ref="test")["status"] == "loaded"
    _wait(lambda: failing.failed == 1)
    failing.close()
    assert _sensor_launches(hub) == [STATION]  # the drop sensor takes it the ordinary way
    materialize_project(project, project.station_ids)
    assert _sensor_launches(hub) == []
