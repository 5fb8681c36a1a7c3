"""The auditors' report: a static HTML site built from warehouse frames (see site.py)."""

from quality.report.site import ReportSummary, build_report, station_file

__all__ = ["ReportSummary", "build_report", "station_file"]
