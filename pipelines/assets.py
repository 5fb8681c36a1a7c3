"""Station drops into raw, quarantined and standardised records: one pass, three assets."""


from collections import Counter

import dagster as dg
import polars as pl

from connectors.ingest import ingest_station
from core.errors import ConfigError, EnteronceError
from entity_resolution.entity_types import Registry, load_registry
from pipelines import progress
from pipelines.instance import INGEST_POOL
from pipelines.partitions import stations_partitions
from pipelines.resources import ProjectResource
from quality.config import project_quality
from quality.gx_worker import prewarm

RAW = dg.AssetKey("raw_records")
RECONCILED = dg.AssetCheckSpec(
    "rows_reconciled",
    asset=RAW,
    blocking=True,
    description=("Every row read is stored exactly once: rows read = loaded + quarantined + unchanged (rows "
                 "identical to the station's current record, stored by an earlier batch), per batch."),
)
ACCEPTED = dg.AssetCheckSpec(
    "drops_readable",
    asset=RAW,
    description="Every current drop of the station could be read: a file rejected as a whole (unreadable, "
                "a mapped header missing) fails this check with the file and the reason until it is "
                "replaced or the config that read it is fixed. In a run over a range of stations, a "
                "station whose source cannot be read at all (a SQL table missing) fails it too, named "
                "under `unreadable_stations`, while the others are loaded.",
)


def record_key(entity_type) -> dg.AssetKey:
    """The asset of a registered type's standardised records: named like its table."""
    return dg.AssetKey(entity_type.record_table)


def station_records_asset(registry: Registry) -> dg.AssetsDefinition:
    """The ingest multi-asset: raw rows, and one records asset per registered entity type."""
    types = list(registry)

    @dg.multi_asset(
        name="station_records",
        specs=[
            dg.AssetSpec(RAW, description="Source rows as received, with lineage; bad rows in quarantine.",
                         kinds={"polars", "sql"}, group_name="ingest"),
            *[dg.AssetSpec(record_key(t), deps=[RAW], kinds={"polars", "sql"}, group_name="ingest",
                           description=f"Standardised records of {t.spec.description or t.name}, current per "
                                       f"record key (table {t.record_table}).")
              for t in types],
        ],
        check_specs=[RECONCILED, ACCEPTED],
        partitions_def=stations_partitions,
        # a range of stations in one run: Dagster's per-run cost is paid once (pipelines.partitions)
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=INGEST_POOL,
    )
    def station_records(context: dg.AssetExecutionContext, project: ProjectResource):
        yield from _station_records(context, project, types)

    return station_records


def _prewarm_validation(proj) -> None:
    """The station's validation (station_quality, next) runs GX in its own process: started now,
    its import overlaps the station's reads instead of following them. Not when quality.yaml runs
    no station suite; an invalid quality.yaml is station_quality's to report."""
    try:
        config = project_quality(proj.config_dir)
    except ConfigError:
        return
    if config.runs("raw") or config.runs("standardised"):
        prewarm(proj.data_dir / "quality")


