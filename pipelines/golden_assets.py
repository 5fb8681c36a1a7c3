"""Golden records and change events as assets, per entity type, right after resolution; then one
asset per relation between types (core/entity_types.yaml `relations:`), after both types' golden
records and before the feeds, which pick up its events from the outbox like any other. A type
linked at publication (a person, to its dwelling: Registry.linked_at_publication) is published
after the type it links to."""

import dagster as dg

from core.entity_types import EntityType, Relation
from entity_resolution.entity_types import Registry
from entity_resolution.propagation import run_golden
from entity_resolution.relations import PublishedLinks, check_relation, run_relation
from entity_resolution.survivorship import SurvivorshipSettings, parse_survivorship
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import PUBLICATION_POOL
from pipelines.resources import ProjectResource
from warehouse.relations import RelationStore


def _survivorship(project: ProjectResource, etype: EntityType) -> SurvivorshipSettings:
    settings = project.project.resolution.entities[etype.resolution_entity]
    return parse_survivorship(settings.survivorship or {}, source=f"resolution.yaml: {etype.resolution_entity}")


def _golden_asset(etype: EntityType, registry: Registry) -> dg.AssetsDefinition:
    carried, linked = registry.relation_fields(etype.name), registry.linked_at_publication(etype.name)
    entity_type, table = etype.name, etype.record_table
    golden_key = dg.AssetKey(f"{entity_type}_golden_records")
    events_key = dg.AssetKey(f"{entity_type}_change_events")

    @dg.multi_asset(
        name=f"publish_{entity_type}s",
        specs=[
            # a type linked at publication (a person to its dwelling) is published after the other
            dg.AssetSpec(golden_key, deps=[dg.AssetKey(f"{entity_type}_entities"),
                                           *(dg.AssetKey(f"{r.to_type}_golden_records") for r in linked)],
                         group_name="golden",
                         kinds={"polars", "sql"}, automation_condition=AFTER_UPSTREAM,
                         description="One current record per entity, each value with its provenance; every version kept."),
            dg.AssetSpec(events_key, deps=[golden_key], group_name="golden", kinds={"sql"},
                         automation_condition=AFTER_UPSTREAM,
                         description="The outbox: create / update / merge / split / retire events, global seq."),
        ],
        pool=PUBLICATION_POOL,
    )
    def _publish(context: dg.AssetExecutionContext, project: ProjectResource):
        survivorship = _survivorship(project, etype)
        for r in linked:
            _check(project, r, registry)
        with project.writing(context, f"publish {entity_type}s") as warehouse:
            links = [PublishedLinks(RelationStore(warehouse), r) for r in linked]
            summary = run_golden(warehouse.golden_store(entity_type, table), survivorship, entity_type=entity_type,
                                 carried=carried, links=links)
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


def _check(project: ProjectResource, relation: Relation, registry: Registry) -> None:
    ends = (registry.get(relation.from_type), registry.get(relation.to_type))
    check_relation(relation, {t.name: list(_survivorship(project, t).fields) for t in ends}, source=relation.source)


def _relation_asset(relation: Relation, registry: Registry) -> dg.AssetsDefinition:
    ends = (registry.get(relation.from_type), registry.get(relation.to_type))

    @dg.asset(
        name=f"{relation.name}_links",
        deps=[dg.AssetKey(f"{t.name}_golden_records") for t in ends],
        group_name="golden",
        kinds={"polars", "sql"},
        automation_condition=AFTER_UPSTREAM,
        pool=PUBLICATION_POOL,
        description=f"{relation.spec.description or relation.name}: each {relation.from_type} linked to the "
                    f"{relation.to_type} whose {', '.join(relation.key)} agree; moves become update events of "
                    f"both records ({relation.from_field}, {relation.to_field}); every link kept with its dates.",
    )
    def _links(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        _check(project, relation, registry)
        with project.writing(context, f"{relation.name} links") as warehouse:
            summary = run_relation(RelationStore(warehouse), relation)
        context.log.info(f"{relation.name}: {summary.links} links, {summary.moved_in} in, {summary.moved_out} out, "
                         f"{summary.events} events" if summary.ran else f"{relation.name}: nothing changed")
        return dg.MaterializeResult(metadata={
            "links": summary.links, "recomputed": summary.ran, "moves_in": summary.moved_in,
            "moves_out": summary.moved_out, "ambiguous": summary.ambiguous, "events_written": summary.events,
            "seq_range": str(summary.seq_range) if summary.seq_range else "none",
        })

    return _links


def golden_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """Per type its golden records and events, then per relation of the registry (both of its
    types resolved) its links."""
    return [*(_golden_asset(t, registry) for t in registry),
            *(_relation_asset(r, registry) for r in registry.relations.values())]


# The bundled types' (dagster definitions and the runner build their project's: pipelines.registry_assets).
