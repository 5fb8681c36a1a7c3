"""Correction tasks in the feeds, on real warehouses (SQLite and PostgreSQL): they obey a subscriber's
entity types, scope, field list and role like any event — through the HTTP API, the files, the
snapshot and the station mirror — and the audit log records the level actually delivered.

The network below: station sA (its jurisdiction a street, 500103001), station sB (another district),
and subscribers that follow one community of sA's street. Every task is addressed to the station
owning the record; the "expected" value of a golden disagreement is the golden record's surviving
value, which may come from another station's record (T_PHONE's came from sB's record of P1).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from feeds.api import BackgroundServer, create_app
from feeds.config import parse_subscriptions
from feeds.files import build_all
from feeds.mirror import pull
from feeds.service import FeedService
from feeds.tokens import issue_token
from fixtures.feed_outbox import Outbox, person
from quality.corrections import CANDIDATE_SCHEMA, task_id
from quality.service import apply_tasks
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.feeds import FeedStore
from warehouse.mirror import MirrorStore
from warehouse.quality import QualityStore

STREET, COMM, COMM2, ELSEWHERE = "500103001", "500103001001", "500103001002", "500106001001"
FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", "addr_district", "addr_street",
          "addr_community", "area_code", "credit_code"]
TASK = "correction_task"
DOC = {
    "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
                "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
                "birth_date": {"kind": "date", "keep": "year"}},
    "roles": {
        # credit_code is not named: hidden (the role's default)
        "officer": {"fields": {"name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked",
                               "phone": "masked", "address": "full", "addr_district": "full",
                               "addr_street": "full", "addr_community": "full", "area_code": "full"}},
        "registrar": {"fields": {"name_norm": "masked", "id_number": "full", "phone": "masked", "area_code": "full",
                                 "credit_code": "full"}},
    },
    "subscribers": [
        {"id": "sA", "kind": "station", "station_id": "sA", "entity_types": ["person", "organisation", TASK],
         "scope": {"area_codes": [STREET], "own_records": True}, "fields": FIELDS, "role": "officer"},
        {"id": "sB", "kind": "station", "station_id": "sB", "entity_types": ["person", "organisation", TASK],
         "scope": {"area_codes": ["500106001"], "own_records": True}, "fields": FIELDS, "role": "officer"},
        # station sA's desk for one community: persons only, its area only
        {"id": "sA-comm", "kind": "station", "station_id": "sA", "entity_types": ["person", TASK],
         "scope": {"area_codes": [COMM]}, "fields": FIELDS, "role": "officer"},
        {"id": "comm", "kind": "department", "entity_types": ["person", TASK],
         "scope": {"area_codes": [COMM]}, "fields": FIELDS, "role": "officer"},
        {"id": "registry", "kind": "department", "entity_types": ["person", "organisation", TASK],
         "scope": {"area_codes": ["5001"]}, "fields": FIELDS, "role": "registrar"},
        # takes no tasks: deny by default
        {"id": "sA-plain", "kind": "station", "station_id": "sA", "entity_types": ["person", "organisation"],
         "scope": {"area_codes": [STREET], "own_records": True}, "fields": FIELDS, "role": "officer"},
    ],
}
SUBS = parse_subscriptions(DOC)
T_ID, T_PHONE, T_P2, T_P3, T_ORG, T_B = "T_id", "T_phone", "T_p2", "T_p3", "T_org", "T_b"
ID_BAD = "500103199001011235"  # fails its check digit


def golden(out: Outbox) -> None:
    out.create("P1", person("张三丰", COMM, id_number="500103199001011234"), ["sA:1", "sB:1"])
    out.create("P2", person("李四", COMM2, street="解放碑街道", community="新华路社区"), ["sA:2"])
    out.create("P3", person("王五", ELSEWHERE, district="沙坪坝区", street="小龙坎街道", community="正街社区"),
               ["sA:3"])
    out.create("O1", {"name_norm": "山城商贸有限公司", "area_code": COMM, "credit_code": "91500103MA5U00001X"},
               ["sA:o1"], entity_type="organisation")


def tasks(out: Outbox) -> dict[str, int]:
    """The tasks, each addressed to the station whose record it is about; seq by task."""
    return {
        T_ID: out.correction_task(T_ID, "sA", "sA:1", "id_number", ID_BAD, None, entity_id="P1", area_code=COMM,
                                  source="expectation", reason="ID number fails its check digit"),
        T_PHONE: out.correction_task(T_PHONE, "sA", "sA:1", "phone", "1381234567", "13812345678", entity_id="P1",
                                     area_code=COMM),
        T_P2: out.correction_task(T_P2, "sA", "sA:2", "name_norm", "李肆", "李四", entity_id="P2", area_code=COMM2),
        T_P3: out.correction_task(T_P3, "sA", "sA:3", "phone", "13700000000", "13700000001", entity_id="P3",
                                  area_code=ELSEWHERE),
        T_ORG: out.correction_task(T_ORG, "sA", "sA:o1", "credit_code", "91500103MA5U00002X", "91500103MA5U00001X",
                                   record_entity_type="organisation", entity_id="O1", area_code=COMM),
        T_B: out.correction_task(T_B, "sB", "sB:1", "birth_date", "1990-01-02", "1990-01-01", entity_id="P1",
                                 area_code=COMM),
    }


# who gets which task, and why not the others
EXPECTED = {
    "sA": {T_ID, T_PHONE, T_P2, T_P3, T_ORG},  # its own records; never sB's task about the same person
    "sB": {T_B},  # it holds P1 too, but sA's tasks on P1 are sA's
    "sA-comm": {T_ID, T_PHONE},  # not P2 (next community), P3 (lives elsewhere), O1 (not its type)
    "comm": {T_ID, T_PHONE, T_B},  # a department: any station's tasks about persons in its community
    "registry": {T_ID, T_PHONE, T_P2, T_P3, T_ORG, T_B},
    "sA-plain": set(),
}


@pytest.fixture()
def env(warehouse_url: str):
    store = Warehouse(warehouse_url).migrate()
    yield store, Outbox(), FeedService(store, SUBS)
    store.dispose()


def task_events(svc: FeedService, sid: str, after: int = 0) -> dict[str, dict]:
    got = svc.events(sid, after=after, limit=1000, channel="api").events
    return {e["entity_id"]: e for e in got if e["entity_type"] == TASK}


def snapshot_all(svc: FeedService, sid: str, limit: int) -> list[dict]:
    rows, after = [], None
    while True:
        page = svc.snapshot(sid, after_entity=after, limit=limit, channel="api")
        rows += page.records
        after = page.next_after_entity
        if not page.has_more:
            return rows


def test_masked_role_gets_task_values_masked_and_hidden_fields_absent(env, tmp_path: Path) -> None:
    store, out, _svc = env
    golden(out)
    out.flush(FeedStore(store))
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(DOC, allow_unicode=True), encoding="utf-8")
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")  # snapshots: golden only
    first = out.seq
    tasks(out)
    out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    token = issue_token(store, "sA", "desk").token
    with BackgroundServer(create_app(store.url, tmp_path)) as url:
        got = httpx_get(url, "sA", token, after=first)
    api = {e["entity_id"]: e for e in got["events"]}
    files = {e["entity_id"]: e for e in jsonl(tmp_path / "data" / "outbox" / "sA", "events_")}
    assert api == files and set(api) == EXPECTED["sA"]  # the same content through both channels

    t = api[T_ID]["after"]  # the station's own ID number, masked 6+4 as its role masks ID numbers
    assert (t["field"], t["station_value"], t["expected_value"]) == ("id_number", "500103********1235", None)
    assert (t["record_key"], t["station_id"], t["status"], t["reason"]) == (
        "sA:1", "sA", "open", "ID number fails its check digit")
    p = api[T_PHONE]["after"]  # the expected value came from sB's record: masked 3+4 all the same
    assert (p["station_value"], p["expected_value"]) == ("138***4567", "138****5678")
    o = api[T_ORG]["after"]  # credit_code is hidden by the officer's role: the values are absent...
    assert "station_value" not in o and "expected_value" not in o
    # ...but the task still says which record and field to verify, and why
    assert (o["record_key"], o["field"], o["record_entity_type"], o["status"]) == (
        "sA:o1", "credit_code", "organisation", "open")
    assert o["reason"] and o["opened_at"] and o["closed_at"] is None
    assert "station_value" not in api[T_ORG]["changed_fields"]
    assert "91500103MA5U0000" not in json.dumps(got, ensure_ascii=False)
    assert all("area_code" not in e["after"] for e in api.values())  # routing only, never delivered
    assert all(e["sources"] == [{"station_id": "sA", "record_key": e["after"]["record_key"]}] for e in api.values())

    # another role, another view of the same tasks: ID numbers in full, names masked, credit codes full
    reg = task_events(FeedService(store, SUBS), "registry", after=first)
    assert reg[T_ID]["after"]["station_value"] == ID_BAD
    assert (reg[T_P2]["after"]["station_value"], reg[T_P2]["after"]["expected_value"]) == ("李*", "李*")
    assert reg[T_ORG]["after"]["station_value"] == "91500103MA5U00002X"
    assert "station_value" not in reg[T_B]["after"]  # birth dates: not in the registrar's role


def test_scope_and_entity_types_decide_which_tasks_arrive(env) -> None:
    store, out, svc = env
    golden(out)
    tasks(out)
    out.flush(FeedStore(store))
    for sid, want in EXPECTED.items():
        assert set(task_events(svc, sid)) == want, sid
        snap = {r["entity_id"] for r in snapshot_all(svc, sid, limit=3) if r["entity_type"] == TASK}
        assert snap == want, sid
    # a golden event never goes where it would not have gone without tasks: sA-comm's records
    assert {e["entity_id"] for e in svc.events("sA-comm", after=0, limit=100, channel="api").events
            if e["entity_type"] != TASK} == {"P1"}


def test_a_task_follows_its_record_across_areas_before_and_after(env) -> None:
    """A task routed by a community before and another after (the resident moved): both
    communities' subscribers hear of it (like an update that moves an entity); later ones only
    the new one's."""
    store, out, svc = env
    golden(out)
    out.correction_task("T9", "sA", "sA:2", "phone", "1", "2", entity_id="P2", area_code=COMM2)
    closed = out.correction_task("T9", "sA", "sA:2", "phone", "1", "2", entity_id="P2", area_code=COMM,
                                 status="closed")
    reopened = out.correction_task("T9", "sA", "sA:2", "phone", "1", "2", entity_id="P2", area_code=COMM)
    out.flush(FeedStore(store))
    got = svc.events("comm", after=0, limit=100, channel="api").events
    assert [(e["seq"], e["op"]) for e in got if e["entity_type"] == TASK] == [(closed, "retire"),
                                                                               (reopened, "update")]


