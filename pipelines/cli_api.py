"""CLI for the feed API: `enteronce token ...`, `enteronce serve`, `enteronce feed pull`.

Registered by pipelines/cli.py (`register(app)`), after pipelines/cli_feeds.py; shared helpers come
from pipelines/cli_common.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import EnteronceError
from feeds.limits import LIMIT_ENV, ApiLimits
from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console
from pipelines.project import Project, default_config_dir

token_app = typer.Typer(help="Bearer tokens for the feed API (stored only as hashes).", no_args_is_help=True)


def _project(config: Path | None, warehouse: str | None) -> Project:
    try:
        return Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))


def _store(project: Project):
    return project.open_warehouse()


@token_app.command("issue")
def token_issue(
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="Subscriber id from subscriptions.yaml.")],
    label: Annotated[Optional[str], typer.Option(help="A note: who holds it, which system.")] = None,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Issue a token for a subscriber; the token is printed once and never stored."""
    from feeds.config import load_subscriptions
    from feeds.tokens import issue_token

    project = _project(config, warehouse)
    try:
        subs = load_subscriptions(project.config_dir)
        if subs.subscriber(subscriber) is None:
            _fail(f"{project.config_dir / 'subscriptions.yaml'}: no subscriber {subscriber!r} "
                  f"(known: {[s.id for s in subs.subscribers][:20]}); add it with `enteronce subscription add`")
        issued = issue_token(_store(project), subscriber, label)
    except EnteronceError as exc:
        _fail(str(exc))
    console.print(f"[green]issued[/] {issued.token_id} for {issued.subscriber_id}"
                  + (f" ({issued.label})" if issued.label else ""))
    console.print("token (shown once; keep it secret, e.g. in ENTERONCE_FEED_TOKEN):", highlight=False)
    # plain print: no wrapping or markup may change a single character of the token
    print(issued.token)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (tok_...), from `enteronce token list`.")],
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Revoke a token: its next request gets 401."""
    from feeds.tokens import revoke_token

    project = _project(config, warehouse)
    try:
        revoke_token(_store(project), token_id)
    except EnteronceError as exc:
        _fail(str(exc))
    console.print(f"[green]revoked[/] {token_id}")


@token_app.command("list")
def token_list(
    subscriber: Annotated[Optional[str], typer.Option("--subscriber", "-s", help="Only this subscriber's.")] = None,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Tokens with their subscriber, label and state (never a token or its hash)."""
    from feeds.tokens import list_tokens

    project = _project(config, warehouse)
    rows = list_tokens(_store(project), subscriber)
    table = Table(title=f"Feed API tokens ({len(rows)})", title_justify="left")
    table.add_column("token id", no_wrap=True, min_width=20)
    for col in ("subscriber", "label", "issued", "state"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = f"[red]revoked {str(r['revoked_at'])[:19]}[/]" if r["revoked_at"] else "[green]active[/]"
        table.add_row(r["token_id"], r["subscriber_id"], r["label"] or "-", str(r["issued_at"])[:19], state)
    console.print(table)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback unless behind a proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    max_body_bytes: Annotated[int, typer.Option(
        min=1, envvar=LIMIT_ENV["max_body_bytes"], show_envvar=True,
        help="Largest request body (an ack is ~20 bytes); larger is 413 before the body is read.")] = ApiLimits.max_body_bytes,
    max_header_bytes: Annotated[int, typer.Option(
        min=4096, envvar=LIMIT_ENV["max_header_bytes"], show_envvar=True,
        help="Largest request line + headers, enforced while the HTTP parser reads: larger is 431.")] = ApiLimits.max_header_bytes,
    max_headers: Annotated[int, typer.Option(
        min=1, envvar=LIMIT_ENV["max_headers"], show_envvar=True,
        help="Most request headers; more is 431.")] = ApiLimits.max_headers,
    threads: Annotated[int, typer.Option(
        min=1, envvar=LIMIT_ENV["threads"], show_envvar=True,
        help="Requests doing their blocking work at once, per worker process (the rest wait their turn); "
             "more for a warehouse across a slow network.")] = ApiLimits.threads,
    page_cache_mb: Annotated[int, typer.Option(
        min=1, envvar=LIMIT_ENV["page_cache_mb"], show_envvar=True,
        help="MB of prepared feed pages kept in memory per worker process (pages then read only "
             "their blocks' keys from the warehouse).")] = ApiLimits.page_cache_mb,
    publish_entries: Annotated[bool, typer.Option(
        help="Publish records entered at the front desk at once, from this process (the hub does); "
             "otherwise the daemon's drop sensor or `enteronce run` publishes them.")] = False,
    audit_journal: Annotated[bool, typer.Option(
        help="Write each answer's audit row to the audit journal in the data folder before the answer "
             "leaves and commit it just after (never lost: a crash's rows are committed at the next "
             "start); --no-audit-journal commits each row before its answer.")] = True,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Serve the feed API and the front desk (/v1/match, /v1/search) on uvicorn; OpenAPI docs at /docs."""
    import os

    import uvicorn

    from pipelines.frontdesk import NO_JOURNAL_ENV, PUBLISH_ENV, create_hub_app

    project = _project(config, warehouse)
    try:
        limits = ApiLimits(max_body_bytes=max_body_bytes, max_header_bytes=max_header_bytes, max_headers=max_headers,
                           threads=threads, page_cache_mb=page_cache_mb)
        # the feeds and the front desk; with several workers each builds its own index, not this process
        app = create_hub_app(project, limits=limits, warm=workers == 1, publish_entries=publish_entries,
                             audit_journal=audit_journal)
    except EnteronceError as exc:
        _fail(str(exc))
    console.print(f"enteronce feeds API on http://{host}:{port} (docs: /docs), warehouse "
                  f"{app.state.warehouse.display_url}, subscriptions {project.config_dir / 'subscriptions.yaml'}")
    # warnings only: no access log (per-request lines would cost every request and show nothing)
    server = {"host": host, "port": port, "log_level": "warning", "access_log": False, **limits.uvicorn_options()}
    if workers > 1:
        # several processes need an importable factory; the settings travel in the environment
        os.environ["ENTERONCE_CONFIG"] = str(project.config_dir)
        os.environ["ENTERONCE_WAREHOUSE_URL"] = project.warehouse_url
        os.environ.update(limits.environ())
        os.environ[PUBLISH_ENV] = "1" if publish_entries else "0"
        os.environ[NO_JOURNAL_ENV] = "0" if audit_journal else "1"
        uvicorn.run("pipelines.frontdesk:app_from_env", factory=True, workers=workers, **server)
    else:
        uvicorn.run(app, **server)


def feed_pull(
    subscriber: Annotated[str, typer.Option("--subscriber", "-s", help="This station's subscriber id.")],
    url: Annotated[str, typer.Option(help="The hub's feed API.")] = "http://127.0.0.1:8000",
    token: Annotated[Optional[str], typer.Option(envvar="ENTERONCE_FEED_TOKEN", show_envvar=True,
                                                 help="Bearer token (better: the environment variable).")] = None,
    mirror: Annotated[Optional[Path], typer.Option(help="Local SQLite mirror (default mirror-<subscriber>.sqlite "
                                                   "in the current folder).")] = None,
    page: Annotated[int, typer.Option(min=1, max=5000, help="Events per request.")] = 1000,
) -> None:
    """Pull this station's feed into its local SQLite mirror (snapshot first, then events)."""
    from feeds.mirror import pull

    path = mirror or Path(f"mirror-{subscriber}.sqlite")
    try:
        with console.status(f"pulling {subscriber} from {url} ..."):
            summary = pull(path, url, subscriber, token, page=page)
    except EnteronceError as exc:
        _fail(str(exc))
    table = Table(title=f"Mirror {summary.mirror}", title_justify="left")
    for col in ("snapshot records", "events received", "applied", "duplicates", "older", "records held", "cursor"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{v:,}" for v in (summary.snapshot_records, summary.events_received, summary.events_applied,
                                       summary.duplicates, summary.older, summary.records, summary.cursor)))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `token`, `serve` and `feed pull` to the enteronce CLI."""
    app.add_typer(token_app, name="token")
    app.command("serve")(serve)
    from pipelines.cli_feeds import feed_app  # `enteronce feed`, registered just before this

    feed_app.command("pull")(feed_pull)


__all__ = ["register", "token_app", "serve", "feed_pull"]
