"""Subscription feeds as a Dagster asset, one partition per subscriber, after the change events.

Partitions follow subscriptions.yaml (`sync_subscriber_partitions`, called by the sensor and by
`enteronce run`). A run may cover one subscriber or a range of them (partition-range run tags):
the builder reads the outbox once for all subscribers in the run, so building 943 feeds costs
one pass, not 943.
"""


import dagster as dg

from core.entity_types import Registry
from feeds.config import load_subscriptions
from feeds.files import build_all, subscribers_behind
from pipelines.automation import SENSOR_INTERVAL_SECONDS, STAGE_TAG
from pipelines.instance import PUBLICATION_POOL
from pipelines.partitions import partition_range_tags
from pipelines.resources import ProjectResource

subscribers_partitions = dg.DynamicPartitionsDefinition(name="subscribers")
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
FEEDS = dg.AssetKey("subscriber_feeds")


def sync_subscriber_partitions(instance: dg.DagsterInstance, subscriber_ids: list[str]) -> list[str]:
    """Add partitions for new subscribers and drop those of removed ones; returns the current ids
    in the instance's own order (the order a partition range follows: insertion order, which
    need not be the file's), so a range from the first to the last covers every subscriber."""
    known = set(instance.get_dynamic_partitions(subscribers_partitions.name))
    missing = [s for s in subscriber_ids if s not in known]
    if missing:
        instance.add_dynamic_partitions(subscribers_partitions.name, missing)
    for gone in sorted(known - set(subscriber_ids)):
        instance.delete_dynamic_partition(subscribers_partitions.name, gone)
    return list(instance.get_dynamic_partitions(subscribers_partitions.name))


def _build_feeds(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    p = project.project
    subs = load_subscriptions(p.config_dir)
    wanted = list(context.partition_keys)
    known = {s.id for s in subs.subscribers}
    gone = sorted(set(wanted) - known)
    if gone:
        context.log.warning(f"no longer in subscriptions.yaml, skipped: {gone}")
    # Exclusive: the cursors are read after the lock is had, so two overlapping builds cannot
    # deliver (and audit) the same events twice.
    with project.writing(context, "subscriber feeds") as warehouse:
        results = build_all(warehouse, subs, config_dir=p.config_dir, data_dir=p.data_dir,
                            subscriber_ids=[w for w in wanted if w in known])
    masked: dict[str, int] = {}
    for r in results:
        for f, n in r.masked_fields.items():
            masked[f] = masked.get(f, 0) + n
    ranges = [r.seq_range for r in results if r.seq_range]
    context.log.info(f"{len(results)} subscriber(s): {sum(r.events for r in results)} events, "
                     f"{sum(r.snapshot_records for r in results)} snapshot records")
    return dg.MaterializeResult(metadata={
        "subscribers": len(results),
        "events_delivered": sum(r.events for r in results),
        "snapshot_records": sum(r.snapshot_records for r in results),
        "entities_delivered": sum(r.entities for r in results),
        "api_events_prepared": sum(r.api_prepared for r in results),
        "masked_field_counts": dg.MetadataValue.json(dict(sorted(masked.items()))),
        "seq_range": f"{min(a for a, _ in ranges)}-{max(b for _, b in ranges)}" if ranges else "none",
        "outbox": dg.MetadataValue.path(str(results[0].outbox.parent)) if results else "none",
        "per_subscriber": dg.MetadataValue.json({r.subscriber_id: {"events": r.events, "snapshot": r.snapshot_records}
                                                 for r in results}),
    })


@dg.sensor(
    name="subscriber_feeds_sensor",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[FEEDS],
)
def subscriber_feeds_sensor(context: dg.SensorEvaluationContext, project: ProjectResource):
    """Keeps the subscriber partitions in step with subscriptions.yaml and, when a subscriber's
    files are behind the outbox (or it is new), asks for one run over all subscribers.

    Whoever wrote the events (a daemon run, `enteronce run`, a reviewer's judgement) they are
    delivered; whoever built the feeds last, the subscribers' cursors in the warehouse say so,
    so nothing is built twice. While a publication or feed run is still queued or running, it
    waits for it: the run's events are delivered in one feed run after it, not in two."""
    p = project.project
    ids = sync_subscriber_partitions(context.instance, [s.id for s in load_subscriptions(p.config_dir).subscribers])
    if not ids:
        return dg.SkipReason("no subscribers in subscriptions.yaml")
    busy = [stage for stage in ("publication", "feeds") if context.instance.get_runs_count(
        dg.RunsFilter(statuses=IN_FLIGHT, tags={STAGE_TAG: stage})) > 0]
    if busy:
        return dg.SkipReason(f"waiting for the {' and '.join(busy)} run in progress")
    high, behind = subscribers_behind(project.warehouse, ids)
    if not behind:
        return dg.SkipReason(f"every subscriber's feed is at the outbox's seq {high}")
    context.log.info(f"{len(behind)} subscriber(s) behind seq {high}: {behind[:10]}")
    return dg.RunRequest(run_key=None, tags={**partition_range_tags(ids), STAGE_TAG: "feeds",
                                             "enteronce/high_water": str(high)})


def feed_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """The feed asset after every change the registry's types and relations publish: each type's
    change events and each relation's links (which write update events of their own)."""
    deps = [*(dg.AssetKey(f"{t.name}_change_events") for t in registry),
            *(dg.AssetKey(f"{name}_links") for name in registry.relations)]

    @dg.asset(
        name=FEEDS.path[-1],
        partitions_def=subscribers_partitions,
        deps=deps,
        group_name="feeds",
        kinds={"polars", "parquet", "csv"},
        pool=PUBLICATION_POOL,
        description="Each subscriber's new change events (the first time: a snapshot of its scope), scoped, "
                    "projected to its fields and masked per its role, as JSON Lines / CSV / Parquet in its "
                    "outbox, and stored per subscriber for the feed API's pages; every delivery audited.",
    )
    def subscriber_feeds(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        return _build_feeds(context, project)

    return [subscriber_feeds]


FEED_SENSORS = [subscriber_feeds_sensor]


def run_feeds(project, instance: dg.DagsterInstance, assets: list, resources: dict,
              run_config: dict, tags: dict[str, str]) -> list[dg.ExecuteInProcessResult]:
    """For `enteronce run`: one in-process run of the feed asset over every subscriber."""
    ids = sync_subscriber_partitions(instance, [s.id for s in load_subscriptions(project.config_dir).subscribers])
    if not ids:
        return []
    return [dg.materialize(assets, instance=instance, resources=resources, run_config=run_config,
                           selection=[FEEDS], tags={**partition_range_tags(ids), **tags})]
