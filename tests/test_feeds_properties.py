"""Property-based security tests: for random outboxes and random subscriptions, no subscriber ever
receives an out-of-scope entity or a field beyond its role, masked fields are always masked, and
every in-scope change (and every in-scope record of a snapshot, on a real SQLite warehouse) does
arrive.

The oracle below decides scope and masking row by row in plain Python, independently of the
builder's joins and expressions; the outbox is written by feeds.synthetic.Outbox in the
pipeline's own shapes.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from feeds.build import FeedInputs, build_events
from feeds.config import parse_subscriptions
from feeds.service import FeedService
from feeds.synthetic import PERSON_FIELDS, Outbox, person
from warehouse import Warehouse
from warehouse.feeds import FeedStore

AREAS = ["500103001001", "500103001002", "500103002001", "500106001001", "500112003001"]
PREFIXES = ["5001", "500103", "500103001", "500106", "500112003", "500199"]
STATIONS = ["s1", "s2", "s3"]
FIELDS = list(PERSON_FIELDS)
MASKING = {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
           "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
           "birth_date": {"kind": "date", "keep": "year"}}
NAMES = ["张三", "欧阳娜娜", "李", "王小明"]


def py_mask(field: str, value: str | None, record: dict) -> str | None:
    """The masking rules, restated by hand."""
    if value is None:
        return None
    rule = MASKING.get(field, {"kind": "redact"})
    kind = rule.get("kind", "partial")
    if kind == "partial":
        first, last = rule.get("keep_first", 0), rule.get("keep_last", 0)
        if len(value) <= first + last:
            return "*" * len(value)
        return value[:first] + "*" * (len(value) - first - last) + (value[len(value) - last:] if last else "")
    if kind == "address":
        parts = "".join(record.get(p) or "" for p in ("addr_district", "addr_street", "addr_community"))
        return parts or "***"
    if kind == "date":
        return value[:4]
    return "***"


subscriber_st = st.fixed_dictionaries({
    "station_id": st.sampled_from(STATIONS),
    "department": st.booleans(),
    "entity_types": st.sets(st.sampled_from(["person", "organisation"]), min_size=1),
    "area_codes": st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True),
    "own_records": st.booleans(),
    "fields": st.sets(st.sampled_from(FIELDS), min_size=1),
    "levels": st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["full", "masked", "hidden"])),
})
op_st = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(AREAS), st.sampled_from(STATIONS), st.sampled_from(NAMES)),
    st.tuples(st.just("move"), st.integers(0, 9), st.sampled_from(AREAS)),
    st.tuples(st.just("phone"), st.integers(0, 9), st.integers(0, 99)),
    st.tuples(st.just("name"), st.integers(0, 9), st.sampled_from(NAMES)),
    st.tuples(st.just("member"), st.integers(0, 9), st.sampled_from(STATIONS)),
    st.tuples(st.just("merge"), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.just("task"), st.sampled_from(STATIONS)),
)


def play(ops: list[tuple]) -> tuple[Outbox, dict]:
    """Run the ops on an Outbox; returns it and, per seq, what the oracle needs."""
    out = Outbox()
    facts: dict[int, dict] = {}
    ids: list[str] = []
    active = lambda i: ids and out.entities[ids[i % len(ids)]].status == "active"  # noqa: E731
    for n, op in enumerate(ops):
        kind = op[0]
        if kind == "create":
            eid = f"P{n:03d}"
            seq = out.create(eid, person(op[3], op[1], phone=f"138{n:08d}"), [f"{op[2]}:{n}"])
            ids.append(eid)
            facts[seq] = {"entity": eid, "before_area": None, "after_area": op[1], "related": []}
        elif kind == "task":
            seq = out.correction_task(f"T{n}", op[1], f"{op[1]}:x", "phone", "1", "2")
            facts[seq] = {"task_station": op[1]}
        elif kind in ("move", "phone", "name", "member") and active(op[1]):
            eid = ids[op[1] % len(ids)]
            e = out.entities[eid]
            if kind == "member":
                out.add_member(eid, f"{op[2]}:m{n}")
                continue
            area = e.record["area_code"]
            change = ({"area_code": op[2], "address": f"重庆市某区{op[2]}"} if kind == "move"
                      else {"phone": f"139{op[2]:08d}"} if kind == "phone" else {"name_norm": op[2]})
            if all(e.record.get(k) == v for k, v in change.items()):
                continue
            seq = out.update(eid, **change)
            facts[seq] = {"entity": eid, "before_area": area, "after_area": e.record["area_code"], "related": []}
        elif kind == "merge" and active(op[1]) and active(op[2]) and op[1] % len(ids) != op[2] % len(ids):
            retired, into = ids[op[1] % len(ids)], ids[op[2] % len(ids)]
            area = out.entities[retired].record["area_code"]
            seq = out.merge(retired, into)
            facts[seq] = {"entity": retired, "before_area": area, "after_area": None, "related": [into]}
    return out, facts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs_spec=st.lists(subscriber_st, min_size=1, max_size=4), ops=st.lists(op_st, min_size=1, max_size=25))
def test_no_subscriber_gets_out_of_scope_entities_or_fields_beyond_its_role(subs_spec, ops) -> None:
    subscribers, roles = [], {}
    for i, spec in enumerate(subs_spec):
        own = spec["own_records"] or not spec["area_codes"]
        roles[f"r{i}"] = {"default": "hidden", "fields": spec["levels"]}
        subscribers.append({
            "id": f"sub{i}", "kind": "department" if spec["department"] and not own else "station",
            **({"station_id": spec["station_id"]} if own or not spec["department"] else {}),
            "entity_types": sorted(spec["entity_types"]),
            "scope": {"area_codes": spec["area_codes"], "own_records": own},
            "fields": sorted(spec["fields"]), "role": f"r{i}",
        })
    subs = parse_subscriptions({"masking": MASKING, "roles": roles, "subscribers": subscribers})
    out, facts = play(ops)
    frames = out.frames()
    events = frames["change_events"]
    if events.height == 0:
        return
    members = frames["entity_membership"].select("entity_id", "record_key")
    golden = frames["golden_records"].select("entity_id", "area_code")
    versions = frames["golden_versions"].select("entity_id", "version", "record")
    built = build_events(events, FeedInputs(versions=versions, members=members, current=golden), subs,
                         list(subs.subscribers), {s.id: 0 for s in subs.subscribers})
    raw = {r["seq"]: r for r in events.iter_rows(named=True)}
    version_record = {(r["entity_id"], r["version"]): json.loads(r["record"]) for r in versions.iter_rows(named=True)}
    keys_of: dict[str, set[str]] = {}
    for r in members.iter_rows(named=True):
        keys_of.setdefault(r["entity_id"], set()).add(r["record_key"])
    station = lambda key: key.split(":")[0]  # noqa: E731
    area_now = dict(golden.iter_rows())

    expected = set()
    for s in subs.subscribers:
        levels = subs.levels(s)
        for seq, fact in facts.items():
            ev = raw[seq]
            if "task_station" in fact:
                if fact["task_station"] == s.station_id:
                    expected.add((s.id, seq))
                continue
            if ev["entity_type"] not in s.entity_types:
                continue
            inside = lambda area: area is not None and any(area.startswith(p) for p in s.scope.area_codes)  # noqa: E731
            mine = lambda keys: s.scope.own_records and any(station(k) == s.station_id for k in keys)  # noqa: E731
            sources = {src["record_key"] for src in json.loads(ev["sources"])}
            own_related = any(mine(keys_of.get(e, ())) for e in fact["related"])
            own_after = mine(keys_of.get(fact["entity"], ())) or own_related
            # a station whose only records are this event's sources has just brought the entity in
            own_before = mine(keys_of.get(fact["entity"], set()) - sources) or own_related
            related = any(inside(area_now.get(e)) for e in fact["related"])
            in_before = inside(fact["before_area"]) or related or own_before
            in_after = inside(fact["after_area"]) or related or own_after
            if not (in_before or in_after):
                continue
            changed = json.loads(ev["changed_fields"])
            if ev["op"] == "update" and not set(changed) & set(levels) and in_before == in_after:
                continue  # nothing visible changed and the entity neither came nor went
            expected.add((s.id, seq))

    event(f"deliveries: {'none' if not expected else 'some'}")
    got = set(zip(built["subscriber_id"].to_list(), built["seq"].to_list(), strict=True))
    assert got <= expected, f"out of scope: {sorted(got - expected)}"
    assert got == expected, f"missing: {sorted(expected - got)}"

    for row in built.iter_rows(named=True):
        s = subs.subscriber(row["subscriber_id"])
        levels = subs.levels(s)
        line = json.loads(row["line"])
        ev = raw[row["seq"]]
        assert line["seq"] == row["seq"] and line["event_id"] == ev["event_id"]
        if ev["entity_type"] == "correction_task":
            assert json.loads(ev["after"])["station_id"] == s.station_id
            continue
        assert set(line["changed_fields"]) <= set(levels)
        assert all(set(src) == {"station_id", "record_key"} for src in line["sources"])
        for side in ("before", "after"):
            obj = line[side]
            if obj is None:
                continue
            if side == "after" and ev["op"] in ("merge", "split", "retire"):
                assert set(obj) <= {"merged_into", "parts"}
                continue
            assert set(obj) <= set(levels), f"{s.id} got {set(obj) - set(levels)} beyond its role"
            version = ev["version"] if side == "after" else ev["version"] - 1
            context = {**version_record.get((ev["entity_id"], version), {}), **json.loads(ev[side] or "{}")}
            for field, value in obj.items():
                want = context.get(field)
                if levels[field] == "masked":
                    want = py_mask(field, want, context)
                assert value == want, (s.id, row["seq"], side, field, value, want)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty warehouse at head, copied for each example (migrating each time would be slow)."""
    path = tmp_path_factory.mktemp("tpl") / "warehouse.sqlite"
    Warehouse(f"sqlite:///{path}").migrate().dispose()
    return path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(spec=subscriber_st, people=st.lists(st.tuples(st.sampled_from(AREAS), st.sampled_from(STATIONS)),
                                           min_size=1, max_size=12),
       merges=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=3))
