"""Data quality against a store it is handed: validate new batches, hold bad ones, score
stations, open and close correction tasks, validate golden records and freshness.

Two entry points, matching when the data exists:
- `validate_stations` (`validate_station` for one) right after stations' drops are ingested
  (their Dagster asset checks), and
- `quality_pass` after golden records are published (golden suite, freshness, disagreements
  with golden values, Data Docs).
Both only read what is new since they last ran (unvalidated batches; entities touched since
the last pass), so their reads follow the size of the change, not of the warehouse. New batches
go through each suite set-wise, many stations' batches in one GX run (GxProject.validate_many:
GX's cost per run is mostly fixed), with each batch's results, holds and tasks what validating it
alone gives. The golden suite still validates every active golden record (its pass rates are over
all of them), from decoded records kept between runs (quality.golden_cache) rather than read again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import polars as pl

from core.entity_types import CodeSpec
from quality import task_transitions as tt
from quality.config import QualityConfig
from entity_resolution.entity_types import Registry, load_registry
from quality.corrections import (SUPERSEDED, arbitrate, covered_expectations, derived_fields, expectation_tasks,
                                 golden_disagreements, own_check_tasks, reconcile)
from quality.frames import decode_golden, freshness_frame, golden_validity, invalid_codes, standardised_frame
from quality.golden_cache import GoldenSource, current_golden
from quality.scorecards import batch_scores, freshness_scores
from quality.suites import FRESHNESS, RAW, SuiteSpec, TypeQuality, registry_quality
from quality.validate import GxProject, Validation



T = TypeVar("T")

# Entities per part of a golden-disagreement pass (_golden_tasks).
GOLDEN_TASK_PART = 50_000
# Share of a type's records that touched entities must reach for one whole read of its records.
DENSE_SHARE = 0.25
# Rows of station batches that go through a suite in one GX run (_validated_sets): enough to
# share GX's fixed cost per run among many batches, few enough that the pandas copy GX reads
# stays the size of one large batch however many stations a call covers.
SET_ROWS = 50_000


class QualityStore(GoldenSource, Protocol):  # warehouse.quality.QualityStore
    def unvalidated_batches(self, suite: str | None, station_ids=None, entity_type=None) -> pl.DataFrame: ...
    def raw_frame(self, batch_id: str) -> pl.DataFrame: ...
    def record_frame(self, entity_type: str, batch_id: str, station_id: str | None = None) -> pl.DataFrame: ...
    def last_drops(self) -> pl.DataFrame: ...
    def unbalanced_batches(self, station_ids) -> pl.DataFrame: ...
    def save_run(self, run: dict, results: pl.DataFrame) -> None: ...
    def runs(self, station_ids=None, *, suite=None, batch_ids=None) -> pl.DataFrame: ...
    def results(self, run_ids: list[str]) -> pl.DataFrame: ...
    def save_scores(self, scores: pl.DataFrame) -> int: ...
    def hold(self, batch_id: str, station_id: str, reason: str, *, rate: float | None = None,
             threshold: float | None = None) -> bool: ...
    def tasks(self, *, station_ids=None, status=None, record_keys=None, source=None) -> pl.DataFrame: ...
    def task_transaction(self) -> AbstractContextManager: ...  # reads and writes of tasks, outbox locked
    def entity_of(self, entity_type: str, record_keys: list[str]) -> pl.DataFrame: ...
    def members(self, entity_type: str, entity_ids: list[str], fields) -> pl.DataFrame: ...
    def all_members(self, entity_type: str, fields) -> pl.DataFrame: ...
    def member_count(self, entity_type: str) -> int: ...
    def active_golden_between(self, entity_type: str, first: str, last: str) -> pl.DataFrame: ...
    def state(self, name: str) -> int: ...
    def set_state(self, name: str, value: int) -> None: ...
    def set_docs_path(self, path: str) -> None: ...
    def supervision_tasks(self, station_ids=None) -> pl.DataFrame: ...


@dataclass
class Outcome:
    """What one call did, for Dagster metadata and the CLI."""

    runs: list[dict] = field(default_factory=list)  # validation_runs rows written
    held: list[dict] = field(default_factory=list)  # {batch_id, station_id, reason, rate, threshold, ...}
    tasks_opened: int = 0
    tasks_closed: int = 0
    events: int = 0
    reminders: int = 0  # overdue reminders sent through stations' feeds (quality.supervision)
    data_docs: str | None = None
    failures: dict[str, int] = field(default_factory=dict)  # suite/expectation -> failing rows, below threshold
    tolerated: dict[str, int] = field(default_factory=dict)  # suite/expectation -> failing rows, within threshold

    def absorb(self, other: "Outcome") -> None:
        self.runs += other.runs
        self.held += other.held
        self.tasks_opened += other.tasks_opened
        self.tasks_closed += other.tasks_closed
        self.events += other.events
        self.reminders += other.reminders
        for k, v in other.failures.items():
            self.failures[k] = self.failures.get(k, 0) + v
        for k, v in other.tolerated.items():
            self.tolerated[k] = self.tolerated.get(k, 0) + v


def parameters(config: QualityConfig, today: dt.date) -> dict:
    """The suites' GX parameters, from quality.yaml."""
    return {"earliest_date": config.earliest_birth_date.isoformat(), "today": today.isoformat(),
            "freshness_max_age_days": config.freshness_max_age_days}


