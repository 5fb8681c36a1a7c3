"""The report from a warehouse: read its frames (warehouse.reports), write the site (site.py).

The one function the CLI, `enteronce run` and the Dagster asset call, so that all three build the
same report.
"""

from __future__ import annotations

from pathlib import Path

from quality.report.site import ReportSummary, build_report
from warehouse.reports import read_report_frames
from warehouse.store import Warehouse


def write_report(store: Warehouse, out_dir: Path | str, *, sla_days: float | None = None) -> ReportSummary:
    """Build the auditors' site for everything in `store` into `out_dir`; returns its summary
    (path of index.html, headline figures, build time). `sla_days`: the project's
    `tasks_sla_days` (quality.yaml), when a task counts as overdue."""
    return build_report(Path(out_dir), sla_days=sla_days, **read_report_frames(store))
