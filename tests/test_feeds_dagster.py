"""The feed asset in Dagster: partitions per subscriber kept in step with subscriptions.yaml by the
sensor, one run over all subscribers, metadata, files in the outboxes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from fixtures.feed_outbox import Outbox, person
from pipelines.definitions import defs
from entity_resolution.entity_types import load_registry
from pipelines.feed_assets import feed_assets, subscriber_feeds_sensor, subscribers_partitions
from pipelines.project import Project
from pipelines.resources import ProjectResource
from warehouse import Warehouse
from warehouse.feeds import FeedStore

[subscriber_feeds] = feed_assets(load_registry())
STATIONS = {"version": 1, "stations": [{"id": "s0001", "name": "解放碑派出所", "jurisdiction": ["500103001"],
                                        "sources": [{"name": "residents", "entity": "person", "kind": "csv",
                                                     "path": "s0001.csv", "columns": {"编号": "local_id"}}]}]}


def subscriber(sid: str, area: str) -> dict:
    return {"id": sid, "kind": "station", "station_id": sid, "entity_types": ["person"],
            "scope": {"area_codes": [area]}, "fields": ["name_norm", "phone"], "role": "officer"}


def write_subs(root: Path, subscribers: list[dict]) -> None:
    doc = {"masking": {"phone": {"keep_first": 3, "keep_last": 4}},
           "roles": {"officer": {"fields": {"name_norm": "full", "phone": "masked"}}}, "subscribers": subscribers}
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def test_sensor_keeps_partitions_and_one_run_builds_every_feed(tmp_path: Path) -> None:
    (tmp_path / "stations.yaml").write_text(yaml.safe_dump(STATIONS, allow_unicode=True), encoding="utf-8")
    write_subs(tmp_path, [subscriber("s0001", "500103001"), subscriber("s0002", "500106001")])
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    out = Outbox()
    out.create("P1", person("张三", "500103001001"), ["s0001:1"])
    out.create("P2", person("李四", "500106001001"), ["s0002:1"])
    out.create("P3", person("王五", "500106001002"), ["s0002:2"])
    out.flush(FeedStore(Warehouse(url).migrate()))
    resources = {"project": ProjectResource(config_dir=str(tmp_path), warehouse_url=url)}
    instance = dg.DagsterInstance.ephemeral()

    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        request = subscriber_feeds_sensor(ctx)
    assert instance.get_dynamic_partitions(subscribers_partitions.name) == ["s0001", "s0002"]
    assert isinstance(request, dg.RunRequest)
    result = dg.materialize([subscriber_feeds], instance=instance, resources=resources, tags=request.tags)
    assert result.success
    mats = {m.partition: m.metadata for m in result.asset_materializations_for_node("subscriber_feeds")}
    assert set(mats) == {"s0001", "s0002"}
    meta = mats["s0001"]
    assert meta["snapshot_records"].value == 3 and meta["subscribers"].value == 2
    assert meta["masked_field_counts"].value == {"phone": 3}
    # a warehouse other than the project's embedded default keeps its outbox in a folder of its own
    outbox = Project.load(tmp_path, url).data_dir / "outbox"
    assert outbox.parent.parent == tmp_path / "data" / "warehouses"
    assert (outbox / "s0002" / "snapshot_000000000003.csv").exists()

    with dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor) as again:
        assert isinstance(subscriber_feeds_sensor(again), dg.SkipReason)  # nothing new
    out.update("P1", phone="13900001111")
    out.flush(FeedStore(Warehouse(url)))
    write_subs(tmp_path, [subscriber("s0001", "500103001")])  # s0002 unsubscribes
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=ctx.cursor) as later:
        request = subscriber_feeds_sensor(later)
    assert instance.get_dynamic_partitions(subscribers_partitions.name) == ["s0001"]
    result = dg.materialize([subscriber_feeds], instance=instance, resources=resources, tags=request.tags)
    meta = next(iter(result.asset_materializations_for_node("subscriber_feeds"))).metadata
    assert meta["events_delivered"].value == 1 and meta["seq_range"].value == "4-4"
    assert meta["api_events_prepared"].value == 1  # the same event, stored for the API's pages


def test_one_run_covers_every_subscriber_whatever_order_the_instance_keeps(tmp_path: Path) -> None:
    """A partition range follows the instance's insertion order, not subscriptions.yaml's: a
    subscriber registered earlier (by another run, say) must not cut the range short."""
    (tmp_path / "stations.yaml").write_text(yaml.safe_dump(STATIONS, allow_unicode=True), encoding="utf-8")
    write_subs(tmp_path, [subscriber("s0001", "500103001"), subscriber("s0002", "500106001"),
                          subscriber("s0003", "500106001")])
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    out = Outbox()
    out.create("P1", person("张三", "500103001001"), ["s0001:1"])
    out.create("P2", person("李四", "500106001001"), ["s0002:1"])
    out.flush(FeedStore(Warehouse(url).migrate()))
    resources = {"project": ProjectResource(config_dir=str(tmp_path), warehouse_url=url)}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(subscribers_partitions.name, ["s0002"])  # known before the others

    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        request = subscriber_feeds_sensor(ctx)
    result = dg.materialize([subscriber_feeds], instance=instance, resources=resources, tags=request.tags)
    assert {m.partition for m in result.asset_materializations_for_node("subscriber_feeds")} == {
        "s0001", "s0002", "s0003"}


def test_feed_asset_is_in_the_code_location_after_the_change_events() -> None:
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("subscriber_feeds")
    assert graph.get(key).partitions_def == subscribers_partitions
    assert {dg.AssetKey("person_change_events"), dg.AssetKey("organisation_change_events")} <= graph.get(key).parent_keys
    assert defs.resolve_sensor_def("subscriber_feeds_sensor") is not None
