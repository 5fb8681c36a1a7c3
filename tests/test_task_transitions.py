"""The correction-task state machine (quality/task_transitions.py), without a database."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from quality import task_transitions as tt

UTC = pl.Datetime("us", "UTC")
SCHEMA = {"task_id": pl.String, "station_id": pl.String, "record_key": pl.String, "entity_type": pl.String,
          "entity_id": pl.String, "field": pl.String, "station_value": pl.String, "expected_value": pl.String,
          "reason": pl.String, "source": pl.String, "evidence": pl.String, "status": pl.String,
          "opened_batch": pl.String, "closed_batch": pl.String, "opened_at": UTC, "closed_at": UTC,
          "reminded_at": UTC}
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def _task(task_id: str, status: str | None = None, **kw) -> dict:
    row = {"task_id": task_id, "station_id": "s1", "record_key": f"s1:{task_id}", "entity_type": "person",
           "entity_id": None, "field": "name", "station_value": "x", "expected_value": "y", "reason": "r",
           "source": "expectation", "evidence": None, "status": status, "opened_batch": "b1",
           "closed_batch": None, "opened_at": None, "closed_at": None, "reminded_at": None}
    return row | kw


def _frame(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=SCHEMA, orient="row")


def _versions(**v: int) -> pl.DataFrame:
    return pl.DataFrame({"task_id": list(v), "version": list(v.values()), "area": ["A"] * len(v)},
                        schema=tt.VERSIONS_SCHEMA)


NO_AREAS = pl.DataFrame(schema=tt.AREAS_SCHEMA)


def test_transitions_open_reopen_close_and_ignore() -> None:
    opened_at = NOW - dt.timedelta(days=3)
    current = _frame(_task("open1", "open", opened_at=opened_at),
                     _task("closed1", "closed", opened_at=opened_at, closed_at=opened_at, closed_batch="b0"),
                     _task("open2", "open", opened_at=opened_at))
    opened = _frame(_task("new"), _task("open1"), _task("closed1", expected_value="z"))
    closed = _frame(_task("open2", closed_batch="b2"), _task("closed1"), _task("gone"))

    opening, closing = tt.transitions(opened, closed, current)
    assert opening["task_id"].to_list() == ["new", "closed1"]  # open1 is open already
    assert closing["task_id"].to_list() == ["open2"]  # closed1 is closed already, gone never was

    rows, events = tt.task_changes(opening, closing, current, _versions(closed1=2, open2=1), NO_AREAS, now=NOW)
    by_id = {r["task_id"]: r for r in rows.iter_rows(named=True)}
    assert rows.schema == current.schema
    assert by_id["new"]["status"] == "open" and by_id["new"]["opened_at"] == NOW
    assert by_id["closed1"]["status"] == "open" and by_id["closed1"]["closed_at"] is None
    assert by_id["closed1"]["closed_batch"] is None and by_id["closed1"]["expected_value"] == "z"
    assert by_id["open2"]["status"] == "closed" and by_id["open2"]["closed_at"] == NOW
    assert by_id["open2"]["closed_batch"] == "b2" and by_id["open2"]["opened_at"] == opened_at
    assert events.select("entity_id", "op", "version").rows() == [
        ("new", "create", 1), ("closed1", "update", 3), ("open2", "retire", 2)]
    assert events["event_id"].to_list() == [tt.task_event_id("new", 1), tt.task_event_id("closed1", 3),
                                            tt.task_event_id("open2", 2)]
    assert events.schema == pl.Schema(tt.EVENT_SCHEMA)
    reopened = events.row(1, named=True)
    assert json.loads(reopened["before"])["area_code"] == "A"  # the area its previous event went by
    assert set(json.loads(reopened["changed_fields"])) >= {"status", "expected_value", "closed_at", "opened_at"}
    assert json.loads(events.row(2, named=True)["sources"]) == [
        {"station_id": "s1", "record_key": "s1:open2", "batch_id": "b2"}]


def test_nothing_to_change() -> None:
    current = _frame(_task("a", "open"))
    opening, closing = tt.transitions(_frame(_task("a")), _frame(), current)
    assert opening.height == closing.height == 0
    rows, events = tt.task_changes(opening, closing, current, _versions(), NO_AREAS, now=NOW)
    assert rows.height == events.height == 0


def test_reminders_once_per_sla() -> None:
    sla = 10.0
    old = NOW - dt.timedelta(days=25)
    current = _frame(
        _task("due", "open", opened_at=old),
        _task("reminded_lately", "open", opened_at=old, reminded_at=NOW - dt.timedelta(days=2)),
        _task("reminded_long_ago", "open", station_id="s0", opened_at=old, reminded_at=NOW - dt.timedelta(days=11)),
        _task("young", "open", opened_at=NOW - dt.timedelta(days=3)),
        _task("closed", "closed", opened_at=old),
    )
    tasks = tt.reminders_to_send(current, now=NOW, sla_days=sla)
    assert tasks["task_id"].to_list() == ["reminded_long_ago", "due"]  # station, opened_at, id order
    events = tt.reminder_events(tasks, _versions(due=1), NO_AREAS, now=NOW, sla_days=sla)
    assert events.select("entity_id", "op", "version").rows() == [("reminded_long_ago", "update", 1),
                                                                  ("due", "update", 2)]
    after = json.loads(events.row(1, named=True)["after"])
    assert after["overdue"] is True and after["days_open"] == 25 and after["status"] == "open"
    assert after["due_at"] == (old + dt.timedelta(days=sla)).isoformat()
    assert json.loads(events.row(1, named=True)["changed_fields"]) == ["overdue", "due_at", "days_open"]
