"""Stable entity ids: this run's clusters -> the ids stations already hold.

Cluster keys are recomputed on every run and move whenever a smaller record key joins; stations
store entity ids, so ids must survive re-clustering. Each previous entity claims the cluster that
holds most of its records (tie: the part holding its smallest record key), which is "a split keeps
the id on the largest part". A cluster claimed by several entities is a merge and keeps the oldest
id (smallest entity_created_seq, tie: smallest id); the others retire with `merged_into`. A cluster
claimed by nobody (new records only, or the minor part of a split) gets a new id. New records
never decide a claim, so they never rename an entity.

New ids are derived from the cluster's smallest record key (prefix + sha1 hex), so the same
inputs give the same ids on a clean rerun, and the sequence counter plays no part in them. An id
is never handed out twice: a collision with an id that exists or existed (pass `issued_ids`:
retired ids are not in `previous`) lengthens the digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl

__all__ = ["CHANGE_OPS", "assign_entity_ids"]

CHANGE_OPS = ("create", "merge", "split", "retire", "update")
ID_HEX = 12  # 48 bits: a collision among ~1M live ids has odds ~2e-3 per run, handled below

_KEY, _CLUSTER, _ID, _SEQ = "record_key", "cluster_key", "entity_id", "entity_created_seq"


def assign_entity_ids(
    clusters: pl.DataFrame,
    previous: pl.DataFrame | None,
    *,
    prefix: str,
    run_seq: int,
    issued_ids: Iterable[str] | pl.Series | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(membership, changes) for this run.

    clusters: record_key, cluster_key (every current record). previous: record_key, entity_id,
    entity_created_seq from the last run, or None on the first. issued_ids: every id ever issued,
    retired ones included (ids in `previous` are always protected).

    membership: record_key, entity_id, entity_created_seq, sorted by record_key.
    changes: one row per entity whose membership changed: op (create | merge | split | retire |
    update), entity_id, entity_created_seq, merged_into (retired into), merged_from (ids retired
    into this one), parts (ids now holding the entity's former records, when more than one),
    record_keys_before, record_keys_after (sorted lists). An entity that both split and absorbed
    others is reported as 'split' with merged_from filled; the absorbed ids have 'retire' rows.
    """
    current = _checked(clusters.select(_KEY, _CLUSTER), "clusters")
    prev = _previous(previous, current.schema[_KEY])

    located = current.join(prev.select(_KEY, _ID), on=_KEY, how="left")
    seq_of = prev.group_by(_ID).agg(pl.col(_SEQ).min())
    claims = _claims(located).join(seq_of, on=_ID)
    # Per cluster, the oldest claimant keeps its id; the rest are merged into it. Contested
    # clusters are few, so only they are sorted.
    contested = pl.len().over(_CLUSTER) > 1
    ranked = pl.concat(
        [
            claims.filter(~contested).with_columns(pl.lit(True).alias("_keeps")),
            claims.filter(contested)
            .sort([_CLUSTER, _SEQ, _ID])
            .with_columns((pl.int_range(pl.len()).over(_CLUSTER) == 0).alias("_keeps")),
        ]
    )
    kept = ranked.filter("_keeps").select(_CLUSTER, _ID, _SEQ)

    unclaimed = (
        current.join(kept, on=_CLUSTER, how="anti")
        .group_by(_CLUSTER)
        .agg(pl.col(_KEY).min().alias("_first"))
    )
    fresh = unclaimed.select(
        _CLUSTER,
        _new_ids(unclaimed["_first"], prefix, prev[_ID], issued_ids).alias(_ID),
        pl.lit(run_seq, dtype=pl.Int64).alias(_SEQ),
    )
    ids = pl.concat([kept.cast({_SEQ: pl.Int64}), fresh])
    membership = (
        current.join(ids, on=_CLUSTER, how="left", maintain_order="left")
        .select(_KEY, _ID, _SEQ)
        .sort(_KEY)
    )
    changes = _changes(prev, membership, ranked)
    return membership, changes


def _all_distinct(keys: pl.Series) -> bool:
    """Distinct 64-bit hashes prove distinct keys; only a hash tie pays for comparing strings."""
    return keys.hash().n_unique() == keys.len() or keys.n_unique() == keys.len()