def test_audit_levels_match_what_was_delivered(env, tmp_path: Path) -> None:
    store, out, svc = env
    golden(out)
    out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    first = out.seq
    tasks(out)
    out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    for sid in EXPECTED:
        svc.events(sid, after=first, limit=1000, channel="api", token_id=f"tok-{sid}")
    log = FeedStore(store).deliveries().filter(pl.col("kind") == "events")
    want = {
        "sA": {"id_number": "masked", "phone": "masked", "name_norm": "full"},  # not credit_code: hidden
        "sB": {"birth_date": "full"},
        "sA-comm": {"id_number": "masked", "phone": "masked"},
        "comm": {"id_number": "masked", "phone": "masked", "birth_date": "full"},
        "registry": {"id_number": "full", "phone": "masked", "name_norm": "masked", "credit_code": "full"},
    }
    for sid, fields in want.items():
        rows = log.filter(pl.col("subscriber_id") == sid)
        assert sorted(rows["channel"].to_list()) == ["api", "file"], sid
        for row in rows.iter_rows(named=True):
            assert json.loads(row["fields"]) == fields, (sid, row["channel"])
            # the entities the tasks were about are named, besides the task ids
            ids = set(json.loads(row["entity_ids"]))
            assert EXPECTED[sid] <= ids and ("P1" in ids) == bool(EXPECTED[sid] & {T_ID, T_PHONE, T_B})
    assert log.filter(pl.col("subscriber_id") == "sA-plain").height == 0  # nothing delivered, nothing logged
    # `enteronce audit --field id_number` reads these rows: who got ID numbers, how masked
    id_rows = [(r["subscriber_id"], json.loads(r["fields"])["id_number"]) for r in log.iter_rows(named=True)
               if "id_number" in json.loads(r["fields"])]
    assert sorted(set(id_rows)) == [("comm", "masked"), ("registry", "full"), ("sA", "masked"),
                                    ("sA-comm", "masked")]


