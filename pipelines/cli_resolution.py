"""`enteronce resolve`, `evaluate`, `review`, `explain`, `history` and `events`: entity resolution
and golden records from the command line. Registered on the app by pipelines/cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import polars as pl
import typer
from rich.table import Table

from core.errors import EnteronceError
from pipelines.cli_common import ConfigOpt, WarehouseOpt, _fail, console, holding
from pipelines.project import Project, default_config_dir

EntityOpt = Annotated[Optional[str], typer.Option(
    "--entity", "-e", help="An entity type the project resolves (its entity_types.yaml and resolution.yaml); "
                           "default: the first of them (person, for the bundled types).")]


def _project(config: Path | None, warehouse: str | None) -> Project:
    try:
        return Project.load(config or default_config_dir(), warehouse)
    except EnteronceError as exc:
        _fail(str(exc))


def _entity_type(project: Project, entity: str | None):
    """The project's registered type named by --entity (default: Project.default_entity_type),
    one it resolves (its entity is in resolution.yaml); a clear error otherwise."""
    name = entity or project.default_entity_type
    resolved = project.pipeline_types
    if name not in resolved:
        if name in project.entity_types:
            _fail(f"entity type {name!r} is registered but not resolved: resolution.yaml has no entity "
                  f"{project.entity_types[name].resolution_entity!r}; resolved types: {resolved.names}")
        _fail(f"unknown entity type {name!r}; expected one of {resolved.names}")
    return resolved[name]


def _resolution_store(config: Path | None, warehouse: str | None, entity: str | None):
    """The project, its entity type named by --entity and that type's resolution store."""
    project = _project(config, warehouse)
    etype = _entity_type(project, entity)
    store = project.open_warehouse().resolution_store(etype.name, etype.record_table)
    return project, etype, store


def resolve(
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: Annotated[Optional[str], typer.Option(
        "--entity", "-e", help="Only this entity type; default: every type the project resolves.")] = None,
    full: Annotated[bool, typer.Option(help="Retrain the model and re-resolve every record.")] = False,
) -> None:
    """Resolve the project's entity types into entities (incremental unless --full)."""
    from entity_resolution.service import run_resolution

    project = _project(config, warehouse)
    types = [_entity_type(project, entity)] if entity else list(project.pipeline_types)
    store = project.open_warehouse()
    table = Table(title="Resolution", title_justify="left")
    for col in ("entity type", "mode", "run", "records", "new/changed", "pairs", "matches", "review", "seconds"):
        table.add_column(col, justify="left" if col in ("entity type", "mode") else "right")
    for etype in types:
        rs = store.resolution_store(etype.name, etype.record_table)
        with holding(store, "resolve"), console.status(f"resolving {etype.name}s ..."):
            summary = run_resolution(rs, project.resolution.entities[etype.resolution_entity],
                                     entity_type=etype.name, prefix=etype.id_prefix, full=full)
        table.add_row(etype.name, summary.mode, str(summary.seq), f"{summary.records:,}", f"{summary.dirty:,}",
                      f"{summary.pairs:,}", f"{summary.matches:,}", f"{summary.review:,}",
                      f"{sum(summary.timings.values()):.1f}")
    console.print(table)


