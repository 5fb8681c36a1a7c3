"""The one writer of the change-event outbox (`change_events`).

Golden-record events (warehouse/golden.py) and correction-task events (warehouse/quality.py) are
appended here and nowhere else, always the same way:

1. the outbox is locked first thing in the write transaction (`outbox_transaction`): on
   PostgreSQL `LOCK TABLE change_events IN EXCLUSIVE MODE` (readers go on, writers queue); on
   SQLite a no-op write takes the database's write lock at once, so a writer in another process
   waits (busy timeout) instead of reading a maximum seq that is stale by the time it writes;
2. events whose `event_id` is already in the outbox, or repeated within the batch, are skipped
   (ids are deterministic, so a rerun writes nothing twice);
3. the others get the next seqs after the outbox's maximum, read under the lock: strictly
   increasing, no gaps, even after a failed attempt;
4. they are inserted in bulk; a publication too large to hold in memory stages them first
   (warehouse/golden.py) and appends them from there by one INSERT ... SELECT (`append_staged`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import in_keys, indexes_built_after, insert_frame

OUTBOX = s.change_events
# Columns an appended event carries (seq and occurred_at are the writer's); JSON columns as text.
EVENT_COLUMNS = ("event_id", "entity_type", "entity_id", "op", "version", "changed_fields", "before", "after",
                 "sources")


@dataclass(frozen=True)
class Appended:
    written: int
    first_seq: int  # the seq the first written event got (or would have got: last_seq + 1 when none)
    last_seq: int  # the outbox's maximum after the append


def lock_outbox(conn: sa.Connection) -> None:
    """Take the outbox's write lock for the rest of the transaction; the transaction's first
    statement (on SQLite a later one could find its snapshot already stale)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE change_events IN EXCLUSIVE MODE")
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DELETE FROM change_events WHERE 0")  # begins the write transaction


def prepared(events: pl.DataFrame, occurred_at: dt.datetime) -> pl.DataFrame:
    """Events as the outbox stores them, ready before the lock is taken: EVENT_COLUMNS, `seq`
    holding their order for now (the frame's `_order` column when it has one, else row order;
    the append renumbers them to follow the outbox's maximum), an event_id repeated within the
    batch kept once (the first in that order), and occurred_at."""
    if events.height == 0:  # nothing to append (a frame of no rows may have no columns either)
        return pl.DataFrame()
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"outbox events lack {missing}")
    order = pl.col("_order").cast(pl.Int64) if "_order" in events.columns else pl.int_range(1, pl.len() + 1,
                                                                                           dtype=pl.Int64)
    events = events.select(*EVENT_COLUMNS, order.alias("seq"))
    if not events["seq"].is_sorted():
        events = events.sort("seq", maintain_order=True)
    return events.unique("event_id", keep="first", maintain_order=True).with_columns(
        occurred_at=pl.lit(occurred_at, pl.Datetime("us", "UTC")))


class OutboxWriter:
    """Appends to the outbox inside a transaction that holds its lock (from outbox_transaction)."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def append(self, events: pl.DataFrame, occurred_at: dt.datetime) -> Appended:
        return self.append_prepared(prepared(events, occurred_at))

    def append_prepared(self, events: pl.DataFrame) -> Appended:
        """Append events from `prepared`, in their `seq` order."""
        conn = self.conn
        known: set[str] = set()
        if events.height:
            known = set(conn.scalars(sa.select(OUTBOX.c.event_id).where(
                in_keys(conn, OUTBOX.c.event_id, events["event_id"].to_list()))))
        fresh = events.filter(~pl.col("event_id").is_in(list(known))) if known else events
        start = self._next_seq()
        if fresh.height:
            insert_frame(conn, OUTBOX, fresh.with_columns(
                seq=pl.int_range(start, start + fresh.height, dtype=pl.Int64)))
        return Appended(fresh.height, start, start + fresh.height - 1)

    def append_staged(self, source: str) -> Appended:
        """Append the events staged in table `source` (rows of `prepared`, event ids unique), in
        their `seq` order, by one INSERT ... SELECT: those already in the outbox are skipped by a
        join on its unique index, the others numbered in their order."""
        start = self._next_seq()
        cols = ", ".join(f's."{c}"' for c in (*EVENT_COLUMNS, "occurred_at"))
        names = ", ".join(f'"{c}"' for c in ("seq", *EVENT_COLUMNS, "occurred_at"))
        fresh = f'NOT EXISTS (SELECT 1 FROM "{OUTBOX.name}" m WHERE m.event_id = s.event_id)'
        if self.conn.dialect.name != "sqlite":
            written = self.conn.exec_driver_sql(
                f'INSERT INTO "{OUTBOX.name}" ({names}) '
                f"SELECT {start - 1} + row_number() OVER (ORDER BY s.seq), {cols} FROM {source} s "
                f"WHERE {fresh} ORDER BY s.seq").rowcount
            return Appended(written, start, start + written - 1)
        # SQLite: the window above sorts whole rows (a million events' JSON, in memory: 3 s and
        # about a gigabyte at a first publication); the new events' order alone goes into a
        # temporary table instead (their rowids in the stage), whose own rowids number them, and
        # the rows follow it.
        conn = self.conn
        conn.exec_driver_sql("DROP TABLE IF EXISTS temp._outbox_order")
        conn.exec_driver_sql(f"CREATE TEMP TABLE _outbox_order AS SELECT s.rowid AS staged FROM {source} s "
                             f"WHERE {fresh} ORDER BY s.seq")
        fresh_rows = conn.exec_driver_sql("SELECT max(rowid) FROM temp._outbox_order").scalar() or 0
        with indexes_built_after(conn, OUTBOX.name, fresh_rows):  # after the probe above used them
            written = conn.exec_driver_sql(
                f'INSERT INTO "{OUTBOX.name}" ({names}) SELECT {start - 1} + o.rowid, {cols} '
                f"FROM temp._outbox_order o JOIN {source} s ON s.rowid = o.staged ORDER BY o.rowid").rowcount
        conn.exec_driver_sql("DROP TABLE temp._outbox_order")
        return Appended(written, start, start + written - 1)

    def _next_seq(self) -> int:
        return int(self.conn.scalar(sa.select(sa.func.coalesce(sa.func.max(OUTBOX.c.seq), 0)))) + 1


@contextmanager
def outbox_transaction(store, *, conn: sa.Connection | None = None, locked: bool = False,
                       large: bool = False) -> Iterator[OutboxWriter]:
    """A write transaction of `store` (warehouse.store.Warehouse) that holds the outbox lock from
    its first statement; what else the block writes commits together with the events. With
    `conn` (a connection already inside its transaction: the caller commits) the lock is taken
    there, unless `locked` says the transaction took it already. `large`: see
    `Warehouse.transaction`."""
    if conn is not None:
        if not locked:
            lock_outbox(conn)
        yield OutboxWriter(conn)
        return
    with store.transaction(large=large) as own:
        lock_outbox(own)
        yield OutboxWriter(own)
