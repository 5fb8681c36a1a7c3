"""Property-based security tests: for random outboxes and random subscriptions, no subscriber ever
receives an out-of-scope entity or a field beyond its role, masked fields are always masked, and
every in-scope change (and every in-scope record of a snapshot, on a real SQLite warehouse) does
arrive. Correction tasks are events like any other: the same properties hold for them in the
builder, in snapshots and events through the files and the HTTP API, in the station mirror that
pulls them, and in the audit log.

The oracle below decides scope and masking row by row in plain Python, independently of the
builder's joins and expressions; the outbox is written by fixtures.feed_outbox.Outbox in the
pipeline's own shapes (correction tasks as warehouse.quality writes them).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from feeds.api import BackgroundServer, create_app
from feeds.build import TASK_META, TASK_VALUES, FeedInputs, build_events
from feeds.config import parse_subscriptions
from feeds.files import build_all
from feeds.mirror import pull
from feeds.service import FeedService
from feeds.tokens import issue_token
from fixtures.feed_outbox import PERSON_FIELDS, Outbox, person
from warehouse import Warehouse
from warehouse.feeds import FeedStore
from warehouse.mirror import MirrorStore

AREAS = ["500103001001", "500103001002", "500103002001", "500106001001", "500112003001"]
PREFIXES = ["5001", "500103", "500103001", "500106", "500112003", "500199"]
STATIONS = ["s1", "s2", "s3"]
FIELDS = list(PERSON_FIELDS)
MASKING = {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
           "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
           "birth_date": {"kind": "date", "keep": "year"}}
NAMES = ["张三", "欧阳娜娜", "李", "王小明"]
TASK_FIELDS = [*FIELDS, "credit_code"]
TASK = "correction_task"


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
    "tasks": st.booleans(),  # lists correction_task among its entity types
    "area_codes": st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True),
    "own_records": st.booleans(),
    "fields": st.sets(st.sampled_from(TASK_FIELDS), min_size=1),
    "levels": st.dictionaries(st.sampled_from(TASK_FIELDS), st.sampled_from(["full", "masked", "hidden"])),
})
# a task: slot (the same task opened, closed, reopened), station, record type, field, area it is
# routed by (None: an event without one, routed by its entity's golden area), about an entity or not
task_st = st.tuples(st.just("task"), st.integers(0, 3), st.sampled_from(STATIONS),
                    st.sampled_from(["person", "person", "organisation"]), st.sampled_from(TASK_FIELDS),
                    st.sampled_from([*AREAS, None]), st.one_of(st.none(), st.integers(0, 9)), st.booleans())
op_st = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(AREAS), st.sampled_from(STATIONS), st.sampled_from(NAMES)),
    st.tuples(st.just("move"), st.integers(0, 9), st.sampled_from(AREAS)),
    st.tuples(st.just("phone"), st.integers(0, 9), st.integers(0, 99)),
    st.tuples(st.just("name"), st.integers(0, 9), st.sampled_from(NAMES)),
    st.tuples(st.just("member"), st.integers(0, 9), st.sampled_from(STATIONS)),
    st.tuples(st.just("merge"), st.integers(0, 9), st.integers(0, 9)),
    task_st, task_st, task_st,  # tasks open, close and reopen as often as records change
)


def task_value(field: str, n: int, expected: bool) -> str | None:
    """A station's (or the golden) value of the task's field, shaped like the field's values."""
    if expected and n % 3 == 0:
        return None  # an expectation task without an expected value
    if field == "id_number":
        return f"50010119900101{n % 10000:04d}"
    if field == "phone":
        return f"1{n % 10**9:09d}"
    if field == "birth_date":
        return f"19{n % 100:02d}-0{n % 9 + 1}-1{n % 10}"
    return f"值{n}{'甲' if expected else '乙'}"


