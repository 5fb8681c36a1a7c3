"""The automation conditions the daemon evaluates: after a station's records change, everything
from resolution to the report is requested together; a station that never loaded stops nobody;
a change made outside a run (a released hold, a judgement) is picked up the same way."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs
from pipelines.partitions import stations_partitions

PUBLICATION = dg.AssetSelection.groups("resolution", "golden", "quality", "report")
AFTER_RECORDS = {"person_candidate_pairs", "person_scored_pairs", "person_entities", "person_golden_records",
                 "person_change_events", "data_quality", "audit_report"}


def requested(result: dg.EvaluateAutomationConditionsResult) -> set[str]:
    return {r.key.to_user_string() for r in result.results if r.true_subset.size > 0}


def test_one_stations_records_trigger_the_whole_publication_though_another_never_loaded() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(stations_partitions.name, ["s0001", "s0002"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=PUBLICATION)
    assert first.total_requested == 0  # nothing has happened yet

    # s0001 was ingested; s0002's first ingest failed: its partition is missing
    instance.report_runless_asset_event(dg.AssetMaterialization("person_records", partition="s0001"))
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=PUBLICATION,
                                               cursor=first.cursor)
    assert AFTER_RECORDS <= requested(second)
    assert not {k for k in requested(second) if k.startswith("organisation_")}  # only what changed

    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=PUBLICATION,
                                              cursor=second.cursor)
    assert third.total_requested == 0  # requested once, not on every tick


def test_a_judgement_reported_outside_a_run_republishes() -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=PUBLICATION)
    instance.report_runless_asset_event(dg.AssetMaterialization("person_scored_pairs"))
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=PUBLICATION,
                                               cursor=first.cursor)
    assert {"person_entities", "person_golden_records", "person_change_events"} <= requested(second)
