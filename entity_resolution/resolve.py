"""Records in, entities out, in memory: the pipeline of blocking, comparison, scoring, clustering.

`score_pairs` is shared by full and incremental runs (service.py); `resolve` is the whole
pipeline over one frame, for benchmarks, tests and notebooks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import polars as pl

from entity_resolution.blocking import candidate_pairs, derived_todo, prepare, sharing_blocks, with_derived
from entity_resolution.clustering import cluster
from entity_resolution.comparisons import comparison_vectors
from entity_resolution.config import EntitySettings
from entity_resolution.scoring import Model, score, train


@dataclass
class ScoredPairs:
    scored: pl.DataFrame  # left_id, right_id, gamma_*, w_*, match_weight, match_probability, decision
    block_stats: pl.DataFrame
    model: Model
    trained: bool
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Resolution:
    clusters: pl.DataFrame  # unique_id, cluster_key
    scored: ScoredPairs

    @property
    def timings(self) -> dict[str, float]:
        return self.scored.timings


def distinct_valid(settings: EntitySettings) -> list[tuple[str, str]]:
    return [(c.column, c.valid_flag) for c in settings.constraints.distinct_valid]


def guard_records(records: pl.DataFrame, settings: EntitySettings) -> pl.DataFrame:
    """The unique id and the guard columns (distinct_valid) of `records`, derived ones evaluated.

    Clustering and the conflict check read the guard's flag, which may be a derived column
    (id_trusted): this evaluates just the derived columns the guard needs, on just the columns
    they read, so a million records cost a few narrow columns rather than a prepared copy.
    Columns already present are taken as they are.
    """
    uid = settings.unique_id
    wanted = list(dict.fromkeys(c for pair in distinct_valid(settings) for c in pair))
    needed = derived_todo(records.columns, settings, wanted)
    roots = {r for c in needed for r in pl.sql_expr(settings.derived[c]).meta.root_names() if r in records.columns}
    frame = records.select(list(dict.fromkeys([uid, *(c for c in wanted if c in records.columns), *sorted(roots)])))
    return with_derived(frame, settings, wanted).select(uid, *wanted)


def score_pairs(
    records: pl.DataFrame,
    settings: EntitySettings,
    *,
    model: Model | None = None,
    judgements: pl.DataFrame | None = None,
    new_keys: pl.Series | None = None,
) -> ScoredPairs:
    """Block, compare and score; train the model first when none is given."""
    clock: dict[str, float] = {}
    t = time.perf_counter()
    population = records.height
    if new_keys is not None and model is not None:
        # the stored model carries its term frequencies: scoring needs only the pairs' records
        records = sharing_blocks(records, settings, new_keys)
    prepared = prepare(records, settings)
    pairs, stats = candidate_pairs(prepared, settings, new_keys=new_keys, population=population)
    clock["blocking"] = time.perf_counter() - t
    t = time.perf_counter()
    gamma = comparison_vectors(pairs, prepared, settings)
    clock["comparisons"] = time.perf_counter() - t
    trained = model is None
    if model is None:
        t = time.perf_counter()
        model = train(prepared, gamma, settings, judgements=judgements)
        clock["training"] = time.perf_counter() - t
    t = time.perf_counter()
    scored = score(gamma, prepared, model, settings)
    clock["scoring"] = time.perf_counter() - t
    return ScoredPairs(scored, stats, model, trained, clock)


def resolve(
    records: pl.DataFrame,
    settings: EntitySettings,
    *,
    model: Model | None = None,
    judgements: pl.DataFrame | None = None,
) -> Resolution:
    scored = score_pairs(records, settings, model=model, judgements=judgements)
    t = time.perf_counter()
    clusters = cluster(
        guard_records(records, settings),
        scored.scored.filter(pl.col("decision") == "match"),
        judgements=judgements,
        distinct_valid=distinct_valid(settings),
        unique_id=settings.unique_id,
    )
    scored.timings["clustering"] = time.perf_counter() - t
    return Resolution(clusters, scored)
