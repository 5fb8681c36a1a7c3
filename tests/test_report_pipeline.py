"""The report in the pipeline: `enteronce run` (pipelines.runner) builds it after publication into
<data>/report and prints its path; the Dagster asset carries the path and headline figures."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from connectors.simulate import simulate_network
from entity_resolution.entity_types import load_registry
from pipelines.definitions import defs
from pipelines.project import Project
from pipelines.report_assets import report_assets, report_path
from pipelines.resources import ProjectResource
from pipelines.runner import materialize_project

[audit_report] = report_assets(load_registry())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    out = tmp_path_factory.mktemp("net")
    simulate_network(out, stations=2, persons=150, seed=7)
    return Project.load(out)


def test_run_builds_the_report_with_real_figures(project: Project):
    results = materialize_project(project, project.station_ids)
    index = project.data_dir / "report" / "index.html"
    assert report_path(results[-1]) == str(index)
    html = index.read_text(encoding="utf-8")
    for station in project.stations.stations:
        assert station.name in html  # every station is ranked / listed, by its Chinese name
        page = (index.parent / "stations" / f"{station.id}.html").read_text(encoding="utf-8")
        assert 'id="chart-trend"' in page  # the quality pass scored its batches: a scorecard and trend
    linkage = (index.parent / "linkage.html").read_text(encoding="utf-8")
    assert 'id="chart-cluster-sizes"' in linkage  # resolution ran: real clusters
    event = results[-1].asset_materializations_for_node("audit_report")[0]
    assert event.metadata["stations"].value == 2
    assert event.metadata["entities"].value > 0
    assert event.metadata["path"].value == str(index)


def test_asset_is_in_the_code_location_and_follows_publication():
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("audit_report")
    assert key in graph.get_all_asset_keys()
    parents = graph.get(key).parent_keys
    assert {dg.AssetKey("person_change_events"), dg.AssetKey("organisation_change_events"),
            dg.AssetKey("data_quality"), dg.AssetKey("subscriber_feeds")} <= parents
    assert graph.get(key).automation_condition is not None
    sensor = defs.resolve_sensor_def("publication")
    assert key in sensor.asset_selection.resolve(graph)


def test_asset_materialises_alone_into_the_data_folder(project: Project):
    resource = ProjectResource(config_dir=str(project.config_dir), warehouse_url=project.warehouse_url)
    result = dg.materialize([audit_report], resources={"project": resource})
    assert result.success
    meta = result.asset_materializations_for_node("audit_report")[0].metadata
    assert Path(meta["path"].value) == project.data_dir / "report" / "index.html"
    assert meta["url"].value.startswith("file://")
    assert meta["pages"].value == 2 + 5  # 2 stations; overview, supervision, linkage, access, Data Docs
    assert meta["overdue_correction_tasks"].value == 0


def test_report_is_requested_after_each_publication():
    """The automation condition: a new change-event materialisation requests the report once,
    though data_quality and the subscribers' feeds have never run in this instance."""
    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetKey("audit_report")
    selection = dg.AssetSelection.assets(key)
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    instance.report_runless_asset_event(dg.AssetMaterialization("audit_report"))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=result.cursor)
    assert result.get_num_requested(key) == 0  # nothing new upstream
    instance.report_runless_asset_event(dg.AssetMaterialization("person_change_events"))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=result.cursor)
    assert result.get_num_requested(key) == 1
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                               cursor=result.cursor)
    assert result.get_num_requested(key) == 0  # once per upstream change