def evaluate(
    truth: Annotated[Path, typer.Option(help="CSV with record_key and the true entity id (e.g. truth.csv).")],
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = None,
    per_station: Annotated[bool, typer.Option(help="Also one row per station.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="table (for people), json or csv (for scripts).")] = "table",
) -> None:
    """Pairwise precision / recall / F1 and B-cubed figures of the current entities against a truth."""
    if fmt not in ("table", "json", "csv"):
        _fail(f"--format must be table, json or csv, got {fmt!r}")
    from entity_resolution.evaluation import evaluate as evaluate_clusters

    _, etype, store = _resolution_store(config, warehouse, entity)
    entity = etype.name
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
        for etype, t in rs.store.record_tables.items():  # the project's types included
            stmt = sa.select(sa.func.count()).select_from(t).where(in_keys(conn, t.c.record_key, keys))
            if etype == entity:
                held += int(conn.scalar(stmt.where(t.c.batch_id.in_(active))) or 0)
            else:
                other += int(conn.scalar(stmt) or 0)
    return held, other


review_app = typer.Typer(help="The review queue: pairs the model could not decide.", no_args_is_help=False,
                         invoke_without_command=True)


@review_app.callback()
def review_list(
    ctx: typer.Context,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = None,
    limit: Annotated[int, typer.Option(help="Pairs to show.")] = 20,
    fmt: Annotated[str, typer.Option("--format", help="table (for people) or json (for scripts).")] = "table",
) -> None:
    """List the review queue: pairs refused by the ID guard or a judgement (with the reason)
    first, then the most uncertain pairs."""
    if ctx.invoked_subcommand is not None:
        return
    if fmt not in ("table", "json"):
        _fail(f"--format must be table or json, got {fmt!r}")
    _, etype, store = _resolution_store(config, warehouse, entity)
    entity = etype.name
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
    entity: EntityOpt = None,
) -> None:
    """Record a reviewer's judgement; it overrides the model on every later run."""
    if verdict not in ("same", "different"):
        _fail(f"verdict must be 'same' or 'different', got {verdict!r}")
    from pipelines.instance import announce

    project, etype, store = _resolution_store(config, warehouse, entity)
    entity = etype.name
    try:
        store.add_judgement(left, right, verdict, reviewer, reason)
    except ValueError as exc:
        _fail(str(exc))
    announce(project, f"{entity}_scored_pairs", description=f"judgement by {reviewer}: {left} / {right} {verdict}",
             metadata={"left": left, "right": right, "verdict": verdict, "reviewer": reviewer})
    console.print(f"[green]recorded[/]: {left} / {right} are {verdict} ({reviewer}). With the hub running "
                  "its daemon re-resolves and republishes; otherwise the next `enteronce run` does.")


def explain(
    key_a: str,
    key_b: str,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = None,
) -> None:
    """Why two records match or not: the weight of every comparison under the stored model."""
    from entity_resolution.explain import explain_pair

    project, etype, store = _resolution_store(config, warehouse, entity)
    entity = etype.name
    stored = store.model()
    if stored is None:
        _fail("no trained model yet: run `enteronce resolve` first")
    settings = project.resolution.entities[etype.resolution_entity]
    from entity_resolution.service import needed_columns

    missing = store.missing_records([key_a, key_b])
    if missing:
        _fail(f"no {entity} record with key {missing[0]!r}")
    result = explain_pair(store.records(needed_columns(settings)), key_a, key_b, stored[1], settings)
    table = Table(title=f"{key_a} vs {key_b}", title_justify="left")
    for col in ("comparison", "level", "left", "right", "weight (log2)"):
        table.add_column(col, justify="right" if col.startswith("weight") else "left")
    for row in result["comparisons"]:
        table.add_row(row["comparison"], row["level"], str(row["left"]), str(row["right"]), f"{row['weight']:+.2f}")
    table.add_row("prior", "", "", "", f"{result['prior_weight']:+.2f}")
    console.print(table)
    console.print(f"match weight {result['match_weight']:+.2f}, probability {result['match_probability']:.4f}: "
                  f"[bold]{result['decision']}[/]")


def history(
    entity_id: str,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
    entity: EntityOpt = None,
) -> None:
    """Every version of a golden record: what changed, and which station's record caused it."""
    _, etype, store = _resolution_store(config, warehouse, entity)
    entity = etype.name
    versions = store.store.golden_store(entity, etype.record_table).history(entity_id)
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


def list_events(
    after: Annotated[Optional[int], typer.Option(help="Show events with seq greater than this.")] = None,
    last: Annotated[int, typer.Option(help="Without --after: the last N events.")] = 10,
    limit: Annotated[int, typer.Option(help="How many at most.")] = 50,
    config: ConfigOpt = None,
    warehouse: WarehouseOpt = None,
) -> None:
    """The change-event outbox, in sequence order."""
    from warehouse.golden import events

    store = _project(config, warehouse).open_warehouse()
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


def register(app: typer.Typer) -> None:
    app.command()(resolve)
    app.command()(evaluate)
    app.command()(explain)
    app.command()(history)
    app.command("events")(list_events)
    app.add_typer(review_app, name="review")
