"""The correction-task state machine: which tasks open, reopen, close or get an overdue reminder,
what each task row becomes, and the outbox event each change makes.

Pure: Polars frames in, Polars frames out, no database. quality.service drives it: it reads the
current state in the warehouse's task transaction (outbox locked, warehouse.quality.TaskTransaction),
hands it here, and writes back what comes out in the same transaction.

States and events (a task is an entity of type `correction_task` in the outbox):

- not there, or closed  -> open    (`opened` lists it): version 1 `create`, later `update` (reopened;
  opened_at starts again, closed_at and closed_batch are cleared);
- open                  -> closed  (`closed` lists it): `retire`, with closed_at and closed_batch
  (a `closed_batch` starting with "superseded" marks a task replaced by another on the same record
  and field, quality.corrections.SUPERSEDED);
- open, open longer than the SLA and not reminded within it -> open: an `update` carrying
  `overdue: true`, `due_at` and `days_open` (a reminder);
- anything else (opening an open task, closing a closed one): nothing, no event.

Each event's id is deterministic (task id and version), so a rerun of the same change makes the
same event, which the outbox skips.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

# A task event's form is the outbox's, so it lives in warehouse.quality (the feeds, below quality,
# read and stage task events too); the frames this module takes and makes have its schemas.
from warehouse.quality import (  # noqa: F401 - the schemas: re-exported for callers and tests
    TASK_AREAS_SCHEMA as AREAS_SCHEMA,
    TASK_EVENT_SCHEMA as EVENT_SCHEMA,
    TASK_VERSIONS_SCHEMA as VERSIONS_SCHEMA,
    task_event,
    task_event_id,
    task_events_frame,
)


def _open_ids(current: pl.DataFrame) -> pl.Series:
    return current.filter(pl.col("status") == "open")["task_id"]


def transitions(opened: pl.DataFrame, closed: pl.DataFrame, current: pl.DataFrame
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(opening, closing): the rows of `opened` (tasks whose problem is there) whose task is not
    open now (new, or closed before: reopened), and the rows of `closed` (tasks whose problem is
    gone) whose task is open now. `current` holds the tasks as they stand (task_id, status)."""
    open_now = _open_ids(current).to_list()
    return (opened.filter(~pl.col("task_id").is_in(open_now)),
            closed.filter(pl.col("task_id").is_in(open_now)))


def _lookup(frame: pl.DataFrame, column: str) -> dict:
    return dict(zip(frame["task_id"].to_list(), frame[column].to_list()))


def task_changes(opening: pl.DataFrame, closing: pl.DataFrame, current: pl.DataFrame, versions: pl.DataFrame,
                 areas: pl.DataFrame, *, now: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What the tasks of `transitions` become: (task rows, in `current`'s schema, to write over the
    old ones; their events, EVENT_SCHEMA), one event per task change, opening ones first.

    `versions` (VERSIONS_SCHEMA) is each task's latest event; `areas` (AREAS_SCHEMA) the area
    each task is routed by now. A task without an opened_at / closed_at of its own gets `now`."""
    # Closing tasks in task id order: they are read back from the warehouse, which promises no order,
    # and two runs deciding the same changes must write the same events in the same order.
    closing = closing.sort("task_id")
    columns = list(current.schema)
    before = {row["task_id"]: row for row in current.iter_rows(named=True)}
    version_of, last_area, area = _lookup(versions, "version"), _lookup(versions, "area"), _lookup(areas, "area")
    rows, events = [], []
    for row in opening.iter_rows(named=True):
        old = before.get(row["task_id"])
        new = {**row, "status": "open", "opened_at": row.get("opened_at") or now,
               "closed_at": None, "closed_batch": None}
        rows.append({k: new.get(k) for k in columns})
        version = (version_of.get(row["task_id"]) or 0) + 1
        events.append(task_event(new, old, "create" if version == 1 else "update", version, new.get("opened_batch"),
                                 area=area.get(row["task_id"]), area_before=last_area.get(row["task_id"])))
    for row in closing.iter_rows(named=True):
        old = before[row["task_id"]]
        new = {**old, "status": "closed", "closed_at": row.get("closed_at") or now,
               "closed_batch": row.get("closed_batch")}
        rows.append({k: new.get(k) for k in columns})
        version = (version_of.get(row["task_id"]) or 0) + 1
        events.append(task_event(new, old, "retire", version, new["closed_batch"],
                                 area=area.get(row["task_id"]), area_before=last_area.get(row["task_id"])))
    return pl.DataFrame(rows, schema=current.schema, orient="row"), task_events_frame(events)


def _utc(v: dt.datetime | None) -> dt.datetime | None:
    return None if v is None else (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc))


def reminders_to_send(current: pl.DataFrame, *, now: dt.datetime, sla_days: float) -> pl.DataFrame:
    """The tasks of `current` (as they stand, read under the outbox lock) that get a reminder now:
    open, open longer than the SLA, and not reminded within it (so two passes at once send one
    reminder); in station, opened_at, task id order."""
    sla = dt.timedelta(days=float(sla_days))
    now = _utc(now)
    due = [r for r in current.iter_rows(named=True)
           if r["status"] == "open" and _utc(r["opened_at"]) + sla < now
           and (r["reminded_at"] is None or _utc(r["reminded_at"]) + sla < now)]
    order = sorted(due, key=lambda r: (r["station_id"], _utc(r["opened_at"]), r["task_id"]))
    return pl.DataFrame(order, schema=current.schema, orient="row")


def reminder_events(tasks: pl.DataFrame, versions: pl.DataFrame, areas: pl.DataFrame, *, now: dt.datetime,
                    sla_days: float) -> pl.DataFrame:
    """One `update` event per task of reminders_to_send: the task as it stands plus `overdue:
    true`, `due_at` and `days_open`, routed by the same area as the task's other events."""
    sla = dt.timedelta(days=float(sla_days))
    now = _utc(now)
    version_of, last_area, area = _lookup(versions, "version"), _lookup(versions, "area"), _lookup(areas, "area")
    events = []
    for old in tasks.iter_rows(named=True):
        opened = _utc(old["opened_at"])
        extra = {"overdue": True, "due_at": (opened + sla).isoformat(),
                 "days_open": int((now - opened) / dt.timedelta(days=1))}
        version = (version_of.get(old["task_id"]) or 0) + 1
        reminder = task_event(old, old, "update", version, old["opened_batch"],
                              area=area.get(old["task_id"]), area_before=last_area.get(old["task_id"]))
        after = json.loads(reminder["after"]) | extra
        events.append(reminder | {"changed_fields": list(extra),
                                  "after": json.dumps(after, ensure_ascii=False, sort_keys=True)})
    return task_events_frame(events)
