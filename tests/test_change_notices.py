"""warehouse.notices on a real PostgreSQL: the triggers of migration 0020 notify every commit that
writes a table the feed API keeps rows of, and only those; a barrier has heard every commit that
finished before it; a lost connection is noticed, counted as a change and made again; without
the triggers nothing kept is ever trusted. SQLite needs no listener."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import sqlalchemy as sa
from alembic import command

from core.time import utcnow
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.engine import alembic_config
from warehouse.notices import APPLICATION_NAME, BARRIER_TIMEOUT_S, NOTIFYING_TABLES, ChangeListener, listen, listener_of
from warehouse.unchanged import Reader, memory_only

TOKEN = {"token_id": "tok_00000000000000a1", "subscriber_id": "A", "token_hash": "h", "label": None,
         "revoked_at": None}


def _writes() -> dict[str, list]:
    """One committed write per notifying table, and to a table that notifies nothing."""
    now = utcnow()
    return {
        "feed_tokens": [s.feed_tokens.insert().values(**TOKEN, issued_at=now)],
        "feed_prepared_marks": [s.feed_prepared_marks.insert().values(
            subscriber_id="A", generation=1, digest="d", from_seq=0, to_seq=0, updated_at=now)],
        "feed_prepared_blocks": [s.feed_prepared_blocks.delete().where(s.feed_prepared_blocks.c.subscriber_id == "Z")],
        "change_events": [s.change_events.delete().where(s.change_events.c.seq < 0)],
        "feed_deliveries": [s.feed_deliveries.delete().where(s.feed_deliveries.c.delivery_id < 0)],
    }


def _backends(store: Warehouse) -> list[int]:
    with store.engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND application_name = :name"), {"name": APPLICATION_NAME}))


@pytest.fixture()
def listening(pg_url: str):
    """A migrated PostgreSQL warehouse and its engine's listener, closed afterwards."""
    store = Warehouse(pg_url).migrate()
    listener = listen(store.engine)
    yield store, listener
    listener.close()
    assert listener_of(store.engine) is None
    store.dispose()


async def _listening(listener: ChangeListener) -> None:
    for _ in range(500):
        if await listener.barrier():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the listener did not connect")


def test_a_barrier_hears_every_commit_to_a_kept_table_and_nothing_else(listening) -> None:
    store, listener = listening
    assert listener is listen(store.engine) and listener_of(store.engine) is listener  # one per engine

    async def scenario() -> None:
        await _listening(listener)
        v = listener.version
        assert await listener.barrier() and await listener.barrier() and listener.version == v  # quiet: no change
        for table, statements in _writes().items():
            with store.engine.begin() as conn:
                for stmt in statements:
                    conn.execute(stmt)
            assert await listener.barrier()
            assert listener.version == (v + 1 if table in NOTIFYING_TABLES else v), table
            v = listener.version
        with store.engine.connect() as conn:  # rolled back: nothing to hear
            conn.execute(s.feed_tokens.update().values(label="never"))
            conn.rollback()
        assert await listener.barrier() and listener.version == v
        # barriers asked for together share round trips, and each still hears what came before it
        with store.engine.begin() as conn:
            conn.execute(s.feed_tokens.update().values(label="x"))
        assert all(await asyncio.gather(*(listener.barrier() for _ in range(50))))
        assert listener.version == v + 1

    asyncio.run(scenario())


def test_what_is_kept_is_trusted_only_after_a_barrier_and_forgotten_at_a_change(listening) -> None:
    store, listener = listening

    async def scenario() -> None:
        await _listening(listener)
        with Reader(store.engine) as reader:
            kept, trusted = reader.kept("token")
            assert not trusted  # outside a barrier's memory_only(): filled, never used
            kept["t"] = 1
            with memory_only():
                assert reader.kept("token") == ({"t": 1}, True)
        with store.engine.begin() as conn:
            conn.execute(s.feed_tokens.insert().values(**TOKEN, issued_at=utcnow()))
        assert await listener.barrier()
        with memory_only(), Reader(store.engine) as reader:
            assert reader.kept("token") == ({}, True)

    asyncio.run(scenario())


def test_a_lost_connection_counts_as_a_change_and_is_made_again(listening) -> None:
    store, listener = listening

    async def scenario() -> None:
        await _listening(listener)
        v = listener.version
        pids = _backends(store)
        assert pids
        with store.engine.begin() as conn:
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        assert not await listener.barrier()  # the round trip fails: nothing trusted
        assert listener.version > v
        await _listening(listener)  # connected again, and hearing
        v = listener.version
        with store.engine.begin() as conn:
            conn.execute(s.feed_tokens.insert().values(**TOKEN, issued_at=utcnow()))
        assert await listener.barrier() and listener.version == v + 1

    asyncio.run(scenario())


def test_a_server_that_stops_answering_holds_no_page_up(listening) -> None:
    """The listening backend stopped (SIGSTOP: as a server cut off mid-connection, no reset): the
    barrier gives up after BARRIER_TIMEOUT_S instead of holding every page up, and a new
    connection is made once the server answers again."""
    store, listener = listening

    async def scenario() -> None:
        await _listening(listener)
        (pid,) = _backends(store)
        try:
            os.kill(pid, signal.SIGSTOP)
        except PermissionError:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip("stopping a PostgreSQL backend needs the rights of its user or root")
        try:
            started = time.monotonic()
            assert not await listener.barrier()
            assert time.monotonic() - started < BARRIER_TIMEOUT_S + 2
        finally:
            os.kill(pid, signal.SIGCONT)
        await _listening(listener)
        assert _backends(store) != [pid]

    asyncio.run(scenario())


def test_without_the_triggers_nothing_is_trusted_and_the_migration_puts_them_back(pg_url: str) -> None:
    store = Warehouse(pg_url).migrate()
    cfg = alembic_config(store.engine)

    def triggers() -> int:
        with store.engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%\\_notify'"))

    assert triggers() == len(NOTIFYING_TABLES)
    command.downgrade(cfg, "0019")
    assert triggers() == 0
    listener = listen(store.engine)

    async def without() -> None:
        for _ in range(20):
            assert not await listener.barrier()
            await asyncio.sleep(0.01)

    asyncio.run(without())
    listener.close()
    command.upgrade(cfg, "head")
    assert triggers() == len(NOTIFYING_TABLES)
    store.dispose()


def test_sqlite_needs_no_listener(tmp_path) -> None:
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    assert listen(store.engine) is None and listener_of(store.engine) is None
    store.dispose()
