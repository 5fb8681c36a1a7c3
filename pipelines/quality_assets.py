"""Data quality in Dagster: the suites as asset checks, and a pass after publication.

Thin: each check or asset calls one function of quality.service. Great Expectations validates
the stations' batches in a process of its own (quality.gx_worker), started when a station run
begins ingesting and ended by the runner after the stations' phase, so the process that then
resolves and publishes has not imported it; the golden suites, after publication, run in this
process (GX's functions import it only then, never when the code location loads).

- `station_quality` (per station partition or range of them, after the stations' drops are
  ingested) runs the raw and standardised suites on every new batch - set-wise, each suite once
  over all the run's new batches with results per batch - scores them, opens or closes correction
  tasks, and holds a batch that fails reconciliation or exceeds `max_invalid_id_rate`. Its suite
  checks (WARN) report each station's latest batch, validated in this run or before: failed when
  an expectation's pass rate is below its `thresholds` entry (quality.yaml), passed otherwise,
  with the rates and failing rows in metadata (for a range, per station, and the failing
  stations). Its `publishable` checks are blocking and of ERROR severity: while a batch of a
  station is held they fail (the run fails, red in the UI, the station and reason in metadata),
  and resolution leaves the held batch out.
- `golden_quality` runs the golden suites after golden records are published.
- the `data_quality` asset, after the outboxes: freshness, tasks for station values that disagree
  with golden values, and Great Expectations' Data Docs (path in metadata).
"""


import datetime as dt
import json
import warnings

import dagster as dg
import polars as pl

from core.errors import ConfigError
from entity_resolution.entity_types import Registry
from pipelines.assets import RAW, record_key
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import INGEST_POOL, PUBLICATION_POOL
from pipelines.partitions import range_label, stations_partitions
from pipelines.phases import RUNS_WITH
from pipelines.resources import ProjectResource
from quality.config import project_quality
from quality.service import Outcome, quality_pass, validate_golden, validate_stations
from quality.suites import SuiteSpec, registry_quality
from quality import gx_worker
from quality.validate import gx_project
from warehouse.quality import QualityStore

QUALITY_KEY = dg.AssetKey("data_quality")
QUALITY_GROUP = "quality"


def suite_description(suite: SuiteSpec, what: str) -> str:
    """What a suite checks, from its expectations: each dimension with the columns it reads
    ("Completeness (name, sex), validity (id_valid, phone) and uniqueness (local_id) of each new
    batch of <what>.")."""
    by_dim: dict[str, list[str]] = {}
    for e in suite.expectations:
        cols = by_dim.setdefault(e.dimension, [])
        cols += [c for c in e.value_columns if c not in cols]
    parts = [f"{dim} ({', '.join(cols)})" for dim, cols in by_dim.items()]
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "nothing"
    return f"{text[:1].upper()}{text[1:]} of {what}."

# Partitioned asset checks are a preview in Dagster 1.13; the check reads its stations from the
# run's partition keys (a range run records one evaluation, without a partition). The preview
# warning is expected, so it is not repeated on every load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    RAW_SUITE = dg.AssetCheckSpec("raw_suite", asset=RAW, partitions_def=stations_partitions,
                                  description="Raw rows of each new drop: local ids present and unique, keys well-formed.")


# Up to this many golden records, `enteronce run` validates them in GX's process (below).
GX_PROCESS_GOLDEN = 100_000


def prewarm_validation(proj, golden_records: int) -> bool:
    """`enteronce run`, as the feeds are built: the quality pass after them validates golden
    records and freshness. With few golden records, GX's process starts now, so its import runs
    on the other core beside the feed build, and the pass sends it its frames (_context); in this
    process the import would take the GIL from the feed build, and it is then a second import of
    GX in the run (the stations' was in the process of their phase). With many, the frames stay
    here rather than being held twice. Whether it started the process (not when quality.yaml
    runs neither; an invalid quality.yaml is the quality pass's to report)."""
    try:
        config = project_quality(proj.config_dir)
    except ConfigError:
        return False
    if golden_records > GX_PROCESS_GOLDEN or not (config.runs("golden") or config.runs("freshness")):
        return False
    gx_worker.prewarm(proj.data_dir / "quality")
    return gx_worker.running()


def _context(project: ProjectResource, warehouse, *, stations: bool = False):
    """The store, GX project and quality.yaml of a validation. The stations' batches are validated
    in GX's own process (`stations`, quality.gx_worker): that keeps GX out of the process before
    resolution. The golden suites stay in this one: they run after publication, and their frame of
    every golden record would otherwise be held twice, here and there."""
    proj = project.project
    root = proj.data_dir / "quality"
    gx = gx_worker.gx_for(root) if stations or gx_worker.running() else gx_project(root)
    return QualityStore(warehouse), gx, project_quality(proj.config_dir)


