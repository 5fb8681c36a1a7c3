"""Data quality in Dagster: the suites as asset checks, and a pass after publication.

Thin: each check or asset calls one function of quality.service. Great Expectations is imported
only when a check runs (quality.validate imports it inside its functions), never when the code
location loads.

- `station_quality` (per station partition, after the station's drops are ingested) runs the raw
  and standardised suites on every new batch, scores them, opens or closes correction tasks, and
  holds a batch that fails reconciliation or exceeds `max_invalid_id_rate`. Findings under those
  thresholds are warnings with their figures in metadata. Its `publishable` checks are blocking
  and of ERROR severity: while a batch of the station is held they fail (the station's run
  fails, red in the UI, the reason in metadata), and resolution leaves the held batch out.
- `golden_quality` runs the golden suites after golden records are published.
- the `data_quality` asset, after the outboxes: freshness, tasks for station values that disagree
  with golden values, and Great Expectations' Data Docs (path in metadata).
"""


import warnings

import dagster as dg
import polars as pl

from pipelines.assets import ORGANISATIONS, PERSONS, RAW
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import INGEST_POOL, PUBLICATION_POOL
from pipelines.partitions import stations_partitions
from pipelines.resources import ProjectResource
from quality.config import project_quality
from quality.service import Outcome, quality_pass, validate_golden, validate_station
from quality.validate import gx_project
from warehouse.quality import QualityStore

GOLDEN_KEYS = {"person": dg.AssetKey("person_golden_records"), "organisation": dg.AssetKey("organisation_golden_records")}
EVENT_KEYS = [dg.AssetKey("person_change_events"), dg.AssetKey("organisation_change_events")]
QUALITY_KEY = dg.AssetKey("data_quality")

# Partitioned asset checks are a preview in Dagster 1.13 (DESIGN.md); the check reads its station
# from the run's partition key. The preview warning is expected, so it is not repeated on every load.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    RAW_SUITE = dg.AssetCheckSpec("raw_suite", asset=RAW, partitions_def=stations_partitions,
                                  description="Raw rows of each new drop: local ids present and unique, keys well-formed.")
    RECORD_SUITES = {
        "person": dg.AssetCheckSpec(
            "standardised_suite", asset=PERSONS, partitions_def=stations_partitions,
            description="Completeness, validity (ID check digit, dates, phone, area code), consistency (ID birth "
                        "date and sex) and uniqueness of each new batch of resident records."),
        "organisation": dg.AssetCheckSpec(
            "standardised_suite", asset=ORGANISATIONS, partitions_def=stations_partitions,
            description="Completeness, validity (credit code, phone, area code) and uniqueness of each new batch."),
    }
    PUBLISHABLE = {
        entity: dg.AssetCheckSpec(
            "publishable", asset=key, partitions_def=stations_partitions, blocking=True,
            description="No batch of this station is held: a batch that fails reconciliation or exceeds "
                        "max_invalid_id_rate (quality.yaml) is not resolved or published.")
        for entity, key in (("person", PERSONS), ("organisation", ORGANISATIONS))
    }

GOLDEN_SUITES = {
    entity: dg.AssetCheckSpec("golden_suite", asset=key,
                              description="Golden records: completeness, validity, and one active entity per valid ID.")
    for entity, key in GOLDEN_KEYS.items()
}


def _context(project: ProjectResource, warehouse):
    proj = project.project
    return QualityStore(warehouse), gx_project(proj.data_dir / "quality"), project_quality(proj.config_dir)


def _runs_metadata(outcome: Outcome, suite: str) -> tuple[bool, dict]:
    runs = [r for r in outcome.runs if r["suite"] == suite]
    failing = {k.split("/", 1)[1]: v for k, v in outcome.failures.items() if k.startswith(f"{suite}/")}
    meta = {
        "batches_validated": len(runs),
        "expectations_evaluated": sum(r["evaluated"] for r in runs),
        "expectations_successful": sum(r["successful"] for r in runs),
        "failing_expectations": dg.MetadataValue.json(failing),
    }
    if runs and runs[-1].get("data_docs_path"):
        meta["data_docs"] = dg.MetadataValue.path(runs[-1]["data_docs_path"])
    return all(r["success"] for r in runs), meta


