"""Linkage quality against the simulator's truth: pairwise, B-cubed and exact-cluster scores.

Three views because they fail differently: pairwise scores are dominated by big clusters (one
wrong merge of two families costs many pairs), B-cubed weighs every record equally, and exact
cluster scores count entities a station would see as wholly right. All three come from counts
over the (cluster, true entity) contingency table, never from listing pairs, so a million
records cost a few group-bys.

Only records present in both the clustering and the truth are scored, and the rest are counted:
truth.csv also lists rows written unreadable on purpose (quarantined, never clustered), and a
clustering may hold records the truth does not know.

Per station the scores cover the station's records within the whole resolution: a pair counts
when at least one of its records belongs to the station, cluster and entity sizes are global,
B-cubed averages over the station's records, and exact-cluster scores cover the clusters and
entities that hold any of its records. So a station's recall includes links to other stations'
records, which is what the hub is for.

Undefined ratios (no predicted pairs, say) are None rather than a flattering 1.0.
"""

from __future__ import annotations

import polars as pl

__all__ = ["bcubed_metrics", "cluster_metrics", "evaluate", "pairwise_metrics", "phenomenon_errors"]

OVERALL = "overall"
METRIC_COLUMNS = (
    "scope",
    "records",
    "entities",
    "clusters",
    "pairwise_precision",
    "pairwise_recall",
    "pairwise_f1",
    "tp",
    "fp",
    "fn",
    "bcubed_precision",
    "bcubed_recall",
    "bcubed_f1",
    "cluster_precision",
    "cluster_recall",
    "cluster_f1",
    "ignored_not_in_truth",
    "ignored_not_clustered",
)
RATIO_COLUMNS = tuple(c for c in METRIC_COLUMNS if c.endswith(("precision", "recall", "f1")))


def pairwise_metrics(
    clusters: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    unique_id: str = "record_key",
    cluster_col: str = "cluster_key",
    truth_col: str = "entity_id",
) -> dict:
    """precision, recall, f1, tp, fp, fn over record pairs, plus records and ignored counts."""
    row = _overall(clusters, truth, unique_id, cluster_col, truth_col)
    return _pick(
        row,
        pairwise_precision="precision",
        pairwise_recall="recall",
        pairwise_f1="f1",
        tp="tp",
        fp="fp",
        fn="fn",
    )


def bcubed_metrics(
    clusters: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    unique_id: str = "record_key",
    cluster_col: str = "cluster_key",
    truth_col: str = "entity_id",
) -> dict:
    """B-cubed precision, recall, f1 (per-record overlap shares, averaged over records)."""
    row = _overall(clusters, truth, unique_id, cluster_col, truth_col)
    return _pick(row, bcubed_precision="precision", bcubed_recall="recall", bcubed_f1="f1")


def cluster_metrics(
    clusters: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    unique_id: str = "record_key",
    cluster_col: str = "cluster_key",
    truth_col: str = "entity_id",
) -> dict:
    """precision: share of predicted clusters equal to a true entity; recall: share of true
    entities recovered exactly; f1; plus the number of exact matches."""
    row = _overall(clusters, truth, unique_id, cluster_col, truth_col)
    out = _pick(row, cluster_precision="precision", cluster_recall="recall", cluster_f1="f1")
    out["exact"] = row["_exact"]
    return out


def evaluate(
    clusters: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    by: pl.DataFrame | None = None,
    unique_id: str = "record_key",
    cluster_col: str = "cluster_key",
    truth_col: str = "entity_id",
) -> pl.DataFrame:
    """One row 'overall', then (with `by`: unique_id -> station) one row per station, sorted.

    `by` has unique_id and one more column naming the station; its values become `scope`.
    """
    rows = _prepare(clusters, truth, unique_id, cluster_col, truth_col)
    tables = [_table(rows.with_columns(pl.lit(OVERALL).alias("_g"))).drop("_exact")]
    if by is not None:
        group = next(c for c in by.columns if c != unique_id)
        station = by.select(
            pl.col(unique_id).cast(rows.schema["_k"]).alias("_k"),
            pl.col(group).cast(pl.String).alias("_g"),
        )
        if not _all_distinct(station["_k"]):
            raise ValueError(f"by: {unique_id} must be unique")
        # Left join: records without a station still count towards cluster and entity sizes.
        per_station = rows.join(station, on="_k", how="left")
        tables.append(_table(per_station).drop("_exact").sort("scope"))
    return pl.concat(tables)


