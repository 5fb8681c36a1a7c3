"""One resolution run of one entity type: full the first time, incremental after.

The warehouse side is handed in as a `ResolutionStore` (warehouse/resolution.py implements it),
so this package stays free of SQL. Incremental runs compare only new or changed records with the
records that share their blocks, score them with the stored model, and re-cluster only the
connected components those records touch; with the same model that gives the entities of a full
run (tests/test_resolution_service.py checks it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from entity_resolution.clustering import cluster_with_stats, recluster_with_stats
from entity_resolution.config import EntitySettings
from entity_resolution.resolve import distinct_valid, guard_records, score_pairs
from entity_resolution.scoring import Model
from entity_resolution.stable_ids import assign_entity_ids


class ResolutionStore(Protocol):
    def records(self, columns: list[str]) -> pl.DataFrame: ...
    def model(self) -> tuple[str, str] | None: ...
    def membership(self) -> pl.DataFrame: ...
    def edges(self, decision: str | None = None, *, weights: bool = True) -> pl.DataFrame: ...
    def judgements(self) -> pl.DataFrame: ...
    def next_seq(self) -> int: ...
    def retired_ids(self) -> pl.Series: ...
    def last_run_started(self) -> dt.datetime | None: ...
    def save_run(self, **kwargs) -> int: ...


@dataclass
class RunSummary:
    entity_type: str
    mode: str
    seq: int
    records: int
    dirty: int
    pairs: int
    matches: int
    review: int
    stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    refused: int = 0  # pairs refused by the ID guard or a judgement (in scope): they wait in review


def settings_fingerprint(settings: EntitySettings) -> str:
    return hashlib.sha256(settings.model_dump_json(exclude={"survivorship"}).encode()).hexdigest()[:16]


def needed_columns(settings: EntitySettings) -> list[str]:
    """The record columns blocking, comparisons and constraints read (derived ones excluded)."""
    cols = {settings.unique_id}
    for rule in settings.blocking.rules:
        cols.update(rule.keys)
    for comp in settings.comparisons:
        cols.add(comp.column)
        cols.update(level.column for level in comp.levels if level.column)
    for c in settings.constraints.distinct_valid:
        cols.update((c.column, c.valid_flag))
    for expression in settings.derived.values():
        cols.update(pl.sql_expr(expression).meta.root_names())
    return sorted(cols - set(settings.derived))


def edge_frame(scored: pl.DataFrame) -> pl.DataFrame:
    """Scored pairs worth keeping (match or review) with their per-comparison weights as JSON."""
    wcols = [c for c in scored.columns if c.startswith("w_")]
    kept = scored.filter(pl.col("decision").is_in(["match", "review"]))
    weights = pl.struct([pl.col(c).round(4).alias(c[2:]) for c in wcols]).struct.json_encode() if wcols else pl.lit("{}")
    reason = pl.col("review_reason") if "review_reason" in scored.columns else pl.lit(None, dtype=pl.String)
    return kept.select("left_id", "right_id", "match_probability", "match_weight", "decision",
                       weights.alias("weights"), reason.cast(pl.String).alias("review_reason"))


def _with_refusals(new_edges: pl.DataFrame, reasons: pl.DataFrame) -> pl.DataFrame:
    """Match edges clustering refused get its reason (they stay match edges: the refusal is
    recomputed by every run, so incremental runs keep agreeing with full ones)."""
    if reasons.height == 0:
        return new_edges
    refusal = reasons.select("left_id", "right_id", pl.col("review_reason").alias("_refusal"))
    return new_edges.join(refusal, on=["left_id", "right_id"], how="left", maintain_order="left").with_columns(
        pl.coalesce("_refusal", "review_reason").alias("review_reason")).drop("_refusal")


def run_resolution(
    store: ResolutionStore,
    settings: EntitySettings,
    *,
    entity_type: str,
    prefix: str,
    full: bool = False,
    retrain: bool | None = None,
) -> RunSummary:
    """Resolve what changed since the last run (or everything, with `full`).

    The model is retrained when asked, when there is none, or when the settings changed;
    otherwise the stored one scores, so incremental and full runs agree.
    """
    started = dt.datetime.now(dt.timezone.utc)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    uid = settings.unique_id
    records = store.records(needed_columns(settings))
    clock["load_records"] = time.perf_counter() - t0
    membership = store.membership()
    judgements = store.judgements()
    stored_model = store.model()
    fingerprint = settings_fingerprint(settings)
    if retrain is None:
        retrain = full or stored_model is None or stored_model[0] != fingerprint
    mode = "full" if full or retrain or membership.height == 0 else "incremental"
    clock["load"] = time.perf_counter() - t0

    if mode == "full":
        dirty, new, gone = records[uid], records[uid], records[uid].clear()
    else:
        # new or changed: no membership row with the same content; then the few of those with no
        # membership row at all are new; records gone since (their batch was held, say) are
        # looked for only when the counts say there are some
        dirty = records.select(uid, "row_hash").join(membership.select(uid, "row_hash"), on=[uid, "row_hash"],
                                                     how="anti")[uid]
        known = membership.filter(pl.col(uid).is_in(dirty.implode()))[uid]
        new = dirty.filter(~dirty.is_in(known.implode()))
        gone = membership[uid].clear()
        if membership.height != records.height - new.len():
            gone = membership.select(uid).join(records.select(uid), on=uid, how="anti")[uid]
    clock["find_changed"] = time.perf_counter() - t0 - clock["load"]
    seq = store.next_seq()
    last_run = store.last_run_started()
    fresh = judgements if last_run is None else judgements.filter(pl.col("judged_at") > last_run)
    if mode == "incremental" and dirty.len() == 0 and fresh.height == 0:
        return RunSummary(entity_type, "unchanged", seq - 1, records.height, 0, 0, 0, 0)

    result = score_pairs(records, settings, model=None if retrain else Model.from_json(stored_model[1]),
                         judgements=judgements, new_keys=None if mode == "full" else dirty)
    clock.update(result.timings)
    model, block_stats, new_edges = result.model, result.block_stats, edge_frame(result.scored)
    pairs_count = result.scored.height

    t = time.perf_counter()
    distinct = distinct_valid(settings)
    previous = membership.select(uid, "entity_id", "entity_created_seq") if membership.height else None
    if mode == "full":
        clustered = cluster_with_stats(guard_records(records, settings), new_edges.filter(pl.col("decision") == "match"),
                                       judgements=judgements, distinct_valid=distinct, unique_id=uid)
        clusters = clustered.membership
    else:
        dirty_set = dirty.implode()
        t_edges = time.perf_counter()
        kept = store.edges("match", weights=False).filter(
            ~(pl.col("left_id").is_in(dirty_set) | pl.col("right_id").is_in(dirty_set)))
        match_cols = ["left_id", "right_id", "match_probability"]
        match_edges = pl.concat([kept.select(match_cols),
                                 new_edges.filter(pl.col("decision") == "match").select(match_cols)])
        changed = pl.concat([
            new_edges.select("left_id", "right_id"),
            pl.DataFrame({"left_id": dirty, "right_id": dirty}),  # a changed record may have lost edges
            fresh.select("left_id", "right_id"),  # a new verdict re-clusters its pair
        ])
        clock["read_edges"] = time.perf_counter() - t_edges
        clusters, clustered = recluster_with_stats(
            guard_records(records, settings), match_edges, membership.select(uid, pl.col("entity_id").alias("cluster_key")),
            changed,
            judgements=judgements, distinct_valid=distinct, unique_id=uid, scope_only=True, new=new, gone=gone,
        )
        # Records outside the re-clustered scope keep their entity; the scope holds whole
        # previous entities, so ids are settled inside it.
        previous = _rows_of(previous, clusters[uid], uid)
    # Refused match edges wait for a reviewer: new ones carry the reason in new_edges; stored ones
    # inside the re-clustered scope are updated by the store (the scope is all there is to redo).
    refusals = clustered.reasons
    new_edges = _with_refusals(new_edges, refusals)
    reason_scope = None if mode == "full" else clusters[uid]
    # New ids hash a record key of the scope; they must not take an id that is live outside it
    # or was ever retired.
    issued = store.retired_ids()
    if mode == "incremental":
        issued = pl.concat([issued, membership["entity_id"].unique()])
    t_ids = time.perf_counter()
    assigned, changes = assign_entity_ids(clusters, previous, prefix=prefix, run_seq=seq, issued_ids=issued)
    clock["entity_ids"] = time.perf_counter() - t_ids
    clock["clustering"] = time.perf_counter() - t

    sizes = assigned.group_by("entity_id").len()["len"].value_counts().sort("len")
    stats = {
        "blocking": block_stats.to_dicts(),
        "ops": changes.group_by("op").len().sort("op").to_dicts() if changes.height else [],
        "cluster_sizes": {str(k): int(v) for k, v in sizes.iter_rows()},
        "cluster_sizes_of": "all entities" if mode == "full" else "re-clustered entities",
        "refused": {"constraint": clustered.stats.edges_refused_constraint,
                    "judgement": clustered.stats.edges_refused_judgement,
                    "scored_by_guard": int(((new_edges["decision"] == "review") & new_edges["review_reason"].is_not_null()).sum())},
        "refused_of": "all pairs" if mode == "full" else "re-clustered entities and new pairs",
        "timings": {k: round(v, 3) for k, v in clock.items()},
    }
    # only records whose entity or content changed need writing
    keys = assigned[uid]
    membership_rows = assigned.join(_rows_of(records, keys, uid).select(uid, "row_hash"), on=uid, how="left")
    if membership.height:
        membership_rows = membership_rows.join(
            _rows_of(membership, keys, uid).select(
                uid, pl.col("entity_id").alias("_was"), pl.col("row_hash").alias("_hash_was")),
            on=uid, how="left",
        ).filter(
            pl.col("_was").is_null() | (pl.col("_was") != pl.col("entity_id")) | (pl.col("_hash_was") != pl.col("row_hash"))
        )
    written = _written_membership(membership, membership_rows, uid, seq)
    t_save = time.perf_counter()
    seq = store.save_run(
        seq=seq, mode=mode, records_considered=int(membership_rows.height), stats=stats, settings_hash=fingerprint,
        model_json=model.to_json() if retrain else None, dirty_keys=dirty,
        new_edges=new_edges, membership=written, entity_changes=changes, started_at=started,
        refusals=refusals, reason_scope=reason_scope,
    )
    clock["save"] = time.perf_counter() - t_save
    return RunSummary(
        entity_type=entity_type, mode=mode, seq=seq, records=records.height, dirty=dirty.len(),
        pairs=pairs_count, matches=int((new_edges["decision"] == "match").sum()),
        review=int((new_edges["decision"] == "review").sum()), stats=stats, timings=clock,
        refused=sum(stats["refused"][k] for k in ("constraint", "judgement", "scored_by_guard")),
    )



def _written_membership(before: pl.DataFrame, written: pl.DataFrame, uid: str, seq: int) -> pl.DataFrame:
    """The membership rows this run writes, as the store will hold them (so it can cache them
    without re-reading): a record that changed entity is a member since this run."""
    before = _rows_of(before, written[uid], uid)
    return written.select(uid, "entity_id", "row_hash", "entity_created_seq").join(
        before.select(uid, pl.col("entity_id").alias("_was"), pl.col("since_seq").alias("_since")), on=uid, how="left",
    ).select(
        pl.col(uid).alias("record_key"), "entity_id", "row_hash",
        pl.when(pl.col("entity_id") == pl.col("_was")).then(pl.col("_since")).otherwise(pl.lit(seq)).cast(pl.Int64)
        .alias("since_seq"),
        pl.col("entity_created_seq").cast(pl.Int64),
    )


def _rows_of(frame: pl.DataFrame, keys: pl.Series, uid: str) -> pl.DataFrame:
    """The rows of a million-row frame for a few thousand keys. Filtering first keeps the joins
    that follow small; joining the whole frame would hash all of it every run."""
    return frame.filter(pl.col(uid).is_in(keys.implode()))
