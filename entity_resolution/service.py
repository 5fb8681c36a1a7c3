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

from core.errors import ConfigError
from entity_resolution.clustering import (ClusterResult, cluster_with_stats, read_once, recluster_with_stats,
                                          touching)
from entity_resolution.config import EntitySettings
from entity_resolution.resolve import distinct_valid, guard_records, score_pairs
from entity_resolution.scoring import Model
from entity_resolution.stable_ids import assign_entity_ids
from entity_resolution.survivorship import parse_survivorship


class ResolutionStore(Protocol):
    def records(self, columns: list[str], *, cache_too: list[str] = ...) -> pl.DataFrame: ...
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


def golden_columns(settings: EntitySettings) -> list[str]:
    """The record columns the type's golden records read: resolution's read of the records
    caches them too, so that the first publication after it finds them in the cache instead of
    reading every record again. Empty when the survivorship config is invalid: the golden step
    reports that, not resolution."""
    try:
        survivorship = parse_survivorship(settings.survivorship or {})
    except ConfigError:
        return []
    return ["source_updated_at", *survivorship.record_columns]


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
    clock: dict[str, float] = {}  # seconds per step, kept in the run's stats
    t0 = time.perf_counter()
    loaded = _load(store, settings, full=full, retrain=retrain, clock=clock, t0=t0)
    changed = _changed_records(loaded, settings.unique_id)
    clock["find_changed"] = time.perf_counter() - t0 - clock["load"]
    seq = store.next_seq()
    fresh = _fresh_judgements(store, loaded.judgements)
    if loaded.mode == "incremental" and changed.dirty.len() == 0 and fresh.height == 0:
        return RunSummary(entity_type, "unchanged", seq - 1, loaded.records.height, 0, 0, 0, 0)

    result = score_pairs(loaded.records, settings,
                         model=None if loaded.retrain else Model.from_json(loaded.stored_model[1]),
                         judgements=loaded.judgements, new_keys=None if loaded.mode == "full" else changed.dirty)
    clock.update(result.timings)
    new_edges = edge_frame(result.scored)
    # Every scored pair, with its comparison levels and weights, is the largest frame of a full
    # run; past this point only its match and review edges and its count are read. Let it go
    # before clustering and the ids, where the run reaches its peak (1M persons: 40-80 MiB less).
    model, block_stats, pairs = result.model, result.block_stats, result.scored.height
    del result

    t = time.perf_counter()
    clustered = _cluster(store, loaded, settings, changed, new_edges, fresh)
    # Refused match edges wait for a reviewer: new ones carry the reason in new_edges; stored ones
    # inside the re-clustered scope are updated by the store (the scope is all there is to redo).
    new_edges = _with_refusals(new_edges, clustered.outcome.reasons)
    assigned, changes = _assign_ids(store, loaded, clustered, prefix=prefix, seq=seq, clock=clock)
    clock["clustering"] = time.perf_counter() - t

    stats = _run_stats(loaded.mode, block_stats, changes, assigned, clustered.outcome, new_edges, clock)
    membership_rows = _membership_to_write(assigned, loaded, settings.unique_id)
    written = _written_membership(loaded.membership, membership_rows, settings.unique_id, seq)
    t_save = time.perf_counter()
    seq = store.save_run(
        seq=seq, mode=loaded.mode, records_considered=int(membership_rows.height), stats=stats,
        settings_hash=loaded.fingerprint, model_json=model.to_json() if loaded.retrain else None,
        dirty_keys=changed.dirty, new_edges=new_edges,
        membership=written,
        entity_changes=changes, started_at=started, refusals=clustered.outcome.reasons,
        reason_scope=None if loaded.mode == "full" else clustered.clusters[settings.unique_id],
    )
    clock["save"] = time.perf_counter() - t_save
    return RunSummary(
        entity_type=entity_type, mode=loaded.mode, seq=seq, records=loaded.records.height, dirty=changed.dirty.len(),
        pairs=pairs, matches=int((new_edges["decision"] == "match").sum()),
        review=int((new_edges["decision"] == "review").sum()), stats=stats, timings=clock,
        refused=sum(stats["refused"][k] for k in ("constraint", "judgement", "scored_by_guard")),
    )