def _runs_metadata(outcome: Outcome, suite: str) -> tuple[bool, dict]:
    runs = [r for r in outcome.runs if r["suite"] == suite]
    failing = {k.split("/", 1)[1]: v for k, v in outcome.failures.items() if k.startswith(f"{suite}/")}
    tolerated = {k.split("/", 1)[1]: v for k, v in outcome.tolerated.items() if k.startswith(f"{suite}/")}
    meta = {
        "batches_validated": len(runs),
        "expectations_evaluated": sum(r["evaluated"] for r in runs),
        "expectations_successful": sum(r["successful"] for r in runs),
        "failing_expectations": dg.MetadataValue.json(failing),
        "failing_rows_within_threshold": dg.MetadataValue.json(tolerated),
    }
    if runs and runs[-1].get("data_docs_path"):
        meta["data_docs"] = dg.MetadataValue.path(runs[-1]["data_docs_path"])
    return all(r["success"] for r in runs), meta


def _rates(results: pl.DataFrame, key: str = "expectation_id") -> dict[str, dict]:
    """`key` (an expectation id) -> its pass rate, threshold and failing rows, from stored results."""
    out = {}
    for r in results.sort(key).iter_rows(named=True):
        try:
            observed = json.loads(r["observed_value"]) if r["observed_value"] else {}
        except ValueError:
            observed = {}
        observed = observed if isinstance(observed, dict) else {}
        rate = observed.get("pass_rate")
        if rate is None and r["unexpected_percent"] is not None:
            rate = round(1.0 - r["unexpected_percent"] / 100.0, 6)
        out[r[key]] = {"pass_rate": rate, "threshold": observed.get("threshold"),
                       "failing_rows": int(r["unexpected_count"] or 0)}
    return out


def station_suite_check(store: QualityStore, outcome: Outcome, station_ids: list[str], suite: str) -> tuple[bool, dict]:
    """A station's suite check is about its latest batch (per entity type), whether this run
    validated it or not: a run that brought nothing new re-reports the stored result of the
    latest validated batch - a failure stays a failure until a better batch arrives - instead of
    passing because nothing was checked. A batch passes when every expectation's pass rate is at
    least its threshold (quality.yaml `thresholds`).

    A run over a range of stations checks each station's latest batches and passes when all of
    them pass; its expectations are named `<station> <expectation>` and `failing_stations` lists
    the stations to look at."""
    _, meta = _runs_metadata(outcome, suite)
    many = len(station_ids) > 1
    runs = store.runs(station_ids, suite=suite)
    if runs.height == 0:
        return True, meta | {"result": f"no batch of {'these stations' if many else 'this station'} validated yet"}
    latest = runs.sort("started_at", "run_id").group_by("station_id", "entity_type", maintain_order=True).last()
    label = (pl.col("station_id") + " " + pl.col("expectation_id")) if many else pl.col("expectation_id")
    results = (store.results(latest["run_id"].to_list()).join(latest.select("run_id", "station_id"), on="run_id")
               .with_columns(label.alias("label")))
    rates = _rates(results, "label")
    below = results.filter(~pl.col("success"))
    below_labels = below["label"].to_list()
    within = results.filter(pl.col("success") & (pl.col("unexpected_count").fill_null(0) > 0))["label"]
    fresh = {r["run_id"] for r in outcome.runs if r["suite"] == suite}
    now = latest["run_id"].is_in(list(fresh))
    if now.all():
        result = f"the latest batch{'es' if many else ''}, validated in this run"
    elif not now.any():
        result = (f"nothing new validated: the stored result of the latest batch{'es' if many else ''}, validated "
                  f"{latest['started_at'].max():%Y-%m-%d %H:%M} UTC")
    else:
        result = (f"the latest batches of {latest.filter(now)['station_id'].n_unique()} stations validated in this "
                  f"run; the others' stored results")
    meta |= {
        "batch": ", ".join(b for b in latest["batch_id"].to_list() if b),
        "result": result,
        "below_threshold": dg.MetadataValue.json({k: rates[k] for k in below_labels}),
        "within_threshold": dg.MetadataValue.json({k: rates[k] for k in within.to_list()}),
        "failing_expectations": dg.MetadataValue.json({k: rates[k]["failing_rows"] for k in below_labels}),
        "expectations_evaluated": int(latest["evaluated"].sum()),
        "expectations_successful": int(latest["successful"].sum()),
    }
    if many:
        meta["failing_stations"] = dg.MetadataValue.json(sorted(set(below["station_id"].to_list())))
    lowest = [v["pass_rate"] for v in rates.values() if v["pass_rate"] is not None]
    if lowest:
        meta["lowest_pass_rate"] = dg.MetadataValue.float(min(lowest))
    return bool(latest["success"].all()), meta