def test_snapshots_hold_only_in_scope_entities_and_visible_fields(template: Path, tmp_path: Path, spec, people,
                                                                   merges) -> None:
    own = spec["own_records"] or not spec["area_codes"]
    subs = parse_subscriptions({"masking": MASKING, "roles": {"r": {"fields": spec["levels"]}}, "subscribers": [{
        "id": "sub", "kind": "station", "station_id": spec["station_id"], "entity_types": sorted(spec["entity_types"]),
        "scope": {"area_codes": spec["area_codes"], "own_records": own}, "fields": sorted(spec["fields"]),
        "role": "r"}]})
    sub = subs.subscribers[0]
    path = tmp_path / f"w{uuid.uuid4().hex[:8]}.sqlite"
    shutil.copy(template, path)
    store = Warehouse(f"sqlite:///{path}")
    out = Outbox()
    for n, (area, station) in enumerate(people):
        out.create(f"P{n:02d}", person(NAMES[n % len(NAMES)], area, phone=f"137{n:08d}"), [f"{station}:{n}"])
    for a, b in merges:
        if a < len(people) and b < len(people) and a != b and all(
                out.entities[f"P{i:02d}"].status == "active" for i in (a, b)):
            out.merge(f"P{a:02d}", f"P{b:02d}")
    out.flush(FeedStore(store))
    service = FeedService(store, subs)
    got, after = [], None
    while True:
        page = service.snapshot("sub", after_entity=after, limit=5, channel="api")
        got += page.records
        after = page.next_after_entity
        if not page.has_more:
            break
    store.dispose()
    levels = subs.levels(sub)
    expected = set()
    for eid, e in out.entities.items():
        stations = {k.split(":")[0] for k in e.members}
        if e.status == "active" and "person" in sub.entity_types and (
                any(e.record["area_code"].startswith(p) for p in sub.scope.area_codes)
                or (sub.scope.own_records and sub.station_id in stations)):
            expected.add(eid)
    event(f"snapshot: {'empty' if not expected else 'some'}")
    assert {r["entity_id"] for r in got} == expected
    assert len(got) == len(expected)  # paging neither repeats nor skips
    for r in got:
        record = out.entities[r["entity_id"]].record
        assert set(r["record"]) <= set(levels) and set(r["provenance"]) <= set(levels)
        for field, value in r["record"].items():
            want = record.get(field)
            assert value == (py_mask(field, want, record) if levels[field] == "masked" else want)