class Player:
    """Runs ops on one Outbox (phase after phase); per seq, what the oracle needs."""

    def __init__(self) -> None:
        self.out = Outbox()
        self.facts: dict[int, dict] = {}
        self.ids: list[str] = []
        self.n = 0

    def play(self, ops: list[tuple]) -> None:
        out, facts, ids = self.out, self.facts, self.ids
        active = lambda i: ids and out.entities[ids[i % len(ids)]].status == "active"  # noqa: E731
        for op in ops:
            self.n += 1
            n, kind = self.n, op[0]
            if kind == "create":
                eid = f"P{n:03d}"
                seq = out.create(eid, person(op[3], op[1], phone=f"138{n:08d}"), [f"{op[2]}:{n}"])
                ids.append(eid)
                facts[seq] = {"entity": eid, "before_area": None, "after_area": op[1], "related": []}
            elif kind == "task":
                self._task(n, *op[1:])
            elif kind in ("move", "phone", "name", "member") and active(op[1]):
                self._change(n, op)
            elif kind == "merge" and active(op[1]) and active(op[2]) and op[1] % len(ids) != op[2] % len(ids):
                retired, into = ids[op[1] % len(ids)], ids[op[2] % len(ids)]
                area = out.entities[retired].record["area_code"]
                seq = out.merge(retired, into)
                facts[seq] = {"entity": retired, "before_area": area, "after_area": None, "related": [into]}

    def _task(self, n: int, slot: int, station: str, rtype: str, field: str, area: str | None,
              about: int | None, close: bool) -> None:
        """Open (or reopen) task `slot`, or close it if it is open and `close`; as the quality
        pass does, a task is never opened twice nor closed twice."""
        out = self.out
        tid = f"T{slot}"
        old = out.tasks.get(tid)
        if close != (old is not None and old["status"] == "open"):
            return
        if close:  # closing: the same task, its values as they were, routed by the area now
            seq = out.correction_task(tid, old["station_id"], old["record_key"], old["field"], old["station_value"],
                                      old["expected_value"], status="closed", record_entity_type=old["entity_type"],
                                      entity_id=old["entity_id"], area_code=area, source=old["source"])
        else:
            entity = self.ids[about % len(self.ids)] if about is not None and self.ids else None
            seq = out.correction_task(tid, station, f"{station}:r{slot}", field, task_value(field, n, False),
                                      task_value(field, n, True), record_entity_type=rtype, entity_id=entity,
                                      area_code=area)
        ev = out.event(seq)
        self.facts[seq] = {"task": tid, "after": json.loads(ev["after"]),
                           "before": json.loads(ev["before"]) if ev["before"] else None}

    def _change(self, n: int, op: tuple) -> None:
        out, ids, kind = self.out, self.ids, op[0]
        eid = ids[op[1] % len(ids)]
        e = out.entities[eid]
        if kind == "member":
            out.add_member(eid, f"{op[2]}:m{n}")
            return
        area = e.record["area_code"]
        change = ({"area_code": op[2], "address": f"重庆市某区{op[2]}"} if kind == "move"
                  else {"phone": f"139{op[2]:08d}"} if kind == "phone" else {"name_norm": op[2]})
        if all(e.record.get(k) == v for k, v in change.items()):
            return
        seq = out.update(eid, **change)
        self.facts[seq] = {"entity": eid, "before_area": area, "after_area": e.record["area_code"], "related": []}


def play(ops: list[tuple]) -> tuple[Outbox, dict]:
    player = Player()
    player.play(ops)
    return player.out, player.facts


def subscriptions_for(subs_spec: list[dict]) -> dict:
    subscribers, roles = [], {}
    for i, spec in enumerate(subs_spec):
        own = spec["own_records"] or not spec["area_codes"]
        roles[f"r{i}"] = {"default": "hidden", "fields": spec["levels"]}
        subscribers.append({
            "id": f"sub{i}", "kind": "department" if spec["department"] and not own else "station",
            **({"station_id": spec["station_id"]} if own or not spec["department"] else {}),
            "entity_types": sorted(spec["entity_types"] | ({TASK} if spec["tasks"] else set())),
            "scope": {"area_codes": spec["area_codes"], "own_records": own},
            "fields": sorted(spec["fields"]), "role": f"r{i}",
        })
    return {"masking": MASKING, "roles": roles, "subscribers": subscribers}


# -- the oracle for correction tasks, restated by hand ---------------------------------------------
def task_area(payload: dict | None, area_now: dict[str, str | None]) -> str | None:
    """The area a task event is routed by: its own, else its entity's golden area now."""
    if payload is None:
        return None
    return payload.get("area_code") or area_now.get(payload.get("entity_id") or "")


def task_for(s, after: dict, before: dict | None, area_now: dict) -> bool:
    """Whether a task event (or, with before=None, an open task in a snapshot) is for `s`: it
    takes tasks about the record's type; a station only its own; in scope by own records or area."""
    if TASK not in s.entity_types or after["record_entity_type"] not in s.entity_types:
        return False
    if s.kind == "station" and after["station_id"] != s.station_id:
        return False
    inside = lambda area: area is not None and any(area.startswith(p) for p in s.scope.area_codes)  # noqa: E731
    return ((s.scope.own_records and after["station_id"] == s.station_id)
            or inside(task_area(after, area_now)) or inside(task_area(before, area_now)))