def _record(store: QualityStore, gx: GxProject, config: QualityConfig, frame: pl.DataFrame, suite: SuiteSpec, *,
            station_id: str | None, batch_id: str | None, entity_type: str, today: dt.date,
            outcome: Outcome) -> Validation:
    label = f"{batch_id or suite.name}"
    # a station's batch: a couple of slips in a small batch are tasks, not a failed batch; the golden
    # and freshness suites count every row (one valid ID on two entities is a finding)
    station_batch = suite.data_asset in ("raw", "standardised") and batch_id is not None
    v = gx.validate(frame, suite, label=label, parameters=parameters(config, today), samples=config.sample_rows,
                    thresholds=config.thresholds_of(suite),
                    min_failing_rows=config.min_failing_rows if station_batch else 1, complete=station_batch)
    _save(store, gx, config, v, suite, station_id=station_id, batch_id=batch_id, entity_type=entity_type,
          outcome=outcome)
    return v


def _save(store: QualityStore, gx: GxProject, config: QualityConfig, v: Validation, suite: SuiteSpec, *,
          station_id: str | None, batch_id: str | None, entity_type: str, outcome: Outcome) -> None:
    """Write a validation's run and results, and count its failing rows into the outcome."""
    run = {"run_id": v.run_id, "suite": suite.name, "data_asset": suite.data_asset, "entity_type": entity_type,
           "station_id": station_id, "batch_id": batch_id, "success": v.success, "evaluated": v.evaluated,
           "successful": v.successful, "started_at": v.started_at, "finished_at": v.finished_at,
           "data_docs_path": str(gx.docs_index) if config.data_docs else None}
    store.save_run(run, v.results)
    outcome.runs.append(run)
    # below its threshold: the batch fails on it; met, but with failing rows: they become tasks
    for row in v.results.filter(~pl.col("success")).iter_rows(named=True):
        key = f"{suite.name}/{row['expectation_id']}"
        outcome.failures[key] = outcome.failures.get(key, 0) + int(row["unexpected_count"] or 1)
    for row in v.results.filter(pl.col("success") & (pl.col("unexpected_count").fill_null(0) > 0)).iter_rows(named=True):
        key = f"{suite.name}/{row['expectation_id']}"
        outcome.tolerated[key] = outcome.tolerated.get(key, 0) + int(row["unexpected_count"])


def standardised_suites(types: Registry | None = None) -> dict[str, SuiteSpec]:
    """entity type -> its standardised suite: declared in quality/defaults/suites.yaml for the
    bundled types listed there, derived from the registry for every other (quality.suites)."""
    return {name: q.standardised for name, q in registry_quality(types).items()}


def golden_suites(types: Registry | None = None) -> dict[str, SuiteSpec]:
    """entity type -> its golden suite, for the types that have one."""
    return {name: q.golden for name, q in registry_quality(types).items() if q.golden is not None}


def validate_station(store: QualityStore, gx: GxProject, config: QualityConfig, station_id: str, *,
                     now: dt.datetime | None = None, types: Registry | None = None) -> Outcome:
    """Validate every batch of the station not validated yet (`validate_stations` of one)."""
    return validate_stations(store, gx, config, [station_id], now=now, types=types)


