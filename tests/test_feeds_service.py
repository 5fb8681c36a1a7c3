"""The feed service on a real warehouse (SQLite and PostgreSQL): scope before and after a change,
snapshot then increments, merges and splits, correction tasks, cursors and the audit log.

The outbox is staged with fixtures.feed_outbox.Outbox in the pipeline's own table shapes, so each test
says exactly which entity went where."""

from __future__ import annotations

import json

import pytest

from core.errors import EnteronceError
from feeds.config import parse_subscriptions
from feeds.service import FeedService, UnknownSubscriber
from fixtures.feed_outbox import Outbox, person
from warehouse import Warehouse
from warehouse.feeds import FeedStore

A_AREA, B_AREA, C_AREA = "500103001", "500106001", "500112003"
FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", "addr_district", "addr_street",
          "addr_community", "area_code"]


MASKING = {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
           "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
           "birth_date": {"kind": "date"}}
ROLES = {
    "officer": {"fields": {"name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked",
                           "phone": "masked", "address": "full", "addr_district": "full",
                           "addr_street": "full", "addr_community": "full", "area_code": "full"}},
    "analyst": {"fields": {"name_norm": "masked", "birth_date": "masked", "address": "masked",
                           "area_code": "full"}},
}


def subscriptions(**overrides) -> object:
    doc = {
        "masking": MASKING,
        "roles": ROLES,
        "subscribers": [
            {"id": "A", "kind": "station", "station_id": "sA", "entity_types": ["person"],
             "scope": {"area_codes": [A_AREA]}, "fields": FIELDS, "role": "officer"},
            {"id": "B", "kind": "station", "station_id": "sB", "entity_types": ["person"],
             "scope": {"area_codes": [B_AREA], "own_records": True}, "fields": FIELDS, "role": "officer"},
            {"id": "C", "kind": "station", "station_id": "sC", "entity_types": ["person"],
             "scope": {"area_codes": [C_AREA]}, "fields": FIELDS, "role": "officer"},
            {"id": "dept", "kind": "department", "entity_types": ["person"],
             "scope": {"area_codes": ["5001"]}, "fields": FIELDS, "role": "analyst"},
            {"id": "orgs-only", "kind": "department", "entity_types": ["organisation"],
             "scope": {"area_codes": ["5001"]}, "fields": FIELDS, "role": "officer"},
        ],
        **overrides,
    }
    return parse_subscriptions(doc)


@pytest.fixture()
def env(warehouse_url: str):
    store = Warehouse(warehouse_url).migrate()
    out = Outbox()
    yield store, out, FeedService(store, subscriptions())
    store.dispose()


def page(svc: FeedService, sid: str, after: int = 0, limit: int = 100) -> list[dict]:
    return svc.events(sid, after=after, limit=limit, channel="api").events


def test_resident_who_leaves_gets_the_move_then_nothing_more(env) -> None:
    store, out, svc = env
    out.create("P1", person("张三丰", A_AREA + "001", id_number="50010119900101123X"), ["sA:1"])
    out.flush(FeedStore(store))
    created = page(svc, "A")
    assert [e["op"] for e in created] == ["create"] and page(svc, "B") == []
    after = created[0]["after"]
    assert after["name_norm"] == "张三丰" and after["id_number"] == "500101********123X"
    assert after["phone"] == "138****5678" and "addr_road" not in after  # not in the subscriber's fields

    moved = out.update("P1", area_code=B_AREA + "002", address="重庆市沙坪坝区小龙坎街道正街社区正街88号",
                       addr_district="沙坪坝区", addr_street="小龙坎街道", addr_community="正街社区")
    phone = out.update("P1", phone="13900001111")
    out.flush(FeedStore(store))
    a_got = page(svc, "A", after=1)
    assert [(e["seq"], e["op"], e["scope"]) for e in a_got] == [(moved, "update", "left")]
    assert a_got[0]["after"]["area_code"] == B_AREA + "002"  # A learns where the resident went...
    b_got = page(svc, "B", after=1)
    assert [(e["seq"], e["scope"]) for e in b_got] == [(moved, "entered"), (phone, "in")]
    assert b_got[0]["after"]["name_norm"] == "张三丰"  # entering B's area, the resident arrives whole
    assert b_got[0]["after"]["id_number"] == "500101********123X" and "name_norm" not in b_got[0]["before"]
    assert b_got[1]["changed_fields"] == ["phone"] and b_got[1]["after"] == {"phone": "139****1111"}
    assert b_got[1]["before"] == {"phone": "138****5678"}
    # ...and hears nothing more about them
    later = out.update("P1", phone="13700002222")
    out.flush(FeedStore(store))
    assert page(svc, "A", after=moved) == []
    assert [e["seq"] for e in page(svc, "B", after=phone)] == [later]
    # the department sees the move with its own masking: the address cut to its community
    dept = {e["seq"]: e for e in page(svc, "dept")}
    assert dept[moved]["after"]["address"] == "沙坪坝区小龙坎街道正街社区"
    assert phone not in dept  # phones are hidden from the department: that update is not for it
    assert page(svc, "orgs-only") == []


