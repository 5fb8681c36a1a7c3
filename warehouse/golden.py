"""Golden records, their versions and the change-event outbox, as entity_resolution.propagation
sees them. Golden rows, versions and events of one step commit in one transaction."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame, polars_type, read_frame
from warehouse.outbox import outbox_transaction
from warehouse.resolution import EntityTypeStore, not_held
from core.time import utcnow
from warehouse.store import Warehouse


class GoldenStore(EntityTypeStore):
    """The warehouse side of golden records and change events (see entity_resolution.propagation)."""

    # -- what changed upstream -----------------------------------------------------------------
    def state(self) -> int:
        t = s.golden_state
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(t.c.resolution_seq).where(t.c.entity_type == self.entity_type)) or 0)

    def latest_resolution_seq(self) -> int:
        r = s.resolution_runs
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(r.c.seq)).where(r.c.entity_type == self.entity_type)) or 0)

    def entity_changes(self, after_seq: int) -> pl.DataFrame:
        c = s.entity_changes
        stmt = sa.select(c.c.run_seq, c.c.entity_id, c.c.op, c.c.merged_into, c.c.parts).where(
            c.c.entity_type == self.entity_type, c.c.run_seq > after_seq
        ).order_by(c.c.run_seq, c.c.entity_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return pl.DataFrame(
            [(r[0], r[1], r[2], r[3], [str(p) for p in (r[4] or [])]) for r in rows],
            schema={"run_seq": pl.Int64, "entity_id": pl.String, "op": pl.String, "merged_into": pl.String,
                    "parts": pl.List(pl.String)},
            orient="row",
        )

    def touched_entities(self, after_seq: int) -> pl.Series:
        """Entities whose membership rows a resolution run wrote since `after_seq` (new records,
        records that changed content, records that moved between entities)."""
        m = s.entity_membership
        stmt = sa.select(m.c.entity_id).distinct().where(m.c.entity_type == self.entity_type,
                                                         m.c.updated_seq > after_seq)
        with self.engine.connect() as conn:
            return pl.Series("entity_id", conn.scalars(stmt).all(), dtype=pl.String)

    def inputs(self, entity_ids: pl.Series, fields: Iterable[str]) -> pl.DataFrame:
        """Member records of the given entities with the fields survivorship reads."""
        m, t = s.entity_membership, self.record_table
        base = [m.c.entity_id, t.c.record_key, t.c.station_id, t.c.batch_id, t.c.source_updated_at]
        names = {c.name for c in base}
        cols = [t.c[f] for f in dict.fromkeys(fields) if f in t.c and f not in names]
        schema = {c.name: polars_type(c) for c in [*base, *cols]}
        with self.engine.connect() as conn:
            stmt = (sa.select(*base, *cols)
                    .join(t, t.c.record_key == m.c.record_key)
                    # entity ids are unique across types: filtering by type too would steer
                    # SQLite to the type index and a scan of every membership row
                    .where(in_keys(conn, m.c.entity_id, entity_ids), not_held(t.c.batch_id)))
            return read_frame(conn, stmt, schema=schema)

    def current(self, entity_ids: pl.Series) -> pl.DataFrame:
        g = s.golden_records
        schema = {"entity_id": pl.String, "version": pl.Int64, "status": pl.String, "record": pl.String,
                  "provenance": pl.String}
        with self.engine.connect() as conn:
            stmt = sa.select(g.c.entity_id, g.c.version, g.c.status, g.c.record, g.c.provenance).where(
                in_keys(conn, g.c.entity_id, entity_ids))  # an index lookup per key, not a scan
            return read_frame(conn, stmt, schema=schema)

    # -- the one write -------------------------------------------------------------------------
    def commit(self, *, golden: pl.DataFrame, versions: pl.DataFrame, events: pl.DataFrame,
               resolution_seq: int) -> tuple[int, int]:
        """Golden rows, versions and events in one transaction; returns the events' seq range.

        The events go through the outbox's one writer (warehouse.outbox: locked, next seq after
        the outbox's maximum, event ids already there skipped), so `seq` is strictly increasing
        and has no gaps even after a failed attempt.
        """
        now = utcnow()
        with outbox_transaction(self.store) as outbox:
            conn = outbox.conn
            if golden.height:
                insert_frame(conn, s.golden_records, golden.with_columns(
                    entity_type=pl.lit(self.entity_type), updated_at=pl.lit(now)), replace=True)
            if versions.height:
                v = s.golden_versions
                conn.execute(v.update().where(in_keys(conn, v.c.entity_id, versions["entity_id"]),
                                              v.c.valid_to.is_(None)).values(valid_to=now))
                insert_frame(conn, v, versions.with_columns(
                    entity_type=pl.lit(self.entity_type), valid_from=pl.lit(now), valid_to=pl.lit(None, pl.Datetime("us", "UTC"))))
            appended = outbox.append(events.with_columns(entity_type=pl.lit(self.entity_type)), now)
            t = s.golden_state
            conn.execute(t.delete().where(t.c.entity_type == self.entity_type))
            conn.execute(t.insert().values(entity_type=self.entity_type, resolution_seq=resolution_seq, updated_at=now))
        return appended.first_seq, appended.last_seq

    # -- reads for people ----------------------------------------------------------------------
    def history(self, entity_id: str) -> pl.DataFrame:
        v = s.golden_versions
        stmt = sa.select(v.c.version, v.c.op, v.c.changed_fields, v.c.sources, v.c.record, v.c.valid_from,
                         v.c.valid_to).where(v.c.entity_id == entity_id).order_by(v.c.version)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return pl.DataFrame(
            [(r[0], r[1], list(r[2] or []), r[3], r[4], r[5], r[6]) for r in rows],
            schema={"version": pl.Int64, "op": pl.String, "changed_fields": pl.List(pl.String),
                    "sources": pl.Object, "record": pl.String, "valid_from": pl.Object, "valid_to": pl.Object},
            orient="row",
        )


def events(store: Warehouse, *, after: int = 0, limit: int | None = None) -> pl.DataFrame:
    """The outbox after a sequence number, in order (for feeds and for people)."""
    e = s.change_events
    stmt = sa.select(e.c.seq, e.c.event_id, e.c.entity_type, e.c.entity_id, e.c.op, e.c.version,
                     e.c.changed_fields, e.c.before, e.c.after, e.c.sources, e.c.occurred_at).where(
        e.c.seq > after).order_by(e.c.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pl.DataFrame(
        [(*r[:6], list(r[6] or []), r[7], r[8], r[9], r[10]) for r in rows],
        schema={"seq": pl.Int64, "event_id": pl.String, "entity_type": pl.String, "entity_id": pl.String,
                "op": pl.String, "version": pl.Int64, "changed_fields": pl.List(pl.String), "before": pl.String,
                "after": pl.String, "sources": pl.Object, "occurred_at": pl.Object},
        orient="row",
    )

