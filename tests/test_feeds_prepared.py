"""The feed API's pages prepared by the feed build (feeds.prepared), on real warehouses (SQLite and
PostgreSQL): a prepared page carries exactly what the page built on demand carries (the same
events, the same masking, the same audit row), pages reaching past the prepared stretch are
completed on demand, a change of the subscriptions stops the old rows from being served and the
next build replaces them, and under concurrent requests every page's audit row is committed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from fixtures.feed_outbox import Outbox, person
from test_feeds_service import A_AREA, B_AREA, FIELDS, MASKING, ROLES

from feeds.config import parse_subscriptions
from feeds.files import build_all, prepare_api
from feeds.prepared import policy_digest
from feeds.service import FeedService
from warehouse import Warehouse
from warehouse import schema as s
from warehouse import deliveries
from warehouse.deliveries import BLOCK_EVENTS, PreparedStore
from warehouse.feeds import FeedStore

TASK = "correction_task"


def doc(**change) -> dict:
    d = {
        "masking": copy.deepcopy(MASKING),
        "roles": copy.deepcopy(ROLES),
        "subscribers": [
            {"id": "A", "kind": "station", "station_id": "sA", "entity_types": ["person", TASK],
             "scope": {"area_codes": [A_AREA], "own_records": True}, "fields": FIELDS, "role": "officer"},
            {"id": "B", "kind": "station", "station_id": "sB", "entity_types": ["person"],
             "scope": {"area_codes": [B_AREA], "own_records": True}, "fields": FIELDS, "role": "officer"},
            {"id": "dept", "kind": "department", "entity_types": ["person", TASK],
             "scope": {"area_codes": ["5001"]}, "fields": FIELDS, "role": "analyst"},
        ],
    }
    for sid, values in change.items():
        next(x for x in d["subscribers"] if x["id"] == sid).update(values)
    return d


SUBS = parse_subscriptions(doc())
IDS = ["A", "B", "dept"]


def stage(out: Outbox, n: int, tag: str) -> None:
    """Creates, moves between A's and B's areas, phone changes, a merge and correction tasks."""
    for i in range(n):
        area = (A_AREA if i % 2 else B_AREA) + f"{i % 7:03d}"
        out.create(f"{tag}{i}", person(f"王{tag}{i}", area, id_number=f"5001011990010{i % 10}123X"),
                   [f"s{'A' if i % 2 else 'B'}:{tag}{i}"])
    for i in range(0, n, 3):
        out.update(f"{tag}{i}", phone=f"139{i:08d}")
    for i in range(1, n, 4):
        out.update(f"{tag}{i}", area_code=B_AREA + "050", address="重庆市沙坪坝区小龙坎街道正街社区1号",
                   addr_district="沙坪坝区", addr_street="小龙坎街道", addr_community="正街社区")
    out.add_member(f"{tag}2", f"sA:{tag}x")
    out.update(f"{tag}2", phone="13600000000")  # B's area, now also holding a record of sA
    out.merge(f"{tag}4", f"{tag}6")
    out.correction_task(f"t-{tag}1", "sA", f"sA:{tag}1", "phone", "13800000000", "13812345678",
                        entity_id=f"{tag}1", area_code=A_AREA + "001")
    out.correction_task(f"t-{tag}1", "sA", f"sA:{tag}1", "phone", "13800000000", "13812345678",
                        entity_id=f"{tag}1", area_code=A_AREA + "001", status="closed")


@pytest.fixture()
def env(warehouse_url: str):
    store = Warehouse(warehouse_url).migrate()
    out = Outbox()
    yield store, out
    store.dispose()


def walk(svc: FeedService, sid: str, after: int, limit: int) -> list[tuple[list[str], int, bool, int]]:
    """Every page from `after` to the high water: (lines, next_after, has_more, prepared)."""
    pages = []
    while True:
        p = svc.events(sid, after=after, limit=limit, channel="api")
        pages.append((p.lines, p.next_after, p.has_more, p.prepared))
        if not p.has_more:
            return pages
        assert p.next_after > after
        after = p.next_after


def lines_of(pages) -> list[str]:
    return [x for p in pages for x in p[0]]


def audit(store: Warehouse) -> list[tuple]:
    d = FeedStore(store).deliveries()
    return [(r["subscriber_id"], r["seq_from"], r["seq_to"], r["event_count"], json.loads(r["entity_ids"]),
             json.loads(r["fields"])) for r in d.iter_rows(named=True)]


@pytest.mark.parametrize("block", [2, 7, BLOCK_EVENTS])
def test_prepared_pages_equal_pages_built_on_demand(env, monkeypatch, block: int) -> None:
    """Blocks of 2 and 7 put page boundaries inside blocks and pages of 1,000 across many."""
    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", block)
    store, out = env
    stage(out, 30, "P")
    high = out.flush(FeedStore(store))
    svc = FeedService(store, SUBS)
    starts = [0, 17, high - 3]  # pages of 3 walk every page boundary from the start
    expected = {(sid, a, n): walk(svc, sid, a, n) for sid in IDS for a in starts for n in (3, 1000)}
    assert all(p[3] == 0 for pages in expected.values() for p in pages)  # nothing prepared yet
    assert any(lines_of(pages) for pages in expected.values())
    built_audit = audit(store)

    counts = prepare_api(store, SUBS, start=0)
    assert counts["A"] and counts["B"] and counts["dept"]
    with store.engine.begin() as conn:
        conn.execute(s.feed_deliveries.delete())
    svc = FeedService(store, SUBS)
    for (sid, a, n), pages in expected.items():
        got = walk(svc, sid, a, n)
        assert lines_of(got) == lines_of(pages), (sid, a, n)
        assert sum(p[3] for p in got) == len(lines_of(got))  # every event read as prepared
        if n == 1000:
            assert got == [(p[0], p[1], p[2], len(p[0])) for p in pages]  # next_after, has_more alike
    # the masking is the role's, and the audit rows say the same entities and fields, page by page
    dept = [json.loads(x) for x in lines_of(walk(svc, "dept", 0, 1000))]
    assert any(e["after"] and "name_norm" in e["after"] for e in dept)
    assert all(e["after"]["name_norm"].endswith("*") for e in dept if e["after"] and e["after"].get("name_norm"))
    assert all("phone" not in (e["after"] or {}) for e in dept if e["entity_type"] == "person")
    assert audit(store)[:len(built_audit)] == built_audit


def test_pages_past_the_prepared_stretch_are_built_on_demand(env) -> None:
    store, out = env
    stage(out, 12, "P")
    first = out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    stage(out, 12, "Q")  # written after the build: not prepared yet
    out.update("P1", phone="13000000000")
    out.flush(FeedStore(store))
    svc = FeedService(store, SUBS)
    mixed = {(sid, n): walk(svc, sid, first - 4, n) for sid in IDS for n in (3, 1000)}
    assert any(0 < p[3] < len(p[0]) for pages in mixed.values() for p in pages)  # a page of both kinds
    PreparedStore(store).forget([])  # nothing prepared: every page on demand
    for (sid, n), pages in mixed.items():
        assert lines_of(walk(svc, sid, first - 4, n)) == lines_of(pages), (sid, n)
    # the next build extends the stretch rather than starting again
    prepare_api(store, SUBS, start=0)
    mark = PreparedStore(store).mark("A")
    prepare_api(store, SUBS)
    stage(out, 8, "R")
    high = out.flush(FeedStore(store))
    prepare_api(store, SUBS)
    again = PreparedStore(store).mark("A")
    assert (again.generation, again.from_seq, again.to_seq) == (mark.generation, 0, high)


def test_pages_across_blocks_of_many_small_builds(env, monkeypatch) -> None:
    """A daemon builds after every drop: a subscriber's stretch is then many small blocks, and a
    page reads them in several rounds; it still equals the page built on demand, and its audit row
    the one built on demand would have."""
    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", 4)
    store, out = env
    stage(out, 8, "P")
    start = out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=start)
    live = ["P0", "P1", "P2", "P3", "P5", "P7"]  # P4 was merged into P6
    for k in range(12):  # twelve builds of a few events each
        out.update(live[k % 6], phone=f"1370000{k:04d}")
        if k % 3 == 0:
            out.update(live[(k + 1) % 6], address=f"重庆市渝中区解放碑街道{k}号")
        out.flush(FeedStore(store))
        prepare_api(store, SUBS)
    with store.engine.connect() as conn:
        b = s.feed_prepared_blocks
        small = dict(conn.execute(sa.select(b.c.subscriber_id, sa.func.count()).where(b.c.n < 4)
                                  .group_by(b.c.subscriber_id)).all())
    assert small["A"] >= 8, small  # a page of 5 then reads on past its first round of blocks
    svc = FeedService(store, SUBS)
    reads, fetch = [], deliveries._fetch
    monkeypatch.setattr(deliveries, "_fetch", lambda conn, params, cache=None: reads.append(params["n"]) or fetch(conn, params, cache))
    prepared = {(sid, n): walk(svc, sid, start, n) for sid in IDS for n in (1, 5, 1000)}
    assert sum(len(pages) for pages in prepared.values()) < len(reads)  # pages that read on in a second round
    assert all(p[3] == len(p[0]) for pages in prepared.values() for p in pages)  # all read as prepared
    assert len(prepared[("A", 1000)][0][0]) > 8  # one page across the small blocks
    read_audit = audit(store)
    with store.engine.begin() as conn:
        conn.execute(s.feed_deliveries.delete())
    PreparedStore(store).forget([])
    for key, pages in prepared.items():
        assert walk(svc, *key[:1], start, key[1]) == [(p[0], p[1], p[2], 0) for p in pages], key
    assert audit(store) == read_audit


def test_a_subscriptions_change_stops_the_old_rows_and_the_next_build_replaces_them(env) -> None:
    store, out = env
    stage(out, 20, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    old = FeedService(store, SUBS).events("A", after=0, limit=1000, channel="api")
    assert old.prepared == len(old.lines) > 0
    # A now reads with the analyst's role: masked names, no phones
    changed = parse_subscriptions(doc(A={"role": "analyst"}))
    assert policy_digest(changed, changed.subscriber("A")) != policy_digest(SUBS, SUBS.subscriber("A"))
    assert policy_digest(changed, changed.subscriber("B")) == policy_digest(SUBS, SUBS.subscriber("B"))
    svc = FeedService(store, changed)
    now = svc.events("A", after=0, limit=1000, channel="api")
    assert now.prepared == 0 and now.lines != old.lines
    events = [json.loads(x) for x in now.lines]
    assert all("phone" not in (e["after"] or {}) for e in events if e["entity_type"] == "person")
    assert svc.events("B", after=0, limit=1000, channel="api").prepared > 0  # B's policy did not change
    prepare_api(store, changed)  # the next build: A's rows again, under the new policy
    rebuilt = svc.events("A", after=0, limit=1000, channel="api")
    assert rebuilt.prepared == len(rebuilt.lines) and rebuilt.lines == now.lines
    # a scope change too
    narrower = parse_subscriptions(doc(B={"scope": {"area_codes": [B_AREA + "001"]}}))
    svc = FeedService(store, narrower)
    page = svc.events("B", after=0, limit=1000, channel="api")
    assert page.prepared == 0
    assert all(json.loads(x)["entity_id"] for x in page.lines)
    PreparedStore(store).forget([])
    assert svc.events("B", after=0, limit=1000, channel="api").lines == page.lines


def test_the_feed_build_prepares_what_the_files_deliver(env, tmp_path: Path) -> None:
    store, out = env
    stage(out, 10, "P")
    out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")  # snapshots: nothing to prepare
    marks = PreparedStore(store).marks()
    assert set(marks) == set(IDS) and all(m.from_seq == m.to_seq for m in marks.values())
    stage(out, 10, "Q")
    high = out.flush(FeedStore(store))
    got = {r.subscriber_id: r for r in build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")}
    svc = FeedService(store, SUBS)
    assert all(got[sid].events for sid in IDS)
    for sid in IDS:
        jsonl = [f for f in got[sid].files if f.endswith(".jsonl")]
        lines = (got[sid].outbox / jsonl[0]).read_text(encoding="utf-8").splitlines()
        start = PreparedStore(store).mark(sid).from_seq
        page = svc.events(sid, after=start, limit=5000, channel="api")
        assert page.lines == lines and page.prepared == len(lines) == got[sid].api_prepared, sid
        assert PreparedStore(store).mark(sid).to_seq == high
    # a subscriber dropped from the subscriptions loses its prepared rows at the next build
    fewer = parse_subscriptions({**doc(), "subscribers": [x for x in doc()["subscribers"] if x["id"] != "dept"]})
    build_all(store, fewer, config_dir=tmp_path, data_dir=tmp_path / "data")
    assert set(PreparedStore(store).marks()) == {"A", "B"}
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(s.feed_prepared_blocks)
                           .where(s.feed_prepared_blocks.c.subscriber_id == "dept")) == 0


def test_every_audit_row_is_committed_under_concurrent_requests(env) -> None:
    store, out = env
    stage(out, 30, "P")
    high = out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    svc = FeedService(store, SUBS)
    asks = [(sid, after) for sid in IDS for after in range(0, high, 3)]

    def ask(job):
        sid, after = job
        page = svc.events(sid, after=after, limit=5, channel="api", token_id=f"tok-{sid}")
        return sid, page

    with ThreadPoolExecutor(20) as pool:
        pages = list(pool.map(ask, asks))
    delivered = [(sid, json.loads(p.lines[0])["seq"], json.loads(p.lines[-1])["seq"], len(p.lines))
                 for sid, p in pages if p.lines]
    logged = FeedStore(store).deliveries()
    assert sorted(delivered) == sorted(logged.select("subscriber_id", "seq_from", "seq_to", "event_count").rows())
    assert set(logged["token_id"]) == {f"tok-{sid}" for sid in IDS}


@pytest.mark.parametrize("dense", [3, 10_000])
def test_snapshot_pages_of_a_scope_are_its_records_in_id_order(env, monkeypatch, dense: int) -> None:
    """golden_in_scope page by page (SQLite: each part of the scope walked or sorted, by its size)
    gives exactly the scope read in one query: area prefixes, own records, both, types, status."""
    import warehouse.feeds as wf

    monkeypatch.setattr(wf, "DENSE", dense)
    store, out = env
    for i in range(40):
        area = (A_AREA if i % 3 else B_AREA) + f"{i % 5:03d}"
        out.create(f"E{i:03d}", person(f"李{i}", area), [f"s{'A' if i % 4 else 'B'}:{i}"])
    out.create("O1", {"name_norm": "某公司", "area_code": A_AREA + "001"}, ["sA:o1"], entity_type="organisation")
    out.merge("E005", "E006")  # retired: in no snapshot
    out.flush(FeedStore(store))
    fs = FeedStore(store)
    scopes = [{"area_prefixes": [A_AREA]}, {"area_prefixes": [], "own_station": "sB"},
              {"area_prefixes": [B_AREA], "own_station": "sA"},
              {"area_prefixes": ["5001", A_AREA], "own_station": "sB"},
              {"area_prefixes": ["5009"], "own_station": "sZ"},
              {"area_prefixes": ["5009", "5008", "5007", "5006", A_AREA], "own_station": None}]  # many parts: one walk
    for scope in scopes:
        for types in (["person"], ["person", "organisation"]):
            whole = fs.golden_in_scope(entity_types=types, **scope)
            assert whole.height or scope.get("own_station") == "sZ"
            pages, after = [], None
            while True:
                page = fs.golden_in_scope(entity_types=types, after_entity=after, limit=7, **scope)
                pages.append(page)
                if page.height < 7:
                    break
                after = page["entity_id"][-1]
            paged = pl.concat(pages)
            assert paged.to_dicts() == whole.to_dicts(), (scope, types)
            assert "E005" not in paged["entity_id"].to_list()
    assert fs.golden_in_scope(entity_types=["person"], own_station="sB", limit=1000).height > 0


def test_the_build_drops_what_the_api_client_acknowledged(env, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", 2)  # blocks end by the acknowledged seq: dropped
    store, out = env
    stage(out, 12, "P")
    out.flush(FeedStore(store))
    svc = FeedService(store, SUBS)
    svc.snapshot("A", after_entity=None, limit=1000, channel="api")  # A's API cursor: the snapshot's seq
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    stage(out, 12, "Q")
    high = out.flush(FeedStore(store))
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")
    mark = PreparedStore(store).mark("A")
    first = svc.events("A", after=None, limit=1000, channel="api")
    assert first.prepared == len(first.lines) > 4 and mark.to_seq == high
    acked = json.loads(first.lines[3])["seq"]
    svc.acknowledge("A", acked)
    build_all(store, SUBS, config_dir=tmp_path, data_dir=tmp_path / "data")  # nothing new: prunes
    pruned = PreparedStore(store).mark("A")
    assert (pruned.generation, pruned.from_seq, pruned.to_seq) == (mark.generation, acked, high)
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.min(s.feed_prepared_blocks.c.first_seq))
                           .where(s.feed_prepared_blocks.c.subscriber_id == "A")) > acked
    again = svc.events("A", after=acked, limit=1000, channel="api")
    assert again.prepared == len(again.lines) and again.lines == first.lines[4:]
    back = svc.events("A", after=mark.from_seq, limit=1000, channel="api")  # going back: built on demand
    assert back.prepared == 0 and back.lines == first.lines


def test_a_scope_part_is_read_by_its_index_below_the_square_root_of_table_times_page() -> None:
    """Read by index a part costs its rows on every page, walked the table's rows over the
    snapshot: a station's 25,000 records of a 1.2M-row table are read by index (a fixed 20,000
    walked the whole table for each station), a city-wide scope is walked."""
    from warehouse.feeds import DENSE, _dense_from

    assert _dense_from(1_200_000, 20_000) == 154_919
    assert 25_000 < _dense_from(1_200_000, 20_000) < 1_200_000
    assert _dense_from(1_200_000, 1_000) == 34_641  # API pages of 1,000
    assert _dense_from(5_000, 1_000) == DENSE  # never below the fixed floor


def test_pages_from_blocks_held_in_memory_equal_pages_read_whole(env, monkeypatch) -> None:
    """The API keeps the blocks it read in memory (BlockCache) and then reads only their keys: its
    pages and audit rows equal those read whole, the second walk reads no block, and a build that
    extends the stretch or a reset (the same generation number again, other block boundaries)
    never serves an old block."""
    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", 7)
    store, out = env
    stage(out, 30, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    plain, held = FeedService(store, SUBS), FeedService(store, SUBS, page_cache_bytes=1 << 22)
    whole: list[list[int]] = []  # the keys of every block read whole
    by_keys, rows = deliveries._statement("by_keys", store.engine.dialect.name), deliveries._rows
    monkeypatch.setattr(deliveries, "_rows", lambda conn, stmt, params: (
        whole.append(params["keys"]) if stmt is by_keys else None) or rows(conn, stmt, params))

    def pages_and_audit(svc: FeedService) -> tuple[dict, list]:
        with store.engine.begin() as conn:
            conn.execute(s.feed_deliveries.delete())
        return {(sid, n): walk(svc, sid, 0, n) for sid in IDS for n in (3, 1000)}, audit(store)

    expected = pages_and_audit(plain)
    assert not whole and any(p[3] for pages in expected[0].values() for p in pages)
    assert pages_and_audit(held) == expected and whole  # read whole once ...
    whole.clear()
    assert pages_and_audit(held) == expected and not whole  # ... then from memory
    stage(out, 10, "Q")  # a build that extends every subscriber's stretch
    out.flush(FeedStore(store))
    prepare_api(store, SUBS)
    expected = pages_and_audit(plain)
    assert pages_and_audit(held) == expected and whole
    marks = PreparedStore(store).marks()
    PreparedStore(store).forget([])  # a reset: prepared again from 17, in generation 1 again
    prepare_api(store, SUBS, start=17)
    assert {sid: m.generation for sid, m in PreparedStore(store).marks().items()} == {sid: 1 for sid in marks}
    expected = pages_and_audit(plain)
    assert pages_and_audit(held) == expected


def test_block_cache_keeps_the_most_recently_used_within_its_size() -> None:
    cache = deliveries.BlockCache(max_bytes=100)
    for key in ("a", "b"):
        cache.put((key,), (key,), 40)
    assert cache.get(("a",)) == ("a",)  # a is now the most recent
    cache.put(("c",), ("c",), 40)  # over 100: b, the least recently used, goes
    assert [cache.get((k,)) for k in "abc"] == [("a",), None, ("c",)]
    cache.put(("d",), ("d",), 101)  # larger than the whole cache: not kept, nothing dropped for it
    assert [cache.get((k,)) for k in "acd"] == [("a",), ("c",), None]


def test_a_page_that_needs_building_is_left_to_the_caller_when_only_prepared_ones_are_asked(env) -> None:
    """The API's event loop serves prepared pages itself and hands the others to a worker thread:
    asked for prepared pages only, the service answers None for those, and audits nothing."""
    store, out = env
    stage(out, 12, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    stage(out, 10, "Q")  # written since the build: beyond the prepared stretch
    out.flush(FeedStore(store))
    svc = FeedService(store, SUBS, page_cache_bytes=1 << 20)
    to = PreparedStore(store).mark("dept").to_seq
    first = svc.events("dept", after=0, limit=3, channel="api", prepared_only=True)
    assert first is not None and first.prepared == 3 and len(audit(store)) == 1
    assert svc.events("dept", after=to, limit=3, channel="api", prepared_only=True) is None
    assert len(audit(store)) == 1
    built = svc.events("dept", after=to, limit=3, channel="api")
    assert built is not None and built.lines and built.prepared == 0 and len(audit(store)) == 2


@pytest.mark.parametrize("journal", [True, False])
def test_the_api_serves_prepared_pages_from_its_loop_and_built_ones_from_a_thread(env, tmp_path, monkeypatch,
                                                                                   journal: bool) -> None:
    """Over HTTP, the pages equal the service's. With the audit journal a prepared page takes no
    worker thread and a page past the prepared stretch takes one; without it (the audit row
    committed before the page leaves) every page does. On PostgreSQL the loop serves a page only
    from memory, so the first walk, which reads everything, takes threads: the second serves its
    prepared pages without checking a connection out of the pool. Each page is audited."""
    import anyio.to_thread
    import httpx

    from feeds.api import SUBSCRIPTIONS_FILE, BackgroundServer, create_app
    from feeds.tokens import issue_token

    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", 2)  # a page of 5 spans blocks: chunks joined in the body
    store, out = env
    stage(out, 30, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    stage(out, 10, "Q")  # written since the build
    high = out.flush(FeedStore(store))
    (tmp_path / SUBSCRIPTIONS_FILE).write_text(json.dumps(doc()), encoding="utf-8")
    to = PreparedStore(store).mark("dept").to_seq
    expected = walk(FeedService(store, SUBS), "dept", 0, 5)
    with store.engine.begin() as conn:
        conn.execute(s.feed_deliveries.delete())
    hops, run_sync = [], anyio.to_thread.run_sync
    monkeypatch.setattr(anyio.to_thread, "run_sync", lambda fn, *a, **k: hops.append(a) or run_sync(fn, *a, **k))
    checkouts: list[int] = []
    # the requests' checkouts: the journal's writer thread commits earlier pages' audit rows
    # whenever it wakes (every 0.1 s), which may be while a page is served
    sa.event.listen(store.engine, "checkout",
                    lambda *a: threading.current_thread().name == "audit-journal" or checkouts.append(1))
    token = issue_token(store, "dept")
    postgres = store.engine.dialect.name == "postgresql"
    app = create_app(store.url, tmp_path, store=store, journal_dir=tmp_path / "j" if journal else None)
    walks, kinds = [], set()
    with BackgroundServer(app) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token.token}"}) as http:
        for second in (False, True):
            if second and postgres and journal:  # the first barrier began listening
                assert app.state.notices.wait_listening(timeout=30)
            pages, after = [], 0
            while True:
                before, taken = len(hops), len(checkouts)
                page = http.get("/v1/feeds/dept/events", params={"after": after, "limit": 5}).json()
                pages.append((page["events"], page["next_after"], page["has_more"]))
                prepared = after < to and page["next_after"] <= to  # the page lies within the stretch
                kinds.add(prepared)
                from_loop = prepared and journal and (second or not postgres)
                if second or not (postgres and journal):  # PG's first walk reads, then begins listening: either
                    assert len(hops) - before == (0 if from_loop else 1), (second, after, page["next_after"])
                if from_loop and postgres:
                    assert len(checkouts) == taken  # from memory: not even a ping
                if not page["has_more"]:
                    break
                after = page["next_after"]
            walks.append(pages)
    assert kinds == {True, False}  # pages of both kinds
    for pages in walks:
        assert pages == [([json.loads(x) for x in p[0]], p[1], p[2]) for p in expected] and pages[-1][1] == high
    assert len(audit(store)) == 2 * sum(1 for p in walks[0] if p[0])


def test_the_api_serves_the_commits_of_other_connections_from_the_next_request_on(env, tmp_path) -> None:
    """What the API keeps between pages (tokens, marks, high water) never outlives a commit made
    elsewhere before a request arrives: a revocation by another connection or process answers
    401 at the very next request, and a build by another connection is in the very next page,
    with no wait in between (on PostgreSQL, through the listener's barrier: warehouse.notices).
    Done twenty times over, as a race would show only now and then."""
    import httpx

    from feeds.api import SUBSCRIPTIONS_FILE, BackgroundServer, create_app
    from feeds.tokens import issue_token, revoke_token

    store, out = env
    other = Warehouse(store.url)  # a connection of its own: another process, for PostgreSQL
    stage(out, 12, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    (tmp_path / SUBSCRIPTIONS_FILE).write_text(json.dumps(doc()), encoding="utf-8")
    app = create_app(store.url, tmp_path, store=store, journal_dir=tmp_path / "j")
    notices = app.state.notices
    with BackgroundServer(app) as base, httpx.Client(base_url=base) as http:
        def page(token: str, after: int = 0) -> httpx.Response:
            return http.get("/v1/feeds/dept/events", params={"after": after, "limit": 1000},
                            headers={"Authorization": f"Bearer {token}"})

        first = issue_token(store, "dept")
        page(first.token)
        if notices is not None:
            assert notices.wait_listening(timeout=30)
        for i in range(20):
            token = issue_token(other, "dept")
            for _ in range(3):  # kept: served from memory after the first
                assert page(token.token).status_code == 200
            revoke_token(other, token.token_id)
            assert page(token.token).status_code == 401, i

            before = page(first.token).json()
            out.create(f"R{i}", person(f"李R{i}", A_AREA + "001"), [f"sA:R{i}"])  # another connection's run and build
            high = out.flush(FeedStore(other))
            prepare_api(other, SUBS)
            now = page(first.token).json()
            assert now["high_water"] == high > before["high_water"], i
            assert len(now["events"]) > len(before["events"]), i

        last = issue_token(store, "dept")
        assert page(last.token).status_code == 200
        subprocess.run([sys.executable, "-c", "import sys; from warehouse import Warehouse; from feeds.tokens import "
                        "revoke_token; revoke_token(Warehouse(sys.argv[1]), sys.argv[2])", store.url, last.token_id],
                       cwd=Path(__file__).resolve().parents[1], check=True, timeout=120)
        assert page(last.token).status_code == 401  # another process's revocation
    other.dispose()


def test_what_the_api_keeps_between_pages_follows_every_commit_of_another_process(env, monkeypatch) -> None:
    """On SQLite the API keeps each subscriber's blocks' keys and mark, and the tokens it checked,
    while the database is unchanged (warehouse.unchanged): a second walk reads neither, and after
    a build, a prune or a revocation committed by another connection (a daemon's run, the CLI)
    the next page and the next check are as a fresh reader finds them."""
    from feeds.tokens import InvalidToken, issue_token, revoke_token, verify_token

    monkeypatch.setattr(deliveries, "BLOCK_EVENTS", 7)
    store, out = env
    other = Warehouse(store.url)  # its own engine and connections: another process, for SQLite
    stage(out, 30, "P")
    out.flush(FeedStore(store))
    prepare_api(store, SUBS, start=0)
    journal: list[dict] = []  # as the API's journal: no commit per page
    held = FeedService(store, SUBS, page_cache_bytes=1 << 22, record_deliveries=journal.extend)
    marks_read: list[str] = []
    mark_stmt, rows = deliveries._statement("mark", store.engine.dialect.name), deliveries._rows
    monkeypatch.setattr(deliveries, "_rows", lambda conn, stmt, params: (
        marks_read.append(params["sid"]) if stmt is mark_stmt else None) or rows(conn, stmt, params))

    def reader() -> FeedService:
        return FeedService(Warehouse(store.url), SUBS, record_deliveries=journal.extend)

    def fresh() -> dict:
        return {(sid, n): walk(reader(), sid, 0, n) for sid in IDS for n in (3, 1000)}

    def pages(svc: FeedService) -> dict:
        return {(sid, n): walk(svc, sid, 0, n) for sid in IDS for n in (3, 1000)}

    assert pages(held) == fresh()
    marks_read.clear()
    walked = pages(held)
    assert walked == fresh()
    if store.engine.dialect.name == "sqlite":
        assert not marks_read  # nothing committed since: nothing read again
    else:  # nothing kept: every page reads its subscriber's mark at least once (its keys: the block cache)
        assert len(marks_read) >= sum(len(p) for p in walked.values())

    stage(out, 10, "Q")  # another process's run: new events, and a build that extends the stretches
    out.flush(FeedStore(other))
    prepare_api(other, SUBS)
    expected = fresh()
    assert pages(held) == expected and any(p[3] for pages_ in expected.values() for p in pages_)

    svc_other = FeedService(other, SUBS)
    svc_other.snapshot("A", after_entity=None, limit=1000, channel="api")
    acked = json.loads(walk(svc_other, "A", 0, 1000)[0][0][5])["seq"]
    svc_other.acknowledge("A", acked)
    PreparedStore(other).prune({"A": acked})  # the build drops what A acknowledged
    assert PreparedStore(store).mark("A").from_seq == acked
    assert walk(held, "A", acked, 4) == walk(reader(), "A", acked, 4)

    token = issue_token(store, "dept")
    assert verify_token(store, token.token).subscriber_id == "dept"
    assert verify_token(store, token.token).subscriber_id == "dept"  # kept, on SQLite
    revoke_token(other, token.token_id)
    with pytest.raises(InvalidToken):
        verify_token(store, token.token)  # the next check after the revocation's commit
    second = issue_token(store, "dept")  # and a revocation by another process, as the CLI's
    assert verify_token(store, second.token).subscriber_id == "dept"
    subprocess.run([sys.executable, "-c", "import sys; from warehouse import Warehouse; from feeds.tokens import "
                    "revoke_token; revoke_token(Warehouse(sys.argv[1]), sys.argv[2])", store.url, second.token_id],
                   cwd=Path(__file__).resolve().parents[1], check=True, timeout=120)
    with pytest.raises(InvalidToken):
        verify_token(store, second.token)
    other.dispose()


def test_a_connection_forgets_what_it_kept_when_the_database_changes(warehouse_url: str) -> None:
    """warehouse.unchanged: kept across checkouts of the same connection while nothing is
    committed; emptied by a commit of another connection and by the connection's own write; not
    offered inside a transaction that wrote, nor on PostgreSQL."""
    from core.time import utcnow
    from warehouse.unchanged import unchanged_reads

    store = Warehouse(warehouse_url).migrate()
    if store.engine.dialect.name != "sqlite":
        with store.engine.connect() as conn:
            assert unchanged_reads(conn, "x") is None
        store.dispose()
        return
    writer = Warehouse(warehouse_url)
    t = s.feed_tokens
    row = {"token_id": "tok_0000000000000001", "subscriber_id": "A", "token_hash": "h", "label": None,
           "issued_at": utcnow(), "revoked_at": None}
    with store.engine.connect() as conn:
        unchanged_reads(conn, "x")["k"] = 1
        raw = conn.connection.dbapi_connection
    with store.engine.connect() as conn:
        assert conn.connection.dbapi_connection is raw and unchanged_reads(conn, "x") == {"k": 1}
        with writer.engine.begin() as w:  # another connection commits
            w.execute(t.insert(), [row])
        assert unchanged_reads(conn, "x") == {}
        unchanged_reads(conn, "x")["k"] = 2
        conn.execute(t.update().values(label="own write"))  # this connection writes
        assert unchanged_reads(conn, "x") is None  # in its transaction: nothing offered
        conn.commit()
        assert unchanged_reads(conn, "x") == {}
    writer.dispose()
    store.dispose()