def _checked(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    keys = frame[_KEY]
    if keys.null_count() or not _all_distinct(keys):
        raise ValueError(f"{name}: record_key must be unique and not null")
    return frame


def _previous(previous: pl.DataFrame | None, key_dtype: pl.DataType) -> pl.DataFrame:
    schema = {_KEY: key_dtype, _ID: pl.String, _SEQ: pl.Int64}
    if previous is None:
        return pl.DataFrame(schema=schema)
    prev = _checked(previous.select(_KEY, _ID, _SEQ).cast(schema), "previous")
    if prev[_ID].null_count() or prev[_SEQ].null_count():
        raise ValueError("previous: entity_id and entity_created_seq must not be null")
    return prev


def _claims(located: pl.DataFrame) -> pl.DataFrame:
    """entity_id -> the cluster_key it claims: the part holding most of its (surviving) records,
    tie the part holding its smallest record key. New records are not counted. Entities in one
    piece (nearly all) skip the ranking."""
    parts = (
        located.filter(pl.col(_ID).is_not_null())
        .group_by(_ID, _CLUSTER)
        .agg(pl.len().alias("_n"), pl.col(_KEY).min().alias("_first"))
    )
    split = pl.len().over(_ID) > 1
    return pl.concat(
        [
            parts.filter(~split).select(_ID, _CLUSTER),
            parts.filter(split)
            .sort([_ID, "_n", "_first"], descending=[False, True, False])
            .unique(_ID, keep="first", maintain_order=True)
            .select(_ID, _CLUSTER),
        ]
    )


def _new_ids(
    firsts: pl.Series, prefix: str, live: pl.Series, issued: Iterable[str] | pl.Series | None
) -> pl.Series:
    """prefix + sha1(smallest record key)[:12]. On a clash with an id that exists or existed,
    or with an earlier new id (in smallest-key order), the digest is lengthened 4 hex at a time,
    then salted."""
    keys = firsts.to_list()
    digests = [hashlib.sha1(k.encode("utf-8")).hexdigest() for k in keys]
    ids = pl.Series(_ID, [prefix + d[:ID_HEX] for d in digests], dtype=pl.String)
    if not keys:
        return ids
    issued_ids = pl.Series(_ID, [] if issued is None else issued, dtype=pl.String)
    # Probe the long id lists with the (usually few) new ids, not the other way round.
    new_set = ids.implode()
    clash = (
        ids.is_duplicated().any() or live.is_in(new_set).any() or issued_ids.is_in(new_set).any()
    )
    if not clash:
        return ids
    # Rare path: settle clashes in smallest-key order, so the outcome does not depend on rows.
    order = sorted(range(len(keys)), key=keys.__getitem__)
    used = set(live.to_list()) | set(issued_ids.to_list())
    out: list[str] = [""] * len(keys)
    for i in order:
        key, digest = keys[i], digests[i]
        candidates = (prefix + digest[:n] for n in range(ID_HEX, len(digest) + 1, 4))
        chosen = next((c for c in candidates if c not in used), None)
        salt = 1
        while chosen is None or chosen in used:
            chosen = prefix + hashlib.sha1(f"{key}#{salt}".encode()).hexdigest()
            salt += 1
        used.add(chosen)
        out[i] = chosen
    return pl.Series(_ID, out, dtype=pl.String)


def _changes(prev: pl.DataFrame, membership: pl.DataFrame, ranked: pl.DataFrame) -> pl.DataFrame:
    # Entities touched: any record that moved, arrived or left names its old and new entity.
    moved = (
        prev.select(_KEY, pl.col(_ID).alias("_was"))
        .join(
            membership.select(_KEY, pl.col(_ID).alias("_now")), on=_KEY, how="full", coalesce=True
        )
        .filter(pl.col("_was").ne_missing(pl.col("_now")))
    )
    touched = pl.concat([moved["_was"], moved["_now"]]).drop_nulls().unique().implode()
    # Sorted once by key: a group keeps its rows' order, so every list comes out sorted.
    prev = prev.filter(pl.col(_ID).is_in(touched)).sort(_KEY)
    membership = membership.filter(pl.col(_ID).is_in(touched)).sort(_KEY)
    ranked = ranked.filter(pl.col(_ID).is_in(touched))
    before = prev.group_by(_ID).agg(
        pl.col(_KEY).alias("record_keys_before"), pl.col(_SEQ).min().alias("_seq_before")
    )
    after = membership.group_by(_ID).agg(
        pl.col(_KEY).alias("record_keys_after"), pl.col(_SEQ).first().alias("_seq_after")
    )
    # Where each previous entity's surviving records went.
    parts = (
        prev.select(_KEY, _ID)
        .join(membership.select(_KEY, pl.col(_ID).alias("_now")), on=_KEY)
        .group_by(_ID)
        .agg(pl.col("_now").unique().sort().alias("parts"))
        .filter(pl.col("parts").list.len() > 1)
    )
    winner = ranked.filter("_keeps").select(_CLUSTER, pl.col(_ID).alias("_winner"))
    losers = ranked.filter(~pl.col("_keeps")).join(winner, on=_CLUSTER)
    merged_into = losers.select(_ID, pl.col("_winner").alias("merged_into"))
    merged_from = losers.group_by(pl.col("_winner").alias(_ID)).agg(
        pl.col(_ID).sort().alias("merged_from")
    )
    empty = pl.lit([], dtype=pl.List(prev.schema[_KEY]))
    table = (
        before.join(after, on=_ID, how="full", coalesce=True)
        .join(parts, on=_ID, how="left")
        .join(merged_into, on=_ID, how="left")
        .join(merged_from, on=_ID, how="left")
        .with_columns(
            pl.col("record_keys_before").fill_null(empty),
            pl.col("record_keys_after").fill_null(empty),
        )
    )
    was, now = pl.col("_seq_before").is_not_null(), pl.col("_seq_after").is_not_null()
    op = (
        pl.when(~now)
        .then(pl.lit("retire"))
        .when(~was)
        .then(pl.lit("create"))
        .when(pl.col("parts").is_not_null())
        .then(pl.lit("split"))
        .when(pl.col("merged_from").is_not_null())
        .then(pl.lit("merge"))
        .when(pl.col("record_keys_before") != pl.col("record_keys_after"))
        .then(pl.lit("update"))
    )
    return (
        table.with_columns(op.alias("op"), pl.coalesce("_seq_before", "_seq_after").alias(_SEQ))
        .filter(pl.col("op").is_not_null())
        .select(
            "op",
            _ID,
            _SEQ,
            "merged_into",
            "merged_from",
            "parts",
            "record_keys_before",
            "record_keys_after",
        )
        .sort(_ID)
    )
