"""Entity resolution as assets: candidate pairs, scored pairs and entities, per entity type.

One op per entity type produces all three (blocking, scoring and clustering share their frames),
after any station's records change. An asset check guards the contract that no entity holds two
different valid ID numbers unless a reviewer said so.
"""

import dagster as dg

from entity_resolution.resolve import distinct_valid, guard_records
from entity_resolution.service import needed_columns, run_resolution
from core.entity_types import EntityType
from entity_resolution.entity_types import Registry
from pipelines.assets import record_key
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import PUBLICATION_POOL
from pipelines.resources import ProjectResource


def _resolution_asset(etype: EntityType) -> dg.AssetsDefinition:
    """Resolution of one registered type: its records asset, table and entity id prefix, and
    its entity in resolution.yaml, come from the registry (core.entity_types)."""
    entity_type, upstream, table, prefix = etype.name, record_key(etype), etype.record_table, etype.id_prefix
    resolution_entity = etype.resolution_entity
    pairs_key = dg.AssetKey(f"{entity_type}_candidate_pairs")
    scored_key = dg.AssetKey(f"{entity_type}_scored_pairs")
    entities_key = dg.AssetKey(f"{entity_type}_entities")
    check = dg.AssetCheckSpec(
        "one_valid_id_per_entity",
        asset=entities_key,
        blocking=True,
        description="No entity holds two different valid ID numbers unless a reviewer judged them the same.",
    )
    group = "resolution"

    @dg.multi_asset(
        name=f"resolve_{entity_type}s",
        specs=[
            dg.AssetSpec(pairs_key, deps=[upstream], group_name=group, kinds={"polars"},
                         automation_condition=AFTER_UPSTREAM,
                         description="Candidate pairs from the blocking rules (union, capped blocks)."),
            dg.AssetSpec(scored_key, deps=[pairs_key], group_name=group, kinds={"polars", "sql"},
                         automation_condition=AFTER_UPSTREAM,
                         description="Fellegi-Sunter scores; matches link, uncertain pairs go to review."),
            dg.AssetSpec(entities_key, deps=[scored_key], group_name=group, kinds={"polars", "sql"},
                         automation_condition=AFTER_UPSTREAM,
                         description="Stable entity ids and record membership."),
        ],
        check_specs=[check],
        pool=PUBLICATION_POOL,
    )
    def _resolve(context: dg.AssetExecutionContext, project: ProjectResource):
        settings = project.project.resolution.entities[resolution_entity]
        with project.writing(context, f"resolve {entity_type}s") as warehouse:
            store = warehouse.resolution_store(entity_type, table)
            summary = run_resolution(store, settings, entity_type=entity_type, prefix=prefix)
        context.log.info(f"{entity_type}: {summary.mode} run {summary.seq}: {summary.records} records, "
                         f"{summary.dirty} new or changed, {summary.pairs} pairs, {summary.matches} matches, "
                         f"{summary.review} for review, {summary.refused} refused by the ID guard or a judgement")
        blocking = summary.stats.get("blocking", [])
        yield dg.MaterializeResult(asset_key=pairs_key, metadata={
            "mode": summary.mode,
            "pairs": summary.pairs,
            "pairs_per_rule": dg.MetadataValue.json({r["rule"]: r.get("pairs_new", r.get("pairs")) for r in blocking}),
            "reduction_ratio": dg.MetadataValue.json({r["rule"]: r.get("reduction_ratio") for r in blocking}),
        })
        yield dg.MaterializeResult(asset_key=scored_key, metadata={
            "matches": summary.matches,
            "review_queue": len(store.review_queue()),
            # pairs the model scored high but the ID guard or a reviewer's 'different' refused:
            # they wait in the review queue with the reason
            "refused_pairs": summary.refused,
            "refused_by": dg.MetadataValue.json(summary.stats.get("refused", {})),
        })
        yield dg.MaterializeResult(asset_key=entities_key, metadata={
            "records": summary.records,
            "new_or_changed_records": summary.dirty,
            "entity_ops": dg.MetadataValue.json({o["op"]: o["len"] for o in summary.stats.get("ops", [])}),
            "cluster_sizes": dg.MetadataValue.json(summary.stats.get("cluster_sizes", {})),
            "run_seq": summary.seq,
        })
        distinct = distinct_valid(settings)
        # A derived guard flag (id_trusted) is no table column: check on the records, in Polars.
        guard = (guard_records(store.records(needed_columns(settings)), settings)
                 if any(c in settings.derived for pair in distinct for c in pair) else None)
        conflicts = store.conflicting_entities(distinct, records=guard)
        yield dg.AssetCheckResult(
            check_name=check.name, asset_key=entities_key, passed=conflicts.height == 0,
            metadata={"conflicting_entities": conflicts["entity_id"].head(20).to_list(),
                      "count": conflicts.height},
        )

    return _resolve


def resolution_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    return [_resolution_asset(t) for t in registry]


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
