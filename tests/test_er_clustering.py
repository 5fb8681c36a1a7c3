"""Clustering: guarded connected components, judgements, determinism, incremental re-clustering."""

from __future__ import annotations

import random

import polars as pl
import pytest

from functools import partial

from entity_resolution import clustering
from entity_resolution.clustering import affected_records, read_once

# The bundled person settings guard on valid ID numbers (resolution.yaml constraints.distinct_valid);
# these tests cluster with that guard unless they pass their own.
ID_GUARD = (("id_number", "id_valid"),)
cluster = partial(clustering.cluster, distinct_valid=ID_GUARD)
cluster_with_stats = partial(clustering.cluster_with_stats, distinct_valid=ID_GUARD)
recluster = partial(clustering.recluster, distinct_valid=ID_GUARD)


def recs(*rows: tuple[str, str | None, bool | None]) -> pl.DataFrame:
    """(record_key, id_number, id_valid) rows."""
    return pl.DataFrame(
        rows,
        schema={"record_key": pl.String, "id_number": pl.String, "id_valid": pl.Boolean},
        orient="row",
    )


def edges(*rows: tuple[str, str, float]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"left_id": pl.String, "right_id": pl.String, "match_probability": pl.Float64},
        orient="row",
    )


def judged(*rows: tuple[str, str, str]) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows,
        schema={"left_id": pl.String, "right_id": pl.String, "verdict": pl.String},
        orient="row",
    )
    return frame.with_columns(who=pl.lit("reviewer01"), why=pl.lit("checked household register"))


def groups(membership: pl.DataFrame) -> set[frozenset[str]]:
    """Clusters as a set of sets, independent of keys and order."""
    return {
        frozenset(keys)
        for keys in membership.group_by("cluster_key").agg("record_key")["record_key"].to_list()
    }


def test_components_with_smallest_key_and_singletons() -> None:
    r = recs(("c", None, None), ("a", None, None), ("b", None, None), ("d", None, None))
    out = cluster(r, edges(("b", "c", 0.9), ("a", "c", 0.8)))
    assert out.columns == ["record_key", "cluster_key"]
    assert out.rows() == [("a", "a"), ("b", "a"), ("c", "a"), ("d", "d")]


def test_chain_is_cut_at_the_weaker_edge() -> None:
    # A and C carry different valid ID numbers; B has none and sits between them.
    r = recs(("A", "X", True), ("B", None, None), ("C", "Y", True))
    result = cluster_with_stats(r, edges(("A", "B", 0.90), ("B", "C", 0.95)))
    assert groups(result.membership) == {frozenset({"A"}), frozenset({"B", "C"})}
    assert result.stats.edges_refused_constraint == 1
    assert result.refused.rows() == [("A", "B", 0.90, "constraint")]

    flipped = cluster(r, edges(("A", "B", 0.95), ("B", "C", 0.90)))
    assert groups(flipped) == {frozenset({"A", "B"}), frozenset({"C"})}


def test_equal_valid_ids_merge() -> None:
    r = recs(("A", "X", True), ("B", None, None), ("C", "X", True))
    assert groups(cluster(r, edges(("A", "B", 0.9), ("B", "C", 0.95)))) == {frozenset("ABC")}


def test_invalid_or_missing_ids_never_block() -> None:
    r = recs(("A", "X", True), ("B", "Y", False), ("C", "Z", None), ("D", None, True))
    e = edges(("A", "B", 0.9), ("B", "C", 0.9), ("C", "D", 0.9))
    result = cluster_with_stats(r, e)
    assert groups(result.membership) == {frozenset("ABCD")}
    assert result.stats.edges_refused_constraint == 0


def test_equal_probabilities_break_ties_by_pair() -> None:
    # Both edges 0.9: (A, B) sorts before (B, C), so B goes with A.
    r = recs(("A", "X", True), ("B", None, None), ("C", "Y", True))
    out = cluster(r, edges(("B", "C", 0.9), ("A", "B", 0.9)))
    assert groups(out) == {frozenset({"A", "B"}), frozenset({"C"})}


def test_same_overrides_the_id_guard() -> None:
    r = recs(("A", "X", True), ("B", "Y", True), ("C", "X", True), ("D", "Z", True))
    result = cluster_with_stats(
        r,
        edges(("A", "B", 0.99), ("B", "C", 0.9), ("C", "D", 0.8)),
        judgements=judged(("B", "A", "same")),  # either orientation
    )
    # A+B by the reviewer; C (X, already held) may join; D (a third ID) may not.
    assert groups(result.membership) == {frozenset("ABC"), frozenset("D")}
    assert result.stats.same_applied == 1
    assert result.stats.edges_refused_constraint == 1


