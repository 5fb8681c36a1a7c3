"""Relations between golden records (entity_resolution/relations.py) as the warehouse keeps them:
the links with their history (`relation_links`), the runs (`relation_runs`), and the golden rows,
versions and change events of the records whose relation fields changed, committed in one
transaction through the outbox's one writer (warehouse/outbox.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from core.time import utcnow
from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame, read_bulk, read_frame
from warehouse.outbox import outbox_transaction
from warehouse.store import Warehouse

GOLDEN_SCHEMA = {"entity_id": pl.String, "version": pl.Int64, "status": pl.String, "area_code": pl.String,
                 "record": pl.String}
PROVENANCE_PART = 20_000  # records whose provenance is read (and decoded by the caller) at a time
KEY_SCHEMA = {"entity_id": pl.String, "side": pl.String, "key": pl.String}


class RelationStore:
    """The warehouse side of the relation step (entity_resolution.relations.RelationStore). Every
    read is by index (an outbox tail by seq, golden rows and links by entity id, keys by key), so
    a run costs what changed, not the size of the warehouse."""

    def __init__(self, store: Warehouse):
        self.store = store
        self.engine = store.engine

    # -- what changed ------------------------------------------------------------------------------
    def last_seen(self, relation: str) -> int:
        """The outbox seq up to which the relation's runs have looked (0: never ran)."""
        r = s.relation_runs
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(r.c.outbox_seq)).where(r.c.relation == relation)) or 0)

    def has_run(self, relation: str) -> bool:
        """Whether any run of the relation committed (a part of one too): before that it has no
        stored keys or links to read."""
        r = s.relation_runs
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(r.c.run_id).where(r.c.relation == relation).limit(1)) is not None

    def high_water(self) -> int:
        return self.store.max_event_seq()

    def changed_entities(self, relation, after_seq: int, until_seq: int, *,
                         types: list[str] | None = None) -> pl.Series:
        """Entities of either type (or of `types`) with events in (after_seq, until_seq]: a scan
        of the outbox's new tail only (by its primary key), made distinct here (SQLite's DISTINCT
        sorts the million ids of a first run in a temporary b-tree)."""
        e = s.change_events
        stmt = sa.select(e.c.entity_id).where(
            e.c.seq > after_seq, e.c.seq <= until_seq,
            e.c.entity_type.in_(types or [relation.from_type, relation.to_type]))
        with self.engine.connect() as conn:
            return read_bulk(conn, stmt, schema={"entity_id": pl.String}).to_series().unique(maintain_order=True)

    # -- reads -------------------------------------------------------------------------------------
    def golden_rows(self, entity_ids: pl.Series) -> pl.DataFrame:
        """The golden rows of the given entities, whatever their status (GOLDEN_SCHEMA + entity_type),
        without their provenance (see provenance)."""
        g = s.golden_records
        schema = {"entity_id": pl.String, "entity_type": pl.String, **{k: v for k, v in GOLDEN_SCHEMA.items()
                                                                         if k != "entity_id"}}
        if entity_ids.len() == 0:
            return pl.DataFrame(schema=schema)
        with self.engine.connect() as conn:
            stmt = sa.select(g.c.entity_id, g.c.entity_type, g.c.version, g.c.status, g.c.area_code,
                             g.c.record).where(in_keys(conn, g.c.entity_id, entity_ids.to_list()))
            return read_bulk(conn, stmt, schema=schema)

    def provenance(self, entity_ids: pl.Series) -> Iterator[pl.DataFrame]:
        """(entity_id, provenance) of the given entities' golden rows, PROVENANCE_PART at a time."""
        g = s.golden_records
        ids = entity_ids.to_list()
        for start in range(0, len(ids), PROVENANCE_PART):
            with self.engine.connect() as conn:
                stmt = sa.select(g.c.entity_id, g.c.provenance).where(
                    in_keys(conn, g.c.entity_id, ids[start:start + PROVENANCE_PART]))
                yield read_bulk(conn, stmt, schema={"entity_id": pl.String, "provenance": pl.String})

    def record_field(self, entity_ids: pl.Series, field: str) -> pl.DataFrame:
        """(entity_id, value): one field of the given entities' golden records as text, taken out
        of the record's JSON by the database. What a relation reads to split a large run into
        parts: reading every record whole for it cost a first run at 1M about 19 s."""
        g = s.golden_records
        if self.store.dialect == "postgresql":
            value = sa.cast(g.c.record, postgresql.JSONB)[field].astext
        else:  # SQLite's JSON1; a JSON null reads as NULL, a number as its text
            value = sa.cast(sa.func.json_extract(g.c.record, "$." + json.dumps(field)), sa.Text)
        with self.engine.connect() as conn:
            stmt = sa.select(g.c.entity_id, value.label("value")).where(
                in_keys(conn, g.c.entity_id, entity_ids.to_list()))
            return read_bulk(conn, stmt, schema={"entity_id": pl.String, "value": pl.String})

    def keys_of(self, relation: str, entity_ids: pl.Series) -> pl.DataFrame:
        """The stored keys of the given entities (entity_id, side, key)."""
        return self._keys(relation, "entity_id", entity_ids)

    def keys_matching(self, relation: str, keys: pl.Series) -> pl.DataFrame:
        """Every record whose stored key is one of `keys` (entity_id, side, key)."""
        return self._keys(relation, "key", keys)

    def _keys(self, relation: str, by: str, values: pl.Series) -> pl.DataFrame:
        k = s.relation_keys
        with self.engine.connect() as conn:
            stmt = sa.select(k.c.entity_id, k.c.side, k.c.key).where(
                k.c.relation == relation, in_keys(conn, k.c[by], values.to_list()))
            return read_bulk(conn, stmt, schema=KEY_SCHEMA)

    def open_links(self, relation: str, *, from_ids: pl.Series | None = None,
                   to_ids: pl.Series | None = None) -> pl.DataFrame:
        """The relation's links that have not ended (from_id, to_id): all, or those from / to the
        given entities."""
        t = s.relation_links
        schema = {"from_id": pl.String, "to_id": pl.String}
        with self.engine.connect() as conn:
            stmt = sa.select(t.c.from_id, t.c.to_id).where(t.c.relation == relation, t.c.valid_to.is_(None))
            if from_ids is not None:
                stmt = stmt.where(in_keys(conn, t.c.from_id, from_ids.to_list()))
            if to_ids is not None:
                stmt = stmt.where(in_keys(conn, t.c.to_id, to_ids.to_list(), table="_keys2"))
            return read_bulk(conn, stmt, schema=schema)

    def open_link_count(self, relation: str) -> int:
        """The relation's open links: as its last commit counted them (`stats.links`, written in
        the transaction that opened and closed links, and only a commit here writes links).
        Counting them read every link row of the relation, 1.7 s of each drop at 1M records."""
        r, t = s.relation_runs, s.relation_links
        with self.engine.connect() as conn:
            stats = conn.scalar(sa.select(r.c.stats).where(r.c.relation == relation)
                                .order_by(r.c.run_id.desc()).limit(1))
            if stats is None:
                return 0
            if isinstance(stats, dict) and isinstance(stats.get("links"), int):
                return stats["links"]
            return int(conn.scalar(sa.select(sa.func.count()).where(t.c.relation == relation,
                                                                   t.c.valid_to.is_(None))) or 0)

    def links(self, relation: str, *, from_id: str | None = None, to_id: str | None = None) -> pl.DataFrame:
        """Every link of the relation, ended ones too, oldest first (for people and tests)."""
        t = s.relation_links
        stmt = sa.select(t.c.link_id, t.c.from_id, t.c.to_id, t.c.valid_from, t.c.valid_to, t.c.opened_run,
                         t.c.closed_run).where(t.c.relation == relation).order_by(t.c.link_id)
        if from_id is not None:
            stmt = stmt.where(t.c.from_id == from_id)
        if to_id is not None:
            stmt = stmt.where(t.c.to_id == to_id)
        with self.engine.connect() as conn:
            return read_frame(conn, stmt, schema={
                "link_id": pl.Int64, "from_id": pl.String, "to_id": pl.String, "valid_from": pl.Datetime("us", "UTC"),
                "valid_to": pl.Datetime("us", "UTC"), "opened_run": pl.Int64, "closed_run": pl.Int64})

    # -- the one write -------------------------------------------------------------------------------
    def commit(self, relation, *, changes: pl.DataFrame, events: pl.DataFrame,
               opened: pl.DataFrame, closed: pl.DataFrame, keys_dropped: pl.Series, keys_added: pl.DataFrame,
               seen_seq: int, stats: dict, own_events: list[tuple[int, int]] = ()) -> tuple[int, int]:
        """The run, its link changes, keys, changed records and events in one transaction (the
        outbox locked first, so its seqs stay gap-free); returns the events' seq range.

        Each changed record (entity_resolution.relations.CHANGE_SCHEMA) takes its new record and
        version in its golden row, and gets a version row carrying the golden row's provenance,
        copied inside the database (a relation changes no provenance; it is most of a row).

        The run is recorded as having seen the outbox up to its own last event, unless events of
        either type arrived after `seen_seq` (what the run read) and before the lock: then only
        up to `seen_seq`, so the next run looks at them. `own_events`: seq ranges this run's
        earlier parts appended, which are not news to it."""
        now, name = utcnow(), relation.name
        with outbox_transaction(self.store, large=True) as outbox:
            conn = outbox.conn
            e = s.change_events
            missed = conn.execute(sa.select(e.c.seq).where(
                e.c.seq > seen_seq, e.c.entity_type.in_([relation.from_type, relation.to_type]),
                *(~e.c.seq.between(a, b) for a, b in own_events)).limit(1)).first()
            if changes.height:
                _write_changes(conn, changes, now)
            appended = outbox.append(events, now)
            r = s.relation_runs
            seen = seen_seq if missed is not None else max(appended.last_seq, seen_seq)
            run_id = conn.execute(r.insert().values(relation=name, outbox_seq=seen, stats=stats, started_at=now)
                                  ).inserted_primary_key[0]
            t = s.relation_links
            if closed.height:
                conn.execute(t.update().where(
                    t.c.relation == name, t.c.valid_to.is_(None),
                    t.c.from_id == sa.bindparam("f"), t.c.to_id == sa.bindparam("t"),
                ).values(valid_to=now, closed_run=run_id),
                    [{"f": f, "t": to} for f, to in closed.select("from_id", "to_id").iter_rows()])
            if opened.height:
                insert_frame(conn, t, opened.select("from_id", "to_id").with_columns(
                    relation=pl.lit(name), valid_from=pl.lit(now), opened_run=pl.lit(run_id, pl.Int64)))
            k = s.relation_keys
            if keys_dropped.len():
                conn.execute(k.delete().where(k.c.relation == name,
                                              in_keys(conn, k.c.entity_id, keys_dropped.to_list())))
            if keys_added.height:
                insert_frame(conn, k, keys_added.with_columns(relation=pl.lit(name)))
        return appended.first_seq, appended.last_seq


