"""The auditors' report as a Dagster asset, rebuilt after every publication.

Thin on purpose: the asset calls quality.report.build.write_report and turns its summary into
metadata (the path of index.html, the headline figures), so the report in the UI is the one the
CLI builds.
"""

from pathlib import Path

import dagster as dg

from core.entity_types import Registry
from pipelines.automation import AFTER_UPSTREAM
from pipelines.instance import PUBLICATION_POOL
from pipelines.resources import ProjectResource
from quality.config import project_quality
from quality.report.build import write_report
from quality.report.model import describe_precision

REPORT_DIR = "report"


def report_dir(project_resource: ProjectResource) -> Path:
    """Where the site goes: `<data folder>/report/` (data/demo/data/report after `make demo`)."""
    return project_resource.project.data_dir / REPORT_DIR


def _build_report(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    with project.writing(context, "audit report") as warehouse:
        summary = write_report(warehouse, report_dir(project),
                               sla_days=project_quality(project.project.config_dir).tasks_sla_days)
    context.log.info(f"report: {summary.index} ({summary.pages} pages in {summary.seconds:.1f} s)")
    for note in summary.notes:
        context.log.warning(note)
    metadata = {
        "path": dg.MetadataValue.path(str(summary.index)),
        "url": dg.MetadataValue.url(summary.index.resolve().as_uri()),
        "stations": summary.stations,
        "scored_stations": summary.scored_stations,
        "open_correction_tasks": summary.open_tasks,
        "overdue_correction_tasks": summary.overdue_tasks,
        "held_batches": summary.held_batches,
        "failing_validation_runs": summary.failed_runs,
        "entities": summary.entities,
        "pending_reviews": summary.pending_reviews,
        "deliveries": summary.deliveries,
        "pages": summary.pages,
        "build_seconds": round(summary.seconds, 2),
    }
    if summary.average_score is not None:
        metadata["average_score"] = round(summary.average_score, 2)
    metadata["link_precision"] = describe_precision(summary.link_precision)  # "too few judgements (n of 30 needed)"
    return dg.MaterializeResult(metadata=metadata)


def report_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    """The report after what it shows: each type's change events, the data-quality pass (scores,
    validation results, correction tasks) and the subscribers' feeds (their audit log is the
    access page)."""
    deps = [*(dg.AssetKey(f"{t.name}_change_events") for t in registry),
            dg.AssetKey("data_quality"), dg.AssetKey("subscriber_feeds")]

    @dg.asset(
        name="audit_report",
        group_name="report",
        deps=deps,
        kinds={"html", "plotly"},
        automation_condition=AFTER_UPSTREAM,
        description="The auditors' static HTML report: station scorecards and trends, failing expectations, "
                    "correction tasks, linkage quality and the access log. Opens from disk, offline.",
        pool=PUBLICATION_POOL,
    )
    def audit_report(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
        return _build_report(context, project)

    return [audit_report]


def report_path(result: dg.ExecuteInProcessResult) -> str | None:
    """The index.html an in-process run of the report asset wrote (for `enteronce run` to print)."""
    for event in result.asset_materializations_for_node("audit_report"):
        path = event.metadata.get("path")
        if path is not None:
            return str(path.value)
    return None