# --- core -------------------------------------------------------------------------------------


def _prepare(
    clusters: pl.DataFrame, truth: pl.DataFrame, unique_id: str, cluster_col: str, truth_col: str
) -> pl.DataFrame:
    """One row per record on either side: _k, _c (cluster code), _t (entity code); a null code
    means the record is missing on that side and is ignored."""
    predicted = clusters.select(pl.col(unique_id).alias("_k"), _codes(clusters[cluster_col], "_c"))
    true = truth.select(
        pl.col(unique_id).cast(predicted.schema["_k"]).alias("_k"), _codes(truth[truth_col], "_t")
    )
    for name, frame in (("clusters", predicted), ("truth", true)):
        if frame["_k"].null_count() or not _all_distinct(frame["_k"]):
            raise ValueError(f"{name}: {unique_id} must be unique and not null")
    return predicted.join(true, on="_k", how="full", coalesce=True)


def _all_distinct(keys: pl.Series) -> bool:
    """Distinct 64-bit hashes prove distinct keys; only a hash tie pays for comparing strings."""
    return keys.hash().n_unique() == keys.len() or keys.n_unique() == keys.len()


def _codes(labels: pl.Series, name: str) -> pl.Series:
    """Integer stand-ins for cluster/entity labels: every later group-by hashes and compares
    8-byte ints instead of strings. A 64-bit hash collision (never seen) is detected by the
    distinct counts and falls back to exact dense ranks."""
    if labels.null_count():
        raise ValueError(f"{labels.name} must not be null")
    hashed = labels.hash()
    if hashed.n_unique() != labels.n_unique():
        hashed = labels.rank("dense").cast(pl.UInt64)
    return hashed.alias(name)


def _pairs_touching(n: pl.Expr, k: pl.Expr) -> pl.Expr:
    """Pairs among n records with at least one of the k in scope (all pairs when k == n)."""
    return n * (n - 1) // 2 - (n - k) * (n - k - 1) // 2


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num / den)


def _harmonic(p: pl.Expr, r: pl.Expr) -> pl.Expr:
    return (
        pl.when(p + r > 0)
        .then(2 * p * r / (p + r))
        .otherwise(pl.when(p.is_not_null() & r.is_not_null()).then(0.0))
    )


