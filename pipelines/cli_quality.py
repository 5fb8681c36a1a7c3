"""`enteronce validate`, `enteronce tasks`, `enteronce holds`, `enteronce supervision`: data quality from the command line.

`register(app)` is called by pipelines/cli.py, which assembles the app; shared helpers come from
pipelines/cli_common.py. The auditors' `report` command lives in pipelines/cli_report.py.
"""


from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table


def register(app: typer.Typer) -> None:
    from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console, holding
    from pipelines.project import Project, default_config_dir

    def _open(config: Path | None, warehouse: str | None):
        from core.errors import EnteronceError
        from quality.config import project_quality
        from warehouse.quality import QualityStore

        try:
            project = Project.load(config or default_config_dir(), warehouse)
            settings = project_quality(project.config_dir)
        except EnteronceError as exc:
            _fail(str(exc))
        store = project.open_warehouse()
        return project, settings, QualityStore(store)

    @app.command()
    def validate(
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
        station: Annotated[Optional[list[str]], typer.Option("--station", "-s", help="Only these stations.")] = None,
    ) -> None:
        """Run the expectation suites (Great Expectations) on every batch not validated yet, then the
        golden and freshness suites and the correction-task pass; print each station's latest results."""
        from quality.scorecards import ranking
        from quality.service import quality_pass, validate_station
        from quality.validate import gx_project

        project, settings, store = _open(config, warehouse)
        station_ids = station or project.station_ids
        unknown = sorted(set(station_ids) - set(project.station_ids))
        if unknown:
            _fail(f"unknown station id(s) {unknown}; stations.yaml has {len(project.station_ids)}")
        gx = gx_project(project.data_dir / "quality")
        with holding(store.store, "validate"), console.status("validating (Great Expectations)"):
            held = []
            opened = closed = 0
            for sid in station_ids:
                outcome = validate_station(store, gx, settings, sid, types=project.entity_types)
                held += outcome.held
                opened, closed = opened + outcome.tasks_opened, closed + outcome.tasks_closed
            final = quality_pass(store, gx, settings, types=project.pipeline_types)
        runs = store.runs(station_ids)
        latest = (runs.sort("started_at").group_by("station_id", "suite", maintain_order=True).last()
                  .sort("station_id", "suite"))
        table = Table(title="Latest validation per station and suite", title_justify="left")
        for col in ("station", "suite", "batch", "expectations", "met", "result"):
            table.add_column(col, overflow="fold", justify="right" if col in ("expectations", "met") else "left")
        for r in latest.iter_rows(named=True):
            table.add_row(r["station_id"], r["suite"], r["batch_id"] or "-", str(r["evaluated"]), str(r["successful"]),
                          "[green]pass[/]" if r["success"] else "[yellow]fail[/]")
        console.print(table)
        ranked = ranking(store.scores(station_ids), store.batch_order())
        if ranked.height:
            rank_table = Table(title="Station ranking (latest scores, 0-100)", title_justify="left")
            for col in ranked.columns:
                rank_table.add_column(col.replace("_id", ""), justify="left" if col == "station_id" else "right")
            for r in ranked.iter_rows():
                rank_table.add_row(*("-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v)) for v in r))
            console.print(rank_table)
        console.print(f"tasks opened {opened + final.tasks_opened}, closed {closed + final.tasks_closed}; "
                      f"batches newly held: {len(held)}")
        for h in held:
            console.print(f"  [yellow]held[/] {h['batch_id']}: {h['reason']}", highlight=False)
        if final.data_docs:
            console.print(f"Great Expectations Data Docs: {final.data_docs}")

    @app.command()
    def tasks(
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
        station: Annotated[Optional[list[str]], typer.Option("--station", "-s", help="Only these stations.")] = None,
        status: Annotated[Optional[str], typer.Option(help="open or closed.")] = None,
        limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    ) -> None:
        """Correction tasks routed to stations: the record, the field, the station's value and the
        expected one, why, the evidence behind it, and whether it is still open."""
        if status not in (None, "open", "closed"):
            _fail(f"--status: expected open or closed, got {status!r}")
        _, _, store = _open(config, warehouse)
        frame = store.tasks(station_ids=station, status=status)
        counts = frame.group_by("status").len().sort("status")
        table = Table(title=f"Correction tasks (first {min(limit, frame.height)} of {frame.height})", title_justify="left")
        for col in ("station", "record", "field", "station value", "expected", "reason", "evidence", "status",
                    "opened", "closed"):
            table.add_column(col, overflow="fold")
        for r in frame.head(limit).iter_rows(named=True):
            table.add_row(r["station_id"], r["record_key"], r["field"], r["station_value"] or "-",
                          r["expected_value"] or "-", r["reason"], r.get("evidence") or "-", r["status"],
                          f"{r['opened_at']:%Y-%m-%d %H:%M}", f"{r['closed_at']:%Y-%m-%d %H:%M}" if r["closed_at"] else "-")
        console.print(table)
        console.print(", ".join(f"{s}: {n}" for s, n in counts.iter_rows()) or "no tasks")

    @app.command()
    def holds(
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
        release: Annotated[Optional[str], typer.Option(help="Release this batch id: it is resolved and published (by the daemon, or the next run).")] = None,
    ) -> None:
        """Batches held back from publication, and why; `--release BATCH` lets one through."""
        project, _, store = _open(config, warehouse)
        if release is not None:
            from pipelines.instance import announce

            if not store.release(release):
                _fail(f"batch {release!r} is not held")
            batch = store.batch_order().filter(pl.col("batch_id") == release).row(0, named=True)
            announce(project, f"{batch['entity_type']}_records", partition=batch["station_id"],
                     description=f"batch {release} released from its hold", metadata={"released_batch": release})
            console.print(f"released {release}: with the hub running its daemon resolves and publishes it; "
                          "otherwise the next `enteronce run` does")
            return
        frame = store.held(active_only=False)
        table = Table(title="Held batches", title_justify="left")
        for col in ("batch", "station", "reason", "rate / threshold", "records", "held", "released"):
            table.add_column(col, overflow="fold", justify="right" if col == "records" else "left")
        for r in frame.iter_rows(named=True):
            measured = (f"{r['rate']:.1%} / {r['threshold']:.1%}" if r["rate"] is not None and r["threshold"] is not None
                        else "-")
            table.add_row(r["batch_id"], r["station_id"], r["reason"], measured, f"{r['records']:,}",
                          f"{r['held_at']:%Y-%m-%d %H:%M}",
                          f"{r['released_at']:%Y-%m-%d %H:%M}" if r["released_at"] else "-")
        console.print(table)
        active = frame.filter(pl.col("released_at").is_null())
        console.print(f"{active.height} held, {int(active['records'].sum()):,} records not published"
                      + ("; release one with `enteronce holds --release BATCH`" if active.height else ""))

    @app.command()
    def supervision(
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
        station: Annotated[Optional[list[str]], typer.Option("--station", "-s", help="Only these stations.")] = None,
        sla_days: Annotated[Optional[float], typer.Option("--sla-days", min=0.001, help="Overdue after this many days (default: tasks_sla_days in quality.yaml).")] = None,
        weeks: Annotated[int, typer.Option(help="ISO weeks of the trend to show.", min=1)] = 8,
        limit: Annotated[int, typer.Option(help="Stations shown on a terminal (piped or --json: all).", min=1)] = 25,
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    ) -> None:
        """Supervision of the work (工作实时监督): per station, correction tasks opened, closed, open
        and overdue (open longer than tasks_sla_days), the median time to close, ranked by overdue
        and open tasks; and tasks opened and closed per ISO week."""
        import datetime as dt
        import json
        import sys

        from quality import supervision as sv

        _, settings, store = _open(config, warehouse)
        sla = sla_days or settings.tasks_sla_days
        now = dt.datetime.now(dt.timezone.utc)
        tasks = store.supervision_tasks(station)
        try:
            summary = sv.station_summary(tasks, now, sla, list(station) if station else None)
            ranked, totals = sv.ranking(summary), sv.network_totals(summary, tasks)
            trend = sv.weekly_trend(tasks, now, by_station=False, weeks=weeks)
        finally:
            store.store.dispose()
        if as_json:
            doc = {"now": now.isoformat(), "sla_days": sla, "totals": totals,
                   "stations": ranked.to_dicts(), "weeks": trend.with_columns(pl.col("week_start").cast(pl.String))
                   .drop("station_id").to_dicts()}
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
            return

        def days(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        cols = ("rank", "station", "overdue", "open", "opened", "closed", "median days to close", "oldest open (days)")
        rows = [(str(r["rank"]), r["station_id"], str(r["overdue"]), str(r["open"]), str(r["opened"]),
                 str(r["closed"]), days(r["median_close_days"]), days(r["oldest_open_days"]))
                for r in ranked.iter_rows(named=True)]
        headline = (f"overdue (open over {sla:g} days): {totals['overdue']} at {totals['stations_overdue']} stations; "
                    f"open {totals['open']}; opened {totals['opened']}, closed {totals['closed']}; "
                    f"median days to close {days(totals['median_close_days'])}")
        if not sys.stdout.isatty():  # piped: every station, tab-separated, nothing cut
            print("\t".join(cols))
            for row in rows:
                print("\t".join(row))
            print("week\tweek_start\topened\tclosed")
            for w in trend.iter_rows(named=True):
                print(f"{w['week']}\t{w['week_start']}\t{w['opened']}\t{w['closed']}")
            print(headline)
            return
        table = Table(title=f"Stations by overdue and open correction tasks (first {min(limit, len(rows))} of "
                            f"{len(rows)})", title_justify="left")
        for col in cols:
            table.add_column(col, justify="left" if col == "station" else "right")
        for row in rows[:limit]:
            style = "yellow" if row[2] != "0" else None
            table.add_row(*row, style=style)
        console.print(table)
        week_table = Table(title=f"Tasks per ISO week (last {weeks})", title_justify="left")
        for col in ("week", "from", "opened", "closed"):
            week_table.add_column(col, justify="right" if col in ("opened", "closed") else "left")
        for w in trend.iter_rows(named=True):
            week_table.add_row(w["week"], str(w["week_start"]), str(w["opened"]), str(w["closed"]))
        console.print(week_table)
        console.print(headline, highlight=False)