def _station_quality(registry: Registry) -> dg.AssetChecksDefinition:
    types = list(registry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        qualities = registry_quality(registry)
        record_suites = {
            t.name: dg.AssetCheckSpec(
                "standardised_suite", asset=record_key(t), partitions_def=stations_partitions,
                description=suite_description(qualities[t.name].standardised,
                                              f"each new batch of {t.spec.description or t.name} records"))
            for t in types
        }
        publishable = {
            t.name: dg.AssetCheckSpec(
                "publishable", asset=record_key(t), partitions_def=stations_partitions, blocking=True,
                description="No batch of this station is held: a batch that fails reconciliation or exceeds "
                            "max_invalid_id_rate (quality.yaml) is not resolved or published.")
            for t in types
        }

    @dg.multi_asset_check(
        name="station_quality",
        specs=[RAW_SUITE, *record_suites.values(), *publishable.values()],
        pool=INGEST_POOL,
    )
    def station_quality(context: dg.AssetCheckExecutionContext, project: ProjectResource):
        """Validate the new batches of the run's stations (its partition keys name them).

        Exclusive, unlike the station's ingest: it writes the Great Expectations project's files
        and correction-task events into the one outbox."""
        yield from _validate_station(context, project, record_suites, publishable)

    return station_quality


def _validate_station(context: dg.AssetCheckExecutionContext, project: ProjectResource, RECORD_SUITES: dict,
                      PUBLISHABLE: dict):
    """Validate the run's stations (its partition, or its range of partitions) set-wise: each
    suite goes through Great Expectations once for all their new batches."""
    station_ids = list(context.op_execution_context.partition_keys)
    what = range_label(station_ids)
    with project.writing(context, f"validate {what}") as warehouse:
        store, gx, config = _context(project, warehouse, stations=True)
        outcome = validate_stations(store, gx, config, station_ids, types=project.project.entity_types)
    context.log.info(f"{what}: {len(outcome.runs)} validation runs, {len(outcome.held)} batches held, "
                     f"tasks opened {outcome.tasks_opened}, closed {outcome.tasks_closed}")
    passed, meta = station_suite_check(store, outcome, station_ids, "raw_records")
    yield dg.AssetCheckResult(check_name=RAW_SUITE.name, asset_key=RAW, passed=passed, metadata=meta,
                              severity=dg.AssetCheckSeverity.WARN)
    holds = store.held(station_ids)
    for entity, spec in RECORD_SUITES.items():
        passed, meta = station_suite_check(store, outcome, station_ids, f"{entity}_records")
        meta |= {"tasks_opened": outcome.tasks_opened, "tasks_closed": outcome.tasks_closed}
        yield dg.AssetCheckResult(check_name=spec.name, asset_key=spec.asset_key, passed=passed, metadata=meta,
                                  severity=dg.AssetCheckSeverity.WARN)
        mine = holds.filter(pl.col("entity_type") == entity)
        reasons = [f"{b}: {r}" for b, r in zip(mine["batch_id"].to_list(), mine["reason"].to_list(), strict=True)]
        yield dg.AssetCheckResult(
            check_name=PUBLISHABLE[entity].name, asset_key=PUBLISHABLE[entity].asset_key, passed=not reasons,
            metadata=publishable_metadata(station_ids, mine, reasons),
            severity=dg.AssetCheckSeverity.ERROR,
        )


def publishable_metadata(station_ids: list[str], held: pl.DataFrame, reasons: list[str]) -> dict:
    """What the UI shows on a `publishable` check: the station(s), each held batch with its
    station, reason, measured rate, threshold and the records it keeps back; for one batch also
    as plain fields."""
    rows = [{"station": r["station_id"], "batch": r["batch_id"], "reason": r["reason"], "rate": r["rate"],
             "threshold": r["threshold"], "records": r["records"],
             "held_at": r["held_at"].isoformat() if r["held_at"] else None}
            for r in held.iter_rows(named=True)]
    meta = {"station": range_label(station_ids),
            "held_batches": dg.MetadataValue.json(reasons),
            "reason": "; ".join(reasons) if reasons else "no batch held",
            "held_records": int(held["records"].sum()) if held.height else 0,
            "holds": dg.MetadataValue.json(rows)}
    if len(station_ids) > 1:
        meta["held_stations"] = dg.MetadataValue.json(sorted(set(held["station_id"].to_list())))
    if rows:
        meta["batch"] = ", ".join(r["batch"] for r in rows)
        rated = [r for r in rows if r["rate"] is not None]
        if rated:  # the worst measured rate against its threshold (a reconciliation hold has none)
            worst = max(rated, key=lambda r: r["rate"])
            meta["rate"] = dg.MetadataValue.float(round(worst["rate"], 4))
            meta["threshold"] = dg.MetadataValue.float(float(worst["threshold"]))
    return meta


def _golden_quality(registry: Registry) -> dg.AssetChecksDefinition:
    qualities = registry_quality(registry)
    # after the relations that write into the type's golden records too: a first run's links
    # change every record, and checked before them the next run would read them all again
    links = {t.name: [dg.AssetKey(f"{name}_links") for name, r in registry.relations.items()
                      if t.name in (r.from_type, r.to_type)] for t in registry}
    GOLDEN_SUITES = {
        t.name: dg.AssetCheckSpec("golden_suite", asset=dg.AssetKey(f"{t.name}_golden_records"),
                                  additional_deps=links[t.name],
                                  # judged after the subscribers' feeds, in the quality pass (it gates nothing)
                                  metadata={RUNS_WITH: QUALITY_GROUP},
                                  description=suite_description(
                                      qualities[t.name].golden, f"the active golden {t.spec.description or t.name}"))
        for t in registry if qualities[t.name].golden is not None
    }

    @dg.multi_asset_check(name="golden_quality", specs=list(GOLDEN_SUITES.values()), pool=PUBLICATION_POOL)
    def golden_quality(context: dg.AssetCheckExecutionContext, project: ProjectResource):
        """The golden suites over the active golden records of each entity type."""
        for entity, spec in GOLDEN_SUITES.items():
            with project.writing(context, f"validate golden {entity}s") as warehouse:
                store, gx, config = _context(project, warehouse)
                outcome = validate_golden(store, gx, config, entity, types=registry)
            passed, meta = _runs_metadata(outcome, f"golden_{entity}")
            yield dg.AssetCheckResult(check_name=spec.name, asset_key=spec.asset_key, passed=passed, metadata=meta,
                                      severity=dg.AssetCheckSeverity.WARN)

    return golden_quality


def _data_quality(registry: Registry) -> dg.AssetsDefinition:
    @dg.asset(
        key=QUALITY_KEY,
        deps=[dg.AssetKey(f"{t.name}_change_events") for t in registry],
        group_name=QUALITY_GROUP,
        kinds={"great_expectations", "polars", "sql"},
        automation_condition=AFTER_UPSTREAM,
        description="After publication: station freshness, correction tasks for station values that disagree "
                    "with golden values (events in the outbox), station scores, and Great Expectations' Data Docs.",
        pool=PUBLICATION_POOL,
    )
    def data_quality(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        with project.writing(context, "quality pass") as warehouse:
            store, gx, config = _context(project, warehouse)
            outcome = quality_pass(store, gx, config, golden=False, types=registry)
        tasks = store.supervision_tasks()  # every task but the superseded, the open ones among them
        meta = {
            "tasks_opened": outcome.tasks_opened,
            "tasks_closed": outcome.tasks_closed,
            "task_events": outcome.events,
            "open_tasks": tasks.filter(pl.col("status") == "open").height,
        }
        held = store.held()
        meta |= {"held_batches": held.height, "held_records": int(held["records"].sum())}
        meta |= supervision_metadata(tasks, config.tasks_sla_days, outcome.reminders)
        if outcome.data_docs:
            meta["data_docs"] = dg.MetadataValue.path(outcome.data_docs)
        context.log.info(f"quality pass: {meta}")
        return dg.MaterializeResult(metadata=meta)

    return data_quality


def supervision_metadata(tasks: pl.DataFrame, sla_days: float, reminders: int = 0, *,
                         now: dt.datetime | None = None, top: int = 10) -> dict:
    """Supervision of the work (quality.supervision) as the `data_quality` asset's metadata: the
    network's task figures, and the stations most behind as a Markdown table."""
    from quality.supervision import markdown_table, network_totals, ranking, station_summary

    now = now or dt.datetime.now(dt.timezone.utc)
    summary = station_summary(tasks, now, sla_days)
    totals = network_totals(summary, tasks)
    return {
        "tasks_sla_days": dg.MetadataValue.float(float(sla_days)),
        "overdue_tasks": totals["overdue"],
        "stations_with_overdue_tasks": totals["stations_overdue"],
        "tasks_opened_total": totals["opened"],
        "tasks_closed_total": totals["closed"],
        "median_days_to_close": dg.MetadataValue.float(round(totals["median_close_days"], 2))
        if totals["median_close_days"] is not None else dg.MetadataValue.null(),
        "overdue_reminders_sent": reminders,
        "stations_by_overdue_tasks": dg.MetadataValue.md(markdown_table(ranking(summary), top)),
    }


def quality_assets(registry: Registry) -> list:
    """data_quality and the station and golden checks, for the registered entity types."""
    return [_data_quality(registry), _station_quality(registry), _golden_quality(registry)]


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
