"""`enteronce run` takes its phases from the Definitions (pipelines/phases.py)."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.phases import run_phases


def test_derived_phases_and_what_each_runs() -> None:
    """The phases derived from the code location's Definitions: the station ingest per station;
    resolution and golden records of every entity type in one run; the subscribers' feeds; the
    quality pass; the audit report."""
    from pipelines.definitions import defs

    phases = run_phases(defs)
    types = sorted(k.removesuffix("_records") for k in phases[0].keys if k != "raw_records")
    assert types == ["dwelling", "organisation", "person"]  # the bundled entity types
    steps = ("candidate_pairs", "scored_pairs", "entities", "golden_records", "change_events")
    before = [
        ("ingest", "stations", sorted(["raw_records", *(f"{t}_records" for t in types)])),
        # the residence relation's links run with them, after both types' golden records
        ("resolution", None, sorted([*(f"{t}_{step}" for t in types for step in steps), "residence_links"])),
        # the feeds before the quality pass: a drop's changes do not wait for the checks
        ("feeds", "subscribers", ["subscriber_feeds"]),
        ("quality", None, ["data_quality"]),
        ("report", None, ["audit_report"]),
    ]
    assert [(p.name, p.partitions, sorted(p.keys)) for p in phases] == before
    # the golden suites check the golden records but run in the quality pass, after the feeds
    golden_suites = {dg.AssetCheckKey(dg.AssetKey(f"{t}_golden_records"), "golden_suite") for t in types}
    by_name = {p.name: p for p in phases}
    assert set(by_name["quality"].checks_in) == golden_suites == set(by_name["resolution"].checks_out)
    graph = defs.resolve_asset_graph()
    assert golden_suites <= by_name["quality"].selection.resolve_checks(graph)
    assert not golden_suites & by_name["resolution"].selection.resolve_checks(graph)
    # the checks that gate something still run with their assets
    assert dg.AssetCheckKey(dg.AssetKey("person_records"), "publishable") in phases[0].selection.resolve_checks(graph)
    # every materialisable asset of the Definitions is in exactly one phase
    nodes = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.keys]
    assert sorted(id(a) for p in phases for a in p.assets) == sorted(id(a) for a in nodes)


def _asset(name: str, group: str, deps=(), partitions=None):
    @dg.asset(name=name, group_name=group, deps=list(deps), partitions_def=partitions)
    def _a() -> None: ...

    return _a


def test_an_added_asset_is_run_without_a_second_list() -> None:
    parts = dg.DynamicPartitionsDefinition(name="stations")
    ingest = _asset("records", "ingest", partitions=parts)
    resolve = _asset("entities", "resolution", ["records"])
    golden = _asset("golden", "golden", ["entities"])
    quality = _asset("quality", "quality", ["golden"])
    report = _asset("report", "report", ["golden", "quality"])
    base = [ingest, resolve, golden, quality, report]
    phases = run_phases(dg.Definitions(assets=base))
    assert [(p.name, p.groups) for p in phases] == [
        ("ingest", ("ingest",)), ("resolution", ("resolution", "golden")), ("quality", ("quality",)),
        ("report", ("report",))]

    # A new asset in an existing group runs with its group; one in a new group gets its phase,
    # placed by its dependencies (before the report that reads it), not by where it is declared.
    extra = _asset("golden_extra", "golden", ["entities"])
    metrics = _asset("metrics", "metrics", ["golden"])
    report2 = _asset("report", "report", ["golden", "quality", "metrics"])
    phases = run_phases(dg.Definitions(assets=[report2, ingest, resolve, golden, quality, extra, metrics]))
    assert [(p.name, [k for k in p.keys]) for p in phases] == [
        ("ingest", ["records"]), ("resolution", ["entities", "golden", "golden_extra"]),
        ("quality", ["quality"]), ("metrics", ["metrics"]), ("report", ["report"])]


def test_a_node_spanning_two_groups_is_refused() -> None:
    @dg.multi_asset(specs=[dg.AssetSpec("a", group_name="one"), dg.AssetSpec("b", group_name="two")])
    def both():
        return None

    with pytest.raises(ValueError, match="spans groups"):
        run_phases(dg.Definitions(assets=[both]))


def test_a_check_moved_to_a_group_without_assets_is_refused() -> None:
    from pipelines.phases import RUNS_WITH

    records = _asset("records", "ingest")

    @dg.multi_asset_check(specs=[dg.AssetCheckSpec("late", asset="records", metadata={RUNS_WITH: "nowhere"})])
    def late():
        yield dg.AssetCheckResult(check_name="late", asset_key=dg.AssetKey("records"), passed=True)

    with pytest.raises(ValueError, match="nowhere"):
        run_phases(dg.Definitions(assets=[records, late]))
