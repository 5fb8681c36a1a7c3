"""The feed API's prepared deliveries.

Prepared rows (`feed_prepared`) are each subscriber's events as the API hands them out, written by
the feed build so that a page is one indexed range read instead of scoping, projecting and masking
the outbox per request. A subscriber's mark (`feed_prepared_marks`) says which stretch of the
outbox its rows cover, under which policy digest, and in which generation: a reset (new digest, or
a stretch that no longer joins) deletes the subscriber's rows and writes a new generation in one
transaction, and a page is read with its mark in one statement, so it never mixes the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from core.time import utcnow
from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame
from warehouse.store import Warehouse

PREPARED_SCHEMA = {"subscriber_id": pl.String, "seq": pl.Int64, "entity_id": pl.String, "about": pl.String,
                   "fields": pl.String, "line": pl.String}


@dataclass(frozen=True)
class Mark:
    """What is prepared for one subscriber: events in (from_seq, to_seq] under `digest`."""

    generation: int
    digest: str
    from_seq: int
    to_seq: int


def _page_statements() -> tuple[sa.Select, sa.CompoundSelect]:
    """PreparedStore.read's statements, built once (bound parameters: sid, digest, after, n)."""
    p, m, e = s.feed_prepared, s.feed_prepared_marks, s.change_events
    sid, after = sa.bindparam("sid"), sa.bindparam("after")
    to = (sa.select(m.c.to_seq)
          .where(m.c.subscriber_id == sid, m.c.digest == sa.bindparam("digest"), m.c.from_seq <= after)
          .scalar_subquery())
    gen = sa.select(m.c.generation).where(m.c.subscriber_id == sid).scalar_subquery()
    high = sa.select(sa.func.coalesce(sa.func.max(e.c.seq), 0)).scalar_subquery()
    page = (sa.select(p.c.seq, p.c.entity_id, p.c.about, p.c.fields, p.c.line, to.label("to_seq"),
                      high.label("high"))
            .where(p.c.subscriber_id == sid, p.c.generation == gen, p.c.seq > after, p.c.seq <= to,
                   p.c.seq <= high)
            .order_by(p.c.seq).limit(sa.bindparam("n", type_=sa.Integer)))
    sub = page.subquery()
    with_mark = sa.union_all(
        sa.select(sub),
        sa.select(*(sa.literal(None, c.type).label(c.name) for c in list(sub.c)[:5]), to.label("to_seq"),
                  high.label("high")))
    return page, with_mark


def _fetch(conn: sa.Connection, stmt: sa.Executable, params: dict) -> list[tuple]:
    """The rows as the driver gives them (no per-row objects: a page is a thousand rows of text
    that go out as they are)."""
    result = conn.execute(stmt, params)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


_PAGE, _PAGE_OR_MARK = _page_statements()