def validate_stations(store: QualityStore, gx: GxProject, config: QualityConfig, station_ids: Sequence[str], *,
                      now: dt.datetime | None = None, types: Registry | None = None) -> Outcome:
    """Validate every batch of these stations not validated yet; hold, score, and open or close
    expectation tasks for them. `types`: the project's entity types (default: the bundled ones).

    Each suite runs once per set of batches (up to SET_ROWS rows, all stations together;
    GxProject.validate_many) rather than once per batch: GX's fixed cost per run was most of a
    station's validation. Each batch still gets its own run, results, hold and tasks, the same as
    validating it alone. Writes go suite by suite (raw, then each entity type), stations in the
    order given, each station's batches oldest first, so two runs of the same drops write the
    same runs, tasks and outbox events in the same order; for one station the order is the one it
    always had."""
    registry = types if types is not None else load_registry()
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    stations = list(dict.fromkeys(station_ids))
    outcome = Outcome()
    touched: set[str] = set()
    if not stations:
        return outcome
    if config.runs("raw"):
        batches = _station_order(store.unvalidated_batches(RAW.name, stations), stations)
        for b, _, v in _validated_sets(gx, config, RAW, batches, lambda b: (None, store.raw_frame(b["batch_id"])),
                                       today):
            _save(store, gx, config, v, RAW, station_id=b["station_id"], batch_id=b["batch_id"],
                  entity_type=b["entity_type"], outcome=outcome)
            touched.add(b["batch_id"])
    if config.runs("standardised"):
        qualities = registry_quality(registry)
        for entity_type, q in qualities.items():
            suite = q.standardised
            code = registry[entity_type].code

            def read(b: dict, entity_type: str = entity_type, q: TypeQuality = q) -> tuple[pl.DataFrame, pl.DataFrame]:
                records = store.record_frame(entity_type, b["batch_id"], b["station_id"])
                return records, standardised_frame(records, q)

            batches = _station_order(store.unvalidated_batches(suite.name, stations, entity_type), stations)
            for b, records, v in _validated_sets(gx, config, suite, batches, read, today):
                station_id, batch_id = b["station_id"], b["batch_id"]
                _save(store, gx, config, v, suite, station_id=station_id, batch_id=batch_id, entity_type=entity_type,
                      outcome=outcome)
                touched.add(batch_id)
                _hold_invalid_codes(store, config, records, code, station_id, batch_id, entity_type, outcome)
                if config.corrections.from_expectations:
                    _expectation_tasks(store, v, records, q, station_id, batch_id, now, outcome,
                                       earliest=config.earliest_birth_date, qualities=qualities.values())
    if config.hold_unreconciled:
        for b in _station_order(store.unbalanced_batches(stations), stations).iter_rows(named=True):
            reason = (f"rows do not reconcile: read {b['rows_read']}, stored {b['raw_stored']} in raw and "
                      f"{b['quarantine_stored']} in quarantine")
            if store.hold(b["batch_id"], b["station_id"], reason):  # no rate: the rows do not add up
                outcome.held.append({"batch_id": b["batch_id"], "station_id": b["station_id"], "reason": reason,
                                     "rate": None, "threshold": None})
    if touched:
        _score_batches(store, sorted(touched))
    return outcome


def _station_order(batches: pl.DataFrame, stations: list[str]) -> pl.DataFrame:
    """`batches` (with station_id) with the stations in the order given, each station's batches
    in the order the store gave them (oldest first)."""
    order = pl.DataFrame({"station_id": stations, "_station": pl.int_range(0, len(stations), eager=True)},
                         schema_overrides={"station_id": batches.schema.get("station_id", pl.String)})
    return batches.join(order, on="station_id", how="inner", maintain_order="left").sort(
        "_station", maintain_order=True).drop("_station")


