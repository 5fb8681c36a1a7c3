"""The API's audit journal (feeds.journal) on real warehouses (SQLite and PostgreSQL): pages
audited through it carry the audit rows of pages audited before they leave; a server killed
before its commit loses no row (the next start commits them); a journal replayed after its rows
were committed writes nothing twice, for feed deliveries and front-desk accesses alike; a live
server's journal is never taken by another; a warehouse that refuses commits for a while gets
the rows when it is back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fixtures.feed_outbox import Outbox
from test_feeds_prepared import IDS, SUBS, audit, lines_of, stage, walk

from feeds import journal as journal_module
from feeds.journal import AuditJournal
from feeds.service import FeedService
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.feeds import FeedStore
from warehouse.frontdesk import access_log, record_accesses

ROOT = Path(__file__).resolve().parents[1]


def rows(n: int, tag: str = "r") -> list[dict]:
    return [{"subscriber_id": "A", "token_id": "tok_1", "channel": "api", "kind": "events", "seq_from": i,
             "seq_to": i, "event_count": 1, "entity_count": 1, "entity_ids": [f"{tag}{i}"], "fields": {"phone": "masked"}}
            for i in range(n)]


def logged(store: Warehouse) -> list[tuple]:
    d = s.feed_deliveries
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(d.c.seq_from, d.c.journal_key).order_by(d.c.delivery_id))]


def left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def store(warehouse_url: str):
    got = Warehouse(warehouse_url).migrate()
    yield got
    got.dispose()


def test_pages_audited_through_the_journal_carry_the_rows_of_pages_audited_before(store, tmp_path) -> None:
    out = Outbox()
    stage(out, 24, "P")
    out.flush(FeedStore(store))
    before = {(sid, n): walk(FeedService(store, SUBS), sid, 0, n) for sid in IDS for n in (5, 1000)}
    expected = audit(store)
    with store.engine.begin() as conn:
        conn.execute(s.feed_deliveries.delete())

    journal = AuditJournal(tmp_path / "j", FeedStore(store).record_deliveries, stamp="delivered_at")
    svc = FeedService(store, SUBS, record_deliveries=journal.record)
    for (sid, n), pages in before.items():
        assert lines_of(walk(svc, sid, 0, n)) == lines_of(pages)
    assert journal.flush(timeout=60)
    assert audit(store) == expected  # same rows, same order (one request at a time)
    keys = [k for _, k in logged(store)]
    assert len(keys) == len(expected) and len(set(keys)) == len(keys) and all(keys)
    journal.close()
    assert left(tmp_path / "j") == []  # every file committed and removed


KILLED = """
import sys
from feeds import journal as journal_module
from feeds.journal import AuditJournal
from warehouse import Warehouse
from warehouse.feeds import FeedStore
from test_delivery_journal import rows
journal = AuditJournal(sys.argv[2], FeedStore(Warehouse(sys.argv[1])).record_deliveries, stamp="delivered_at")
journal.record(rows(3, "a"))
journal.record(rows(4, "b"))
print("recorded", flush=True)
sys.stdin.readline()  # killed here, its commit waiting on the parent's lock
"""


def _lock_deliveries(store: Warehouse) -> sa.Connection:
    """A transaction that keeps every other writer (and, on PostgreSQL, reader) off the audit log."""
    conn = store.engine.connect()
    if store.engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
    else:
        conn.begin()
        conn.exec_driver_sql("LOCK TABLE feed_deliveries IN ACCESS EXCLUSIVE MODE")
    return conn


def test_a_server_killed_before_its_commit_loses_no_audit_row(store, warehouse_url, tmp_path) -> None:
    folder = tmp_path / "j"
    lock = _lock_deliveries(store)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen([sys.executable, "-c", KILLED, warehouse_url, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "recorded"
        # the rows are only in the child's journal now; taking it over while the child lives fails
        other = AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at")
        assert other.recovered == 0
        other.close()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        lock.rollback()
        lock.close()
    assert logged(store) == []
    assert {p.suffix for p in folder.iterdir()} == {".jsonl"}  # a file per commit the child began

    restarted = AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at")
    assert restarted.recovered == 7
    assert [seq for seq, _ in logged(store)] == [0, 1, 2, 0, 1, 2, 3]
    assert left(folder) == []
    restarted.close()
    assert AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at").recovered == 0
    assert len(logged(store)) == 7


def test_a_replayed_journal_writes_nothing_twice_and_keeps_a_cut_line(store, tmp_path) -> None:
    folder = tmp_path / "j"
    gate = threading.Event()
    commit = FeedStore(store).record_deliveries

    def held(batch: list[dict], replay: bool) -> int:
        gate.wait(30)
        return commit(batch, replay=replay)

    journal = AuditJournal(folder, held, stamp="delivered_at")
    journal.record(rows(5))
    (segment,) = folder.glob("*.jsonl")
    copy = segment.read_bytes()
    gate.set()
    assert journal.flush(timeout=30)
    journal.close()
    assert len(logged(store)) == 5 and left(folder) == []

    # a crash between the commit and the file's removal: the same file again, its last write cut short
    (folder / "1-1.jsonl").write_bytes(copy + copy.splitlines(keepends=True)[0][:40])
    again = AuditJournal(folder, commit, stamp="delivered_at")
    assert again.recovered == 0
    assert len(logged(store)) == 5
    assert left(folder) == ["1-1.unreadable"]  # kept for a person to look at, its good rows committed
    again.close()


def test_a_file_takes_rows_across_commits_until_it_is_full(store, tmp_path, monkeypatch) -> None:
    """One file per commit cost a busy server a create, lock, rename and unlink each time: a file
    now takes rows across commits until SEGMENT_BYTES, its committed rows staying in it. A crash
    then replays them as nothing; a clean close removes it."""
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 4000)  # rows of about 270 bytes
    folder = tmp_path / "j"
    journal = AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at")
    for k in range(3):  # three commits of a few rows: one file, all of them in it
        journal.record(rows(3, f"a{k}"))
        assert journal.flush(timeout=30)
    (first,) = folder.glob("*.jsonl")
    assert len(first.read_text().splitlines()) == 9 and len(logged(store)) == 9
    while first.exists():  # past SEGMENT_BYTES the next commit seals it, and removes it once done
        journal.record(rows(3, "b"))
        assert journal.flush(timeout=30)
    journal.record(rows(2, "c"))
    assert journal.flush(timeout=30)
    (live,) = folder.glob("*.jsonl")
    copy = live.read_bytes()  # a live file whose rows are all committed
    journal.close()
    assert left(folder) == []  # a clean close removes it
    committed = logged(store)
    (folder / "1-1.jsonl").write_bytes(copy)  # as a crash would have left it
    again = AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at")
    assert again.recovered == 0 and logged(store) == committed and left(folder) == []
    again.close()


def test_rows_recorded_back_to_back_are_committed_in_batches_and_a_flush_does_not_wait(store, tmp_path,
                                                                                       monkeypatch) -> None:
    """The writer commits at most every COMMIT_EVERY (each commit makes an SQLite API read its
    kept rows again): rows recorded back to back for half a second take a handful of commits,
    not one each; every row is committed, and flush() is answered without waiting out the interval."""
    commits: list[int] = []

    def commit(batch: list[dict], replay: bool = False) -> int:
        commits.append(len(batch))
        return FeedStore(store).record_deliveries(batch, replay=replay)

    journal = AuditJournal(tmp_path / "j", commit, stamp="delivered_at")
    journal.record(rows(1, "first"))
    assert journal.flush(timeout=30)
    commits.clear()
    ends, recorded = time.monotonic() + 0.5, 0
    while time.monotonic() < ends:
        journal.record(rows(1, f"r{recorded}"))
        recorded += 1
        time.sleep(0.0005)
    assert journal.flush(timeout=30)
    assert sum(commits) == recorded > 100
    assert len(commits) <= 0.5 / journal_module.COMMIT_EVERY + 3, commits
    monkeypatch.setattr(journal_module, "COMMIT_EVERY", 60.0)
    started = time.monotonic()
    for k in range(5):  # each flush commits at once, even right after a commit
        journal.record(rows(1, f"f{k}"))
        assert journal.flush(timeout=30)
    assert time.monotonic() - started < 30
    journal.close()
    assert len(logged(store)) == 1 + recorded + 5


def test_the_rows_wait_for_a_warehouse_that_refuses_commits(store, tmp_path, caplog) -> None:
    refusals = [sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection")) for _ in range(2)]
    commit = FeedStore(store).record_deliveries

    def flaky(batch: list[dict], replay: bool) -> int:
        if refusals:
            raise refusals.pop()
        return commit(batch, replay=replay)

    journal = AuditJournal(tmp_path / "j", flaky, stamp="delivered_at")
    journal.record(rows(3))
    journal.record(rows(2, "x"))
    assert journal.flush(timeout=30)
    assert journal.failures == 2 and len(logged(store)) == 5
    assert "retrying" in caplog.text
    journal.close()
    assert left(tmp_path / "j") == []


def test_a_commit_that_landed_but_reported_a_failure_is_not_written_twice(store, tmp_path) -> None:
    commit = FeedStore(store).record_deliveries
    lost_answers = [True]

    def landed(batch: list[dict], replay: bool) -> int:
        written = commit(batch, replay=replay)
        if lost_answers:  # the COMMIT went through, the connection dropped before its answer
            lost_answers.pop()
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return written

    journal = AuditJournal(tmp_path / "j", landed, stamp="delivered_at")
    journal.record(rows(4))
    assert journal.flush(timeout=30)
    journal.close()
    assert journal.failures == 1 and len(logged(store)) == 4 and left(tmp_path / "j") == []


def test_rows_left_when_the_warehouse_is_away_at_shutdown_are_committed_by_the_next_start(store, tmp_path) -> None:
    def away(batch: list[dict], replay: bool) -> int:
        raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))

    folder = tmp_path / "j"
    journal = AuditJournal(folder, away, stamp="delivered_at")
    journal.record(rows(4))
    journal.close(timeout=30)
    assert len(list(folder.glob("*.jsonl"))) == 1 and logged(store) == []
    assert AuditJournal(folder, FeedStore(store).record_deliveries, stamp="delivered_at").recovered == 4
    assert len(logged(store)) == 4 and left(folder) == []


def test_front_desk_accesses_replayed_are_written_once_with_the_time_they_were_answered(store, tmp_path) -> None:
    folder = tmp_path / "front-desk"
    gate = threading.Event()

    def commit(batch: list[dict], replay: bool) -> int:
        gate.wait(30)
        return len(record_accesses(store, batch, replay=replay))

    journal = AuditJournal(folder, commit, stamp="at")
    journal.record([{"subscriber_id": "s1", "token_id": "tok_1", "channel": "api", "kind": kind,
                     "entity_type": "person", "key_hashes": {"id_number": "ab"}, "entity_ids": ["P1"],
                     "fields": {"id_number": "masked"}, "outcome": "ok", "batch_id": None}
                    for kind in ("match", "search", "match")])
    (segment,) = folder.glob("*.jsonl")
    copy = segment.read_bytes()
    gate.set()
    assert journal.flush(timeout=30)
    journal.close()
    (folder / "1-1.jsonl").write_bytes(copy)
    assert AuditJournal(folder, commit, stamp="at").recovered == 0
    log = access_log(store)
    assert log["kind"].to_list() == ["match", "search", "match"]
    answered = {dt.datetime.fromisoformat(json.loads(line)["at"]) for line in copy.decode().splitlines()}
    assert len(answered) == 1 and {utc(x) for x in log["at"].to_list()} == {utc(x) for x in answered}


def utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def test_while_the_log_refuses_rows_no_page_leaves_without_one(warehouse_url, tmp_path, monkeypatch) -> None:
    """A warehouse that serves reads but refuses the audit log's commits: past MAX_PENDING rows
    waiting, pages are refused (503, Retry-After) rather than sent unaudited or held in memory
    without bound; when the log takes rows again, every page sent has its row."""
    import httpx
    from test_feeds_api import seed

    from feeds import journal as journal_module
    from feeds.api import BackgroundServer, create_app
    from feeds.tokens import issue_token

    monkeypatch.setattr(journal_module, "MAX_PENDING", 3)
    monkeypatch.setattr(journal_module, "RETRY_MIN", 0.05)
    wh = seed(warehouse_url, tmp_path)
    token = issue_token(wh, "s0002").token
    app = create_app(warehouse_url, tmp_path, journal_dir=tmp_path / "audit-journal", store=wh)
    feeds_journal = app.state.journals["feeds"]
    refusing = threading.Event()
    refusing.set()
    real = feeds_journal._commit

    def commit(batch: list[dict], replay: bool) -> int:
        if refusing.is_set():
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))
        return real(batch, replay=replay)

    feeds_journal._commit = commit
    statuses = []
    with BackgroundServer(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        for _ in range(6):
            r = http.get("/v1/feeds/s0002/events", params={"after": 0, "limit": 5},
                         headers={"Authorization": f"Bearer {token}"})
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert r.headers["Retry-After"] == "30" and "audit log" in r.json()["detail"]
        refusing.clear()
        assert feeds_journal.flush(timeout=30)
    assert statuses.count(200) == 3 and statuses.count(503) == 3
    assert len(FeedStore(wh).deliveries(subscriber_id="s0002")) == 3