@dataclass
class _Loaded:
    """What a run reads from the store before it decides anything, and what it decided from it."""

    records: pl.DataFrame
    membership: pl.DataFrame
    judgements: pl.DataFrame
    stored_model: tuple[str, str] | None  # (settings fingerprint, model JSON)
    fingerprint: str  # of the settings now
    retrain: bool
    mode: str  # "full" or "incremental"


@dataclass
class _Changed:
    """The records an incremental run looks at (all of them in a full run)."""

    dirty: pl.Series  # new or changed since the last run
    new: pl.Series  # of those, records with no membership row yet
    gone: pl.Series  # members whose record is no longer there (its batch was held, say)


@dataclass
class _Clustered:
    clusters: pl.DataFrame  # unique_id, cluster_key of the records whose entity this run settles
    outcome: ClusterResult  # with the refused edges (`reasons`) and the clustering figures
    previous: pl.DataFrame | None  # those records' entity ids before the run, to keep ids stable


def _load(store: ResolutionStore, settings: EntitySettings, *, full: bool, retrain: bool | None,
          clock: dict[str, float], t0: float) -> _Loaded:
    """Read records, membership, judgements and the stored model; decide whether to retrain and
    whether the run is full (asked, retraining, or nothing resolved yet) or incremental."""
    records = store.records(needed_columns(settings), cache_too=golden_columns(settings))
    clock["load_records"] = time.perf_counter() - t0
    membership = store.membership()
    judgements = store.judgements()
    stored_model = store.model()
    fingerprint = settings_fingerprint(settings)
    if retrain is None:
        retrain = full or stored_model is None or stored_model[0] != fingerprint
    mode = "full" if full or retrain or membership.height == 0 else "incremental"
    clock["load"] = time.perf_counter() - t0
    return _Loaded(records, membership, judgements, stored_model, fingerprint, retrain, mode)


def _changed_records(loaded: _Loaded, uid: str) -> _Changed:
    records, membership = loaded.records, loaded.membership
    if loaded.mode == "full":
        return _Changed(records[uid], records[uid], records[uid].clear())
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
    return _Changed(dirty, new, gone)


def _fresh_judgements(store: ResolutionStore, judgements: pl.DataFrame) -> pl.DataFrame:
    """Judgements made since the last run started: each re-clusters its pair even when no record
    changed."""
    last_run = store.last_run_started()
    return judgements if last_run is None else judgements.filter(pl.col("judged_at") > last_run)