def _write_changes(conn: sa.Connection, changes: pl.DataFrame, now) -> None:
    """The changed records' golden rows and versions, from a temporary table of the changes: one
    UPDATE ... FROM, one INSERT ... SELECT (with the golden row's provenance), whatever their number."""
    stage = sa.Table("_relation_changes", sa.MetaData(),
                     sa.Column("entity_id", sa.String(64), primary_key=True), sa.Column("entity_type", sa.String(32)),
                     sa.Column("version", sa.Integer), sa.Column("record", sa.Text),
                     sa.Column("changed_fields", sa.JSON), sa.Column("sources", sa.JSON),
                     prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
    conn.exec_driver_sql('DROP TABLE IF EXISTS "_relation_changes"')  # SQLite: a temp table outlives a transaction
    stage.create(conn)
    insert_frame(conn, stage, changes.select(*(c.name for c in stage.columns)))
    g, v = s.golden_records, s.golden_versions
    conn.execute(v.update().where(v.c.entity_id.in_(sa.select(stage.c.entity_id)), v.c.valid_to.is_(None))
                 .values(valid_to=now))
    conn.execute(g.update().where(g.c.entity_id == stage.c.entity_id)
                 .values(version=stage.c.version, record=stage.c.record, updated_at=now))
    conn.execute(v.insert().from_select(
        ["entity_id", "version", "entity_type", "op", "record", "provenance", "changed_fields", "sources",
         "valid_from", "valid_to"],
        sa.select(stage.c.entity_id, stage.c.version, stage.c.entity_type, sa.literal("update"), stage.c.record,
                  g.c.provenance, stage.c.changed_fields, stage.c.sources,
                  sa.literal(now, v.c.valid_from.type), sa.null())
        .join_from(stage, g, g.c.entity_id == stage.c.entity_id)))
