"""`enteronce hub`: the Dagster daemon, the Dagster UI and the feed API as one command.

Registered by pipelines/cli.py (`register(app)`), like the other command groups.
"""


import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import EnteronceError


def register(app: typer.Typer) -> None:
    from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, _load, console

    @app.command()
    def hub(
        port: Annotated[int, typer.Option(min=1, max=65535, help="The Dagster UI's port.")] = 3000,
        api_port: Annotated[int, typer.Option(min=1, max=65535, help="The feed API's port.")] = 8000,
        host: Annotated[str, typer.Option(help="Interface the UI and the API listen on.")] = "127.0.0.1",
        api: Annotated[bool, typer.Option(help="Also serve the feed API.")] = True,
        instance_db: Annotated[Optional[str], typer.Option(
            envvar="ENTERONCE_INSTANCE_DB", show_envvar=True,
            help="PostgreSQL URL for Dagster's instance storage (runs, events, schedules): the production "
                 "profile. Default: SQLite in the instance folder.")] = None,
        parallel: Annotated[Optional[int], typer.Option(
            min=1, help="Station ingests at once (the `ingest` pool; a PostgreSQL warehouse only).")] = None,
        config: ConfigOpt = None,
        warehouse: WarehouseOpt = None,
    ) -> None:
        """Run the hub as services: the daemon (sensors and automation carry every drop to the
        feeds), the Dagster UI and the feed API, on one project, warehouse and Dagster instance.
        Stops them all on Ctrl-C, or when one of them exits."""
        from pipelines import hub as services_
        from pipelines.instance import ensure_pools, ingest_limit_for, instance_home, open_instance

        try:
            project = _load(config, warehouse)
            store = project.open_warehouse()
            store.dispose()
            instance = open_instance(project, instance_db)
            if parallel is not None:
                ensure_pools(instance, ingest_limit_for(project.warehouse_url, parallel), force=True)
            instance.dispose()
        except EnteronceError as exc:
            _fail(str(exc))
        home = instance_home(project)
        svcs = services_.services(home, host=host, port=port, api_port=api_port if api else None)
        log_dir = home / "logs" / "hub"
        services_.start(svcs, services_.hub_environment(project, home), log_dir)
        try:
            ready = _wait_ready(svcs)
            table = Table(title=f"enteronce hub: {project.config_dir}", title_justify="left")
            for col in ("service", "address", "pid", "state"):
                table.add_column(col, overflow="fold")
            for svc in svcs:
                table.add_row(svc.name, svc.url or "-", str(svc.process.pid),
                              "[green]up[/]" if ready.get(svc.name, True) else "[yellow]starting[/]")
            console.print(table)
            console.print(f"warehouse {store.display_url}; Dagster instance {home}; logs {log_dir}/. "
                          "Ctrl-C stops the hub.", highlight=False)
            outcome = services_.supervise(svcs)
        finally:
            services_.stop(svcs)
        if outcome is not None:
            svc, code = outcome
            _fail(f"{svc.name} stopped (exit code {code}), so the hub stopped; its log: "
                  f"{log_dir / (svc.name.replace(' ', '_') + '.log')}", code=1)
        console.print("hub stopped")


def _wait_ready(svcs, timeout: float = 90.0) -> dict[str, bool]:
    """Until the UI and the API answer (or a minute and a half passed): the table then says 'up'."""
    import httpx

    probes = {s.name: s.url.replace("/docs", "/healthz") if s.name == "feed API" else f"{s.url}/server_info"
              for s in svcs if s.url}
    ready = dict.fromkeys(probes, False)
    deadline = time.monotonic() + timeout
    while not all(ready.values()) and time.monotonic() < deadline:
        if any(s.process.poll() is not None for s in svcs):
            break
        for name, url in probes.items():
            if not ready[name]:
                try:
                    ready[name] = httpx.get(url, timeout=2).status_code == 200
                except httpx.HTTPError:
                    pass
        time.sleep(0.5)
    return ready