def test_task_opened_before_the_first_snapshot_arrives_in_it(env, tmp_path: Path) -> None:
    store, out, svc = env
    golden(out)
    seqs = tasks(out)
    out.correction_task(T_P3, "sA", "sA:3", "phone", "13700000000", "13700000001", entity_id="P3",
                        area_code=ELSEWHERE, status="closed")  # closed before the snapshot: not in it
    out.flush(FeedStore(store))
    assert max(seqs.values()) < out.seq
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    for sid, want in EXPECTED.items():
        open_now = want - {T_P3}
        outbox = tmp_path / "data" / "outbox" / sid
        files = {r["entity_id"]: r for r in jsonl(outbox, "snapshot_") if r["entity_type"] == TASK}
        assert set(files) == open_now, sid
        api = {r["entity_id"]: r for r in snapshot_all(svc, sid, limit=2) if r["entity_type"] == TASK}
        assert api == files, sid  # the API's snapshot pages carry the same tasks, as the files do
        if files:
            manifest = json.loads(next(outbox.glob("snapshot_*.manifest.json")).read_text(encoding="utf-8"))
            assert manifest["tasks"] == len(open_now)
    snap = {r["entity_id"]: r for r in jsonl(tmp_path / "data" / "outbox" / "sA", "snapshot_")}
    assert snap[T_ID]["record"]["station_value"] == "500103********1235" and snap[T_ID]["version"] == 1
    assert snap[T_ID]["provenance"] == {} and "station_value" not in snap[T_ORG]["record"]
    # after the snapshot, the events: a task closing arrives as a retire
    high = out.seq
    closed = out.correction_task(T_ID, "sA", "sA:1", "id_number", ID_BAD, None, entity_id="P1", area_code=COMM,
                                 source="expectation", reason="ID number fails its check digit", status="closed")
    out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    ev = jsonl(tmp_path / "data" / "outbox" / "sA", f"events_{high + 1:012d}")
    assert [(e["seq"], e["entity_id"], e["op"], e["after"]["status"]) for e in ev] == [(closed, T_ID, "retire",
                                                                                       "closed")]