@dg.multi_asset_check(
    name="station_quality",
    specs=[RAW_SUITE, *RECORD_SUITES.values(), *PUBLISHABLE.values()],
    pool=INGEST_POOL,
)
def station_quality(context: dg.AssetCheckExecutionContext, project: ProjectResource):
    """Validate the station's new batches (the partition key names the station).

    Exclusive, unlike the station's ingest: it writes the Great Expectations project's files
    and correction-task events into the one outbox."""
    station_id = context.partition_key
    with project.writing(context, f"validate {station_id}") as warehouse:
        store, gx, config = _context(project, warehouse)
        outcome = validate_station(store, gx, config, station_id)
    context.log.info(f"{station_id}: {len(outcome.runs)} validation runs, {len(outcome.held)} batches held, "
                     f"tasks opened {outcome.tasks_opened}, closed {outcome.tasks_closed}")
    passed, meta = _runs_metadata(outcome, "raw_records")
    yield dg.AssetCheckResult(check_name=RAW_SUITE.name, asset_key=RAW, passed=passed, metadata=meta,
                              severity=dg.AssetCheckSeverity.WARN)
    holds = store.holds([station_id], active_only=True)
    for entity, spec in RECORD_SUITES.items():
        passed, meta = _runs_metadata(outcome, f"{entity}_records")
        meta |= {"tasks_opened": outcome.tasks_opened, "tasks_closed": outcome.tasks_closed}
        yield dg.AssetCheckResult(check_name=spec.name, asset_key=spec.asset_key, passed=passed, metadata=meta,
                                  severity=dg.AssetCheckSeverity.WARN)
        mine = holds.join(store.batch_order().filter(pl.col("entity_type") == entity).select("batch_id"), on="batch_id")
        reasons = [f"{b}: {r}" for b, r in zip(mine["batch_id"].to_list(), mine["reason"].to_list(), strict=True)]
        yield dg.AssetCheckResult(
            check_name=PUBLISHABLE[entity].name, asset_key=PUBLISHABLE[entity].asset_key, passed=not reasons,
            metadata={"held_batches": dg.MetadataValue.json(reasons),
                      "reason": "; ".join(reasons) if reasons else "no batch held"},
            severity=dg.AssetCheckSeverity.ERROR,
        )


@dg.multi_asset_check(name="golden_quality", specs=list(GOLDEN_SUITES.values()), pool=PUBLICATION_POOL)
def golden_quality(context: dg.AssetCheckExecutionContext, project: ProjectResource):
    """The golden suites over the active golden records of each entity type."""
    for entity, spec in GOLDEN_SUITES.items():
        with project.writing(context, f"validate golden {entity}s") as warehouse:
            store, gx, config = _context(project, warehouse)
            outcome = validate_golden(store, gx, config, entity)
        passed, meta = _runs_metadata(outcome, f"golden_{entity}")
        yield dg.AssetCheckResult(check_name=spec.name, asset_key=spec.asset_key, passed=passed, metadata=meta,
                                  severity=dg.AssetCheckSeverity.WARN)


@dg.asset(
    key=QUALITY_KEY,
    deps=EVENT_KEYS,
    group_name="quality",
    kinds={"great_expectations", "polars", "sql"},
    automation_condition=AFTER_UPSTREAM,
    description="After publication: station freshness, correction tasks for station values that disagree "
                "with golden values (events in the outbox), station scores, and Great Expectations' Data Docs.",
    pool=PUBLICATION_POOL,
)
def data_quality(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    with project.writing(context, "quality pass") as warehouse:
        store, gx, config = _context(project, warehouse)
        outcome = quality_pass(store, gx, config, golden=False)
    open_tasks = store.tasks(status="open")
    meta = {
        "tasks_opened": outcome.tasks_opened,
        "tasks_closed": outcome.tasks_closed,
        "task_events": outcome.events,
        "open_tasks": open_tasks.height,
        "held_batches": store.holds(active_only=True).height,
    }
    if outcome.data_docs:
        meta["data_docs"] = dg.MetadataValue.path(outcome.data_docs)
    context.log.info(f"quality pass: {meta}")
    return dg.MaterializeResult(metadata=meta)


QUALITY_CHECKS = [station_quality, golden_quality]
QUALITY_ASSETS = [data_quality, *QUALITY_CHECKS]