def task_view(raw: dict | None, levels: dict) -> dict | None:
    """A task payload as a policy should deliver it."""
    if raw is None:
        return None
    out = {k: raw.get(k) for k in TASK_META}
    field = raw["field"]
    if field in levels:
        for k in TASK_VALUES:
            out[k] = py_mask(field, raw.get(k), {}) if levels[field] == "masked" else raw.get(k)
    return out


def check_task(line_obj: dict | None, raw: dict | None, levels: dict) -> None:
    want = task_view(raw, levels)
    assert line_obj == want, (line_obj, want)
    if line_obj is not None:
        assert "area_code" not in line_obj  # the routing key is never delivered


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subs_spec=st.lists(subscriber_st, min_size=1, max_size=4), ops=st.lists(op_st, min_size=1, max_size=25))
def test_no_subscriber_gets_out_of_scope_entities_or_fields_beyond_its_role(subs_spec, ops) -> None:
    subs = parse_subscriptions(subscriptions_for(subs_spec))
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
            if "task" in fact:
                if task_for(s, fact["after"], fact["before"], area_now):
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
    event(f"task deliveries: {'none' if not any(raw[q]['entity_type'] == TASK for _, q in expected) else 'some'}")
    got = set(zip(built["subscriber_id"].to_list(), built["seq"].to_list(), strict=True))
    assert got <= expected, f"out of scope: {sorted(got - expected)}"
    assert got == expected, f"missing: {sorted(expected - got)}"

    for row in built.iter_rows(named=True):
        s = subs.subscriber(row["subscriber_id"])
        levels = subs.levels(s)
        line = json.loads(row["line"])
        ev = raw[row["seq"]]
        assert line["seq"] == row["seq"] and line["event_id"] == ev["event_id"]
        if ev["entity_type"] == TASK:
            fact = facts[row["seq"]]
            check_task(line["after"], fact["after"], levels)
            check_task(line["before"], fact["before"], levels)
            visible = fact["after"]["field"] in levels
            assert set(line["changed_fields"]) <= set(TASK_META) | (set(TASK_VALUES) if visible else set())
            assert row["fields"] == ([fact["after"]["field"]] if visible else [])
            assert row["about"] == fact["after"]["entity_id"]
            assert all(set(src) == {"station_id", "record_key"} for src in line["sources"])
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


# -- correction tasks end to end: snapshot and events, files and HTTP API, mirror, audit log -----------
def _deliveries_ok(store: Warehouse, subs, delivered: dict[str, set[str]]) -> None:
    """Every audit row names only fields the subscriber may see, at its role's level; and every
    personal field delivered in a task is in the subscriber's audit log (per channel)."""
    log = FeedStore(store).deliveries()
    for row in log.iter_rows(named=True):
        levels = subs.levels(subs.subscriber(row["subscriber_id"]))
        fields = json.loads(row["fields"])
        assert all(levels.get(f) == level for f, level in fields.items()), (row["subscriber_id"], fields, levels)
    for key, want in delivered.items():
        sid, channel = key.split("|")
        got = set()
        for f in log.filter((pl.col("subscriber_id") == sid) & (pl.col("channel") == channel))["fields"]:
            got |= set(json.loads(f))
        assert want <= got, (sid, channel, want - got)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(subs_spec=st.lists(subscriber_st, min_size=2, max_size=3),
       first=st.lists(op_st, min_size=4, max_size=18), then=st.lists(op_st, max_size=18))
