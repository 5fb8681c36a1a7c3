"""`enteronce simulate`, `check-config`, `migrate`, `run` and `quarantine`: the network, the
config and the pipeline run. Registered on the app by pipelines/cli.py (`register(app)`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import polars as pl
import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import EnteronceError
from pipelines.cli_common import (
    ConfigOpt,
    WarehouseOpt,
    _fail,
    _load,
    _simulate,
    _user_error,
    console,
    err_console,
)
from pipelines.project import DEMO_DIR, DEMO_SIZE, Project, default_config_dir


def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the network into.")] = DEMO_DIR,
    stations: Annotated[int, typer.Option(min=1, help="Number of stations.")] = DEMO_SIZE["stations"],
    persons: Annotated[int, typer.Option(min=1, help="Number of true persons.")] = DEMO_SIZE["persons"],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = DEMO_SIZE["seed"],
    sql_url: Annotated[Optional[str], typer.Option(help="Put SQL stations' tables here (default SQLite).")] = None,
) -> None:
    """Write a synthetic station network: exports, stations.yaml and truth.csv."""
    try:
        summary = _simulate(out, stations, persons, seed, sql_url)
    except EnteronceError as exc:
        _fail(str(exc))
    console.print(f"[green]wrote[/] {out}/: {summary}")


def check_config(
    config: ConfigOpt = None,
    deep: Annotated[bool, typer.Option(help="Also open every source and read a sample: mapped headers, encoding, "
                                            "local ids, dates (nothing is loaded).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Validate the project folder's config files, and read a sample of every source, without moving
    any data. Exits with 1 when a source cannot be read as configured."""
    from connectors.probe import probe_station

    try:
        project = Project.load(config or default_config_dir())
    except EnteronceError as exc:
        _fail(str(exc))
    n_sources = sum(len(s.sources) for s in project.stations.stations)
    probes = [p for st in project.stations.stations for p in probe_station(st, project.config_dir)] if deep else []
    failed = [p for p in probes if not p.ok]
    if as_json:
        print(json.dumps({"config_dir": str(project.config_dir), "stations": len(project.station_ids),
                          "sources": n_sources, "deep": deep, "ok": not failed,
                          "probes": [p.as_dict() for p in probes]}, ensure_ascii=False, indent=2))
    else:
        if probes:
            table = Table(title="Sources, read on a sample")
            for col in ("station", "source", "kind", "files", "encoding", "rows sampled", "status"):
                table.add_column(col, justify="right" if col in ("files", "rows sampled") else "left")
            for p in probes:
                status = "[red]error[/]" if not p.ok else "[yellow]warning[/]" if p.findings else "[green]ok[/]"
                table.add_row(p.station_id, p.source, p.kind, str(p.files), p.encoding or "-", f"{p.rows_sampled:,}",
                              status)
            console.print(table)
            for p in probes:
                for f in p.findings:
                    where = ", ".join(x for x in (f.file, f"column {f.column!r}" if f.column else None) if x)
                    colour = "red" if f.level == "error" else "yellow"
                    console.print(f"  [{colour}]{f.level}[/] {p.station_id}/{p.source}: {where}: {f.problem}",
                                  highlight=False)
        verdict = "[red]failed[/]" if failed else "[green]ok[/]"
        console.print(f"{verdict}: {len(project.station_ids)} stations, {n_sources} sources in {project.config_dir}"
                      + (f"; {len(failed)} source(s) cannot be read as configured" if failed else ""))
    if failed:
        raise typer.Exit(1)


