"""Golden records and change events as assets, per entity type, right after resolution."""

import dagster as dg

from entity_resolution.propagation import run_golden
from entity_resolution.survivorship import parse_survivorship
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import PUBLICATION_POOL
from core.entity_types import EntityType
from entity_resolution.entity_types import Registry
from pipelines.resources import ProjectResource


def _golden_asset(etype: EntityType) -> dg.AssetsDefinition:
    entity_type, table, resolution_entity = etype.name, etype.record_table, etype.resolution_entity
    golden_key = dg.AssetKey(f"{entity_type}_golden_records")
    events_key = dg.AssetKey(f"{entity_type}_change_events")

    @dg.multi_asset(
        name=f"publish_{entity_type}s",
        specs=[
            dg.AssetSpec(golden_key, deps=[dg.AssetKey(f"{entity_type}_entities")], group_name="golden",
                         kinds={"polars", "sql"}, automation_condition=AFTER_UPSTREAM,
                         description="One current record per entity, each value with its provenance; every version kept."),
            dg.AssetSpec(events_key, deps=[golden_key], group_name="golden", kinds={"sql"},
                         automation_condition=AFTER_UPSTREAM,
                         description="The outbox: create / update / merge / split / retire events, global seq."),
        ],
        pool=PUBLICATION_POOL,
    )
    def _publish(context: dg.AssetExecutionContext, project: ProjectResource):
        settings = project.project.resolution.entities[resolution_entity]
        survivorship = parse_survivorship(settings.survivorship or {}, source=f"resolution.yaml: {resolution_entity}")
        with project.writing(context, f"publish {entity_type}s") as warehouse:
            summary = run_golden(warehouse.golden_store(entity_type, table), survivorship, entity_type=entity_type)
        context.log.info(f"{entity_type}: {summary.events} events {summary.ops}, seq {summary.seq_range}")
        yield dg.MaterializeResult(asset_key=golden_key, metadata={
            "entities_recomputed": summary.entities_recomputed,
            "created": summary.ops.get("create", 0), "updated": summary.ops.get("update", 0),
            "merged": summary.ops.get("merge", 0), "split": summary.ops.get("split", 0),
            "retired": summary.ops.get("retire", 0),
        })
        yield dg.MaterializeResult(asset_key=events_key, metadata={
            "events_written": summary.events,
            "seq_range": str(summary.seq_range) if summary.seq_range else "none",
            "resolution_seq": summary.resolution_seq,
        })

    return _publish


def golden_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    return [_golden_asset(t) for t in registry]


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
