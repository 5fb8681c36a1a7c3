"""Shared pieces of the `enteronce` command line: the consoles, the common options, the error and
waiting helpers, and loading a project (simulating the demo network when none is configured).

Every command module imports from here; nothing here imports a command module, so the CLI has
no import cycle (pipelines/cli.py assembles the app).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from core.errors import EnteronceError
from pipelines.project import DEMO_DIR, DEMO_SIZE, Project, default_config_dir

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