def migrate(config: ConfigOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Bring the warehouse schema to the latest version (Alembic)."""
    try:
        project = Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))
    store = project.open_warehouse()
    console.print(f"[green]warehouse at head[/]: {store.display_url}")


def run(
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    station: Annotated[Optional[list[str]], typer.Option("--station", "-s", help="Only these stations.")] = None,
    wait: Annotated[bool, typer.Option(help="If another run holds the warehouse, wait for it (else exit with 3).")] = True,
) -> None:
    """Materialise every asset for the project, in-process, and print a summary."""
    from pipelines.report_assets import report_path
    from pipelines.runner import stations_with_work
    from warehouse import Warehouse

    project, station_ids = _project_and_stations(config, warehouse, station)
    console.print(
        f"enteronce run: {len(station_ids)} stations from {project.config_dir}, "
        f"warehouse {Warehouse(project.warehouse_url).display_url}"
    )
    try:
        to_run = station_ids if station else stations_with_work(project, station_ids)
    except EnteronceError as exc:
        _fail(str(exc))
    if len(to_run) < len(station_ids):
        console.print(f"{len(to_run)} of {len(station_ids)} stations have new drops or unvalidated batches; the "
                      "others are not run (`--station ID` runs a station regardless)", highlight=False)
    started = dt.datetime.now(dt.timezone.utc)
    outcome = _materialize_with_progress(project, to_run, wait)
    if outcome.error or outcome.crash:
        _end_failed_run(project, station_ids, started, outcome)
    failed = _print_summary(project.open_warehouse(), station_ids, started, outcome.results, project)
    report = report_path(outcome.results[-1]) if outcome.results else None
    if report:
        console.print(f"Audit report: [bold]{report}[/] (open it in a browser)")
    if failed:
        raise typer.Exit(1)


@dataclass
class _RunOutcome:
    """What materialising the project gave: the runs that completed, and what stopped it."""

    results: list
    error: tuple[str, int] | None = None  # a failed step said to the user, and the exit code
    crash: BaseException | None = None  # an unexpected error, re-raised after the summary


def _project_and_stations(config: Path | None, warehouse: str | None,
                          station: list[str] | None) -> tuple[Project, list[str]]:
    """The project, and the stations to run (all of stations.yaml, or those asked for, which must be in it)."""
    try:
        project = _load(config, warehouse)
        station_ids = station or project.station_ids
        unknown = sorted(set(station_ids) - set(project.station_ids))
        if unknown:
            _fail(f"unknown station id(s) {unknown}; stations.yaml has {len(project.station_ids)}")
    except EnteronceError as exc:
        _fail(str(exc))
    return project, station_ids


_STEP_LABELS = {"resolution": "resolving and publishing", "quality": "validating (Great Expectations)",
                "feeds": "building subscribers' feeds", "feeds again": "delivering the correction tasks",
                "report": "writing the audit report"}


def _materialize_with_progress(project: Project, station_ids: list[str], wait: bool) -> _RunOutcome:
    """Run every asset behind a progress bar (rows ingested, the step running). A busy warehouse
    exits with 3 unless `wait`; a failed step or an error the user can fix is returned as `error`,
    anything else as `crash`, so that the summary is printed either way."""
    from pipelines import progress
    from pipelines.runner import RunFailed, materialize_project
    from warehouse.locks import WarehouseBusy

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("ingesting", total=None)
        progress.set_listener(lambda what, rows: bar.update(task, advance=rows, description=f"ingesting {what}"))

        def on_run(key: str) -> None:
            bar.update(task, description=_STEP_LABELS.get(key, f"ingesting {key}"))

        def on_wait(holders: str) -> None:
            bar.stop()  # a status line that waits must not be overdrawn by the bar
            err_console.print(f"[yellow]waiting[/]: another run holds the warehouse ({holders}); "
                              "this run starts when it ends", highlight=False)
            bar.start()

        try:
            return _RunOutcome(materialize_project(project, station_ids, on_station=on_run, on_wait=on_wait,
                                                   wait=wait))
        except WarehouseBusy as exc:
            _fail(f"not started: {exc}", code=3)
        except EnteronceError as exc:
            return _RunOutcome(getattr(exc, "results", []), error=(str(exc), 1 if isinstance(exc, RunFailed) else 2))
        except Exception as exc:  # noqa: BLE001 - shown as a message when it is the user's to fix
            user = _user_error(exc)
            if user is not None:
                return _RunOutcome([], error=(str(user), 2))
            return _RunOutcome([], crash=exc)
        finally:
            progress.set_listener(None)


def _end_failed_run(project: Project, station_ids: list[str], started: dt.datetime, outcome: _RunOutcome) -> NoReturn:
    """Say what failed, then what the warehouse holds now (stations, holds, checks), then exit
    with the failure's code or re-raise the crash."""
    if outcome.error:
        err_console.print(f"[bold red]error:[/] {outcome.error[0]}", highlight=False)
    try:  # what the warehouse holds now, whatever failed: stations, holds, checks
        _print_summary(project.open_warehouse(), station_ids, started, outcome.results, project)
    except Exception as exc:  # noqa: BLE001 - the first failure is the one to report
        err_console.print(f"[yellow]no summary[/]: {exc}", highlight=False)
    if outcome.crash is not None:
        raise outcome.crash
    raise typer.Exit(outcome.error[1])


def _print_summary(store, station_ids: list[str], started: dt.datetime, results: list, project: Project) -> bool:
    """The stations table, the reconciliation, then every check that failed and what to do about
    it; returns whether anything failed (the exit code says so to scripts)."""
    batches = store.batches(station_ids)
    recon = store.reconciliation(station_ids)
    new = batches.filter(pl.col("started_at") >= started)
    per_station = (
        batches.group_by("station_id")
        .agg(
            pl.len().alias("batches"),
            (pl.col("started_at") >= started).sum().alias("new"),
            (pl.col("status") == "rejected").sum().alias("rejected"),
            pl.col("rows_read").sum(), pl.col("rows_loaded").sum(), pl.col("rows_quarantined").sum(),
            pl.col("rows_unchanged").sum(),
        )
        .sort("station_id")
    )
    table = Table(title="Stations", title_justify="left")
    for col in ("station", "batches", "new", "rejected", "rows read", "loaded", "quarantined", "unchanged"):
        table.add_column(col, justify="left" if col == "station" else "right")
    for row in per_station.iter_rows():
        table.add_row(*(str(v) if isinstance(v, str) else f"{v:,}" for v in row))
    console.print(table)
    tot = batches.select(pl.col("rows_read", "rows_loaded", "rows_quarantined", "rows_unchanged").sum()).row(0)
    tot = [v or 0 for v in tot]
    balanced = bool(recon["balanced"].all()) if recon.height else True
    console.print(
        f"[bold]{len(station_ids)} stations, {batches.height} batches ({new.height} new this run, "
        f"{int((batches['status'] == 'rejected').sum())} rejected), rows read {tot[0]:,} = "
        f"loaded {tot[1]:,} + quarantined {tot[2]:,} + unchanged {tot[3]:,}[/]  "
        + ("[green]reconciled[/]" if balanced else "[red]NOT reconciled[/]")
    )
    for row in batches.filter(pl.col("status") == "rejected").iter_rows(named=True):
        console.print(f"  [yellow]rejected drop[/] {row['error']}", highlight=False)
    failed = _print_failed_checks(results)
    held = _print_holds(store, station_ids)
    _print_entities(store, project)
    _print_tasks(store, station_ids, started, project)
    return failed or held or not balanced


def _print_tasks(store, station_ids: list[str], started: dt.datetime, project: Project) -> None:
    """The correction tasks of these stations in one line: what this run opened and closed, what
    is open and overdue, and where the detail is."""
    from quality import supervision
    from quality.config import project_quality
    from warehouse.quality import QualityStore

    tasks = QualityStore(store).supervision_tasks(station_ids)
    if tasks.height == 0:
        return
    now = dt.datetime.now(dt.timezone.utc)
    sla = project_quality(project.config_dir).tasks_sla_days
    totals = supervision.network_totals(supervision.station_summary(tasks, now, sla), tasks)
    since = started.astimezone(dt.timezone.utc) if started.tzinfo else started.replace(tzinfo=dt.timezone.utc)
    opened = int((tasks["opened_at"] >= since).sum())
    closed = int((tasks["closed_at"] >= since).sum())
    overdue = f"[red]{totals['overdue']:,} overdue[/]" if totals["overdue"] else "none overdue"
    stations = tasks.filter(pl.col("status") == "open")["station_id"].n_unique()
    console.print(f"[bold]correction tasks[/]: {totals['open']:,} open at {stations:,} station(s), {overdue} (over {sla:g} days); this run opened {opened:,} and closed {closed:,} "
                  "(see `enteronce tasks`, `enteronce supervision`)", highlight=False)


def _print_holds(store, station_ids: list[str]) -> bool:
    """Every batch of these stations still held from publication, whether this run held it or an
    earlier one did: station, batch, what it measured against which threshold, how many records
    stay out of resolution and publication, since when, and how to let it through."""
    import sqlalchemy as sa

    from warehouse.quality import QualityStore

    held = QualityStore(store).held(station_ids)
    if held.height == 0:
        return False
    with store.engine.connect() as conn:
        records = sum(int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
            t.c.station_id.in_(station_ids))) or 0) for t in store.record_tables.values())
    kept = int(held["records"].sum())
    share = f" ({kept / records:.1%} of {records:,} records)" if records else ""
    console.print(f"[bold red]{held.height} held batch(es)[/] of {held['station_id'].n_unique()} station(s): "
                  f"{kept:,} records{share} are not resolved or published", highlight=False)
    for r in held.iter_rows(named=True):
        measured = (f"rate {r['rate']:.1%} > threshold {r['threshold']:.1%}" if r["rate"] is not None
                    and r["threshold"] is not None else "no rate")
        since = f"{r['held_at']:%Y-%m-%d %H:%M} UTC" if r["held_at"] else "-"
        console.print(f"  [red]held[/] station {r['station_id']} batch {r['batch_id']} ({r['entity_type'] or '?'}): "
                      f"{measured}, {r['records']:,} records held back since {since}; reason: {r['reason']}",
                      highlight=False, soft_wrap=True)
    console.print("  to publish a held batch once its data is accepted or fixed at the station: "
                  "`enteronce holds --release BATCH`, then `enteronce run` (or let the hub's daemon do it)",
                  highlight=False, soft_wrap=True)
    return True


