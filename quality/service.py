"""Data quality against a store it is handed: validate new batches, hold bad ones, score
stations, open and close correction tasks, validate golden records and freshness.

Two entry points, matching when the data exists:
- `validate_station` right after a station's drops are ingested (its Dagster asset checks), and
- `quality_pass` after golden records are published (golden suite, freshness, disagreements
  with golden values, Data Docs).
Both only look at what is new since they last ran (unvalidated batches; entities touched since
the last pass), so their cost follows the size of the change, not of the warehouse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from quality.config import QualityConfig
from quality.corrections import expectation_tasks, golden_disagreements, reconcile
from quality.frames import decode_golden, freshness_frame, golden_frame, invalid_code_rate
from quality.scorecards import batch_scores, freshness_scores
from quality.suites import FRESHNESS, GOLDEN, RAW, STANDARDISED, SuiteSpec
from quality.validate import GxProject, Validation

ENTITY_TYPES = ("person", "organisation")


class QualityStore(Protocol):  # warehouse.quality.QualityStore
    def unvalidated_batches(self, suite: str, station_ids=None, entity_type=None) -> pl.DataFrame: ...
    def raw_frame(self, batch_id: str) -> pl.DataFrame: ...
    def record_frame(self, entity_type: str, batch_id: str) -> pl.DataFrame: ...
    def last_drops(self) -> pl.DataFrame: ...
    def unbalanced_batches(self, station_ids) -> pl.DataFrame: ...
    def save_run(self, run: dict, results: pl.DataFrame) -> None: ...
    def runs(self, station_ids=None, *, suite=None, batch_ids=None) -> pl.DataFrame: ...
    def results(self, run_ids: list[str]) -> pl.DataFrame: ...
    def save_scores(self, scores: pl.DataFrame) -> int: ...
    def hold(self, batch_id: str, station_id: str, reason: str) -> bool: ...
    def tasks(self, *, station_ids=None, status=None, record_keys=None, source=None) -> pl.DataFrame: ...
    def apply_tasks(self, opened: pl.DataFrame, closed: pl.DataFrame) -> tuple[int, int]: ...
    def entity_of(self, entity_type: str, record_keys: list[str]) -> pl.DataFrame: ...
    def active_golden(self, entity_type: str, entity_ids=None) -> pl.DataFrame: ...
    def members(self, entity_type: str, entity_ids: list[str], fields) -> pl.DataFrame: ...
    def touched_entities(self, entity_type: str, after_resolution_seq: int, after_event_seq: int) -> list[str]: ...
    def resolution_seq(self, entity_type: str) -> int: ...
    def max_event_seq(self) -> int: ...
    def state(self, name: str) -> int: ...
    def set_state(self, name: str, value: int) -> None: ...
    def set_docs_path(self, path: str) -> None: ...


@dataclass
class Outcome:
    """What one call did, for Dagster metadata and the CLI."""

    runs: list[dict] = field(default_factory=list)  # validation_runs rows written
    held: list[dict] = field(default_factory=list)  # {batch_id, station_id, reason}
    tasks_opened: int = 0
    tasks_closed: int = 0
    events: int = 0
    data_docs: str | None = None
    failures: dict[str, int] = field(default_factory=dict)  # suite/expectation -> failing rows

    def absorb(self, other: "Outcome") -> None:
        self.runs += other.runs
        self.held += other.held
        self.tasks_opened += other.tasks_opened
        self.tasks_closed += other.tasks_closed
        self.events += other.events
        for k, v in other.failures.items():
            self.failures[k] = self.failures.get(k, 0) + v


def parameters(config: QualityConfig, today: dt.date) -> dict:
    """The suites' GX parameters, from quality.yaml."""
    return {"earliest_date": config.earliest_birth_date.isoformat(), "today": today.isoformat(),
            "freshness_max_age_days": config.freshness_max_age_days}


def _record(store: QualityStore, gx: GxProject, config: QualityConfig, frame: pl.DataFrame, suite: SuiteSpec, *,
            station_id: str | None, batch_id: str | None, entity_type: str, today: dt.date,
            outcome: Outcome) -> Validation:
    label = f"{batch_id or suite.name}"
    v = gx.validate(frame, suite, label=label, parameters=parameters(config, today), samples=config.sample_rows)
    run = {"run_id": v.run_id, "suite": suite.name, "data_asset": suite.data_asset, "entity_type": entity_type,
           "station_id": station_id, "batch_id": batch_id, "success": v.success, "evaluated": v.evaluated,
           "successful": v.successful, "started_at": v.started_at, "finished_at": v.finished_at,
           "data_docs_path": str(gx.docs_index) if config.data_docs else None}
    store.save_run(run, v.results)
    outcome.runs.append(run)
    for row in v.results.filter(~pl.col("success")).iter_rows(named=True):
        key = f"{suite.name}/{row['expectation_id']}"
        outcome.failures[key] = outcome.failures.get(key, 0) + int(row["unexpected_count"] or 1)
    return v