def _validated_sets(gx: GxProject, config: QualityConfig, suite: SuiteSpec, batches: pl.DataFrame,
                    read: Callable[[dict], tuple[Any, pl.DataFrame]],
                    today: dt.date) -> Iterator[tuple[dict, Any, Validation]]:
    """Each batch row with what `read` gave for it besides the frame to validate, and the batch's
    validation, in order. Batches are read until the set holds SET_ROWS rows, then the set goes
    through the suite in one GX run: the frames held stay about two sets' size.

    A set is handed over (`submit_many`) before the previous set's validations are given out: with
    GX in its own process (quality.gx_worker) it validates one set while this process reads the
    next and the caller saves the last."""
    loaded = ((b, *read(b)) for b in batches.iter_rows(named=True))
    kw = {"parameters": parameters(config, today), "samples": config.sample_rows,
          "thresholds": config.thresholds_of(suite), "min_failing_rows": config.min_failing_rows}
    previous = None
    for current in sets_of_rows(loaded, lambda item: item[2].height, SET_ROWS):
        handed = gx.submit_many([(b["batch_id"], frame) for b, _, frame in current], suite, **kw)
        if previous is not None:
            yield from _given_out(*previous)
        previous = current, handed
    if previous is not None:
        yield from _given_out(*previous)


def _given_out(batches: list[tuple[dict, Any, pl.DataFrame]], handed) -> Iterator[tuple[dict, Any, Validation]]:
    for (b, kept, _), v in zip(batches, handed.result(), strict=True):
        yield b, kept, v