def test_snapshot_pages_then_increments_and_cursor(env) -> None:
    store, out, svc = env
    for i in range(5):
        out.create(f"P{i}", person(f"王{i}", A_AREA + f"00{i}"), [f"sA:{i}"])
    out.create("Q", person("赵六", C_AREA + "001"), ["sC:1"])
    out.create("R", person("钱七", A_AREA + "009"), ["sA:9"])
    out.merge("R", "P0")  # R is retired: no snapshot carries it
    out.flush(FeedStore(store))
    assert svc.cursor("A") is None  # new subscriber: starts with a snapshot
    first = svc.snapshot("A", after_entity=None, limit=3, channel="api")
    assert [r["entity_id"] for r in first.records] == ["P0", "P1", "P2"] and first.has_more
    assert first.as_of_seq == 8
    assert first.records[0]["record"]["id_number"] == "500101********1234"
    assert first.records[0]["provenance"]["name_norm"] == {"station_id": "sA", "record_key": "sA:0"}
    assert "batch_id" not in json.dumps(first.records)
    out.update("P1", phone="13311112222")  # a change while the snapshot is being paged
    out.flush(FeedStore(store))
    second = svc.snapshot("A", after_entity=first.next_after_entity, limit=3, channel="api")
    assert [r["entity_id"] for r in second.records] == ["P3", "P4"] and not second.has_more
    assert second.as_of_seq == 8 and second.next_after_entity is None
    assert svc.cursor("A") == 8
    inc = svc.events("A", after=None, limit=10, channel="api")  # from the snapshot's seq
    assert [e["seq"] for e in inc.events] == [9] and inc.next_after == 9 and not inc.has_more
    assert svc.acknowledge("A", 9) == 9
    assert svc.acknowledge("A", 3) == 9  # never backwards
    assert svc.acknowledge("A", 10**9) == 9  # never beyond the high water
    assert svc.events("A", after=None, limit=10, channel="api").events == []
    assert svc.cursor("A", channel="file") is None  # the file channel has its own cursor


def test_paging_is_complete_and_skips_what_is_not_for_the_subscriber(env) -> None:
    store, out, svc = env
    for i in range(30):
        area = A_AREA if i % 3 == 0 else C_AREA
        out.create(f"P{i:02d}", person(f"孙{i}", area + "001"), [f"sX:{i}"])
    out.flush(FeedStore(store))
    seen, after = [], 0
    while True:
        got = svc.events("A", after=after, limit=4, channel="api")
        seen += [e["seq"] for e in got.events]
        after = got.next_after
        if not got.has_more:
            break
    assert seen == [i + 1 for i in range(30) if i % 3 == 0] and after == 30


def test_merge_and_split_reach_whoever_had_either_entity(env) -> None:
    store, out, svc = env
    out.create("P1", person("周一", A_AREA + "001"), ["sA:1"])
    out.create("P2", person("周一", B_AREA + "001"), ["sX:2"])
    out.flush(FeedStore(store))
    merge = out.merge("P2", "P1")
    out.flush(FeedStore(store))
    for sid in ("A", "B"):  # B had the retired id, A has the survivor
        got = [e for e in page(svc, sid, after=2) if e["op"] == "merge"]
        assert [(e["seq"], e["entity_id"], e["after"]) for e in got] == [(merge, "P2", {"merged_into": "P1"})]
    assert page(svc, "B", after=2)[0]["before"]["id_number"] == "500101********1234"  # masked as always
    assert page(svc, "C", after=2) == []

    split, part = out.split("P1", "P3", person("周二", C_AREA + "001"), ["sX:2"])
    out.flush(FeedStore(store))
    assert [(e["op"], e["after"]) for e in page(svc, "A", after=merge)] == [("split", {"parts": ["P3"]})]
    c_got = page(svc, "C", after=merge)  # the new part lives in C's area: C hears of the split, and of P3
    assert [(e["seq"], e["op"], e["entity_id"]) for e in c_got] == [(split, "split", "P1"), (part, "create", "P3")]