def validate_station(store: QualityStore, gx: GxProject, config: QualityConfig, station_id: str, *,
                     now: dt.datetime | None = None) -> Outcome:
    """Validate every batch of the station not validated yet; hold, score, and open or close
    expectation tasks for it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    outcome = Outcome()
    touched: set[str] = set()
    if config.runs("raw"):
        for b in store.unvalidated_batches(RAW.name, [station_id]).iter_rows(named=True):
            _record(store, gx, config, store.raw_frame(b["batch_id"]), RAW, station_id=station_id,
                    batch_id=b["batch_id"], entity_type=b["entity_type"], today=today, outcome=outcome)
            touched.add(b["batch_id"])
    if config.runs("standardised"):
        for entity_type, suite in STANDARDISED.items():
            for b in store.unvalidated_batches(suite.name, [station_id], entity_type).iter_rows(named=True):
                batch_id = b["batch_id"]
                records = store.record_frame(entity_type, batch_id)
                v = _record(store, gx, config, records, suite, station_id=station_id, batch_id=batch_id,
                            entity_type=entity_type, today=today, outcome=outcome)
                touched.add(batch_id)
                rate = invalid_code_rate(records, entity_type)
                if rate > config.max_invalid_id_rate:
                    what = "ID numbers" if entity_type == "person" else "credit codes"
                    reason = (f"invalid {what}: {rate:.1%} of the batch's {what} fail their check, above "
                              f"max_invalid_id_rate {config.max_invalid_id_rate:.1%} (quality.yaml)")
                    if store.hold(batch_id, station_id, reason):
                        outcome.held.append({"batch_id": batch_id, "station_id": station_id, "reason": reason})
                if config.corrections.from_expectations:
                    _expectation_tasks(store, v, records, suite, station_id, batch_id, now, outcome)
    if config.hold_unreconciled:
        for b in store.unbalanced_batches([station_id]).iter_rows(named=True):
            reason = (f"rows do not reconcile: read {b['rows_read']}, stored {b['raw_stored']} in raw and "
                      f"{b['quarantine_stored']} in quarantine")
            if store.hold(b["batch_id"], station_id, reason):
                outcome.held.append({"batch_id": b["batch_id"], "station_id": station_id, "reason": reason})
    if touched:
        _score_batches(store, sorted(touched))
    return outcome


def _expectation_tasks(store: QualityStore, v: Validation, records: pl.DataFrame, suite: SuiteSpec,
                       station_id: str, batch_id: str, now: dt.datetime, outcome: Outcome) -> None:
    keys = records["record_key"]
    entities = store.entity_of(suite.entity_type, keys.to_list())
    found = expectation_tasks(v.failures, records.join(entities, on="record_key", how="left"), suite,
                              station_id=station_id, batch_id=batch_id)
    _settle(store, found, keys, "expectation", records.select("record_key", "batch_id"), now, outcome)


def _settle(store: QualityStore, found: pl.DataFrame, keys: pl.Series, source: str, batch_of: pl.DataFrame,
            now: dt.datetime, outcome: Outcome) -> None:
    """Open the tasks found that are not open yet, close the open ones of these records that were
    not found again (the station fixed the value), and write both to the outbox."""
    open_tasks = store.tasks(status="open", record_keys=keys.to_list(), source=source)
    opened, closed = reconcile(found, open_tasks, keys, source=source, batch_of=batch_of, now=now)
    events, _ = store.apply_tasks(opened, closed)
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
                    now: dt.datetime | None = None) -> Outcome:
    """The golden suite of one entity type over its active golden records."""
    now = now or dt.datetime.now(dt.timezone.utc)
    outcome = Outcome()
    if config.runs("golden"):
        frame = golden_frame(store.active_golden(entity_type), entity_type, today=now.date())
        _record(store, gx, config, frame, GOLDEN[entity_type], station_id=None, batch_id=None,
                entity_type=entity_type, today=now.date(), outcome=outcome)
    return outcome


def quality_pass(store: QualityStore, gx: GxProject, config: QualityConfig, *,
                 now: dt.datetime | None = None, golden: bool = True) -> Outcome:
    """After publication: golden suites (unless a Dagster check ran them), freshness,
    golden-disagreement tasks, Data Docs."""
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date()
    outcome = Outcome()
    if golden:
        for entity_type in GOLDEN:
            outcome.absorb(validate_golden(store, gx, config, entity_type, now=now))
    if config.runs("freshness"):
        drops = store.last_drops()
        if drops.height:
            _record(store, gx, config, freshness_frame(drops, now=now), FRESHNESS, station_id=None, batch_id=None,
                    entity_type="station", today=today, outcome=outcome)
            store.save_scores(freshness_scores(drops, now=now, max_age_days=config.freshness_max_age_days))
    for entity_type, fields in config.corrections.golden_fields.items():
        if fields:
            _golden_tasks(store, entity_type, fields, now, outcome)
    if config.data_docs:
        outcome.data_docs = str(gx.build_docs())
        store.set_docs_path(outcome.data_docs)
    return outcome


def _golden_tasks(store: QualityStore, entity_type: str, fields: list[str], now: dt.datetime,
                  outcome: Outcome) -> None:
    res_key, ev_key = f"tasks:{entity_type}:resolution_seq", f"tasks:{entity_type}:event_seq"
    res_mark, ev_mark = store.state(res_key), store.state(ev_key)
    res_now, ev_now = store.resolution_seq(entity_type), store.max_event_seq()
    touched = store.touched_entities(entity_type, res_mark, ev_mark)
    if touched:
        members = store.members(entity_type, touched, fields)
        golden = decode_golden(store.active_golden(entity_type, touched), fields)
        found = golden_disagreements(members, golden, fields, entity_type=entity_type)
        _settle(store, found, members["record_key"], "golden_disagreement", members.select("record_key", "batch_id"),
                now, outcome)
    store.set_state(res_key, res_now)
    store.set_state(ev_key, ev_now)