def test_different_splits_a_pair_the_model_merged() -> None:
    r = recs(("A", None, None), ("B", None, None))
    e = edges(("A", "B", 0.99))
    assert groups(cluster(r, e)) == {frozenset("AB")}
    result = cluster_with_stats(r, e, judgements=judged(("A", "B", "different")))
    assert groups(result.membership) == {frozenset("A"), frozenset("B")}
    assert result.stats.edges_refused_judgement == 1
    assert result.refused["reason"].to_list() == ["judgement"]


def test_different_holds_across_chains() -> None:
    r = recs(("A", None, None), ("B", None, None), ("C", None, None))
    e = edges(("A", "B", 0.9), ("B", "C", 0.8))
    out = cluster(r, e, judgements=judged(("A", "C", "different")))
    assert groups(out) == {frozenset("AB"), frozenset("C")}


def test_contradicting_judgements_split() -> None:
    r = recs(("A", None, None), ("B", None, None), ("C", None, None))
    both_ways = judged(("A", "B", "same"), ("B", "A", "different"))
    assert groups(cluster(r, edges(), judgements=both_ways)) == {
        frozenset("A"),
        frozenset("B"),
        frozenset("C"),
    }
    closure = judged(("A", "B", "same"), ("B", "C", "same"), ("A", "C", "different"))
    result = cluster_with_stats(r, edges(("A", "C", 0.99)), judgements=closure)
    assert groups(result.membership) == {frozenset("AB"), frozenset("C")}
    assert (result.stats.same_applied, result.stats.same_refused) == (1, 1)


def test_judgements_on_gone_records_are_ignored() -> None:
    r = recs(("A", None, None), ("B", None, None))
    result = cluster_with_stats(
        r, edges(("A", "B", 0.9)), judgements=judged(("A", "Z", "different"))
    )
    assert groups(result.membership) == {frozenset("AB")}
    assert result.stats.judgements_ignored == 1


def test_several_guard_columns_and_none() -> None:
    r = pl.DataFrame(
        {
            "record_key": ["A", "B", "C"],
            "id_number": ["X", None, "X"],
            "id_valid": [True, None, True],
            "uscc": [None, "U1", "U2"],
            "uscc_valid": [None, True, True],
        }
    )
    e = edges(("A", "B", 0.9), ("B", "C", 0.8))
    guarded = cluster(r, e, distinct_valid=[("id_number", "id_valid"), ("uscc", "uscc_valid")])
    assert groups(guarded) == {frozenset("AB"), frozenset("C")}
    assert groups(cluster(r, e, distinct_valid=[])) == {frozenset("ABC")}


def test_stats() -> None:
    r = recs(*[(k, None, None) for k in "ABCDEF"])
    stats = cluster_with_stats(
        r, edges(("A", "B", 0.9), ("B", "C", 0.9), ("A", "C", 0.5), ("D", "E", 0.7))
    ).stats
    assert (stats.records, stats.clusters, stats.singletons, stats.largest) == (6, 3, 1, 3)
    assert stats.size_histogram == {1: 1, 2: 1, 3: 1}
    assert (stats.edges, stats.edges_merged, stats.edges_redundant) == (4, 3, 1)
    assert stats.as_metadata()["size_histogram"] == "1:1, 2:1, 3:1"


def test_bad_inputs_fail_loudly() -> None:
    r = recs(("A", None, None), ("B", None, None))
    scored = edges(("A", "B", 0.4)).with_columns(decision=pl.lit("review"))
    with pytest.raises(ValueError, match="decision"):
        cluster(r, scored)
    with pytest.raises(ValueError, match="missing from records"):
        cluster(r, edges(("A", "Q", 0.9)))
    with pytest.raises(ValueError, match="verdict"):
        cluster(r, edges(), judgements=judged(("A", "B", "maybe")))
    with pytest.raises(ValueError, match="not unique"):
        cluster(pl.concat([r, r]), edges())


# --- randomised: determinism and incremental runs ---------------------------------------------


