"""Feed files on a real warehouse (SQLite and PostgreSQL): JSON Lines, CSV with BOM and Parquet with
the same content, manifests whose SHA-256 match, idempotent re-runs, cursors and audit rows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import polars as pl
import pytest

from feeds.config import parse_subscriptions
from feeds.files import build_all
from fixtures.feed_outbox import Outbox, person
from warehouse import Warehouse
from warehouse.feeds import FeedStore

AREA = "500103001"
SUBS = parse_subscriptions({
    "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
    "roles": {"officer": {"fields": {"name_norm": "full", "id_number": "masked", "phone": "masked",
                                     "address": "full", "area_code": "full"}}},
    "subscribers": [
        {"id": "s0001", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
         "scope": {"area_codes": [AREA]}, "fields": ["name_norm", "id_number", "phone", "address", "area_code"],
         "role": "officer"},
        {"id": "quiet", "kind": "station", "station_id": "s0009", "entity_types": ["person"],
         "scope": {"area_codes": ["500199"]}, "fields": ["name_norm"], "role": "officer",
         "delivery": {"formats": ["csv"], "outbox": "elsewhere/quiet"}},
    ],
})


@pytest.fixture()
def env(warehouse_url: str, tmp_path: Path):
    store = Warehouse(warehouse_url).migrate()
    yield store, Outbox(), tmp_path
    store.dispose()


def run(store: Warehouse, root: Path, **kw):
    return {r.subscriber_id: r for r in build_all(store, SUBS, config_dir=root, data_dir=root / "data", **kw)}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _same_rows(outbox: Path, stem: str) -> list[dict]:
    """JSON Lines, CSV and Parquet parsed back: the same rows, nested values compared as JSON."""
    lines = [json.loads(x) for x in (outbox / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()]
    raw = (outbox / f"{stem}.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel and WPS read Chinese text correctly
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    parquet = pl.read_parquet(outbox / f"{stem}.parquet").to_dicts()
    assert len(lines) == len(rows) == len(parquet)

    def norm(value, key):
        if key in ("changed_fields", "before", "after", "sources", "record", "provenance"):
            return json.loads(value) if value not in (None, "") else None
        if key in ("seq", "version"):
            return int(value)
        return value

    for line, row, pq in zip(lines, rows, parquet, strict=True):
        for key in row:
            assert norm(row[key], key) == norm(pq[key], key) == line[key], key
    return lines


def test_snapshot_then_events_in_three_formats_with_manifests(env) -> None:
    store, out, root = env
    out.create("P1", person("张三", AREA + "001", id_number="50010119900101123X"), ["s0001:1"])
    out.create("P2", person("李四", "500106001001"), ["s0002:1"])
    out.flush(FeedStore(store))
    got = run(store, root)
    outbox = root / "data" / "outbox" / "s0001"
    assert got["s0001"].snapshot_records == 1 and got["s0001"].masked_fields == {"id_number": 1, "phone": 1}
    snap = _same_rows(outbox, "snapshot_000000000002")
    assert snap[0]["record"] == {"name_norm": "张三", "id_number": "500101********123X", "phone": "138****5678",
                                 "address": "重庆市渝中区解放碑街道较场口社区民权路12号", "area_code": AREA + "001"}
    assert got["quiet"].snapshot_records == 0 and _files(root / "elsewhere" / "quiet") == []

    moved = out.update("P2", area_code=AREA + "005", address="重庆市渝中区解放碑街道新地址1号")
    out.update("P1", phone="13900001111")
    out.flush(FeedStore(store))
    got = run(store, root)
    assert got["s0001"].events == 2 and got["s0001"].seq_range == (moved, moved + 1)
    stem = "events_000000000003-000000000004"
    events = _same_rows(outbox, stem)
    assert [(e["entity_id"], e["scope"]) for e in events] == [("P2", "entered"), ("P1", "in")]
    assert events[1]["after"] == {"phone": "139****1111"}
    # the newcomer arrives whole (its visible fields as of that version), not just what changed
    assert events[0]["changed_fields"] == ["address", "area_code"]
    assert events[0]["after"] == {"name_norm": "李四", "id_number": "500101********1234", "phone": "138****5678",
                                  "address": "重庆市渝中区解放碑街道新地址1号", "area_code": AREA + "005"}
    manifest = json.loads((outbox / f"{stem}.manifest.json").read_text(encoding="utf-8"))
    assert (manifest["subscriber"], manifest["kind"], manifest["count"]) == ("s0001", "events", 2)
    assert (manifest["seq_from"], manifest["seq_to"], manifest["schema_version"]) == (3, 4, 1)
    assert set(manifest["files"]) == {f"{stem}.jsonl", f"{stem}.csv", f"{stem}.parquet"}
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((outbox / name).read_bytes()).hexdigest() == meta["sha256"]

    # nothing new: a re-run writes nothing and moves nothing
    before = _files(outbox)
    again = run(store, root)
    assert again["s0001"].files == [] and _files(outbox) == before
    log = FeedStore(store).deliveries(subscriber_id="s0001")
    assert log["kind"].to_list() == ["snapshot", "events"] and log["channel"].unique().to_list() == ["file"]
    assert json.loads(log["fields"][1]) == {"name_norm": "full", "id_number": "masked", "phone": "masked",
                                            "address": "full", "area_code": "full"}
    assert FeedStore(store).cursor("s0001", "file") == (4, 2)


def test_rerun_after_a_crash_rewrites_the_same_files(env, monkeypatch) -> None:
    store, out, root = env
    monkeypatch.setattr("feeds.files.FEW", 0)  # the many-subscribers path: no narrowing first
    monkeypatch.setattr("feeds.files.CHUNK", 1)  # and the outbox built one event at a time
    out.create("P1", person("王五", AREA + "001"), ["s0001:1"])
    out.flush(FeedStore(store))
    run(store, root)
    out.update("P1", phone="13700000000")
    out.create("P2", person("钱七", AREA + "002"), ["s0001:2"])
    out.flush(FeedStore(store))
    real = FeedStore.commit_file_run

    def crash(self, *a, **kw):
        raise RuntimeError("power cut before the cursor moved")

    monkeypatch.setattr(FeedStore, "commit_file_run", crash)
    with pytest.raises(RuntimeError):
        run(store, root)
    outbox = root / "data" / "outbox" / "s0001"
    written = _files(outbox)
    jsonl = (outbox / "events_000000000002-000000000003.jsonl").read_bytes()
    monkeypatch.setattr(FeedStore, "commit_file_run", real)
    got = run(store, root)
    assert got["s0001"].events == 2 and got["s0001"].seq_range == (2, 3)
    assert _files(outbox) == written  # the same names: no second copy
    assert (outbox / "events_000000000002-000000000003.jsonl").read_bytes() == jsonl
    assert FeedStore(store).deliveries(subscriber_id="s0001")["kind"].to_list() == ["snapshot", "events"]


def test_one_subscriber_at_a_time(env) -> None:
    store, out, root = env
    out.create("P1", person("赵六", AREA + "001"), ["s0001:1"])
    out.flush(FeedStore(store))
    got = run(store, root, subscriber_ids=["s0001"])
    assert list(got) == ["s0001"]
    assert FeedStore(store).cursor("quiet", "file") is None


def test_a_snapshot_is_written_in_parts_and_equals_the_whole(env, monkeypatch) -> None:
    """A city-wide snapshot is every golden record: it is read, masked and written a part at a
    time (the Parquet parts merged at the end), and the files equal the snapshot built whole."""
    from feeds.build import build_snapshot

    store, out, root = env
    monkeypatch.setattr("feeds.files.SNAPSHOT_PART", 3)
    for i in range(7):
        out.create(f"P{i}", person(f"张{i}", f"{AREA}{i:03d}", id_number="50010119900101123X"), [f"s0001:{i}"])
    out.create("Q1", person("李四", "500106001001"), ["s0002:1"])  # outside the scope
    out.flush(FeedStore(store))
    got = run(store, root)["s0001"]
    outbox = root / "data" / "outbox" / "s0001"
    stem = "snapshot_000000000008"
    lines = _same_rows(outbox, stem)
    assert [x["entity_id"] for x in lines] == [f"P{i}" for i in range(7)]
    whole = build_snapshot(FeedStore(store).golden_in_scope(entity_types=["person"], area_prefixes=[AREA]),
                           SUBS.levels(SUBS.subscribers[0]), SUBS)
    assert (outbox / f"{stem}.jsonl").read_text(encoding="utf-8") == "\n".join(whole["line"]) + "\n"
    assert pl.read_parquet(outbox / f"{stem}.parquet").equals(whole.select("entity_id", "entity_type", "version",
                                                                            "record", "provenance"))
    assert not [p for p in outbox.iterdir() if p.name.startswith(".")]  # no part or temporary file left
    assert got.snapshot_records == got.entities == 7 and got.masked_fields == {"id_number": 7, "phone": 7}
    manifest = json.loads((outbox / f"{stem}.manifest.json").read_text(encoding="utf-8"))
    assert manifest["count"] == 7
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((outbox / name).read_bytes()).hexdigest() == meta["sha256"]
    log = FeedStore(store).deliveries(subscriber_id="s0001")
    assert log["kind"].to_list() == ["snapshot"] and sorted(json.loads(log["entity_ids"][0])) == [f"P{i}" for i in range(7)]
    assert set(json.loads(log["fields"][0])) == {"name_norm", "id_number", "phone", "address", "area_code"}


WALKED = parse_subscriptions({
    "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
    "roles": {"officer": {"fields": {"name_norm": "full", "id_number": "masked", "phone": "masked",
                                     "address": "full", "area_code": "full"}},
              "analyst": {"fields": {"name_norm": "masked", "area_code": "full"}}},
    "subscribers": [
        {"id": "s0001", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
         "scope": {"area_codes": [AREA], "own_records": True},
         "fields": ["name_norm", "id_number", "phone", "address", "area_code"], "role": "officer"},
        {"id": "s0002", "kind": "station", "station_id": "s0002", "entity_types": ["person", "organisation"],
         "scope": {"area_codes": ["500106"], "own_records": True},
         "fields": ["name_norm", "id_number", "phone", "address", "area_code"], "role": "officer"},
        {"id": "dept", "kind": "department", "entity_types": ["person"],
         "scope": {"area_codes": ["500103", "500106001"]}, "fields": ["name_norm", "area_code"], "role": "analyst"},
        {"id": "quiet", "kind": "station", "station_id": "s0009", "entity_types": ["person"],
         "scope": {"area_codes": ["500199"]}, "fields": ["name_norm"], "role": "officer"},
    ],
})


def test_many_new_subscribers_walk_the_table_once_and_each_gets_what_its_scope_reads(env, monkeypatch) -> None:
    """A first build of several subscribers walks the golden table once (feeds.files._walk_pages)
    and gives each one byte for byte the files and the audit row that reading its own scope by
    index gives: areas, own records held outside the area, types, two policies, retired records
    left out, pages that split the scopes unevenly, a subscriber with nothing to receive."""
    from feeds import files

    store, out, root = env
    for i in range(9):  # s0001's area; every third held by s0002 too
        out.create(f"P{i}", person(f"张{i}", f"{AREA}{i:03d}", id_number="50010119900101123X"),
                   [f"s0001:{i}", *([f"s0002:{i}"] if i % 3 == 0 else [])])
    out.create("P90", person("王五", "500106001001", phone="13800138000"), ["s0002:90", "s0001:90"])
    out.create("P91", person("赵六", "500106002001"), ["s0002:91"])  # the department's 500106001 leaves it out
    out.create("P92", person("钱七", "500107001001"), ["s0001:92"])  # only s0001's own record places it
    out.create("O1", {"name_norm": "重庆某公司", "area_code": "500106001"}, ["s0002:o1"], entity_type="organisation")
    out.create("P93", person("孙八", AREA + "777"), ["s0001:93"])
    out.merge("P93", "P0")  # retired: in no snapshot
    feed = FeedStore(store)
    out.flush(feed)
    as_of = feed.high_water()
    monkeypatch.setattr(files, "SNAPSHOT_PART", 2)
    chosen = WALKED.subscribers
    assert files._walk_together(feed, chosen)
    walked = files._deliver_snapshots(feed, WALKED, chosen, as_of, config_dir=root, data_dir=root / "walked")
    alone = {s.id: files._deliver_snapshot(feed, WALKED, s, as_of, config_dir=root, data_dir=root / "alone")
             for s in chosen}

    expected = {"s0001": ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P90", "P92"],
                "s0002": ["O1", "P0", "P3", "P6", "P90", "P91"],
                "dept": ["P0", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P90"], "quiet": []}
    stem = f"snapshot_{as_of:012d}"
    for s in chosen:
        a, b = root / "walked" / "outbox" / s.id, root / "alone" / "outbox" / s.id
        assert _files(a) == _files(b)
        got = walked[s.id]
        assert (got.snapshot_records, got.masked_fields) == (alone[s.id].snapshot_records, alone[s.id].masked_fields)
        if not expected[s.id]:
            assert _files(a) == [] and got.snapshot_records == 0
            continue
        assert [x["entity_id"] for x in _same_rows(a, stem)] == expected[s.id]
        for fmt in ("jsonl", "csv"):
            assert (a / f"{stem}.{fmt}").read_bytes() == (b / f"{stem}.{fmt}").read_bytes(), (s.id, fmt)
        assert pl.read_parquet(a / f"{stem}.parquet").equals(pl.read_parquet(b / f"{stem}.parquet"))
        log = feed.deliveries(subscriber_id=s.id)
        assert log.height == 2  # the walk's audit row, then the one read alone: the same delivery
        assert log.select("kind", "entity_count", "entity_ids", "fields").n_unique() == 1
    dept = [json.loads(x)["record"] for x in (root / "walked/outbox/dept" / f"{stem}.jsonl").read_text().splitlines()]
    assert dept[0] == {"name_norm": "***", "area_code": f"{AREA}000"}  # the analysts' policy: masked
    assert feed.cursors("file")["s0001"] == (as_of, as_of)


def _stations(n: int) -> dict:
    return {"roles": {"officer": {"fields": {"name_norm": "full"}}}, "subscribers": [
        {"id": f"s{10 + d:04d}", "kind": "station", "station_id": f"s{10 + d:04d}", "entity_types": ["person"],
         "scope": {"area_codes": [f"50019{d}"], "own_records": True}, "fields": ["name_norm"],
         "role": "officer"} for d in range(n)]}


def test_the_walk_is_for_many_new_scopes_and_one_new_subscriber_reads_its_own(env, monkeypatch) -> None:
    """Ten new stations whose scopes are the whole table walk it once; a station added later
    (the others have cursors) reads its scope by its index, and so do new scopes that together
    are a small share of the table (WALK_SHARE)."""
    from feeds import files

    store, out, root = env
    for i in range(40):
        out.create(f"P{i}", person(f"张{i}", f"50019{i % 10}001001"), [f"s{10 + i % 10:04d}:{i}"])
    feed = FeedStore(store)
    out.flush(feed)
    walks: list[list[str]] = []
    walk = files._deliver_snapshots
    monkeypatch.setattr(files, "_deliver_snapshots", lambda st, su, new, *a, **k: walks.append(
        [s.id for s in new]) or walk(st, su, new, *a, **k))
    ten = _stations(10)
    eleven = parse_subscriptions({**ten, "subscribers": [*ten["subscribers"], {
        **ten["subscribers"][0], "id": "s0020", "station_id": "s0020", "scope": {"area_codes": ["500191"]}}]})
    ten = parse_subscriptions(ten)
    monkeypatch.setattr(files, "SNAPSHOT_PART", 15)
    progress: list[tuple[str, int, int]] = []
    got = {r.subscriber_id: r for r in build_all(store, ten, config_dir=root, data_dir=root / "data",
                                                 on_progress=lambda *a: progress.append(a))}
    assert walks == [[f"s{10 + d:04d}" for d in range(10)]] and {r.snapshot_records for r in got.values()} == {4}
    # the walk's pages, then each subscriber done
    assert progress[:3] == [(f"10 snapshots, {n} records read", 0, 10) for n in ("15", "30", "40")]
    assert progress[3:] == [(f"s{10 + d:04d}", d + 1, 10) for d in range(10)]
    got = {r.subscriber_id: r for r in build_all(store, eleven, config_dir=root, data_dir=root / "data")}
    assert len(walks) == 1 and got["s0020"].snapshot_records == 4  # alone: by its index
    assert not files._walk_together(feed, SUBS.subscribers)  # 0 and 4 of 40 records
    assert files._walk_together(feed, ten.subscribers)
