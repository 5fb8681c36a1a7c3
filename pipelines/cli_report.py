"""`enteronce report`: build the auditors' HTML report from the warehouse."""

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `report` command to the enteronce CLI (called by pipelines/cli.py)."""
    from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console, holding
    from pipelines.project import Project, default_config_dir

    @app.command()
    def report(
        out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the site (default <data>/report).")] = None,
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
    ) -> None:
        """Write the auditors' report (static HTML, works offline): station scorecards and trends,
        failing expectations, correction tasks, linkage quality and the access log."""
        from sqlalchemy.exc import OperationalError

        from core.errors import EnteronceError
        from quality.config import project_quality
        from quality.report.build import write_report
        from quality.report.model import describe_precision
        from warehouse import Warehouse

        try:
            project = Project.load(config or default_config_dir(), warehouse)
            sla_days = project_quality(project.config_dir).tasks_sla_days
        except EnteronceError as exc:
            _fail(str(exc))
        target = out or project.data_dir / "report"
        if target.exists() and not target.is_dir():
            _fail(f"--out {target}: exists and is not a folder")
        store = Warehouse(project.warehouse_url)
        try:
            store = project.open_warehouse()
            with holding(store, "report"):
                summary = write_report(store, target, sla_days=sla_days)
        except OperationalError as exc:
            _fail(f"warehouse {store.display_url}: cannot read it ({exc.orig.__class__.__name__}: "
                  f"{str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ''})")
        except OSError as exc:
            _fail(f"--out {target}: cannot write the report ({exc.strerror or exc})")
        finally:
            store.dispose()
        for note in summary.notes:
            console.print(f"[yellow]note[/]: {note}")
        avg = "—" if summary.average_score is None else f"{summary.average_score:.1f}"
        console.print(
            f"[green]report[/]: {summary.pages} pages, {summary.stations} stations (average score {avg}), "
            f"{summary.open_tasks} open correction tasks ({summary.overdue_tasks} overdue), "
            f"{summary.held_batches} held batches, "
            f"{summary.entities} entities, {summary.deliveries} deliveries, in {summary.seconds:.1f} s",
            highlight=False)
        console.print(f"precision of links: {describe_precision(summary.link_precision)}", highlight=False)
        console.print(str(summary.index.resolve()), highlight=False, soft_wrap=True)