def _print_failed_checks(results: list) -> bool:
    """Checks of ERROR severity that failed in this run (a held batch, a rejected drop), with
    the reason from their metadata: the same red the UI shows."""
    failed = False
    for result in results:
        station = result.dagster_run.tags.get("dagster/partition")
        for ev in result.get_asset_check_evaluations():
            if ev.passed or ev.severity != ev.severity.ERROR:
                continue
            failed = True
            meta = {k: v.value for k, v in ev.metadata.items()}
            why = meta.get("reason") or meta.get("rejected") or meta.get("unbalanced_batches") or meta
            if ev.check_name == "publishable" and meta.get("held_batches"):
                why = f"{len(meta['held_batches'])} batch(es) held, {meta.get('held_records', 0):,} records (below)"
            where = f"station {station} " if station else ""
            console.print(f"  [red]failed check[/] {where}{ev.asset_key.to_user_string()} {ev.check_name}: {why}",
                          highlight=False, soft_wrap=True)
    if failed:
        console.print("  held batches: `enteronce holds` (release with `enteronce holds --release BATCH`); "
                      "rejected drops: `enteronce quarantine`", highlight=False)
    return failed


def _print_entities(store, project: Project) -> None:
    for etype in project.pipeline_types:
        entity = etype.name
        rs = store.resolution_store(entity, etype.record_table)
        members = rs.membership()
        if members.height == 0:
            continue
        entities = members["entity_id"].n_unique()
        linked = members.group_by("entity_id").len().filter(pl.col("len") > 1).height
        console.print(
            f"[bold]{entity}s[/]: {members.height:,} records -> {entities:,} entities "
            f"({linked:,} seen at more than one record), {len(rs.review_queue()):,} pairs awaiting review"
        )
    last = store.max_event_seq()
    if last:
        console.print(f"change events in the outbox: {last:,} (see `enteronce events --last 10`)")


def quarantine(
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    station: Annotated[Optional[list[str]], typer.Option("--station", "-s")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """List quarantined rows with their reason and original text."""

    try:
        project = Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))
    rows = project.open_warehouse().quarantine_rows(station, limit=limit)
    table = Table(title=f"Quarantine (first {limit})", title_justify="left")
    for col in ("batch", "row", "field", "reason", "original"):
        table.add_column(col, overflow="fold")
    for r in rows.iter_rows(named=True):
        table.add_row(r["batch_id"], str(r["row_number"] or "-"), r["field"] or "-", r["reason"],
                      (r["stored_path"] and f"kept at {r['stored_path']}") or r["original"][:200])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(simulate)
    app.command("check-config")(check_config)
    app.command()(migrate)
    app.command()(run)
    app.command()(quarantine)
