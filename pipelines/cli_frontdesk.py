"""CLI for the front desk: `enteronce match` and `enteronce search`.

The same service as POST /v1/match and GET /v1/search (feeds/frontdesk.py over the match index of
pipelines/frontdesk.py), called in this process rather than over HTTP, under a named subscriber's
query grant, role and field policy; audited like the API (channel "cli", no token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from core.errors import EnteronceError
from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console
from pipelines.project import Project, default_config_dir

FieldOpt = Annotated[list[str], typer.Option(
    "--field", "-f", help="A field as name=value (repeat): name, id_number, birth_date, sex, phone, address, ...")]
SubscriberOpt = Annotated[str, typer.Option("--subscriber", "-s", help="Whose grant, role and fields apply.")]
EntityOpt = Annotated[Optional[str], typer.Option("--entity", "-e", help="Entity type (default: the first resolved).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the answer as JSON (as the API gives it).")]


def _fields(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"--field: expected name=value, got {pair!r}")
        out[name.strip()] = value
    return out


def _call(kind: str, subscriber: str, entity: str | None, fields: list[str], config: Path | None,
          warehouse: str | None) -> tuple[str, dict]:
    from feeds.frontdesk import Caller, FrontDeskError
    from pipelines.frontdesk import front_desk

    try:
        project = Project.load(config or default_config_dir(), warehouse)
        entity_type = entity or project.default_entity_type
        desk = front_desk(project)
        caller = Caller(subscriber, None, "cli")
        run = desk.match if kind == "match" else desk.search
        return entity_type, run(caller, entity_type, _fields(fields))
    except FrontDeskError as exc:
        _fail(f"{exc.detail} ({exc.status})")
    except EnteronceError as exc:
        _fail(str(exc))


def _record_text(record: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in record.items() if v is not None)


def match(subscriber: SubscriberOpt, field: FieldOpt, entity: EntityOpt = None, as_json: JsonOpt = False,
          config: ConfigOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Match one record (核录): what is wrong with it, and the entities it is, with a masked prefill."""
    entity_type, answer = _call("match", subscriber, entity, field, config, warehouse)
    if as_json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    for check in answer["checks"]:
        console.print(f"[yellow]check[/] {check['field']}: {check['message']}", highlight=False)
    table = Table(title=f"Candidates for the {entity_type} record ({len(answer['candidates'])})", title_justify="left")
    for col in ("entity", "probability", "decision", "why", "record (as your role sees it)"):
        table.add_column(col, overflow="fold")
    for c in answer["candidates"]:
        why = ", ".join(f"{p['comparison']}: {p['level']} ({p['weight']:+.1f})" for p in c["explanation"]
                        if p["comparison"] != "prior")
        if c.get("reason"):
            why = f"{c['reason']}; {why}"
        table.add_row(c["entity_id"], f"{c['match_probability']:.4f}", c["decision"], why, _record_text(c["record"]))
    console.print(table)
    if not answer["candidates"]:
        console.print("no candidate in your query scope")


def search(subscriber: SubscriberOpt, field: FieldOpt, entity: EntityOpt = None, as_json: JsonOpt = False,
           config: ConfigOpt = None, warehouse: WarehouseOpt = None) -> None:
    """Search (查询) by a selective key: an ID number, a phone, a name with a birth date, a credit code..."""
    entity_type, answer = _call("search", subscriber, entity, field, config, warehouse)
    if as_json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return
    title = f"{entity_type} found ({len(answer['results'])}{', more not shown' if answer['truncated'] else ''})"
    table = Table(title=title, title_justify="left")
    table.add_column("entity", no_wrap=True)
    table.add_column("record (as your role sees it)", overflow="fold")
    for r in answer["results"]:
        table.add_row(r["entity_id"], _record_text(r["record"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `match` and `search` to the enteronce CLI."""
    app.command("match")(match)
    app.command("search")(search)


__all__ = ["match", "register", "search"]
