"""CLI for feeds: `enteronce subscription ...`, `enteronce feed build`, `enteronce audit`.

`feed_app` is the `enteronce feed` group; the API's commands (`feed pull`) are added to it by
pipelines/cli_api.py. Registered by pipelines/cli.py (`register(app)`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import ConfigError, EnteronceError
from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console, holding
from pipelines.project import Project, default_config_dir

subscription_app = typer.Typer(help="Feed subscriptions (subscriptions.yaml): list, show, add, remove.",
                               no_args_is_help=True)
feed_app = typer.Typer(help="Subscription feeds: build outbox files (and pull them, station side).",
                       no_args_is_help=True)


def _project(config: Path | None, warehouse: str | None = None) -> Project:
    try:
        return Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))


def _subscriptions(project: Project):
    from feeds.config import load_subscriptions

    try:
        return load_subscriptions(project.config_dir)
    except EnteronceError as exc:
        _fail(str(exc))


# -- subscription -------------------------------------------------------------------------------------
@subscription_app.command("list")
def subscription_list(config: ConfigOpt = None) -> None:
    """Every subscriber: kind, entity types, scope, role, visible fields."""
    project = _project(config)
    subs = _subscriptions(project)
    if not subs.subscribers:
        console.print(f"no subscribers in {project.config_dir / 'subscriptions.yaml'}: feeds deliver nothing "
                      "(deny by default)")
        return
    table = Table(title=f"Subscribers ({len(subs.subscribers)})", title_justify="left")
    for col in ("id", "kind", "station", "entity types", "scope", "role", "full", "masked"):
        table.add_column(col, overflow="fold")
    for s in subs.subscribers:
        levels = subs.levels(s)
        scope = ", ".join([*s.scope.area_codes, *(["own records"] if s.scope.own_records else [])])
        table.add_row(s.id, s.kind, s.station_id or "-", ", ".join(s.entity_types), scope, s.role,
                      ", ".join(f for f, lv in levels.items() if lv == "full") or "-",
                      ", ".join(f for f, lv in levels.items() if lv == "masked") or "-")
    console.print(table)


@subscription_app.command("show")
def subscription_show(subscriber: Annotated[str, typer.Argument(help="Subscriber id.")],
                      config: ConfigOpt = None, warehouse: WarehouseOpt = None) -> None:
    """One subscriber's settings, its effective field policy and its cursors."""
    from warehouse.feeds import FeedStore

    project = _project(config, warehouse)
    subs = _subscriptions(project)
    s = subs.subscriber(subscriber)
    if s is None:
        _fail(f"{project.config_dir / 'subscriptions.yaml'}: no subscriber {subscriber!r}")
    console.print_json(json.dumps(s.model_dump(mode="json"), ensure_ascii=False))
    table = Table(title="Effective fields (allowed and not hidden by the role)", title_justify="left")
    for col in ("field", "level", "masking rule"):
        table.add_column(col)
    for f, level in subs.levels(s).items():
        rule = subs.rule(f).model_dump() if level == "masked" else {}
        table.add_row(f, level, ", ".join(f"{k}={v}" for k, v in rule.items()) or "-")
    console.print(table)
    store = FeedStore(project.open_warehouse())
    for channel in ("file", "api"):
        got = store.cursor(s.id, channel)
        console.print(f"{channel} cursor: " + ("none yet (starts with a snapshot)" if got is None
                                                else f"acknowledged seq {got[0]}, snapshot at seq {got[1]}"))