def _station_records(context: dg.AssetExecutionContext, project: ProjectResource, types: list):
    """Ingest every new drop of the run's stations (one partition, or a range); standardise rows
    as they are loaded.

    Each station is loaded under its own lock, as its own transactions. The metadata describes
    the run's stations: for a range, totals and, under `stations`, each station's own figures.
    """
    proj = project.project
    keys = list(context.partition_keys)
    _prewarm_validation(proj)
    outcomes: dict[str, list] = {}
    failed: dict[str, str] = {}  # station -> why its drops could not be read (a range run goes on without it)
    for key in keys:
        station = proj.stations.station(key)
        try:
            with project.writing(context, f"ingest {station.id}", station=station.id) as store:
                outcomes[key] = ingest_station(store, station, base_dir=proj.config_dir, data_dir=proj.data_dir,
                                               progress=progress.report)
        except EnteronceError as exc:  # this station's source or config: its own run fails, a range's goes on
            if len(keys) == 1:
                raise
            context.log.error(f"station {key}: {exc}")
            failed[key], outcomes[key] = str(exc), []
        for o in outcomes[key]:
            (context.log.warning if o.status == "rejected" else context.log.info)(o.summary())

    store = project.warehouse
    every = [o for key in keys for o in outcomes[key]]
    recon = store.reconciliation(keys)
    unbalanced = recon.filter(~recon["balanced"])
    meta = _ingest_metadata(every)
    if len(keys) > 1:
        meta["stations"] = dg.MetadataValue.json({
            key: {k: v for k, v in _ingest_metadata(outcomes[key]).items() if k != "quarantine_reasons"}
            for key in keys})
    yield dg.MaterializeResult(asset_key=RAW, metadata=meta)
    yield dg.AssetCheckResult(
        check_name=RECONCILED.name,
        asset_key=RAW,
        passed=unbalanced.height == 0,
        metadata={
            "batches_checked": recon.height,
            "unbalanced_batches": unbalanced["batch_id"].to_list(),
        },
    )
    current = {o.batch_id for o in every if o.batch_id}
    rejected = store.batches(keys).filter((pl.col("status") == "rejected") & pl.col("batch_id").is_in(current))
    yield dg.AssetCheckResult(
        check_name=ACCEPTED.name,
        asset_key=RAW,
        passed=rejected.height == 0 and not failed,
        metadata={"current_drops": len(current), "rejected": dg.MetadataValue.json(
            rejected.select("station_id", "batch_id", "source_ref", "error").to_dicts()),
            "unreadable_stations": dg.MetadataValue.json(failed)},
    )
    from warehouse.quality import QualityStore

    # held from publication by earlier validations (this drop's own are in the `publishable` check)
    held = QualityStore(store).held(keys)
    for etype in types:
        entity = etype.name
        fields = [f for f in etype.canonical_fields if f != "local_id"]
        code = (etype.code.column, etype.code.valid_flag) if etype.code is not None else None
        profile = store.record_profile(entity, fields, keys, code=code)
        mine = held.filter(pl.col("entity_type") == entity)
        yield dg.MaterializeResult(
            asset_key=record_key(etype),
            metadata={
                "held_batches": mine.height,
                "held_records": int(mine["records"].sum()) if mine.height else 0,
                "records": profile["rows"],
                "rows_with_issues": profile["rows_with_issues"],
                (etype.code.metric if etype.code is not None else "invalid_code_rate"):
                    dg.MetadataValue.float(round(profile["invalid_code_rate"], 4)),
                "fill_rate": dg.MetadataValue.json({k: round(v, 4) for k, v in profile["fill_rate"].items()}),
            },
        )


def _ingest_metadata(outcomes: list) -> dict:
    """What a run's drops did, summed: rows, batches by status, quarantine reasons, rejected drops."""
    statuses = Counter(o.status for o in outcomes)
    reasons = Counter()
    for o in outcomes:
        reasons.update(o.quarantine_reasons)
    return {
        "rows_read": sum(o.rows_read for o in outcomes),
        "rows_loaded": sum(o.rows_loaded for o in outcomes),
        "rows_quarantined": sum(o.rows_quarantined for o in outcomes),
        "rows_unchanged": sum(o.rows_unchanged for o in outcomes),
        "batches_loaded": statuses["loaded"],
        "batches_skipped": statuses["skipped"] + statuses["unchanged"],
        "batches_rejected": statuses["rejected"],
        "quarantine_reasons": dict(reasons),
        "rejected_drops": [f"{o.ref}: {o.error}" for o in outcomes if o.status == "rejected"],
    }


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
station_records = station_records_asset(load_registry())

ingest_job = dg.define_asset_job(
    "ingest_station",
    selection=dg.AssetSelection.groups("ingest"),  # station_records, whichever types it has
    description="Ingest, standardise and validate the new drops of one station or a range of stations.",
    executor_def=dg.in_process_executor,
)