def test_snapshot_pages_golden_records_then_tasks(env) -> None:
    store, out, svc = env
    golden(out)
    tasks(out)
    out.flush(FeedStore(store))
    pages, after = [], None
    while True:
        page = svc.snapshot("sA", after_entity=after, limit=2, channel="api")
        pages.append([r["entity_id"] for r in page.records])
        after = page.next_after_entity
        if not page.has_more:
            assert after is None
            break
        assert after == (f"task:{page.records[-1]['entity_id']}" if page.records[-1]["entity_type"] == TASK
                         else page.records[-1]["entity_id"])
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)) and set(flat) == {"P1", "P2", "P3", "O1"} | EXPECTED["sA"]
    assert all(len(p) == 2 for p in pages[:-1])
    kinds = ["task" if i.startswith("T_") else "golden" for i in flat]
    assert kinds == sorted(kinds)  # golden records first, then tasks


def test_mirror_keeps_tasks_in_their_own_table_and_applies_close_events(env, tmp_path: Path) -> None:
    store, out, _svc = env
    golden(out)
    tasks(out)
    out.flush(FeedStore(store))
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(DOC, allow_unicode=True), encoding="utf-8")
    token = issue_token(store, "sA", "desk").token
    mirror = tmp_path / "mirror-sA.sqlite"
    with BackgroundServer(create_app(store.url, tmp_path)) as url:
        first = pull(mirror, url, "sA", token, page=2)
        assert first.snapshot_tasks == 5 and first.snapshot_records == 4
        m = MirrorStore(mirror)
        held = {t["task_id"]: t for t in m.tasks()}
        assert set(held) == EXPECTED["sA"] and {t["status"] for t in held.values()} == {"open"}
        assert (held[T_ID]["station_value"], held[T_ID]["record_key"], held[T_ID]["field"]) == (
            "500103********1235", "sA:1", "id_number")
        assert held[T_ORG]["station_value"] is None and "station_value" not in held[T_ORG]["task"]
        assert {r["entity_id"] for r in m.records()} == {"P1", "P2", "P3", "O1"}  # no task among records

        # the station fixes its record: the task closes; a new one opens; another reopens later
        out.correction_task(T_PHONE, "sA", "sA:1", "phone", "1381234567", "13812345678", entity_id="P1",
                            area_code=COMM, status="closed")
        out.correction_task("T_new", "sA", "sA:2", "phone", "1391234567", None, entity_id="P2", area_code=COMM2)
        out.correction_task(T_B, "sB", "sB:1", "birth_date", "1990-01-02", "1990-01-01", entity_id="P1",
                            area_code=COMM, status="closed")  # sB's: never in sA's mirror
        out.flush(FeedStore(store))
        second = pull(mirror, url, "sA", token, page=2)
        assert second.tasks_changed == 2 and second.tasks == 6
        held = {t["task_id"]: t for t in m.tasks()}
        assert held[T_PHONE]["status"] == "closed" and held[T_PHONE]["closed_at"]
        assert held[T_PHONE]["version"] == 2 and held[T_PHONE]["station_value"] == "138***4567"
        assert held["T_new"]["status"] == "open" and held["T_new"]["station_value"] == "139***4567"
        assert {t["task_id"] for t in m.tasks(status="open")} == {T_ID, T_P2, T_P3, T_ORG, "T_new"}
        assert not any(r["entity_type"] == TASK for r in m.records())

        out.correction_task(T_PHONE, "sA", "sA:1", "phone", "1381234567", "13812345678", entity_id="P1",
                            area_code=COMM)  # the problem came back
        out.flush(FeedStore(store))
        pull(mirror, url, "sA", token, page=2)
        assert {t["task_id"]: (t["status"], t["version"]) for t in m.tasks()}[T_PHONE] == ("open", 3)

        before = (m.tasks(), m.records(), m.counts(), m.meta())
        again = pull(mirror, url, "sA", token, page=2)  # pulling again changes nothing
        assert again.events_applied == 0 and (m.tasks(), m.records(), m.counts(), m.meta()) == before
        m.dispose()