@subscription_app.command("add")
def subscription_add(
    subscriber: Annotated[str, typer.Argument(help="Subscriber id (letters, digits, _ . -).")],
    role: Annotated[str, typer.Option(help="A role defined under roles: in subscriptions.yaml.")],
    fields: Annotated[list[str], typer.Option("--field", "-f", help="An allowed field (repeat).")],
    kind: Annotated[str, typer.Option(help="station | department")] = "station",
    station: Annotated[Optional[str], typer.Option(help="The station's id (for own records).")] = None,
    entity_types: Annotated[Optional[list[str]], typer.Option(
        "--entity-type", "-e", help="An entity type of the project (repeat); default: the first it resolves "
                                    "(person, for the bundled types).")] = None,
    area_codes: Annotated[Optional[list[str]], typer.Option("--area-code", "-a", help="Area-code prefix (repeat).")] = None,
    own_records: Annotated[bool, typer.Option(help="Also entities holding one of the station's records.")] = False,
    formats: Annotated[list[str], typer.Option("--format", help="jsonl | csv | parquet (repeat).")] = ["jsonl", "csv", "parquet"],  # noqa: B006
    name: Annotated[Optional[str], typer.Option(help="A readable name.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add (or replace) a subscriber; the file is validated as a whole before it is written."""
    from feeds.config import SUBSCRIPTIONS_YAML, with_subscriber, write_subscriptions

    project = _project(config)
    entity_types = entity_types or [project.default_entity_type]
    unknown = [e for e in entity_types if e not in project.entity_types]
    if unknown:
        _fail(f"unknown entity type(s) {unknown}; expected one of {project.entity_types.names}")
    subs = _subscriptions(project)
    entry = {"id": subscriber, "kind": kind, "name": name, "station_id": station, "entity_types": entity_types,
             "scope": {"area_codes": area_codes or [], "own_records": own_records}, "fields": fields, "role": role,
             "delivery": {"formats": formats}}
    try:
        updated = with_subscriber(subs, {k: v for k, v in entry.items() if v is not None},
                                  source=project.config_dir / SUBSCRIPTIONS_YAML)
        path = write_subscriptions(project.config_dir, updated)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"[green]subscriber {subscriber} written[/] to {path}")


@subscription_app.command("remove")
def subscription_remove(subscriber: Annotated[str, typer.Argument(help="Subscriber id.")],
                        config: ConfigOpt = None) -> None:
    """Remove a subscriber: it receives nothing more (its audit trail stays)."""
    from feeds.config import without_subscriber, write_subscriptions

    project = _project(config)
    subs = _subscriptions(project)
    try:
        path = write_subscriptions(project.config_dir, without_subscriber(subs, subscriber))
    except ConfigError as exc:
        _fail(f"{project.config_dir / 'subscriptions.yaml'}: {exc}")
    console.print(f"[green]subscriber {subscriber} removed[/] from {path}")


# -- feed build -------------------------------------------------------------------------------------------
@feed_app.command("build")
def feed_build(
    subscriber: Annotated[Optional[list[str]], typer.Option("--subscriber", "-s", help="Only these (repeat).")] = None,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Write each subscriber's new events (the first time: its snapshot) into its outbox."""
    from feeds.files import build_all

    project = _project(config, warehouse)
    subs = _subscriptions(project)
    if not subs.subscribers:
        console.print("no subscribers: nothing to deliver (deny by default)")
        return
    store = project.open_warehouse()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("building feeds", total=len(subscriber or subs.subscribers))

        def report(sid: str, done: int, total: int) -> None:
            bar.update(task, description=f"feeds: {sid}", completed=done, total=total)

        try:
            with holding(store, "feed build"):
                results = build_all(store, subs, config_dir=project.config_dir, data_dir=project.data_dir,
                                    subscriber_ids=subscriber, on_progress=report)
        except EnteronceError as exc:
            _fail(str(exc))
    table = Table(title=f"Feed files (high water seq {store.max_event_seq()})", title_justify="left")
    for col in ("subscriber", "snapshot", "events", "seq range", "entities", "masked values", "outbox"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(r.subscriber_id, f"{r.snapshot_records:,}" if r.snapshot_records else "-", f"{r.events:,}",
                      f"{r.seq_range[0]}-{r.seq_range[1]}" if r.seq_range else "-", f"{r.entities:,}",
                      ", ".join(f"{k} {v:,}" for k, v in sorted(r.masked_fields.items())) or "-",
                      str(r.outbox) if r.files else "(nothing new)")
    console.print(table)


# -- audit ----------------------------------------------------------------------------------------------------
def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--since: expected a date or time like 2026-11-26 or 2026-11-26T08:00, got {value!r}")
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def audit(
    subscriber: Annotated[Optional[str], typer.Option("--subscriber", "-s", help="Only this subscriber.")] = None,
    field: Annotated[Optional[str], typer.Option("--field", "-f", help="Only deliveries carrying this field.")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only deliveries at or after this date/time (UTC).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (latest first).")] = 200,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """Who received which personal fields, at which masking level, when: the delivery log, and beside it
    every front-desk match and search (query keys as keyed hashes only)."""
    from warehouse.feeds import FeedStore

    project = _project(config, warehouse)
    frame = FeedStore(project.open_warehouse()).deliveries(subscriber_id=subscriber,
                                                                            since=_since(since))
    rows = [r for r in frame.reverse().iter_rows(named=True)
            if field is None or field in json.loads(r["fields"] or "{}")][:limit]
    title = "Feed deliveries" + (f" of {subscriber}" if subscriber else "") + (f" carrying {field}" if field else "")
    table = Table(title=f"{title} ({len(rows)} shown, latest first)", title_justify="left")
    for col in ("when (UTC)", "subscriber", "channel", "token", "kind", "seq", "events", "entities",
                "full fields", "masked fields"):
        table.add_column(col, overflow="fold")
    for r in rows:
        fields = json.loads(r["fields"] or "{}")
        seq = f"{r['seq_from']}-{r['seq_to']}" if r["seq_from"] is not None else f"as of {r['seq_to']}"
        table.add_row(r["delivered_at"].strftime("%Y-%m-%d %H:%M:%S"), r["subscriber_id"], r["channel"],
                      r["token_id"] or "-", r["kind"], seq, f"{r['event_count']:,}", f"{r['entity_count']:,}",
                      ", ".join(f for f, lv in fields.items() if lv == "full") or "-",
                      ", ".join(f for f, lv in fields.items() if lv == "masked") or "-")
    console.print(table)
    if not rows:
        console.print("no deliveries match")
    _front_desk_audit(project, subscriber, field, since, limit)


def _front_desk_audit(project: Project, subscriber: str | None, field: str | None, since: str | None,
                      limit: int) -> None:
    """Beside the deliveries: every match, search and entry (who, when, which keys as keyed hashes,
    which entities came back at which field levels; an entry's batch)."""
    from warehouse.frontdesk import access_log

    frame = access_log(project.open_warehouse(), subscriber_id=subscriber, since=_since(since))
    rows = [r for r in frame.reverse().iter_rows(named=True)
            if field is None or field in json.loads(r["fields"] or "{}")][:limit]
    title = "Front desk: matches, searches and entries" + (f" of {subscriber}" if subscriber else "")
    table = Table(title=f"{title} ({len(rows)} shown, latest first)", title_justify="left")
    for col in ("when (UTC)", "subscriber", "channel", "token", "kind", "type", "outcome", "keys (HMAC)",
                "entities / batch", "full fields", "masked fields"):
        table.add_column(col, overflow="fold")
    for r in rows:
        fields = json.loads(r["fields"] or "{}")
        keys = json.loads(r["key_hashes"] or "{}")
        ids = json.loads(r["entity_ids"] or "[]")
        table.add_row(r["at"].strftime("%Y-%m-%d %H:%M:%S"), r["subscriber_id"], r["channel"], r["token_id"] or "-",
                      r["kind"], r["entity_type"], r["outcome"],
                      ", ".join(f"{k}:{v[:10]}" for k, v in keys.items()) or "-",
                      ", ".join(ids[:5]) + (f" (+{len(ids) - 5})" if len(ids) > 5 else "") or r["batch_id"] or "-",
                      ", ".join(f for f, lv in fields.items() if lv == "full") or "-",
                      ", ".join(f for f, lv in fields.items() if lv == "masked") or "-")
    console.print(table)
    if not rows:
        console.print("no matches, searches or entries")


def register(app: typer.Typer) -> None:
    app.add_typer(subscription_app, name="subscription")
    app.add_typer(feed_app, name="feed")
    app.command("audit")(audit)


__all__ = ["feed_app", "register", "subscription_app"]
