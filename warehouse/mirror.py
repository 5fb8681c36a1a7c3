"""A station's local mirror of its feed, as SQL: one SQLite file per subscriber, station side.

This is not the hub's warehouse (no Alembic: the file is the station's own and is created on first
use; `schema_version` in `mirror_meta` says which layout it has). It holds the latest masked record
per entity, the correction tasks addressed to the station (apart from the records, one row per task
with its status, as delivered: masked per role), the event ids already applied (consumers dedupe
on event_id), where merged and retired ids went, and the cursor. What to write is decided in feeds/mirror.py; each page of changes is
written here in one transaction together with the cursor, so a crash never leaves a page half
applied or the cursor ahead of the data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from warehouse.engine import create_engine

SCHEMA_VERSION = "2"  # 2: correction tasks in `tasks`, never in `records`

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

mirror_meta = sa.Table(
    "mirror_meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text),
)

records = sa.Table(
    "records", metadata,
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # JSON: field -> masked value, as delivered
    sa.Column("provenance", sa.Text),  # JSON, as delivered
    sa.Column("seq", sa.Integer, nullable=False),  # the event (or snapshot) that wrote it
    sa.Column("updated_at", TS, nullable=False),
)

applied_events = sa.Table(
    "applied_events", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("entity_id", sa.String(64), nullable=False),
    sa.Column("op", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # applied | older
    sa.Column("applied_at", TS, nullable=False),
)

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),  # open | closed
    sa.Column("station_id", sa.String(64)),  # the station that owns the record (the task's addressee)
    sa.Column("record_key", sa.String(200)),
    sa.Column("record_entity_type", sa.String(32)),
    sa.Column("entity_id", sa.String(64)),
    sa.Column("field", sa.String(64)),
    sa.Column("reason", sa.Text),
    sa.Column("source", sa.String(32)),
    sa.Column("station_value", sa.Text),  # as delivered: masked per role, null where the role hides the field
    sa.Column("expected_value", sa.Text),
    sa.Column("opened_at", sa.String(40)),  # ISO text, as delivered
    sa.Column("closed_at", sa.String(40)),
    sa.Column("task", sa.Text, nullable=False),  # JSON: the whole task as delivered
    sa.Column("seq", sa.Integer, nullable=False),  # the event (or snapshot) that wrote it
    sa.Column("updated_at", TS, nullable=False),
    sa.Index(None, "status", "record_key"),
)
TASK_COLUMNS = ("station_id", "record_key", "record_entity_type", "entity_id", "field", "reason", "source",
                "station_value", "expected_value", "opened_at", "closed_at")

redirects = sa.Table(
    "redirects", metadata,
    sa.Column("entity_id", sa.String(64), primary_key=True),
    sa.Column("survivor_id", sa.String(64)),  # null: retired, or left this station's scope
    sa.Column("reason", sa.String(16), nullable=False),  # merge | retire | left
    sa.Column("seq", sa.Integer, nullable=False),
)


def _text(value) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class MirrorStore:
    """The mirror file. Plain dicts in and out."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.engine = create_engine(f"sqlite:///{self.path}")
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            version = conn.scalar(sa.select(mirror_meta.c.value).where(mirror_meta.c.key == "schema_version"))
            if version is None:
                conn.execute(mirror_meta.insert(), [{"key": "schema_version", "value": SCHEMA_VERSION}])
            elif version == "1":
                # layout 1 kept correction tasks as rows of `records`, as the hub then sent them
                # (unmasked): drop them; tasks now arrive masked into `tasks`
                conn.execute(records.delete().where(records.c.entity_type == "correction_task"))
                self._set_meta(conn, {"schema_version": SCHEMA_VERSION})

    def dispose(self) -> None:
        self.engine.dispose()

    # -- meta ------------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {k: v for k, v in conn.execute(sa.select(mirror_meta.c.key, mirror_meta.c.value))}

    @staticmethod
    def _set_meta(conn: sa.Connection, values: dict[str, str]) -> None:
        for key, value in values.items():
            done = conn.execute(mirror_meta.update().where(mirror_meta.c.key == key).values(value=value))
            if done.rowcount == 0:
                conn.execute(mirror_meta.insert(), [{"key": key, "value": value}])

    def set_meta(self, values: dict[str, str]) -> None:
        with self.engine.begin() as conn:
            self._set_meta(conn, values)

    # -- reads -----------------------------------------------------------------------------------
    def held(self, entity_ids: Iterable[str]) -> dict[str, dict]:
        """entity_id -> {version, record (dict), provenance, entity_type} for the ids held."""
        ids = list(dict.fromkeys(entity_ids))
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                stmt = sa.select(records).where(records.c.entity_id.in_(ids[i:i + 500]))
                for r in conn.execute(stmt):
                    out[r.entity_id] = {"entity_type": r.entity_type, "version": r.version,
                                        "record": json.loads(r.record),
                                        "provenance": json.loads(r.provenance) if r.provenance else None}
        return out

    def seen_events(self, event_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(event_ids))
        seen: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                seen.update(conn.scalars(sa.select(applied_events.c.event_id)
                                         .where(applied_events.c.event_id.in_(ids[i:i + 500]))))
        return seen

    def records(self) -> list[dict]:
        """Every record held, by entity id (what the station's officers look at)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(records).order_by(records.c.entity_id)).all()
        return [{"entity_id": r.entity_id, "entity_type": r.entity_type, "version": r.version,
                 "record": json.loads(r.record), "provenance": json.loads(r.provenance) if r.provenance else None,
                 "seq": r.seq} for r in rows]

    def held_tasks(self, task_ids: Iterable[str]) -> dict[str, int]:
        """task_id -> the version held, for the tasks held."""
        ids = list(dict.fromkeys(task_ids))
        with self.engine.connect() as conn:
            return {r.task_id: int(r.version) for i in range(0, len(ids), 500)
                    for r in conn.execute(sa.select(tasks.c.task_id, tasks.c.version)
                                          .where(tasks.c.task_id.in_(ids[i:i + 500])))}

    def tasks(self, status: str | None = None) -> list[dict]:
        """The correction tasks held (what the station's officers work through), by task id."""
        stmt = sa.select(tasks).order_by(tasks.c.task_id)
        if status is not None:
            stmt = stmt.where(tasks.c.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [{"task_id": r.task_id, "version": r.version, "status": r.status,
                 **{c: getattr(r, c) for c in TASK_COLUMNS}, "task": json.loads(r.task), "seq": r.seq} for r in rows]

    def redirects(self) -> dict[str, dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(redirects)).all()
        return {r.entity_id: {"survivor_id": r.survivor_id, "reason": r.reason, "seq": r.seq} for r in rows}

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {t.name: int(conn.scalar(sa.select(sa.func.count()).select_from(t)))
                    for t in (records, tasks, applied_events, redirects)}

    # -- writes: one transaction per page --------------------------------------------------------
    def write(self, *, upserts: list[dict], deletes: list[str], redirect_rows: list[dict],
              applied: list[dict], meta: dict[str, str], replace_all: bool = False,
              task_upserts: list[dict] = ()) -> None:
        """Upsert records, delete records, upsert tasks, note redirects and applied events, move the
        cursor: all or nothing. `replace_all` empties records and tasks first (a fresh snapshot)."""
        now = _now()
        with self.engine.begin() as conn:
            if replace_all:
                conn.execute(records.delete())
                conn.execute(tasks.delete())
            if task_upserts:
                ids = [t["task_id"] for t in task_upserts]
                for i in range(0, len(ids), 500):
                    conn.execute(tasks.delete().where(tasks.c.task_id.in_(ids[i:i + 500])))
                conn.execute(tasks.insert(), [
                    {"task_id": t["task_id"], "version": int(t["version"]), "status": t["task"].get("status") or "open",
                     **{c: _text(t["task"].get(c)) for c in TASK_COLUMNS},
                     "task": json.dumps(t["task"], ensure_ascii=False, sort_keys=True), "seq": int(t["seq"]),
                     "updated_at": now} for t in task_upserts])
            if deletes:
                for i in range(0, len(deletes), 500):
                    conn.execute(records.delete().where(records.c.entity_id.in_(deletes[i:i + 500])))
            if upserts:
                ids = [u["entity_id"] for u in upserts]
                for i in range(0, len(ids), 500):
                    conn.execute(records.delete().where(records.c.entity_id.in_(ids[i:i + 500])))
                conn.execute(records.insert(), [
                    {"entity_id": u["entity_id"], "entity_type": u["entity_type"], "version": int(u["version"]),
                     "record": json.dumps(u["record"], ensure_ascii=False, sort_keys=True),
                     "provenance": json.dumps(u.get("provenance"), ensure_ascii=False, sort_keys=True)
                     if u.get("provenance") is not None else None,
                     "seq": int(u["seq"]), "updated_at": now} for u in upserts])
            # an id that is back (created again, or re-entered the scope) is no longer redirected
            back = [u["entity_id"] for u in upserts] + [r["entity_id"] for r in redirect_rows]
            for i in range(0, len(back), 500):
                conn.execute(redirects.delete().where(redirects.c.entity_id.in_(back[i:i + 500])))
            if redirect_rows:
                conn.execute(redirects.insert(), redirect_rows)
            if applied:
                conn.execute(applied_events.insert(), [{**a, "applied_at": now} for a in applied])
            self._set_meta(conn, meta)