class PreparedStore:
    def __init__(self, store: Warehouse):
        self.store = store
        self.engine = store.engine

    def marks(self, subscriber_ids: Iterable[str] | None = None) -> dict[str, Mark]:
        m = s.feed_prepared_marks
        stmt = sa.select(m.c.subscriber_id, m.c.generation, m.c.digest, m.c.from_seq, m.c.to_seq)
        with self.engine.connect() as conn:
            if subscriber_ids is not None:
                stmt = stmt.where(in_keys(conn, m.c.subscriber_id, list(subscriber_ids)))
            return {r[0]: Mark(r[1], r[2], r[3], r[4]) for r in conn.execute(stmt)}

    def mark(self, subscriber_id: str) -> Mark | None:
        m = s.feed_prepared_marks
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(m.c.generation, m.c.digest, m.c.from_seq, m.c.to_seq)
                             .where(m.c.subscriber_id == subscriber_id)).first()
        return None if r is None else Mark(r[0], r[1], r[2], r[3])

    def read(self, subscriber_id: str, digest: str, *, after: int, limit: int) -> tuple[list[tuple], int, int]:
        """Up to `limit` prepared rows (seq, entity_id, about, fields, line, ...) after `after` up to
        the outbox's high water, in seq order; how far they are prepared (the mark's to_seq, -1
        when nothing is prepared from `after` under `digest`: the caller builds the page itself);
        and the outbox's high water.

        Rows, mark and high water come from one statement (the mark's values as subqueries the
        database evaluates once, so the rows are still read in key order), so a build replacing
        the rows meanwhile is seen whole or not at all."""
        params = {"sid": subscriber_id, "digest": digest, "after": after, "n": limit}
        with self.engine.connect() as conn:
            rows = _fetch(conn, _PAGE, params)
            if rows:
                return rows, rows[0][5], rows[0][6]
            # no row: nothing prepared from `after`, or no event of the subscriber in the stretch.
            # Asked again with one more row (seq null) carrying the mark and the high water as
            # this statement sees them, so that the answer holds even if a build landed meanwhile.
            rows = _fetch(conn, _PAGE_OR_MARK, params)
        # the databases give a UNION ALL's branches in order; should one not, the page is sorted here
        at = len(rows) - 1 if rows[-1][0] is None else next(i for i, r in enumerate(rows) if r[0] is None)
        _, _, _, _, _, top, now = rows.pop(at)
        if any(rows[i][0] >= rows[i + 1][0] for i in range(len(rows) - 1)):
            rows.sort(key=lambda r: r[0])
        if top is None or top <= after:
            return [], -1, now  # nothing prepared from `after` under this digest
        return rows, top, now

    def write(self, rows: pl.DataFrame, *, resets: dict[str, tuple[str, int, int]],
              extends: dict[str, int]) -> dict[str, int]:
        """One build's prepared rows (PREPARED_SCHEMA), in one transaction; returns how many rows
        each subscriber got.

        resets: subscriber -> (digest, from_seq, to_seq): its rows are replaced by those given
        with from_seq < seq <= to_seq, in a new generation. extends: subscriber -> to_seq: rows
        after its mark's to_seq are added and the mark moves to to_seq (never back)."""
        p, m = s.feed_prepared, s.feed_prepared_marks
        now = utcnow()
        ids = sorted(set(resets) | set(extends))
        if not ids:
            return {}
        with self.store.transaction() as conn:
            have = {r[0]: (r[1], r[2]) for r in conn.execute(
                sa.select(m.c.subscriber_id, m.c.generation, m.c.to_seq).where(in_keys(conn, m.c.subscriber_id, ids)))}
            # the window each subscriber's new rows must fall in; extends of a vanished mark are dropped
            lo: dict[str, int] = {}
            hi: dict[str, int] = {}
            if resets:
                reset_ids = sorted(resets)
                conn.execute(p.delete().where(in_keys(conn, p.c.subscriber_id, reset_ids)))
                conn.execute(m.delete().where(in_keys(conn, m.c.subscriber_id, reset_ids)))
                fresh = [{"subscriber_id": sid, "generation": have.get(sid, (0, 0))[0] + 1, "digest": digest,
                          "from_seq": frm, "to_seq": to, "updated_at": now}
                         for sid, (digest, frm, to) in resets.items()]
                conn.execute(m.insert(), fresh)
                for r in fresh:
                    have[r["subscriber_id"]] = (r["generation"], r["to_seq"])
                    lo[r["subscriber_id"]], hi[r["subscriber_id"]] = r["from_seq"], r["to_seq"]
            moves = [{"sid": sid, "to": to} for sid, to in extends.items()
                     if sid in have and sid not in resets and to > have[sid][1]]
            for mv in moves:
                lo[mv["sid"]], hi[mv["sid"]] = have[mv["sid"]][1], mv["to"]
            if moves:
                conn.execute(m.update().where(m.c.subscriber_id == sa.bindparam("sid"))
                             .values(to_seq=sa.bindparam("to"), updated_at=now), moves)
            if not lo or rows.height == 0:
                return {}
            window = pl.DataFrame({"subscriber_id": list(lo), "_lo": list(lo.values()),
                                   "_hi": [hi[k] for k in lo],
                                   "generation": [have[k][0] for k in lo]},
                                  schema={"subscriber_id": pl.String, "_lo": pl.Int64, "_hi": pl.Int64,
                                          "generation": pl.Int64})
            new = (rows.join(window, on="subscriber_id")
                   .filter((pl.col("seq") > pl.col("_lo")) & (pl.col("seq") <= pl.col("_hi")))
                   .drop("_lo", "_hi"))
            insert_frame(conn, p, new)
        return dict(new.group_by("subscriber_id").len().iter_rows()) if new.height else {}

    def prune(self, upto: dict[str, int]) -> None:
        """Drop each subscriber's rows up to a seq (its acknowledged API cursor: pages before it
        are asked again only by a client going back, and are then built on demand), moving its
        mark's from_seq up with them, in one transaction."""
        p, m = s.feed_prepared, s.feed_prepared_marks
        if not upto:
            return
        with self.store.transaction() as conn:
            marks = {r[0]: (r[1], r[2]) for r in conn.execute(
                sa.select(m.c.subscriber_id, m.c.from_seq, m.c.to_seq).where(in_keys(conn, m.c.subscriber_id,
                                                                                    sorted(upto))))}
            moves = [{"sid": sid, "upto": min(upto[sid], to)} for sid, (frm, to) in marks.items()
                     if min(upto[sid], to) > frm]
            if moves:
                conn.execute(p.delete().where(p.c.subscriber_id == sa.bindparam("sid"),
                                              p.c.seq <= sa.bindparam("upto")), moves)
                conn.execute(m.update().where(m.c.subscriber_id == sa.bindparam("sid"))
                             .values(from_seq=sa.bindparam("upto")), moves)

    def forget(self, keep: Iterable[str]) -> int:
        """Drop the prepared rows and marks of subscribers no longer subscribed; returns how many."""
        p, m = s.feed_prepared, s.feed_prepared_marks
        keep = set(keep)
        with self.engine.connect() as conn:
            gone = [sid for sid in conn.scalars(sa.select(m.c.subscriber_id)) if sid not in keep]
        if gone:
            with self.store.transaction() as conn:
                conn.execute(p.delete().where(in_keys(conn, p.c.subscriber_id, gone)))
                conn.execute(m.delete().where(in_keys(conn, m.c.subscriber_id, gone)))
        return len(gone)
