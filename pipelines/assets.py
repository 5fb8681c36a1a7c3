"""Station drops into raw, quarantined and standardised records: one pass, three assets."""


from collections import Counter

import dagster as dg
import polars as pl

from connectors.ingest import ingest_station
from entity_resolution.entity_types import Registry, load_registry
from pipelines import progress
from pipelines.instance import INGEST_POOL
from pipelines.partitions import stations_partitions
from pipelines.resources import ProjectResource

RAW = dg.AssetKey("raw_records")
RECONCILED = dg.AssetCheckSpec(
    "rows_reconciled",
    asset=RAW,
    blocking=True,
    description="Every row read is stored exactly once: rows read = loaded + quarantined, per batch.",
)
ACCEPTED = dg.AssetCheckSpec(
    "drops_readable",
    asset=RAW,
    description="Every current drop of the station could be read: a file rejected as a whole (unreadable, "
                "a mapped header missing) fails this check with the file and the reason until it is "
                "replaced or the config that read it is fixed.",
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
        pool=INGEST_POOL,
    )
    def station_records(context: dg.AssetExecutionContext, project: ProjectResource):
        yield from _station_records(context, project, types)

    return station_records


def _station_records(context: dg.AssetExecutionContext, project: ProjectResource, types: list):
    """Ingest every new drop of one station; standardise rows as they are loaded.

    One run per station partition, so the metadata below describes exactly that station.
    """
    proj = project.project
    station = proj.stations.station(context.partition_key)
    with project.writing(context, f"ingest {station.id}", station=station.id) as store:
        outcomes = ingest_station(store, station, base_dir=proj.config_dir, data_dir=proj.data_dir,
                                  progress=progress.report)
    for o in outcomes:
        (context.log.warning if o.status == "rejected" else context.log.info)(o.summary())

    keys = [station.id]
    recon = store.reconciliation(keys)
    unbalanced = recon.filter(~recon["balanced"])
    statuses = Counter(o.status for o in outcomes)
    reasons = Counter()
    for o in outcomes:
        reasons.update(o.quarantine_reasons)
    yield dg.MaterializeResult(
        asset_key=RAW,
        metadata={
            "rows_read": sum(o.rows_read for o in outcomes),
            "rows_loaded": sum(o.rows_loaded for o in outcomes),
            "rows_quarantined": sum(o.rows_quarantined for o in outcomes),
            "batches_loaded": statuses["loaded"],
            "batches_skipped": statuses["skipped"] + statuses["unchanged"],
            "batches_rejected": statuses["rejected"],
            "quarantine_reasons": dict(reasons),
            "rejected_drops": [f"{o.ref}: {o.error}" for o in outcomes if o.status == "rejected"],
        },
    )
    yield dg.AssetCheckResult(
        check_name=RECONCILED.name,
        asset_key=RAW,
        passed=unbalanced.height == 0,
        metadata={
            "batches_checked": recon.height,
            "unbalanced_batches": unbalanced["batch_id"].to_list(),
        },
    )
    current = {o.batch_id for o in outcomes if o.batch_id}
    rejected = store.batches(keys).filter((pl.col("status") == "rejected") & pl.col("batch_id").is_in(current))
    yield dg.AssetCheckResult(
        check_name=ACCEPTED.name,
        asset_key=RAW,
        passed=rejected.height == 0,
        metadata={"current_drops": len(current), "rejected": dg.MetadataValue.json(
            rejected.select("batch_id", "source_ref", "error").to_dicts())},
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


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
station_records = station_records_asset(load_registry())

ingest_job = dg.define_asset_job(
    "ingest_station",
    selection=dg.AssetSelection.groups("ingest"),  # station_records, whichever types it has
    description="Ingest and standardise the new drops of one station.",
    executor_def=dg.in_process_executor,
)
