"""The `enteronce` command line: simulate a network, run the pipeline, inspect what it kept."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.errors import EnteronceError
from pipelines.project import DEMO_DIR, DEMO_SIZE, Project, default_config_dir

app = typer.Typer(
    help="enteronce: enter once, usable everywhere. Master-data hub for a network of stations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or captured output keeps whole lines (paths, messages) instead of folding them at 80 columns.
# Piped or redirected output is for scripts and files: lines are not wrapped and tables are as wide
# as their values (Rich would otherwise fit them to 80 columns and cut values short with "…").
PIPED_WIDTH = 1_000
console = Console(soft_wrap=not sys.stdout.isatty(), width=None if sys.stdout.isatty() else PIPED_WIDTH)
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty(),
                      width=None if sys.stderr.isatty() else PIPED_WIDTH)

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="Project folder with stations.yaml (env ENTERONCE_CONFIG).")
]
WarehouseOpt = Annotated[
    Optional[str], typer.Option("--warehouse", help="SQLAlchemy URL (env ENTERONCE_WAREHOUSE_URL).")
]


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def holding(store, what: str) -> Iterator[None]:
    """Hold the warehouse while a command writes, as pipeline steps do; say so while waiting."""
    from warehouse.locks import warehouse_lock

    def waiting(holders: str) -> None:
        err_console.print(f"[yellow]waiting[/]: the warehouse is busy ({holders}); `enteronce {what}` "
                          "goes on when it is free", highlight=False)

    with warehouse_lock(store.engine, "pipeline", purpose=f"enteronce {what}", on_wait=waiting):
        yield


def _user_error(exc: BaseException) -> EnteronceError | None:
    """Dagster wraps errors raised in assets; find ours so the user sees a message, not a trace."""
    seen = exc
    while seen is not None:
        if isinstance(seen, EnteronceError):
            return seen
        seen = getattr(seen, "user_exception", None) or seen.__cause__
    return None


def _load(config: Path | None, warehouse: str | None) -> Project:
    config_dir = config or default_config_dir()
    if config is None and config_dir == DEMO_DIR and not (config_dir / "stations.yaml").exists():
        console.print(
            f"No config given: simulating the demo network ({DEMO_SIZE['stations']} stations, "
            f"{DEMO_SIZE['persons']:,} persons, seed {DEMO_SIZE['seed']}) into {config_dir}/"
        )
        _simulate(config_dir, DEMO_SIZE["stations"], DEMO_SIZE["persons"], DEMO_SIZE["seed"], None)
    return Project.load(config_dir, warehouse)


def _simulate(out: Path, stations: int, persons: int, seed: int, sql_url: str | None):
    from connectors.simulate import simulate_network

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"simulating: {stage}", completed=done, total=total or None)

        return simulate_network(out, stations=stations, persons=persons, seed=seed, sql_url=sql_url, progress=report)


@app.command()
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


@app.command("check-config")
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


@app.command()
def migrate(config: ConfigOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Bring the warehouse schema to the latest version (Alembic)."""
    try:
        project = Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))
    store = project.open_warehouse()
    console.print(f"[green]warehouse at head[/]: {store.display_url}")