def sets_of_rows(items: Iterable[T], rows: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """Consecutive items in lists that close once they hold `limit` rows (the last may hold
    fewer), taken lazily: an item is read only when its list is being filled."""
    current: list[T] = []
    held = 0
    for item in items:
        current.append(item)
        held += rows(item)
        if held >= limit:
            yield current
            current, held = [], 0
    if current:
        yield current


def _hold_invalid_codes(store: QualityStore, config: QualityConfig, records: pl.DataFrame, code: CodeSpec | None,
                        station_id: str, batch_id: str, entity_type: str, outcome: Outcome) -> None:
    """Hold a batch whose share of invalid identifying codes (`code`: the type's identifying code,
    if it has one) is above max_invalid_id_rate (and at least min_invalid_ids_to_hold of them):
    its records would merge or split entities wrongly."""
    invalid, given = invalid_codes(records, (code.column, code.valid_flag) if code is not None else None)
    rate = invalid / given if given else 0.0
    if rate > config.max_invalid_id_rate and invalid >= config.min_invalid_ids_to_hold:
        what = code.label
        reason = (f"invalid {what}: {rate:.1%} of the batch's {what} fail their check, above "
                  f"max_invalid_id_rate {config.max_invalid_id_rate:.1%} (quality.yaml)")
        if store.hold(batch_id, station_id, reason, rate=rate, threshold=config.max_invalid_id_rate):
            outcome.held.append({"batch_id": batch_id, "station_id": station_id, "reason": reason,
                                 "rate": rate, "threshold": config.max_invalid_id_rate,
                                 "entity_type": entity_type, "records": records.height})


def _expectation_tasks(store: QualityStore, v: Validation, records: pl.DataFrame, q: TypeQuality,
                       station_id: str, batch_id: str, now: dt.datetime, outcome: Outcome, *,
                       earliest: dt.date | None = None, qualities=None) -> None:
    keys = records["record_key"]
    entities = store.entity_of(q.entity_type, keys.to_list())
    kw = {"earliest": earliest} if earliest else {}
    found = expectation_tasks(v.failures, records.join(entities, on="record_key", how="left"), q.standardised,
                              station_id=station_id, batch_id=batch_id, today=now.date(), quality=q, **kw)
    # an open golden-record task on the same record and value covers (or yields to) these
    golden_open = store.tasks(status="open", record_keys=keys.to_list(), source="golden_disagreement")
    id_fields = [f for f in derived_fields(qualities) if f in records.columns]
    ids = records.select("record_key", *id_fields) if id_fields else None
    found, yielded = covered_expectations(found, golden_open, ids, qualities=qualities)
    extra = yielded.select("task_id", pl.lit(now).alias("closed_at"), pl.lit(SUPERSEDED).alias("closed_batch"))
    _settle(store, found, keys, "expectation", records.select("record_key", "batch_id"), now, outcome,
            extra_closed=extra)


def _settle(store: QualityStore, found: pl.DataFrame, keys: pl.Series, source: str, batch_of: pl.DataFrame,
            now: dt.datetime, outcome: Outcome, *, extra_opened: pl.DataFrame | None = None,
            extra_closed: pl.DataFrame | None = None, open_tasks: pl.DataFrame | None = None) -> None:
    """Open the tasks found that are not open yet, close the open ones of these records that were
    not found again (the station fixed the value), and write both to the outbox; `extra_*` are
    tasks of the other source that this pass opens (reopens) or closes (covered) with them, in
    the same transaction. `open_tasks`: this source's open tasks on these records, if the caller
    read them already."""
    if open_tasks is None:
        open_tasks = store.tasks(status="open", record_keys=keys.to_list(), source=source)
    opened, closed = reconcile(found, open_tasks, keys, source=source, batch_of=batch_of, now=now)
    if extra_opened is not None and extra_opened.height:
        opened = pl.concat([opened, extra_opened.with_columns(pl.lit(now).alias("opened_at")).select(opened.columns)],
                           how="vertical_relaxed").unique("task_id", keep="first")
    if extra_closed is not None and extra_closed.height:
        closed = pl.concat([closed, extra_closed.select(closed.columns)], how="vertical_relaxed").unique(
            "task_id", keep="first")
    # closing events in task order: their sequence must not depend on the order a database or a
    # hash table returned the open tasks in (two runs of the same drops write the same outbox)
    events, _ = apply_tasks(store, opened, closed)
    outcome.tasks_opened += opened.height
    outcome.tasks_closed += closed.height
    outcome.events += events


def _score_batches(store: QualityStore, batch_ids: list[str]) -> None:
    runs = store.runs(batch_ids=batch_ids).filter(pl.col("data_asset").is_in(["raw", "standardised"]))
    if runs.height == 0:
        return
    results = store.results(runs["run_id"].to_list()).join(
        runs.select("run_id", "station_id", "entity_type", "batch_id"), on="run_id")
    store.save_scores(batch_scores(results))


def validate_golden(store: QualityStore, gx: GxProject, config: QualityConfig, entity_type: str, *,
                    now: dt.datetime | None = None, types: Registry | None = None) -> Outcome:
    """The golden suite of one entity type of `types` (default: the bundled ones) over its active
    golden records; nothing for a type without one."""
    now = now or dt.datetime.now(dt.timezone.utc)
    outcome = Outcome()
    registry = types if types is not None else load_registry()
    etype = registry[entity_type]
    q = registry_quality(registry)[entity_type]
    if config.runs("golden") and q.golden is not None:
        decoded = current_golden(store, gx.root / "golden", etype)
        frame = golden_validity(decoded, etype, today=now.date(), quality=q)
        _record(store, gx, config, frame, q.golden, station_id=None, batch_id=None,
                entity_type=entity_type, today=now.date(), outcome=outcome)
    return outcome


def quality_pass(store: QualityStore, gx: GxProject, config: QualityConfig, *,
                 now: dt.datetime | None = None, golden: bool = True, types: Registry | None = None) -> Outcome:
    """After publication: golden suites (unless a Dagster check ran them), freshness,
    golden-disagreement tasks, Data Docs, for the entity types of `types` (default: the bundled
    ones)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    outcome = Outcome()
    registry = types if types is not None else load_registry()
    if golden:
        for entity_type in golden_suites(registry):
            outcome.absorb(validate_golden(store, gx, config, entity_type, now=now, types=registry))
    if config.runs("freshness"):
        drops = store.last_drops()
        if drops.height:
            _record(store, gx, config, freshness_frame(drops, now=now), FRESHNESS, station_id=None, batch_id=None,
                    entity_type="station", today=today, outcome=outcome)
            store.save_scores(freshness_scores(drops, now=now, max_age_days=config.freshness_max_age_days))
    for entity_type, fields in config.corrections.fields_of(registry).items():
        if fields:
            _golden_tasks(store, registry, entity_type, fields, now, outcome, earliest=config.earliest_birth_date,
                          reopen=config.corrections.from_expectations)
    reminded = send_reminders(store, config, now=now)
    outcome.reminders += reminded
    outcome.events += reminded
    if config.data_docs:
        outcome.data_docs = str(gx.build_docs())
        store.set_docs_path(outcome.data_docs)
    return outcome


def apply_tasks(store: QualityStore, opened: pl.DataFrame, closed: pl.DataFrame) -> tuple[int, int]:
    """Open (or reopen) and close tasks, with one outbox event each, in one transaction.

    `opened`: tasks whose problem is there; `closed`: tasks whose problem is gone (with
    closed_batch). The store's task transaction holds the outbox lock while the state machine
    (quality.task_transitions) decides from the tasks as they stand: a task already open is not
    opened again, one already closed not closed again; each change is an event (version 1
    `create`, `retire` when it closes, `update` when it reopens) with a deterministic id, so a
    rerun writes nothing twice. Returns (events written, last seq)."""
    if opened.height == 0 and closed.height == 0:
        return 0, 0
    now = dt.datetime.now(dt.timezone.utc)
    with store.task_transaction() as tx:
        current = tx.current([*opened["task_id"].to_list(), *closed["task_id"].to_list()])
        opening, closing = tt.transitions(opened, closed, current)
        if opening.height == 0 and closing.height == 0:
            return 0, 0  # already open, already closed: nothing to tell
        # the events are routed by area: of the opening tasks, and of the closing ones as they stand
        closing_now = current.filter(pl.col("task_id").is_in(closing["task_id"].to_list()))
        ids = [*opening["task_id"].to_list(), *closing_now["task_id"].to_list()]
        rows, events = tt.task_changes(opening, closing, current, tx.versions(ids),
                                       tx.areas(opening, closing_now), now=now)
        tx.write_tasks(rows)
        appended = tx.append_events(events, now)
        return appended.written, appended.last_seq


def remind_tasks(store: QualityStore, due: pl.DataFrame, *, now: dt.datetime, sla_days: float) -> tuple[int, int]:
    """Send each task of `due` (quality.supervision.reminders_due: task_id, ...) an overdue
    reminder through its station's feed, and note when (`reminded_at`), in one transaction.

    A reminder is an `update` event of the task (the next version, with a deterministic id): the
    task as it stands plus `overdue: true`, `due_at` and `days_open`, routed by the same area as
    the task's other events. Inside the transaction each task is checked again (still open, past
    due, not reminded within the SLA), so two passes at once send one reminder. Returns (events
    written, last seq)."""
    if due.height == 0:
        return 0, 0
    now = now if now.tzinfo else now.replace(tzinfo=dt.timezone.utc)
    with store.task_transaction() as tx:
        tasks = tt.reminders_to_send(tx.current(due["task_id"].to_list(), status="open"), now=now, sla_days=sla_days)
        if tasks.height == 0:
            return 0, 0
        ids = tasks["task_id"].to_list()
        events = tt.reminder_events(tasks, tx.versions(ids), tx.areas(tasks), now=now, sla_days=sla_days)
        tx.mark_reminded(ids, now)
        appended = tx.append_events(events)
        return appended.written, appended.last_seq


def send_reminders(store: QualityStore, config: QualityConfig, *, now: dt.datetime | None = None) -> int:
    """Overdue tasks (open longer than `tasks_sla_days`) not reminded within the SLA get a reminder
    event in their station's feed (quality.supervision.reminders_due; remind_tasks).
    Returns the reminders written."""
    from quality.supervision import reminders_due

    now = now or dt.datetime.now(dt.timezone.utc)
    due = reminders_due(store.supervision_tasks(), now, config.tasks_sla_days)
    if due.height == 0:
        return 0
    events, _ = remind_tasks(store, due, now=now, sla_days=config.tasks_sla_days)
    return events


def evidence_columns(entity_type: str, types: Registry | None = None) -> list[str]:
    """Member columns the golden pass reads besides the configured fields: what says whether a
    value passes validation, and what the record's own checks need (the type's registered
    `evidence_columns`)."""
    registry = types if types is not None else load_registry()
    return list(registry[entity_type].spec.evidence_columns) if entity_type in registry else []


def _golden_tasks(store: QualityStore, registry: Registry, entity_type: str, fields: list[str], now: dt.datetime,
                  outcome: Outcome, *, earliest: dt.date | None = None, reopen: bool = True) -> None:
    """Golden-disagreement tasks for the entities touched since the last pass, GOLDEN_TASK_PART
    entities at a time: after a first load every entity is touched, and one part held all of
    their member records and golden records at once (6.4 GiB at 1M records). Parts never share a
    record (a record belongs to one entity), so each settles its records' tasks on its own; the
    marks move only when every part is done, and a part done twice finds its tasks open already.
    Where touched entities are at least DENSE_SHARE of the type's records, the member records are
    read once, whole (store.all_members), and cut into the parts here, and each part's golden
    records are read by its range of ids."""
    res_key, ev_key = f"tasks:{entity_type}:resolution_seq", f"tasks:{entity_type}:event_seq"
    res_mark, ev_mark = store.state(res_key), store.state(ev_key)
    res_now, ev_now = store.resolution_seq(entity_type), store.max_event_seq()
    touched = store.touched_entities(entity_type, res_mark, ev_mark)
    columns = [*fields, *evidence_columns(entity_type, registry)]
    everyone = None
    if not touched.is_empty() and touched.len() >= DENSE_SHARE * store.member_count(entity_type):
        part_of = touched.to_frame("entity_id").with_row_index("part")
        everyone = store.all_members(entity_type, columns).join(
            part_of.with_columns(pl.col("part") // GOLDEN_TASK_PART), on="entity_id")
    for i in range(0, touched.len(), GOLDEN_TASK_PART):
        ids = touched.slice(i, GOLDEN_TASK_PART)
        if everyone is None:
            part = ids.to_list()
            members, golden = store.members(entity_type, part, columns), store.active_golden(entity_type, part)
        else:  # the part's range of ids holds few others
            members = everyone.filter(pl.col("part") == i // GOLDEN_TASK_PART).drop("part")
            golden = store.active_golden_between(entity_type, ids[0], ids[-1]).filter(
                pl.col("entity_id").is_in(ids.implode()))
        _golden_tasks_of(store, registry, entity_type, fields, members, golden, now, outcome,
                         earliest=earliest, reopen=reopen)
    store.set_state(res_key, res_now)
    store.set_state(ev_key, ev_now)


def _golden_tasks_of(store: QualityStore, registry: Registry, entity_type: str, fields: list[str],
                     members: pl.DataFrame, golden: pl.DataFrame, now: dt.datetime, outcome: Outcome, *,
                     earliest: dt.date | None, reopen: bool) -> None:
    """The tasks of one part: its entities' member records and active golden records (entity_id,
    record) as read."""
    kw = {"earliest": earliest} if earliest else {}
    qualities = registry_quality(registry)
    q = qualities[entity_type]
    golden = decode_golden(golden, fields, registry[entity_type])
    found = golden_disagreements(members, golden, fields, entity_type=entity_type, today=now.date(), quality=q,
                                 **kw)
    keys = members["record_key"]
    # never two contradicting tasks on one record: against its open expectation tasks
    open_exp = store.tasks(status="open", record_keys=keys.to_list(), source="expectation")
    found, covered = arbitrate(found, open_exp, qualities=qualities.values())
    batch_of = members.select("record_key", "batch_id")
    extra_closed = covered.select("task_id", pl.lit(now).alias("closed_at"),
                                  pl.concat_str(pl.lit(f"{SUPERSEDED}:"), "covered_by").alias("closed_batch"))
    extra_opened = None
    open_golden = store.tasks(status="open", record_keys=keys.to_list(), source="golden_disagreement")
    if reopen:
        # where a golden task that covered the record's own check goes away, that task is back
        gone = open_golden.join(found.select("task_id"), on="task_id", how="anti")
        if gone.height:
            own = own_check_tasks(members.join(gone.select("record_key").unique(), on="record_key", how="semi"),
                                  entity_type, today=now.date(), quality=q, **kw)
            # the field itself, and the fields read from it when it is an ID (birth date, sex)
            fields_back = pl.concat([gone.select("record_key", "field"), *(
                gone.filter(pl.col("field") == source).select("record_key", pl.lit(f).alias("field"))
                for source, derived in derived_fields([q]).items() for f in derived)])
            extra_opened = own.join(fields_back.unique(), on=["record_key", "field"], how="semi")
            extra_opened = extra_opened.join(open_exp.select("task_id"), on="task_id", how="anti")
            # ... unless a golden task found now covers it again
            extra_opened, _ = covered_expectations(extra_opened, found, members, qualities=qualities.values())
    _settle(store, found, keys, "golden_disagreement", batch_of, now, outcome,
            extra_opened=extra_opened, extra_closed=extra_closed, open_tasks=open_golden)