def test_tasks_in_snapshots_events_files_api_and_mirror_never_exceed_scope_or_role(
        template: Path, tmp_path: Path, subs_spec, first, then) -> None:
    """Phase one, then every subscriber's first snapshot (files, and a station mirror pulling the
    API); phase two, then its events (files, and the mirror pulling again). Every task delivered
    is for the subscriber (oracle) and as its role sees the task's field; every task that is for it
    arrives (open ones in the snapshot, changes as events); the mirror holds exactly the tasks it
    was sent, at their latest version, in `tasks` and never in `records`; the audit log names
    every field a task delivered, at the level delivered."""
    # this property is about tasks: every subscriber takes them, each of another station
    doc = subscriptions_for([{**spec, "tasks": True, "station_id": STATIONS[i]} for i, spec in enumerate(subs_spec)])
    subs = parse_subscriptions(doc)
    root = tmp_path / f"p{uuid.uuid4().hex[:8]}"
    root.mkdir()
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    path = root / "warehouse.sqlite"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    store = Warehouse(url)
    fs = FeedStore(store)
    player = Player()
    player.play(first)
    player.out.flush(fs)
    snap_seq = player.out.seq
    snap_tasks = {tid: dict(row) for tid, row in player.out.tasks.items()}
    snap_payload = {f["task"]: f["after"] for q, f in sorted(player.facts.items()) if "task" in f}
    area_at_snapshot = area_now_of(player)  # a task without an area goes by its entity's area then
    tokens = {s.id: issue_token(store, s.id, "p").token for s in subs.subscribers}
    build_all(store, subs, config_dir=root, data_dir=root / "data")
    mirrors = {s.id: root / f"mirror-{s.id}.sqlite" for s in subs.subscribers}
    app = create_app(url, root)
    with BackgroundServer(app) as api:
        for s in subs.subscribers:
            pull(mirrors[s.id], api, s.id, tokens[s.id], page=3)
        player.play(then)
        player.out.flush(fs)
        build_all(store, subs, config_dir=root, data_dir=root / "data")
        for s in subs.subscribers:
            pull(mirrors[s.id], api, s.id, tokens[s.id], page=3)
    app.state.warehouse.dispose()

    area_now = area_now_of(player)
    facts = player.facts
    delivered: dict[str, set[str]] = {}
    some = False
    for s in subs.subscribers:
        levels = subs.levels(s)
        outbox = root / "data" / "outbox" / s.id
        snapshot = [json.loads(x) for f in outbox.glob("snapshot_*.jsonl")
                    for x in f.read_text(encoding="utf-8").splitlines()]
        events = [json.loads(x) for f in sorted(outbox.glob("events_*.jsonl"))
                  for x in f.read_text(encoding="utf-8").splitlines()]
        # the snapshot: exactly the open tasks for it, as its role sees them
        got = {r["entity_id"]: r for r in snapshot if r["entity_type"] == TASK}
        want = {tid for tid, row in snap_tasks.items()
                if row["status"] == "open" and task_for(s, snap_payload[tid], None, area_at_snapshot)}
        assert set(got) == want, (s.id, set(got) ^ want)
        for tid, r in got.items():
            check_task(r["record"], snap_payload[tid], levels)
            assert r["provenance"] == {}
        # the events after it: exactly the task events for it
        got_ev = {e["seq"]: e for e in events if e["entity_type"] == TASK}
        want_ev = {q for q, f in facts.items() if "task" in f and q > snap_seq
                   and task_for(s, f["after"], f["before"], area_now)}
        assert set(got_ev) == want_ev, (s.id, set(got_ev) ^ want_ev)
        for q, e in got_ev.items():
            check_task(e["after"], facts[q]["after"], levels)
            check_task(e["before"], facts[q]["before"], levels)
        # the mirror: the latest delivered state of every task it was sent, apart from records
        mirror = MirrorStore(mirrors[s.id])
        held = {t["task_id"]: t for t in mirror.tasks()}
        latest = {tid: (snap_payload[tid], player_version(facts, tid, snap_seq)) for tid in got}
        for q in sorted(want_ev):
            latest[facts[q]["task"]] = (facts[q]["after"], None)
        assert set(held) == set(latest), (s.id, set(held) ^ set(latest))
        for tid, (payload, _) in latest.items():
            assert held[tid]["task"] == task_view(payload, levels)
            assert held[tid]["status"] == payload["status"]
        assert not any(r["entity_type"] == TASK for r in mirror.records())
        mirror.dispose()
        fields = {facts_field(r["record"]) for r in got.values() if set(TASK_VALUES) & set(r["record"])}
        fields |= {e["after"]["field"] for e in got_ev.values() if set(TASK_VALUES) & set(e["after"])}
        delivered[f"{s.id}|file"] = fields
        delivered[f"{s.id}|api"] = fields
        some = some or bool(got or got_ev)
    event(f"tasks delivered: {'some' if some else 'none'}")
    _deliveries_ok(store, subs, delivered)
    store.dispose()


def area_now_of(player: Player) -> dict[str, str | None]:
    """Each entity's golden area as the player's outbox holds it now (None once retired)."""
    return {e: (x.record.get("area_code") if x.status == "active" else None) for e, x in player.out.entities.items()}


def player_version(facts: dict, tid: str, upto: int) -> int:
    return sum(1 for q, f in facts.items() if f.get("task") == tid and q <= upto)


def facts_field(record: dict) -> str:
    return record["field"]