@app.command()
def run(
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    station: Annotated[Optional[list[str]], typer.Option("--station", "-s", help="Only these stations.")] = None,
    wait: Annotated[bool, typer.Option(help="If another run holds the warehouse, wait for it (else exit with 3).")] = True,
) -> None:
    """Materialise every asset for the project, in-process, and print a summary."""
    from pipelines import progress
    from pipelines.report_assets import report_path
    from pipelines.runner import RunFailed, materialize_project
    from warehouse import Warehouse
    from warehouse.locks import WarehouseBusy

    try:
        project = _load(config, warehouse)
        station_ids = station or project.station_ids
        unknown = sorted(set(station_ids) - set(project.station_ids))
        if unknown:
            _fail(f"unknown station id(s) {unknown}; stations.yaml has {len(project.station_ids)}")
    except EnteronceError as exc:
        _fail(str(exc))
    console.print(
        f"enteronce run: {len(station_ids)} stations from {project.config_dir}, "
        f"warehouse {Warehouse(project.warehouse_url).display_url}"
    )
    started = dt.datetime.now(dt.timezone.utc)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} rows"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("ingesting", total=None)
        progress.set_listener(lambda what, rows: bar.update(task, advance=rows, description=f"ingesting {what}"))
        steps = {"resolution": "resolving and publishing", "quality": "validating (Great Expectations)",
                 "feeds": "building subscribers' feeds", "report": "writing the audit report"}

        def on_run(key: str) -> None:
            bar.update(task, description=steps.get(key, f"ingesting {key}"))

        def on_wait(holders: str) -> None:
            bar.stop()  # a status line that waits must not be overdrawn by the bar
            err_console.print(f"[yellow]waiting[/]: another run holds the warehouse ({holders}); "
                              "this run starts when it ends", highlight=False)
            bar.start()

        error: tuple[str, int] | None = None  # a failed step: said, then the summary of what did run
        crash: BaseException | None = None
        try:
            results = materialize_project(project, station_ids, on_station=on_run, on_wait=on_wait, wait=wait)
        except WarehouseBusy as exc:
            _fail(f"not started: {exc}", code=3)
        except EnteronceError as exc:
            results = getattr(exc, "results", [])
            error = (str(exc), 1 if isinstance(exc, RunFailed) else 2)
        except Exception as exc:  # noqa: BLE001 - shown as a message when it is the user's to fix
            user = _user_error(exc)
            results, crash = [], exc
            if user is not None:
                error, crash = (str(user), 2), None
        finally:
            progress.set_listener(None)
    if error or crash:
        if error:
            err_console.print(f"[bold red]error:[/] {error[0]}", highlight=False)
        try:  # what the warehouse holds now, whatever failed: stations, holds, checks
            _print_summary(project.open_warehouse(), station_ids, started, results, project)
        except Exception as exc:  # noqa: BLE001 - the first failure is the one to report
            err_console.print(f"[yellow]no summary[/]: {exc}", highlight=False)
        if crash is not None:
            raise crash
        raise typer.Exit(error[1])
    store = project.open_warehouse()
    failed = _print_summary(store, station_ids, started, results, project)
    report = report_path(results[-1]) if results else None
    if report:
        console.print(f"Audit report: [bold]{report}[/] (open it in a browser)")
    if failed:
        raise typer.Exit(1)


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
        )
        .sort("station_id")
    )
    table = Table(title="Stations", title_justify="left")
    for col in ("station", "batches", "new", "rejected", "rows read", "loaded", "quarantined"):
        table.add_column(col, justify="left" if col == "station" else "right")
    for row in per_station.iter_rows():
        table.add_row(*(str(v) if isinstance(v, str) else f"{v:,}" for v in row))
    console.print(table)
    tot = batches.select(pl.col("rows_read", "rows_loaded", "rows_quarantined").sum()).row(0)
    tot = [v or 0 for v in tot]
    balanced = bool(recon["balanced"].all()) if recon.height else True
    console.print(
        f"[bold]{len(station_ids)} stations, {batches.height} batches ({new.height} new this run, "
        f"{int((batches['status'] == 'rejected').sum())} rejected), rows read {tot[0]:,} = "
        f"loaded {tot[1]:,} + quarantined {tot[2]:,}[/]  "
        + ("[green]reconciled[/]" if balanced else "[red]NOT reconciled[/]")
    )
    for row in batches.filter(pl.col("status") == "rejected").iter_rows(named=True):
        console.print(f"  [yellow]rejected drop[/] {row['error']}", highlight=False)
    failed = _print_failed_checks(results)
    held = _print_holds(store, station_ids)
    _print_entities(store)
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

    from warehouse import schema as s
    from warehouse.quality import QualityStore

    held = QualityStore(store).held(station_ids)
    if held.height == 0:
        return False
    with store.engine.connect() as conn:
        records = sum(int(conn.scalar(sa.select(sa.func.count()).select_from(t).where(
            t.c.station_id.in_(station_ids))) or 0) for t in s.RECORD_TABLES.values())
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


def _print_entities(store) -> None:
    from pipelines.resolution_assets import ENTITY_TYPES

    for entity, (_, table, _) in ENTITY_TYPES.items():
        rs = store.resolution_store(entity, table)
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


@app.command()
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