def _cluster(store: ResolutionStore, loaded: _Loaded, settings: EntitySettings, changed: _Changed,
             new_edges: pl.DataFrame, fresh: pl.DataFrame) -> _Clustered:
    """Cluster every record (full), or re-cluster only the components that changed records, new
    edges and new verdicts touch, with the stored match edges around them (incremental)."""
    uid = settings.unique_id
    records, membership = loaded.records, loaded.membership
    distinct = distinct_valid(settings)
    previous = membership.select(uid, "entity_id", "entity_created_seq") if membership.height else None
    if loaded.mode == "full":
        outcome = cluster_with_stats(guard_records(records, settings), new_edges.filter(pl.col("decision") == "match"),
                                     judgements=loaded.judgements, distinct_valid=distinct, unique_id=uid)
        return _Clustered(outcome.membership, outcome, previous)
    dirty_set = changed.dirty.implode()
    match_cols = ["left_id", "right_id", "match_probability"]
    new_matches = new_edges.filter(pl.col("decision") == "match").select(match_cols)
    stored = read_once(store.match_edges_touching)

    def match_edges(ids: pl.Series) -> pl.DataFrame:
        """The match edges now with an end among `ids`: the stored ones, except those of changed
        records (re-scored in this run), and this run's. Read by key as the closure asks, each
        record's once, so a drop reads the edges around it, not every match edge of the type."""
        kept = stored(ids).filter(~(pl.col("left_id").is_in(dirty_set) | pl.col("right_id").is_in(dirty_set)))
        return pl.concat([kept, touching(new_matches, ids)])

    touched = pl.concat([
        new_edges.select("left_id", "right_id"),
        pl.DataFrame({"left_id": changed.dirty, "right_id": changed.dirty}),  # a changed record may have lost edges
        fresh.select("left_id", "right_id"),  # a new verdict re-clusters its pair
    ])
    clusters, outcome = recluster_with_stats(
        guard_records(records, settings), match_edges, membership.select(uid, pl.col("entity_id").alias("cluster_key")),
        touched,
        judgements=loaded.judgements, distinct_valid=distinct, unique_id=uid, scope_only=True, new=changed.new,
        gone=changed.gone,
    )
    # Records outside the re-clustered scope keep their entity; the scope holds whole
    # previous entities, so ids are settled inside it.
    return _Clustered(clusters, outcome, _rows_of(previous, clusters[uid], uid))


def _assign_ids(store: ResolutionStore, loaded: _Loaded, clustered: _Clustered, *, prefix: str, seq: int,
                clock: dict[str, float]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stable entity ids for the clusters, and the entity changes (create, merge, split, ...)."""
    # New ids hash a record key of the scope; they must not take an id that is live outside it
    # or was ever retired.
    issued = store.retired_ids()
    if loaded.mode == "incremental":
        issued = pl.concat([issued, loaded.membership["entity_id"].unique()])
    t_ids = time.perf_counter()
    assigned, changes = assign_entity_ids(clustered.clusters, clustered.previous, prefix=prefix, run_seq=seq,
                                          issued_ids=issued)
    clock["entity_ids"] = time.perf_counter() - t_ids
    return assigned, changes


def _run_stats(mode: str, block_stats: pl.DataFrame, changes: pl.DataFrame, assigned: pl.DataFrame,
               outcome: ClusterResult, new_edges: pl.DataFrame, clock: dict[str, float]) -> dict:
    """The run's figures as stored with it (resolution_runs.stats) and shown by the report."""
    sizes = assigned.group_by("entity_id").len()["len"].value_counts().sort("len")
    return {
        "blocking": block_stats.to_dicts(),
        "ops": changes.group_by("op").len().sort("op").to_dicts() if changes.height else [],
        "cluster_sizes": {str(k): int(v) for k, v in sizes.iter_rows()},
        "cluster_sizes_of": "all entities" if mode == "full" else "re-clustered entities",
        "refused": {"constraint": outcome.stats.edges_refused_constraint,
                    "judgement": outcome.stats.edges_refused_judgement,
                    "scored_by_guard": int(((new_edges["decision"] == "review") & new_edges["review_reason"].is_not_null()).sum())},
        "refused_of": "all pairs" if mode == "full" else "re-clustered entities and new pairs",
        "timings": {k: round(v, 3) for k, v in clock.items()},
    }


def _membership_to_write(assigned: pl.DataFrame, loaded: _Loaded, uid: str) -> pl.DataFrame:
    """Only records whose entity or content changed need writing."""
    keys = assigned[uid]
    rows = assigned.join(_rows_of(loaded.records, keys, uid).select(uid, "row_hash"), on=uid, how="left")
    if loaded.membership.height:
        rows = rows.join(
            _rows_of(loaded.membership, keys, uid).select(
                uid, pl.col("entity_id").alias("_was"), pl.col("row_hash").alias("_hash_was")),
            on=uid, how="left",
        ).filter(
            pl.col("_was").is_null() | (pl.col("_was") != pl.col("entity_id")) | (pl.col("_hash_was") != pl.col("row_hash"))
        )
    return rows


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