def test_an_old_mirror_drops_tasks_it_kept_among_records(tmp_path: Path) -> None:
    """Mirrors of layout 1 stored tasks as records, unmasked as the hub then sent them: opening
    one removes them (the hub now sends tasks masked, into `tasks`)."""
    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    m = MirrorStore(path)
    m.dispose()
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE mirror_meta SET value = '1' WHERE key = 'schema_version'")
        conn.exec_driver_sql("DROP TABLE tasks")
        for eid, etype in (("P1", "person"), ("T1", TASK)):
            conn.exec_driver_sql("INSERT INTO records (entity_id, entity_type, version, record, seq, updated_at) "
                                 "VALUES (?, ?, 1, ?, 1, '2026-11-26 00:00:00')",
                                 (eid, etype, json.dumps({"station_value": ID_BAD})))
    engine.dispose()
    m = MirrorStore(path)
    assert [r["entity_id"] for r in m.records()] == ["P1"] and m.tasks() == []
    assert m.meta()["schema_version"] == "2"
    m.dispose()


def test_task_events_carry_the_area_they_are_routed_by(warehouse_url: str) -> None:
    """apply_tasks writes, with each task, the area it is routed by: the golden area of the entity
    holding the record (found through the record's membership when the task was opened before
    resolution), else the record's own area code; a close or reopen also carries, in `before`, the
    area of the task's previous event."""
    store = Warehouse(warehouse_url).migrate()
    out = Outbox()
    out.create("P1", person("张三丰", COMM), ["s1:1"])
    out.flush(FeedStore(store))
    with store.transaction() as conn:
        conn.execute(s.person_records.insert(), [{"record_key": "s1:2", "station_id": "s1", "local_id": "2",
                                                  "batch_id": "s1/b1", "row_number": 2, "row_hash": "0" * 40,
                                                  "area_code": COMM2}])
    qs = QualityStore(store)
    rows = [{"task_id": task_id("s1", key, "phone", "golden:phone"), "station_id": "s1", "record_key": key,
             "entity_type": "person", "entity_id": None, "field": "phone", "station_value": "1",
             "expected_value": "2", "reason": "phone differs", "source": "expectation", "opened_batch": "s1/b1"}
            for key in ("s1:1", "s1:2", "s1:3")]
    at = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)
    opened = pl.DataFrame(rows, schema=CANDIDATE_SCHEMA).with_columns(opened_at=pl.lit(at))
    closing = pl.DataFrame({"task_id": [rows[0]["task_id"]], "closed_at": [at], "closed_batch": ["s1/b2"]},
                           schema={"task_id": pl.String, "closed_at": pl.Datetime("us", "UTC"), "closed_batch": pl.String})
    empty = closing.clear()
    apply_tasks(qs, opened, empty)
    out.seq = store.max_event_seq()  # the outbox goes on after the task events
    out.update("P1", area_code=ELSEWHERE)  # the resident moves before the task closes
    out.flush(FeedStore(store))
    apply_tasks(qs, opened.clear(), closing)
    ev = FeedStore(store).events(0).filter(pl.col("entity_type") == TASK)
    areas = [(json.loads(a)["record_key"], json.loads(a)["area_code"], json.loads(b)["area_code"] if b else None)
             for a, b in zip(ev["after"], ev["before"], strict=True)]
    assert areas == [("s1:1", COMM, None), ("s1:2", COMM2, None), ("s1:3", None, None),
                     ("s1:1", ELSEWHERE, COMM)]
    store.dispose()


# -- helpers -------------------------------------------------------------------------------------------
def httpx_get(url: str, sid: str, token: str, *, after: int) -> dict:
    r = httpx.get(f"{url}/v1/feeds/{sid}/events", params={"after": after, "limit": 1000},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def jsonl(outbox: Path, prefix: str) -> list[dict]:
    return [json.loads(x) for f in sorted(outbox.glob(f"{prefix}*.jsonl"))
            for x in f.read_text(encoding="utf-8").splitlines()]