EntityOpt = Annotated[str, typer.Option("--entity", "-e", help="person or organisation.")]


def _resolution_store(config: Path | None, warehouse: str | None, entity: str):
    from pipelines.resolution_assets import ENTITY_TYPES

    if entity not in ENTITY_TYPES:
        _fail(f"unknown entity type {entity!r}; expected one of {sorted(ENTITY_TYPES)}")
    try:
        project = Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))
    _, table, _ = ENTITY_TYPES[entity]
    store = project.open_warehouse().resolution_store(entity, table)
    return project, store


@app.command()
def resolve(
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    full: Annotated[bool, typer.Option(help="Retrain the model and re-resolve every record.")] = False,
) -> None:
    """Resolve persons and organisations into entities (incremental unless --full)."""
    from entity_resolution.service import run_resolution
    from pipelines.resolution_assets import ENTITY_TYPES

    table = Table(title="Resolution", title_justify="left")
    for col in ("entity type", "mode", "run", "records", "new/changed", "pairs", "matches", "review", "seconds"):
        table.add_column(col, justify="left" if col in ("entity type", "mode") else "right")
    for entity, (_, _, prefix) in ENTITY_TYPES.items():
        project, store = _resolution_store(config, warehouse, entity)
        with holding(store.store, "resolve"), console.status(f"resolving {entity}s ..."):
            summary = run_resolution(store, project.resolution.entities[entity], entity_type=entity,
                                     prefix=prefix, full=full)
        table.add_row(entity, summary.mode, str(summary.seq), f"{summary.records:,}", f"{summary.dirty:,}",
                      f"{summary.pairs:,}", f"{summary.matches:,}", f"{summary.review:,}",
                      f"{sum(summary.timings.values()):.1f}")
    console.print(table)


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option(help="CSV with record_key and the true entity id (e.g. truth.csv).")],
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = "person",
    per_station: Annotated[bool, typer.Option(help="Also one row per station.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="table (for people), json or csv (for scripts).")] = "table",
) -> None:
    """Pairwise precision / recall / F1 and B-cubed figures of the current entities against a truth."""
    if fmt not in ("table", "json", "csv"):
        _fail(f"--format must be table, json or csv, got {fmt!r}")
    from entity_resolution.evaluation import evaluate as evaluate_clusters

    _, store = _resolution_store(config, warehouse, entity)
    if not truth.is_file():
        _fail(f"{truth}: file not found")
    try:
        truth_frame = pl.read_csv(truth, columns=["record_key", "entity_id"], schema_overrides={"record_key": pl.String, "entity_id": pl.String})
    except (pl.exceptions.PolarsError, ValueError) as exc:
        _fail(f"{truth}: expected columns record_key, entity_id ({exc})")
    members = store.membership().select("record_key", pl.col("entity_id").alias("cluster_key"))
    if members.height == 0:
        _fail("no entities yet: run `enteronce run` or `enteronce resolve` first")
    stations = members.select("record_key", pl.col("record_key").str.split(":").list.first().alias("station_id"))
    report = evaluate_clusters(members, truth_frame, by=stations if per_station else None)
    ignored = report.row(0, named=True)
    unclustered = truth_frame.select("record_key").unique().join(members, on="record_key", how="anti")["record_key"]
    held, other = _unclustered_by_cause(store, entity, unclustered.to_list())
    rest = ignored["ignored_not_clustered"] - held - other
    if fmt == "csv":
        sys.stdout.write(report.write_csv())
        return
    if fmt == "json":
        print(json.dumps({"entity_type": entity, "truth": str(truth), "scopes": report.to_dicts(),
                          "not_in_truth": ignored["ignored_not_in_truth"],
                          "truth_without_entity": {"total": ignored["ignored_not_clustered"], "held_by_quality": held,
                                                   "other_entity_types": other, "quarantined_or_not_loaded": rest}},
                         ensure_ascii=False, indent=2, default=str))
        return
    shown = {
        "scope": "scope", "records": "records", "entities": "true", "clusters": "found",
        "pairwise_precision": "pair P", "pairwise_recall": "pair R", "pairwise_f1": "pair F1",
        "bcubed_precision": "B³ P", "bcubed_recall": "B³ R", "bcubed_f1": "B³ F1", "cluster_f1": "exact F1",
    }
    table = Table(title=f"Evaluation of {entity} entities against {truth}", title_justify="left")
    for col, label in shown.items():
        table.add_column(label, justify="left" if col == "scope" else "right")
    for row in report.select(list(shown)).iter_rows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    console.print(f"records not in the truth: {ignored['ignored_not_in_truth']:,}; "
                  f"truth records without an entity: {ignored['ignored_not_clustered']:,} = "
                  f"{held:,} held back by quality (`enteronce holds`) + {other:,} of other entity types + "
                  f"{rest:,} quarantined or never loaded", highlight=False)
    if held:
        console.print(f"[yellow]{held:,} {entity} records in held batches are not scored[/]: they count neither "
                      "for nor against the figures above until released", highlight=False)


def _unclustered_by_cause(rs, entity: str, keys: list[str]) -> tuple[int, int]:
    """Of truth records without an entity: how many are loaded records of `entity` in a batch
    still held from publication, and how many are records of another entity type."""
    import sqlalchemy as sa

    from warehouse import schema as s
    from warehouse.bulk import in_keys

    if not keys:
        return 0, 0
    h = s.batch_holds
    active = sa.select(h.c.batch_id).where(h.c.released_at.is_(None))
    held = other = 0
    with rs.store.engine.connect() as conn:
        for etype, t in s.RECORD_TABLES.items():
            stmt = sa.select(sa.func.count()).select_from(t).where(in_keys(conn, t.c.record_key, keys))
            if etype == entity:
                held += int(conn.scalar(stmt.where(t.c.batch_id.in_(active))) or 0)
            else:
                other += int(conn.scalar(stmt) or 0)
    return held, other


review_app = typer.Typer(help="The review queue: pairs the model could not decide.", no_args_is_help=False,
                         invoke_without_command=True)
app.add_typer(review_app, name="review")


@review_app.callback()
def review_list(
    ctx: typer.Context,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = "person",
    limit: Annotated[int, typer.Option(help="Pairs to show.")] = 20,
    fmt: Annotated[str, typer.Option("--format", help="table (for people) or json (for scripts).")] = "table",
) -> None:
    """List the review queue: pairs refused by the ID guard or a judgement (with the reason)
    first, then the most uncertain pairs."""
    if ctx.invoked_subcommand is not None:
        return
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    _, store = _resolution_store(config, warehouse, entity)
    whole = store.review_queue()
    queue = whole.head(limit)
    if fmt == "json":
        pairs = [{"left_id": r["left_id"], "right_id": r["right_id"], "match_probability": r["match_probability"],
                  "decision": r["decision"], "reason": r["review_reason"], "weights": json.loads(r["weights"])}
                 for r in queue.iter_rows(named=True)]
        print(json.dumps({"entity_type": entity, "pending": whole.height, "pairs": pairs}, ensure_ascii=False))
        return
    table = Table(title=f"Review queue ({entity}): {whole.height} pairs", title_justify="left")
    for col in ("left", "right", "probability", "reason", "weights"):
        table.add_column(col, overflow="fold")
    for row in queue.iter_rows(named=True):
        table.add_row(row["left_id"], row["right_id"], f"{row['match_probability']:.3f}",
                      row["review_reason"] or "undecided score", row["weights"])
    console.print(table)
    console.print("Record a verdict: enteronce review judge LEFT RIGHT same|different --reviewer NAME --reason TEXT")


@review_app.command("judge")
def review_judge(
    left: str,
    right: str,
    verdict: Annotated[str, typer.Argument(help="same or different")],
    reviewer: Annotated[str, typer.Option(help="Who decides.")],
    reason: Annotated[Optional[str], typer.Option(help="Why.")] = None,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = "person",
) -> None:
    """Record a reviewer's judgement; it overrides the model on every later run."""
    if verdict not in ("same", "different"):
        _fail(f"verdict must be 'same' or 'different', got {verdict!r}")
    from pipelines.instance import announce

    project, store = _resolution_store(config, warehouse, entity)
    try:
        store.add_judgement(left, right, verdict, reviewer, reason)
    except ValueError as exc:
        _fail(str(exc))
    announce(project, f"{entity}_scored_pairs", description=f"judgement by {reviewer}: {left} / {right} {verdict}",
             metadata={"left": left, "right": right, "verdict": verdict, "reviewer": reviewer})
    console.print(f"[green]recorded[/]: {left} / {right} are {verdict} ({reviewer}). With the hub running "
                  "its daemon re-resolves and republishes; otherwise the next `enteronce run` does.")


@app.command()
def explain(
    key_a: str,
    key_b: str,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = "person",
) -> None:
    """Why two records match or not: the weight of every comparison under the stored model."""
    from entity_resolution.explain import explain_pair

    project, store = _resolution_store(config, warehouse, entity)
    stored = store.model()
    if stored is None:
        _fail("no trained model yet: run `enteronce resolve` first")
    settings = project.resolution.entities[entity]
    from entity_resolution.service import needed_columns

    records = store.records(needed_columns(settings))
    found = set(records.filter(pl.col(settings.unique_id).is_in([key_a, key_b]))[settings.unique_id].to_list())
    missing = [k for k in (key_a, key_b) if k not in found]
    if missing:
        _fail(f"no {entity} record with key {missing[0]!r}")
    result = explain_pair(records, key_a, key_b, stored[1], settings)
    table = Table(title=f"{key_a} vs {key_b}", title_justify="left")
    for col in ("comparison", "level", "left", "right", "weight (log2)"):
        table.add_column(col, justify="right" if col.startswith("weight") else "left")
    for row in result["comparisons"]:
        table.add_row(row["comparison"], row["level"], str(row["left"]), str(row["right"]), f"{row['weight']:+.2f}")
    table.add_row("prior", "", "", "", f"{result['prior_weight']:+.2f}")
    console.print(table)
    console.print(f"match weight {result['match_weight']:+.2f}, probability {result['match_probability']:.4f}: "
                  f"[bold]{result['decision']}[/]")


@app.command()
def history(
    entity_id: str,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = "person",
) -> None:
    """Every version of a golden record: what changed, and which station's record caused it."""
    _, store = _resolution_store(config, warehouse, entity)
    versions = store.store.golden_store(entity, store.record_table.name).history(entity_id)
    if versions.height == 0:
        _fail(f"no golden record {entity_id!r} for {entity}s")
    table = Table(title=f"History of {entity_id}", title_justify="left")
    for col in ("version", "op", "changed fields", "caused by", "valid from", "valid to"):
        table.add_column(col, overflow="fold")
    for row in versions.iter_rows(named=True):
        sources = ", ".join(f"{s['station_id']} {s['record_key']}" for s in (row["sources"] or []))
        table.add_row(str(row["version"]), row["op"], ", ".join(row["changed_fields"]) or "-", sources or "-",
                      str(row["valid_from"])[:19], str(row["valid_to"] or "current")[:19])
    console.print(table)
    console.print(f"current: {versions['record'][-1]}", highlight=False)


@app.command("events")
def list_events(
    after: Annotated[Optional[int], typer.Option(help="Show events with seq greater than this.")] = None,
    last: Annotated[int, typer.Option(help="Without --after: the last N events.")] = 10,
    limit: Annotated[int, typer.Option(help="How many at most.")] = 50,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """The change-event outbox, in sequence order."""
    from warehouse.golden import events

    try:
        project = Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))
    store = project.open_warehouse()
    if after is None:
        after = max(store.max_event_seq() - last, 0)
    frame = events(store, after=after, limit=limit)
    table = Table(title=f"Change events after seq {after}", title_justify="left")
    for col in ("seq", "op", "entity", "version", "changed fields", "after"):
        table.add_column(col, overflow="fold")
    for row in frame.iter_rows(named=True):
        fields = "(new record)" if row["op"] == "create" else ", ".join(row["changed_fields"]) or "-"
        table.add_row(str(row["seq"]), row["op"], row["entity_id"], str(row["version"]), fields,
                      (row["after"] or "")[:160])
    console.print(table)


# The other command groups live in their own modules; they register here, after every command
# above, because they import helpers from this module.
from pipelines import cli_api, cli_feeds, cli_hub, cli_quality, cli_report  # noqa: E402

for _module in (cli_feeds, cli_api, cli_report, cli_quality, cli_hub):
    _module.register(app)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