def random_case(
    seed: int, households: int = 150
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Households of 1-6 records that share one or two ID numbers (so the guard fires), edges
    mostly inside a household plus a few to the next one (so chains form), coarse probabilities
    (so ties occur), and a handful of judgements."""
    rng = random.Random(seed)
    keys, ids, valid, house = [], [], [], []
    for h in range(households):
        pool = [f"H{h}a", f"H{h}b"][: rng.choice([1, 1, 2])]
        for _ in range(rng.randint(1, 6)):
            keys.append(f"s{rng.randrange(5)}:R{len(keys):05d}")
            ids.append(rng.choice([*pool, None]))
            valid.append(rng.choice([True, True, True, False, None]))
            house.append(h)
    records = pl.DataFrame({"record_key": keys, "id_number": ids, "id_valid": valid})
    members: dict[int, list[str]] = {}
    for k, h in zip(keys, house, strict=True):
        members.setdefault(h, []).append(k)
    pairs = set()
    for h, ks in members.items():
        for a in ks:
            for b in ks:
                if a < b and rng.random() < 0.6:
                    pairs.add((a, b))
        if h + 1 in members and rng.random() < 0.2:
            a, b = rng.choice(ks), rng.choice(members[h + 1])
            pairs.add((min(a, b), max(a, b)))
    ordered = sorted(pairs)
    e = pl.DataFrame(
        {
            "left_id": [p[0] for p in ordered],
            "right_id": [p[1] for p in ordered],
            "match_probability": [rng.choice([0.8, 0.9, 0.95, 1.0]) for _ in ordered],
        }
    )
    picks = [rng.choice(ordered) for _ in range(20)]
    j = pl.DataFrame(
        {
            "left_id": [p[0] for p in picks],
            "right_id": [p[1] for p in picks],
            "verdict": [rng.choice(["same", "different"]) for _ in picks],
        }
    )
    return records, e, j


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_result_in_any_row_order(seed: int) -> None:
    records, e, j = random_case(seed)
    expected = cluster(records, e, judgements=j)
    for shuffle_seed in range(3):
        swapped = e.sample(fraction=1.0, shuffle=True, seed=shuffle_seed).select(
            pl.col("right_id").alias("left_id"),
            pl.col("left_id").alias("right_id"),
            "match_probability",
        )
        out = cluster(
            records.sample(fraction=1.0, shuffle=True, seed=shuffle_seed),
            swapped,
            judgements=j.sample(fraction=1.0, shuffle=True, seed=shuffle_seed),
        )
        assert out.equals(expected)
    assert expected["record_key"].is_sorted()


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_incremental_equals_full(seed: int) -> None:
    records, e, j = random_case(seed)
    rng = random.Random(seed)
    # Previous run: fewer records, fewer edges, fewer judgements.
    late_records = set(rng.sample(records["record_key"].to_list(), 8))
    gone = next(k for k in records["record_key"].to_list() if k not in late_records)
    new_mask = pl.Series([rng.random() < 0.02 for _ in range(e.height)])
    old_edges = e.filter(
        ~new_mask & ~pl.col("left_id").is_in(late_records) & ~pl.col("right_id").is_in(late_records)
    )
    old_j = j.head(15).filter(
        ~pl.col("left_id").is_in(late_records) & ~pl.col("right_id").is_in(late_records)
    )
    old_records = records.filter(~pl.col("record_key").is_in(late_records))
    previous = cluster(old_records, old_edges, judgements=old_j)

    # This run: new records and edges, new judgements, and one record withdrawn.
    now_records = records.filter(pl.col("record_key") != gone)
    now_edges = e.filter((pl.col("left_id") != gone) & (pl.col("right_id") != gone))
    now_j = j
    changed = pl.concat(
        [
            now_edges.join(old_edges, on=["left_id", "right_id"], how="anti").select(
                "left_id", "right_id"
            ),
            j.tail(5).select("left_id", "right_id"),
        ]
    )
    full = cluster_with_stats(now_records, now_edges, judgements=now_j)
    incremental = recluster(now_records, now_edges, previous, changed, judgements=now_j)
    assert incremental.equals(full.membership)
    # the same with the edges asked for by record, as a warehouse gives them: only around the change
    asked: set[str] = set()

    def around(ids: pl.Series) -> pl.DataFrame:
        asked.update(ids.to_list())
        return now_edges.filter(pl.col("left_id").is_in(ids.implode()) | pl.col("right_id").is_in(ids.implode()))

    assert recluster(now_records, around, previous, changed, judgements=now_j).equals(full.membership)
    assert 0 < len(asked) < records.height / 2
    # and asked about each record once, as the service reads the warehouse's edges
    asks: list[str] = []
    once = read_once(lambda ids: (asks.extend(ids.to_list()), around(ids))[1])
    assert recluster(now_records, once, previous, changed, judgements=now_j).equals(full.membership)
    assert sorted(asks) == sorted(set(asks)) and set(asks) == asked
    # The case is worth having: guards and judgements fired, clusters moved, and the scope is
    # a minority of the records.
    assert full.stats.edges_refused_constraint and full.stats.edges_refused_judgement
    assert not full.membership.equals(previous)
    scope = affected_records(previous, changed, now_edges, judgements=now_j)
    assert scope.len() < records.height / 2


def test_touched_clusters_alone_are_not_enough() -> None:
    """Why `affected_records` widens over stored edges: a record freed from its cluster can join a
    neighbour over an edge that was refused before."""
    r = recs(
        ("A", "Z", True), ("B", None, None), ("C", "Y", True), ("E", None, None), ("F", "Z", True)
    )
    old = edges(("B", "C", 0.90), ("E", "F", 0.95), ("B", "E", 0.80))
    previous = cluster(r, old)
    assert groups(previous) == {frozenset("A"), frozenset("BC"), frozenset("EF")}
    new = edges(("A", "B", 0.99))
    everything = pl.concat([old, new])
    full = cluster(r, everything)
    assert groups(full) == {frozenset("ABEF"), frozenset("C")}

    touched = previous.filter(pl.col("cluster_key").is_in(["A", "B"]))["record_key"].implode()
    naive = pl.concat(
        [
            previous.filter(~pl.col("record_key").is_in(touched)),
            cluster(
                r.filter(pl.col("record_key").is_in(touched)),
                everything.filter(
                    pl.col("left_id").is_in(touched) & pl.col("right_id").is_in(touched)
                ),
            ),
        ]
    ).sort("record_key")
    assert not naive.equals(full)

    assert affected_records(previous, new, everything).to_list() == ["A", "B", "C", "E", "F"]
    assert recluster(r, everything, previous, new).equals(full)


def test_recluster_accepts_entity_ids_as_previous_labels() -> None:
    """The stored membership labels clusters by entity id; the result is still keyed like a full
    run (smallest record key)."""
    records, e, j = random_case(21)
    old = e.head(e.height - 10)
    previous = cluster(records, old, judgements=j)
    by_entity = previous.with_columns(
        ("P" + pl.col("cluster_key").str.replace_all(":", "")).alias("cluster_key")
    )
    full = cluster(records, e, judgements=j)
    assert recluster(records, e, by_entity, e.tail(10), judgements=j).equals(full)


# --- refusal reasons (the review queue shows them) ---------------------------------------------


def test_refused_edges_carry_a_reason_naming_the_records() -> None:
    r = recs(("A", "X", True), ("B", None, None), ("C", "Y", True))
    result = cluster_with_stats(r, edges(("A", "B", 0.90), ("B", "C", 0.95)))
    [(left, right, reason)] = result.reasons.rows()
    assert (left, right) == ("A", "B")
    assert reason.startswith("refused by the ID guard: would join entity of A with entity of C")
    assert "(id_number)" in reason


def test_an_edge_crossing_a_different_judgement_names_the_judged_records() -> None:
    r = recs(("A", None, None), ("B", None, None), ("C", None, None))
    result = cluster_with_stats(
        r, edges(("A", "B", 0.99), ("B", "C", 0.98)), judgements=judged(("A", "C", "different"))
    )
    assert result.reasons.rows() == [
        ("B", "C", "refused by a judgement: reviewer judged A and C different")
    ]


def test_recluster_reports_the_refusals_a_full_run_reports() -> None:
    recluster_with_stats = partial(clustering.recluster_with_stats, distinct_valid=ID_GUARD)

    r = recs(("A", "X", True), ("B", None, None), ("C", "Y", True), ("D", None, None), ("E", None, None))
    e = edges(("A", "B", 0.90), ("B", "C", 0.95), ("D", "E", 0.97))
    full = cluster_with_stats(r, e)
    previous = cluster(r.filter(pl.col("record_key") != "C"), e.filter(pl.col("right_id") != "C"))
    _, sub = recluster_with_stats(
        r, e, previous, pl.DataFrame({"left_id": ["B"], "right_id": ["C"]}), scope_only=True
    )
    assert sub.reasons.rows() == full.reasons.rows()