def _table(rows: pl.DataFrame) -> pl.DataFrame:
    """Metrics per scope `_g` from records (_k, _c, _t, _g) with global cluster/entity sizes.

    Sizes are taken over all scored rows, whatever their scope; `rows` must hold every scored
    record (a record outside every scope has a null `_g`)."""
    both = pl.col("_c").is_not_null() & pl.col("_t").is_not_null()
    # One lazy plan: the shared `sized` frame is computed once and the three group-bys run
    # side by side.
    rows_lazy = rows.lazy()
    scored = rows_lazy.filter(both)
    sized = scored.with_columns(
        pl.len().over("_c").cast(pl.Int64).alias("_C"),
        pl.len().over("_t").cast(pl.Int64).alias("_T"),
        pl.len().over("_c", "_t").cast(pl.Int64).alias("_M"),
    )
    cells = (
        sized.group_by("_g", "_c", "_t")
        .agg(pl.len().cast(pl.Int64).alias("_m"), pl.col("_M", "_C", "_T").first())
        .group_by("_g")
        .agg(
            pl.col("_m").sum().alias("records"),
            _pairs_touching(pl.col("_M"), pl.col("_m")).sum().alias("tp"),
            (pl.col("_m") * pl.col("_M") / pl.col("_C")).sum().alias("_b3p"),
            (pl.col("_m") * pl.col("_M") / pl.col("_T")).sum().alias("_b3r"),
            ((pl.col("_M") == pl.col("_C")) & (pl.col("_M") == pl.col("_T"))).sum().alias("_exact"),
        )
    )
    predicted = (
        sized.group_by("_g", "_c")
        .agg(pl.len().alias("_m"), pl.col("_C").first())
        .group_by("_g")
        .agg(
            pl.len().alias("clusters"),
            _pairs_touching(pl.col("_C"), pl.col("_m")).sum().alias("_pred"),
        )
    )
    true = (
        sized.group_by("_g", "_t")
        .agg(pl.len().alias("_m"), pl.col("_T").first())
        .group_by("_g")
        .agg(
            pl.len().alias("entities"),
            _pairs_touching(pl.col("_T"), pl.col("_m")).sum().alias("_true"),
        )
    )
    skipped = (
        rows_lazy.filter(~both)
        .group_by("_g")
        .agg(
            pl.col("_t").is_null().sum().alias("ignored_not_in_truth"),
            pl.col("_c").is_null().sum().alias("ignored_not_clustered"),
        )
    )
    groups = rows_lazy.select("_g").unique().drop_nulls()
    table = (
        groups.join(cells, on="_g", how="left")
        .join(predicted, on="_g", how="left")
        .join(true, on="_g", how="left")
        .join(skipped, on="_g", how="left")
        .with_columns(
            pl.col(
                "records",
                "clusters",
                "entities",
                "tp",
                "_pred",
                "_true",
                "_exact",
                "ignored_not_in_truth",
                "ignored_not_clustered",
            )
            .fill_null(0)
            .cast(pl.Int64),
        )
    )
    tp, pred, true_ = pl.col("tp"), pl.col("_pred"), pl.col("_true")
    bp = _ratio(pl.col("_b3p"), pl.col("records"))
    br = _ratio(pl.col("_b3r"), pl.col("records"))
    cp = _ratio(pl.col("_exact"), pl.col("clusters"))
    cr = _ratio(pl.col("_exact"), pl.col("entities"))
    return (
        table.with_columns(
            pl.col("_g").alias("scope"),
            _ratio(tp, pred).alias("pairwise_precision"),
            _ratio(tp, true_).alias("pairwise_recall"),
            _ratio(2 * tp, pred + true_).alias("pairwise_f1"),
            (pred - tp).alias("fp"),
            (true_ - tp).alias("fn"),
            bp.alias("bcubed_precision"),
            br.alias("bcubed_recall"),
            _harmonic(bp, br).alias("bcubed_f1"),
            cp.alias("cluster_precision"),
            cr.alias("cluster_recall"),
            _harmonic(cp, cr).alias("cluster_f1"),
        )
        .select(*METRIC_COLUMNS, "_exact")
        .cast(dict.fromkeys(RATIO_COLUMNS, pl.Float64))
        .collect()
    )


def _overall(
    clusters: pl.DataFrame, truth: pl.DataFrame, unique_id: str, cluster_col: str, truth_col: str
) -> dict:
    rows = _prepare(clusters, truth, unique_id, cluster_col, truth_col)
    table = _table(rows.with_columns(pl.lit(OVERALL).alias("_g")))
    if table.height == 0:  # nothing to score and nothing ignored
        return dict.fromkeys([*METRIC_COLUMNS, "_exact"], 0) | dict.fromkeys(RATIO_COLUMNS, None)
    return table.row(0, named=True)


def _pick(row: dict, **names: str) -> dict:
    out = {new: row[old] for old, new in names.items()}
    out |= {k: row[k] for k in ("records", "ignored_not_in_truth", "ignored_not_clustered")}
    return out


# --- errors per real-world phenomenon ------------------------------------------------------

NO_TAG, ALL_TAGS = "none", "all"
PHENOMENON_COLUMNS = ("tag", "records", "true_pairs", "missed_pairs", "missed_share",
                      "predicted_pairs", "false_pairs", "false_merge_share")


