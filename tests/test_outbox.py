"""The change-event outbox's one writer (warehouse/outbox.py), on SQLite and PostgreSQL: golden and
task events share one gap-free seq, duplicates (in the outbox or in the batch) are skipped, and
concurrent writers queue on the outbox lock instead of colliding on seq."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.outbox import OutboxWriter, lock_outbox, outbox_transaction
from warehouse.quality import TASK_ENTITY_TYPE, task_event_id
from warehouse.store import Warehouse


def _events(ids: list[str], entity_type: str = "person") -> pl.DataFrame:
    return pl.DataFrame({
        "event_id": ids, "entity_type": [entity_type] * len(ids), "entity_id": [f"E{i}" for i in ids],
        "op": ["create"] * len(ids), "version": [1] * len(ids), "changed_fields": ['["name"]'] * len(ids),
        "before": [None] * len(ids), "after": [json.dumps({"id": i}) for i in ids], "sources": ["[]"] * len(ids),
    }, schema_overrides={"before": pl.String})


def _outbox(store: Warehouse) -> list[tuple[int, str]]:
    e = s.change_events
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(e.c.seq, e.c.event_id).order_by(e.c.seq))]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_golden_and_task_events_share_one_seq_and_dedupe(warehouse_url: str) -> None:
    store = Warehouse(warehouse_url).migrate()
    try:
        with outbox_transaction(store) as outbox:
            first = outbox.append(_events(["a", "b", "a"]), _now())  # "a" twice in one batch
        assert (first.written, first.first_seq, first.last_seq) == (2, 1, 2)
        task_ids = [task_event_id("T1", 1), task_event_id("T2", 1)]
        with outbox_transaction(store) as outbox:
            second = outbox.append(_events(["b", *task_ids], TASK_ENTITY_TYPE), _now())  # "b" already there
        assert (second.written, second.first_seq, second.last_seq) == (2, 3, 4)
        with outbox_transaction(store) as outbox:
            again = outbox.append(_events(task_ids, TASK_ENTITY_TYPE), _now())
            empty = outbox.append(_events([]), _now())
            assert outbox.append(pl.DataFrame(), _now()).written == 0  # no rows, no columns: nothing
        assert (again.written, again.last_seq) == (0, 4)
        assert (empty.written, empty.first_seq, empty.last_seq) == (0, 5, 4)
        assert _outbox(store) == [(1, "a"), (2, "b"), (3, task_ids[0]), (4, task_ids[1])]
        assert store.max_event_seq() == 4
    finally:
        store.dispose()


def test_concurrent_writers_make_one_gap_free_seq(warehouse_url: str) -> None:
    """Four writers, each with its own engine (own connections, as separate processes would
    have), append overlapping event ids at once: every id lands once, seqs are 1..n."""
    Warehouse(warehouse_url).migrate().dispose()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(n: int) -> None:
        store = Warehouse(warehouse_url)
        try:
            start.wait()
            for round_ in range(15):
                # ids shared by all writers in a round, and ids of this writer alone
                ids = [f"shared-{round_}", f"w{n}-{round_}-a", f"w{n}-{round_}-b"]
                with outbox_transaction(store) as outbox:
                    outbox.append(_events(ids), _now())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    store = Warehouse(warehouse_url)
    try:
        rows = _outbox(store)
        assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
        assert len({eid for _, eid in rows}) == len(rows) == 15 + 4 * 15 * 2
    finally:
        store.dispose()


def test_the_lock_holds_off_a_writer_of_another_connection(warehouse_url: str) -> None:
    """Without the in-process writer lock (another process): a second writer waits at the outbox
    lock until the first commits, then continues its seq (on SQLite the lock is the database's
    write lock, taken by the transaction's first statement)."""
    store = Warehouse(warehouse_url).migrate()
    other = Warehouse(warehouse_url)
    locked, order = threading.Event(), []

    def second() -> None:
        locked.wait(30)
        with other.engine.begin() as conn:
            lock_outbox(conn)
            order.append("second locked")
            order.append(OutboxWriter(conn).append(_events(["late"]), _now()).first_seq)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        with store.engine.begin() as conn:
            lock_outbox(conn)
            locked.set()
            time.sleep(0.5)  # the second writer is waiting now
            order.append(OutboxWriter(conn).append(_events(["early1", "early2"]), _now()).last_seq)
        thread.join(60)
        assert order == [2, "second locked", 3]
        assert _outbox(store) == [(1, "early1"), (2, "early2"), (3, "late")]
    finally:
        thread.join(60)
        store.dispose()
        other.dispose()


def test_staged_events_are_appended_in_their_order_past_those_already_there(tmp_path) -> None:
    """A large publication's events come from a stage (warehouse/golden.py): in their staged
    order (not the order they were staged in), those already in the outbox skipped, numbered
    without gaps after the outbox's last seq."""
    from warehouse.bulk import attach_stage, sqlite_stage
    from warehouse.outbox import OUTBOX, prepared

    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    try:
        with outbox_transaction(store) as outbox:
            outbox.append(_events(["a", "c"]), _now())
        staged = prepared(_events(["d", "c", "b", "e"]).with_columns(_order=pl.Series([30, 5, 20, 10])), _now())
        stage = sqlite_stage(store.engine)
        stage.add(OUTBOX, staged)
        try:
            with outbox_transaction(store, large=True) as outbox:
                alias = attach_stage(outbox.conn, stage)  # detached when the transaction ends
                appended = outbox.append_staged(f'"{alias}"."{OUTBOX.name}"')
        finally:
            stage.close()
        assert (appended.written, appended.first_seq, appended.last_seq) == (3, 3, 5)
        assert _outbox(store) == [(1, "a"), (2, "c"), (3, "e"), (4, "b"), (5, "d")]
        with store.engine.connect() as conn:  # nothing left behind in the connection
            assert conn.exec_driver_sql("SELECT count(*) FROM temp.sqlite_master").scalar() == 0
    finally:
        store.dispose()
