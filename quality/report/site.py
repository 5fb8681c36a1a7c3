"""Write the auditors' report as a static site: frames in, HTML files out.

The site is plain files (open `index.html` from disk, copy the folder anywhere, no server):
`index.html` (overview and ranking), `stations/<id>.html` (one per station), `linkage.html`,
`access.html`, `datadocs.html` (links to Great Expectations' Data Docs), `assets/` (CSS, the one
local copy of plotly.js and charts.js, which draws the figures). Templates are Jinja2 with
autoescaping, so every value from stations' data (names, sample values, reasons) is escaped; every
page carries a Content-Security-Policy (REPORT_CSP) that runs scripts only from `assets/`, never
inline, so a value that did get through could still not run.

Speed matters at 943 stations: each frame is split by station once (`partition_by`), never
filtered per station, and the templates are compiled once.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from quality import supervision
from quality.config import QualityConfig
from quality.report import charts, model

ASSETS = "assets"
# Scripts only from the site's own files (plotly.min.js, charts.js): no inline script, no event
# handler, nothing remote. Inline styles stay allowed because plotly.js adds <style> rules and
# style attributes as it draws (it cannot run under a strict style-src); styles cannot run code.
REPORT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "font-src 'self' data:; base-uri 'none'; form-action 'none'")
# Tables other parts of the hub add (quality: migration 0006; feeds: 0004); the report works without them.
OPTIONAL_TABLES = ("validation_runs", "validation_results", "station_scores", "correction_tasks", "batch_holds",
                   "feed_deliveries")
NO_DURATIONS = {"closed_median_days": None, "closed_max_days": None, "open_median_days": None,
                "open_max_days": None}
STATION_DIR = "stations"
# quality.yaml's default `tasks_sla_days`: a task open longer is overdue (quality.supervision)
DEFAULT_SLA_DAYS = float(QualityConfig.model_fields["tasks_sla_days"].default)
TREND_WEEKS = 26  # weeks of the supervision trend chart; a station page lists its last STATION_WEEKS
STATION_WEEKS = 8


@dataclass
class ReportSummary:
    """What a build produced, for the CLI and for Dagster metadata."""

    index: Path
    stations: int
    pages: int
    scored_stations: int
    average_score: float | None
    open_tasks: int
    held_batches: int
    failed_runs: int
    entities: int
    pending_reviews: int
    deliveries: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    link_precision: dict | None = None  # model.link_precision: share null with too few judgements
    overdue_tasks: int = 0  # open longer than tasks_sla_days (quality.supervision)
    sla_days: float = DEFAULT_SLA_DAYS


def station_file(station_id: str) -> str:
    """A station's page name: its id where the id is filename-safe, else a percent-encoded form."""
    safe = re.sub(r"[^A-Za-z0-9._-]", lambda m: "%" + "%".join(f"{b:02X}" for b in m.group().encode()), station_id)
    return f"{safe}.html"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("quality.report", "templates"),
                      autoescape=select_autoescape(["html"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(value=_value, num=_num, score=_score, pct=_pct, days=_days, ts=_ts, grade=_grade,
                       station_href=lambda sid: quote(station_file(sid)))
    return env


def _value(v) -> str:
    """A station's value as shown: a missing one says so rather than printing None."""
    return "(empty)" if v is None or v == "" else str(v)


def _num(v) -> str:
    return "—" if v is None else f"{int(v):,}"


def _score(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def _pct(v, digits: int = 1) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f} %"


def _days(v) -> str:
    if v is None:
        return "—"
    return f"{v * 24:.1f} h" if v < 1 else f"{v:.1f} d"


def _ts(v) -> str:
    return "—" if v is None else v.strftime("%Y-%m-%d %H:%M")


def _grade(v) -> str:
    if v is None:
        return "none"
    return "good" if v >= 90 else "fair" if v >= 70 else "poor"


def _by_station(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    if frame.height == 0:
        return {}
    return {key[0]: part for key, part in frame.filter(pl.col("station_id").is_not_null())
            .partition_by("station_id", as_dict=True, maintain_order=True).items()}


def _data_docs(runs: pl.DataFrame, page_dir: Path) -> tuple[list[dict], list[str]]:
    """Links (relative to the page) to the Data Docs that validation runs recorded, and the
    recorded paths that are no longer on disk."""
    links, missing, seen = [], [], set()
    for row in runs.filter(pl.col("data_docs_path").is_not_null()).iter_rows(named=True):
        path = Path(row["data_docs_path"])
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            missing.append(row["data_docs_path"])
            continue
        if path in seen:
            continue
        seen.add(path)
        links.append({"href": Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix(),
                      "suite": row["suite"], "data_asset": row["data_asset"], "entity_type": row["entity_type"],
                      "station_id": row["station_id"], "batch_id": row["batch_id"], "success": row["success"],
                      "started_at": row["started_at"]})
    return links, sorted(set(missing))


def _site_roots(runs: pl.DataFrame) -> list[Path]:
    """The Data Docs sites behind the recorded pages: the nearest folder above each with an index.html."""
    roots: dict[Path, None] = {}
    for value in runs["data_docs_path"].drop_nulls().unique().sort():
        path = Path(value)
        start = path if path.is_dir() else path.parent
        for folder in [start, *start.parents][:6]:
            if (folder / "index.html").is_file():
                roots[folder.resolve()] = None
                break
    return list(roots)


def build_report(
    out_dir: Path | str,
    *,
    stations: pl.DataFrame,
    scores: pl.DataFrame,
    runs: pl.DataFrame,
    failures: pl.DataFrame,
    tasks: pl.DataFrame,
    task_times: pl.DataFrame,
    holds: pl.DataFrame,
    linkage: pl.DataFrame,
    cluster_sizes: pl.DataFrame,
    judged: pl.DataFrame,
    subscribers: pl.DataFrame,
    field_policies: pl.DataFrame,
    recent_deliveries: pl.DataFrame,
    available: pl.DataFrame | None = None,
    refused: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
    sla_days: float | None = None,
) -> ReportSummary:
    """Write the site into `out_dir` (created; pages from an earlier build are replaced, and
    station pages of stations no longer present are removed). Frames are those of
    warehouse.reports.read_report_frames; `available` says which optional tables exist, so that a
    page can tell "not built yet" from "nothing happened". `sla_days` is quality.yaml's
    `tasks_sla_days` (overdue correction tasks; default DEFAULT_SLA_DAYS)."""
    started = dt.datetime.now(dt.timezone.utc)
    now = now or started
    sla_days = float(sla_days or DEFAULT_SLA_DAYS)
    out = Path(out_dir)
    station_dir = _prepare_site(out, stations["station_id"])
    tables, missing_tables = _present_tables(available)
    table = model.station_table(stations, scores, runs, failures, task_times, holds)
    watch = _supervision_view(stations, task_times, now, sla_days)
    active_holds = model.held_batches(holds)
    totals = _network_totals(stations, table, runs, task_times, active_holds, linkage, subscribers, watch, sla_days)
    precision = model.precision_estimates(judged)
    headline_precision = model.link_precision(precision)  # None, or too few judgements, or an estimate
    pages = _Pages(_environment(), {"generated_at": now, "missing_tables": missing_tables, "tables": tables,
                                    "dimensions": model.DIMENSIONS, "csp": Markup(REPORT_CSP)})

    _write_overview(pages, out, table, totals, active_holds, headline_precision, runs)
    _write_station_pages(pages, station_dir, table, scores=scores, runs=runs, failures=failures, tasks=tasks,
                         holds=holds, task_times=task_times, watch=watch, now=now, sla_days=sla_days)
    _write_supervision(pages, out, task_times, watch, now, sla_days)
    _write_linkage(pages, out, linkage, precision, cluster_sizes, judged, refused, totals)
    _write_access(pages, out, subscribers, field_policies, recent_deliveries, totals)
    _write_data_docs(pages, out, runs)

    seconds = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    return ReportSummary(
        index=out / "index.html", stations=stations.height, pages=pages.count, scored_stations=totals["scored"],
        average_score=totals["average"], open_tasks=totals["open_tasks"], held_batches=totals["held"],
        failed_runs=totals["failed_runs"], entities=totals["entities"], pending_reviews=totals["pending_reviews"],
        deliveries=totals["deliveries"], seconds=seconds, overdue_tasks=totals["overdue_tasks"], sla_days=sla_days,
        notes=[f"table {t} not in the warehouse yet" for t in missing_tables],
        link_precision=headline_precision,
    )


class _Pages:
    """Renders the templates with what every page shows (generated_at, missing tables, the CSP)
    and counts the pages written, for the summary."""

    def __init__(self, env: Environment, common: dict):
        self.env = env
        self.common = common
        self.count = 0

    def write(self, path: Path, template: str, **context) -> None:
        path.write_text(self.env.get_template(template).render(**self.common, **context), encoding="utf-8")
        self.count += 1


@dataclass
class _Supervision:
    """Who is behind on their correction tasks (quality.supervision), computed once for the
    overview's totals, the station pages and the supervision page."""

    ranked: pl.DataFrame  # one row per station, most overdue first, with the station's name
    totals: dict


def _prepare_site(out: Path, station_ids: pl.Series) -> Path:
    """Create the site's folders, drop pages of stations no longer in the warehouse, copy the
    assets; returns the station pages' folder."""
    station_dir = out / STATION_DIR
    station_dir.mkdir(parents=True, exist_ok=True)
    # Pages of stations no longer in the warehouse go; the others are overwritten in place
    # (deleting 943 files first costs seconds on some file systems).
    keep = {station_file(sid) for sid in station_ids}
    for stale in station_dir.glob("*.html"):
        if stale.name not in keep:
            stale.unlink()
    assets = out / ASSETS
    charts.install_plotly(assets)
    with resources.as_file(resources.files("quality.report") / "static" / "report.css") as css:
        shutil.copyfile(css, assets / "report.css")
    return station_dir


def _present_tables(available: pl.DataFrame | None) -> tuple[set[str], list[str]]:
    """The optional tables present and those missing; without `available`, all are taken as present."""
    if available is None:
        return set(OPTIONAL_TABLES), []
    return set(available.filter(pl.col("present"))["table"]), available.filter(~pl.col("present"))["table"].to_list()


def _supervision_view(stations: pl.DataFrame, task_times: pl.DataFrame, now: dt.datetime,
                      sla_days: float) -> _Supervision:
    watch = supervision.station_summary(task_times, now, sla_days, stations["station_id"].to_list())
    ranked = supervision.ranking(watch).join(stations.select("station_id", "name"), on="station_id",
                                             how="left", maintain_order="left")
    return _Supervision(ranked, supervision.network_totals(watch, task_times))


def _network_totals(stations: pl.DataFrame, table: pl.DataFrame, runs: pl.DataFrame, task_times: pl.DataFrame,
                    active_holds: pl.DataFrame, linkage: pl.DataFrame, subscribers: pl.DataFrame,
                    watch: _Supervision, sla_days: float) -> dict:
    """The network's headline counts, shown on the overview, linkage and access pages and
    returned in the summary."""
    return {
        "stations": stations.height, "scored": int(table["score"].drop_nulls().len()),
        "average": table["score"].mean() if table.height else None,
        "open_tasks": int((task_times["status"] == "open").sum()),
        "closed_tasks": int((task_times["status"] == "closed").sum()),
        "held": active_holds.height, "held_records": int(active_holds["records"].sum() or 0),
        "runs": runs.height, "failed_runs": int((~runs["success"]).sum()) if runs.height else 0,
        "entities": int(linkage["entities_active"].sum()) if linkage.height else 0,
        "records": int(linkage["records"].sum()) if linkage.height else 0,
        "match_pairs": int(linkage["match_pairs"].sum()) if linkage.height else 0,
        "pending_reviews": int(linkage["pending_reviews"].sum()) if linkage.height else 0,
        "deliveries": int(subscribers["deliveries"].sum()) if subscribers.height else 0,
        "subscribers": subscribers["subscriber_id"].n_unique() if subscribers.height else 0,
        "overdue_tasks": watch.totals["overdue"], "stations_overdue": watch.totals["stations_overdue"],
        "sla_days": sla_days,
    }


def _write_overview(pages: _Pages, out: Path, table: pl.DataFrame, totals: dict, active_holds: pl.DataFrame,
                    headline_precision: dict | None, runs: pl.DataFrame) -> None:
    """index.html: the network's totals, the ranking, score charts and the held batches."""
    averages = model.dimension_averages(table)
    histogram = model.score_histogram(table)
    overview_charts = {}
    if totals["scored"]:
        overview_charts["histogram"] = charts.bar(
            "chart-score-histogram", histogram["label"].to_list(), histogram["stations"].to_list(),
            title="Stations by overall score", x_title="score band", y_title="stations")
        overview_charts["dimensions"] = charts.dimension_bars(
            "chart-dimension-averages", averages, title="Network average per dimension")
    pages.write(out / "index.html", "index.html", page="index", root="", totals=totals, table=table.to_dicts(),
                averages=averages.to_dicts(), charts=overview_charts, holds=active_holds.to_dicts(),
                precision=headline_precision, docs_roots=len(_site_roots(runs)))


def _write_station_pages(pages: _Pages, station_dir: Path, table: pl.DataFrame, *, scores: pl.DataFrame,
                         runs: pl.DataFrame, failures: pl.DataFrame, tasks: pl.DataFrame, holds: pl.DataFrame,
                         task_times: pl.DataFrame, watch: _Supervision, now: dt.datetime, sla_days: float) -> None:
    """stations/<id>.html, one per station. Every frame is split by station once (the trend
    lines of all stations in one pass), never filtered per station: 943 filters of each frame
    would cost more than the pages."""
    durations = model.task_durations(task_times, now)
    ordered_scores = model.trend(scores)
    own_watch = {r["station_id"]: r for r in watch.ranked.iter_rows(named=True)}
    own_weeks = _by_station(supervision.weekly_trend(task_times, now, weeks=STATION_WEEKS))
    per_station = {"scores": ordered_scores, "runs": runs, "failures": failures, "tasks": tasks, "holds": holds}
    parts = {name: _by_station(frame) for name, frame in per_station.items()}
    dur = {r["station_id"]: r for r in durations.iter_rows(named=True)}
    empty = {name: frame.clear() for name, frame in per_station.items()}
    ranked = table.filter(pl.col("rank").is_not_null()).height
    for row in table.iter_rows(named=True):
        sid = row["station_id"]
        own = {name: parts[name].get(sid, empty[name]) for name in parts}
        trend_html = None
        if own["scores"].height:
            trend_html = charts.trend_chart("chart-trend", own["scores"].to_dicts(),
                                            title=f"{row['name']}: scores across batches")
        failures_rows = [{**f, "samples": model.parse_samples(f["sample_rows"])}
                         for f in own["failures"].iter_rows(named=True)]
        docs, docs_missing = _data_docs(own["runs"], station_dir)
        own_tasks = own["tasks"].to_dicts()
        pages.write(station_dir / station_file(sid), "station.html", page="station", root="../", station=row,
                    ranked=ranked, trend=trend_html, runs=own["runs"].to_dicts(), failures=failures_rows,
                    open_tasks=[t for t in own_tasks if t["status"] == "open"],
                    closed_tasks=[t for t in own_tasks if t["status"] == "closed"],
                    durations=dur.get(sid, NO_DURATIONS), holds=own["holds"].to_dicts(), docs=docs,
                    docs_missing=docs_missing, listed=TASKS_LISTED, watch=own_watch.get(sid),
                    weeks=own_weeks[sid].to_dicts() if sid in own_weeks else [], sla_days=sla_days)


def _write_supervision(pages: _Pages, out: Path, task_times: pl.DataFrame, watch: _Supervision,
                       now: dt.datetime, sla_days: float) -> None:
    """supervision.html: who is behind on their correction tasks, and the network's weekly trend."""
    network_weeks = supervision.weekly_trend(task_times, now, by_station=False, weeks=TREND_WEEKS)
    watch_chart = None
    if network_weeks.height:
        watch_chart = charts.weekly_chart("chart-weekly-tasks", network_weeks,
                                          title="Correction tasks opened and closed per week (network)")
    pages.write(out / "supervision.html", "supervision.html", page="supervision", root="", totals=watch.totals,
                sla_days=sla_days, ranking=watch.ranked.to_dicts(), weeks=network_weeks.to_dicts(),
                chart=watch_chart, weeks_shown=TREND_WEEKS)


def _write_linkage(pages: _Pages, out: Path, linkage: pl.DataFrame, precision: pl.DataFrame,
                   cluster_sizes: pl.DataFrame, judged: pl.DataFrame, refused: pl.DataFrame | None,
                   totals: dict) -> None:
    """linkage.html: entities per type, cluster sizes, precision from judgements, refused links."""
    linkage_chart = None
    if cluster_sizes.height:
        linkage_chart = charts.cluster_chart("chart-cluster-sizes", cluster_sizes,
                                             title="Cluster sizes: entities by number of records")
    pages.write(out / "linkage.html", "linkage.html", page="linkage", root="", linkage=linkage.to_dicts(),
                precision=precision.to_dicts(), chart=linkage_chart, totals=totals,
                refused=refused.to_dicts() if refused is not None else [],
                refused_total=int(linkage["refused_pairs"].sum()) if "refused_pairs" in linkage.columns else 0,
                judged_total=int(judged["pairs"].sum()) if judged.height else 0)


def _write_access(pages: _Pages, out: Path, subscribers: pl.DataFrame, field_policies: pl.DataFrame,
                  recent_deliveries: pl.DataFrame, totals: dict) -> None:
    """access.html: deliveries per subscriber, fields delivered by masking level, recent deliveries."""
    by_level = model.fields_by_level(field_policies)
    access_charts = {}
    if subscribers.height:
        per_sub = subscribers.group_by("subscriber_id", maintain_order=True).agg(pl.col("deliveries").sum())
        access_charts["subscribers"] = charts.bar(
            "chart-deliveries", per_sub["subscriber_id"].to_list(), per_sub["deliveries"].to_list(),
            title="Deliveries per subscriber", x_title="subscriber", y_title="deliveries")
    if by_level.height:
        access_charts["levels"] = charts.level_chart("chart-field-levels", by_level,
                                                     title="Fields delivered (personal data among them), by masking level")
    pages.write(out / "access.html", "access.html", page="access", root="", subscribers=subscribers.to_dicts(),
                by_level=by_level.to_dicts(), recent=recent_deliveries.to_dicts(), charts=access_charts,
                totals=totals, recent_limit=RECENT_DELIVERIES)


def _write_data_docs(pages: _Pages, out: Path, runs: pl.DataFrame) -> None:
    """datadocs.html: the Data Docs sites' own index pages first, then the other recorded pages."""
    docs, docs_missing = _data_docs(runs, out)
    roots = [Path(os.path.relpath(r / "index.html", out.resolve())).as_posix() for r in _site_roots(runs)]
    docs = [d for d in docs if d["href"] not in roots]  # pages other than a site's own index
    pages.write(out / "datadocs.html", "datadocs.html", page="datadocs", root="", docs=docs,
                docs_missing=docs_missing, roots=roots)


# Mirrors of warehouse.reports' limits, so that a page can say "newest 100" when a list is cut.
TASKS_LISTED = 100
RECENT_DELIVERIES = 100