def phenomenon_errors(
    clusters: pl.DataFrame,
    truth: pl.DataFrame,
    *,
    unique_id: str = "record_key",
    cluster_col: str = "cluster_key",
    truth_col: str = "entity_id",
    tags_col: str = "quirks",
) -> pl.DataFrame:
    """Pairwise errors per phenomenon tag of the truth (comma-separated tags per record, empty or
    null when none): one row per tag, then "none" (records without a tag) and "all".

    Per tag: records carrying it; true_pairs, the true pairs with at least one tagged record;
    missed_pairs (and missed_share of true_pairs), those not in one predicted cluster;
    predicted_pairs, the pairs within predicted clusters with at least one tagged record;
    false_pairs (and false_merge_share of predicted_pairs), those whose records are two
    entities. Only records in both the clustering and the truth count. No pair is listed:
    pairs touching the k tagged of n records of a cluster, an entity or a (cluster, entity)
    cell are C(n, 2) - C(n - k, 2), so a million records cost a few group-bys.
    """
    rows = _prepare(clusters, truth, unique_id, cluster_col, truth_col)
    tags = truth.select(
        pl.col(unique_id).cast(rows.schema["_k"]).alias("_k"),
        pl.col(tags_col).cast(pl.String).fill_null("").str.split(",")
        .list.eval(pl.element().str.strip_chars().filter(pl.element() != "")).list.unique()
        .alias("_tags"),
    )
    sized = (
        rows.lazy()
        .filter(pl.col("_c").is_not_null() & pl.col("_t").is_not_null())
        .join(tags.lazy(), on="_k", how="left")
        .with_columns(
            pl.len().over("_c").cast(pl.Int64).alias("_C"),
            pl.len().over("_t").cast(pl.Int64).alias("_T"),
            pl.len().over("_c", "_t").cast(pl.Int64).alias("_M"),
            pl.when(pl.col("_tags").list.len().fill_null(0) == 0)
            .then(pl.lit([NO_TAG]))
            .otherwise(pl.col("_tags"))
            .list.concat(pl.lit([ALL_TAGS]))
            .alias("_tag"),
        )
        .drop("_tags")
        .explode("_tag")
    )
    m, k = pl.col("_m"), pl.col("_k")
    cells = (
        sized.group_by("_tag", "_c", "_t").agg(pl.len().cast(pl.Int64).alias("_m"), pl.col("_M").first())
        .group_by("_tag")
        .agg(m.sum().alias("records"), _pairs_touching(pl.col("_M"), m).sum().alias("_tp"))
    )
    predicted = (
        sized.group_by("_tag", "_c").agg(pl.len().cast(pl.Int64).alias("_k"), pl.col("_C").first())
        .group_by("_tag").agg(_pairs_touching(pl.col("_C"), k).sum().alias("predicted_pairs"))
    )
    true = (
        sized.group_by("_tag", "_t").agg(pl.len().cast(pl.Int64).alias("_k"), pl.col("_T").first())
        .group_by("_tag").agg(_pairs_touching(pl.col("_T"), k).sum().alias("true_pairs"))
    )
    table = (
        cells.join(predicted, on="_tag").join(true, on="_tag")
        .with_columns(
            (pl.col("true_pairs") - pl.col("_tp")).alias("missed_pairs"),
            (pl.col("predicted_pairs") - pl.col("_tp")).alias("false_pairs"),
        )
        .with_columns(
            _ratio(pl.col("missed_pairs"), pl.col("true_pairs")).cast(pl.Float64).alias("missed_share"),
            _ratio(pl.col("false_pairs"), pl.col("predicted_pairs")).cast(pl.Float64).alias("false_merge_share"),
            pl.col("_tag").alias("tag"),
            pl.col("_tag").is_in([NO_TAG, ALL_TAGS]).alias("_last"),
            (pl.col("_tag") == ALL_TAGS).alias("_very_last"),
        )
        .sort("_last", "_very_last", "tag")
        .select(PHENOMENON_COLUMNS)
        .collect()
    )
    return table.cast({c: pl.Int64 for c in ("records", "true_pairs", "missed_pairs", "predicted_pairs",
                                             "false_pairs")})