def test_own_records_scope_follows_the_station_records(env) -> None:
    store, out, svc = env
    out.create("P1", person("吴三", C_AREA + "001"), ["sC:1"])
    out.flush(FeedStore(store))
    assert page(svc, "B") == []
    out.add_member("P1", "sB:77")  # B enters a record of this resident: now it is B's own
    seq = out.update("P1", phone="13500000000")
    out.flush(FeedStore(store))
    assert [e["seq"] for e in page(svc, "B")] == [1, seq]
    snap = svc.snapshot("B", after_entity=None, limit=10, channel="api")
    assert [r["entity_id"] for r in snap.records] == ["P1"]


def test_correction_tasks_reach_nobody_who_does_not_take_them(env) -> None:
    """Deny by default: none of these subscribers lists `correction_task` among its entity types,
    so none receives a task, not even the station it is addressed to (tests/test_feeds_tasks.py
    has the subscribers that do)."""
    store, out, svc = env
    out.create("P1", person("郑四", A_AREA + "001"), ["sA:1", "sC:9"])
    out.correction_task("T1", "sC", "sC:9", "phone", "1381234567", "13812345678", entity_id="P1",
                        area_code=A_AREA + "001")
    out.correction_task("T1", "sC", "sC:9", "phone", "1381234567", "13812345678", entity_id="P1",
                        area_code=A_AREA + "001", status="closed")
    out.flush(FeedStore(store))
    for sid in ("A", "B", "C", "dept", "orgs-only"):
        assert all(e["entity_type"] != "correction_task" for e in page(svc, sid))
        snap = svc.snapshot(sid, after_entity=None, limit=100, channel="api")
        assert all(r["entity_type"] != "correction_task" for r in snap.records)


def test_deliveries_are_audited_with_fields_and_levels(env) -> None:
    store, out, svc = env
    out.create("P1", person("冯五", A_AREA + "001"), ["sA:1"])
    out.create("P2", person("陈六", A_AREA + "002"), ["sA:2"])
    out.update("P2", phone="13600000000")
    out.flush(FeedStore(store))
    assert svc.events("C", after=0, limit=10, channel="api").events == []
    svc.events("A", after=0, limit=10, channel="api", token_id="tok-1")
    svc.events("dept", after=0, limit=10, channel="api")
    svc.snapshot("dept", after_entity=None, limit=1, channel="api")
    log = FeedStore(store).deliveries()
    assert log["subscriber_id"].to_list() == ["A", "dept", "dept"]  # nothing logged for an empty page
    a = log.row(0, named=True)
    assert (a["channel"], a["kind"], a["token_id"], a["seq_from"], a["seq_to"]) == ("api", "events", "tok-1", 1, 3)
    assert (a["event_count"], a["entity_count"], json.loads(a["entity_ids"])) == (3, 2, ["P1", "P2"])
    assert json.loads(a["fields"])["id_number"] == "masked" and json.loads(a["fields"])["name_norm"] == "full"
    d = log.row(1, named=True)  # the department's page had only the creates: no phone, no id number
    assert json.loads(d["fields"]) == {"name_norm": "masked", "birth_date": "masked", "address": "masked",
                                       "area_code": "full"}
    s = log.row(2, named=True)
    assert (s["kind"], s["seq_to"], json.loads(s["entity_ids"])) == ("snapshot", 3, ["P1"])


def test_unknown_subscriber_and_bad_arguments(env) -> None:
    _store, _out, svc = env
    with pytest.raises(UnknownSubscriber, match="no subscriber '../x'"):
        svc.events("../x", after=0, limit=10, channel="api")
    with pytest.raises(EnteronceError, match="channel"):
        svc.events("A", after=0, limit=10, channel="ftp")
    with pytest.raises(EnteronceError, match=">= 0"):
        svc.acknowledge("A", -1)
    assert isinstance(UnknownSubscriber("x"), EnteronceError)
