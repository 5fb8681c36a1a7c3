"""Linkage evaluation: hand-computed examples and a brute-force cross-check by listing pairs."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import polars as pl
import pytest

from entity_resolution.evaluation import (
    bcubed_metrics,
    cluster_metrics,
    evaluate,
    pairwise_metrics,
)


def membership(column: str, **groups: str) -> pl.DataFrame:
    """membership("cluster_key", c1="abc", c2="d") -> record_key, <column>."""
    rows = [(k, g) for g, keys in groups.items() for k in keys]
    return pl.DataFrame(rows, schema={"record_key": pl.String, column: pl.String}, orient="row")


PREDICTED = membership("cluster_key", c1="abc", c2="d")
TRUTH = membership("entity_id", e1="ab", e2="cd")


def test_pairwise_hand_example() -> None:
    # predicted pairs ab ac bc; true pairs ab cd: tp ab, fp ac bc, fn cd
    m = pairwise_metrics(PREDICTED, TRUTH)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 / 5)
    assert m["records"] == 4


def test_bcubed_hand_example() -> None:
    # per record (precision, recall): a (2/3, 1), b (2/3, 1), c (1/3, 1/2), d (1, 1/2)
    m = bcubed_metrics(PREDICTED, TRUTH)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(12 / 17)


def test_cluster_hand_example() -> None:
    assert cluster_metrics(PREDICTED, TRUTH)["f1"] == 0.0
    predicted = membership("cluster_key", c1="ab", c2="c", c3="d")
    m = cluster_metrics(predicted, TRUTH)
    # {a,b} is exact; {c} and {d} are not; e1 recovered, e2 not.
    assert (m["exact"], m["precision"], m["recall"]) == (
        1,
        pytest.approx(1 / 3),
        pytest.approx(1 / 2),
    )
    assert m["f1"] == pytest.approx(2 / 5)


def test_perfect_and_all_singletons() -> None:
    perfect = TRUTH.rename({"entity_id": "cluster_key"})
    assert pairwise_metrics(perfect, TRUTH)["f1"] == 1.0
    assert bcubed_metrics(perfect, TRUTH)["f1"] == 1.0
    assert cluster_metrics(perfect, TRUTH)["f1"] == 1.0

    singletons = membership("cluster_key", a="a", b="b", c="c", d="d")
    m = pairwise_metrics(singletons, TRUTH)
    assert (m["precision"], m["recall"], m["f1"], m["fn"]) == (
        None,
        0.0,
        0.0,
        2,
    )  # nothing predicted
    assert bcubed_metrics(singletons, TRUTH)["precision"] == 1.0


def test_records_missing_from_either_side_are_ignored_and_counted() -> None:
    predicted = pl.concat([PREDICTED, membership("cluster_key", c1="x")])  # x: unknown to truth
    truth = pl.concat([TRUTH, membership("entity_id", e2="q")])  # q: quarantined, never clustered
    m = pairwise_metrics(predicted, truth)
    assert (m["tp"], m["fp"], m["fn"], m["records"]) == (1, 2, 1, 4)
    assert (m["ignored_not_in_truth"], m["ignored_not_clustered"]) == (1, 1)


def test_evaluate_overall_and_per_station() -> None:
    by = pl.DataFrame({"record_key": list("abcd"), "station_id": ["s1", "s1", "s2", "s2"]})
    table = evaluate(PREDICTED, TRUTH, by=by)
    assert table["scope"].to_list() == ["overall", "s1", "s2"]
    rows = {r["scope"]: r for r in table.to_dicts()}
    assert (
        rows["overall"]["records"],
        rows["overall"]["entities"],
        rows["overall"]["clusters"],
    ) == (4, 2, 2)
    # s1 (a, b): pairs touching it: predicted ab ac bc, true ab.
    assert (rows["s1"]["tp"], rows["s1"]["fp"], rows["s1"]["fn"]) == (1, 2, 0)
    # s2 (c, d): predicted ac bc, true cd.
    assert (rows["s2"]["tp"], rows["s2"]["fp"], rows["s2"]["fn"]) == (0, 2, 1)
    assert rows["s2"]["bcubed_precision"] == pytest.approx((1 / 3 + 1) / 2)
    assert rows["s2"]["bcubed_recall"] == pytest.approx(1 / 2)
    assert evaluate(PREDICTED, TRUTH).height == 1


def brute_force(pred: dict[str, str], true: dict[str, str], scope: set[str]) -> dict:
    """The textbook definitions, by listing pairs and records."""
    keys = sorted(set(pred) & set(true))
    pairs = [(a, b) for a, b in itertools.combinations(keys, 2) if a in scope or b in scope]
    same_pred = {p for p in pairs if pred[p[0]] == pred[p[1]]}
    same_true = {p for p in pairs if true[p[0]] == true[p[1]]}
    csize, tsize = Counter(pred[k] for k in keys), Counter(true[k] for k in keys)
    cell = Counter((pred[k], true[k]) for k in keys)
    mine = [k for k in keys if k in scope]
    exact = {c for (c, t), n in cell.items() if n == csize[c] == tsize[t]}
    return {
        "tp": len(same_pred & same_true),
        "fp": len(same_pred - same_true),
        "fn": len(same_true - same_pred),
        "bcubed_precision": sum(cell[pred[k], true[k]] / csize[pred[k]] for k in mine) / len(mine),
        "bcubed_recall": sum(cell[pred[k], true[k]] / tsize[true[k]] for k in mine) / len(mine),
        "cluster_precision": len(exact & {pred[k] for k in mine}) / len({pred[k] for k in mine}),
        "cluster_recall": len({true[k] for k in mine if pred[k] in exact})
        / len({true[k] for k in mine}),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"k{i:03d}" for i in range(120)]
    true = {k: f"e{rng.randrange(50)}" for k in keys}
    # A noisy clustering: mostly the truth, with some splits and merges.
    pred = {k: (true[k] if rng.random() < 0.7 else f"c{rng.randrange(40)}") for k in keys}
    station = {k: f"s{rng.randrange(4)}" for k in keys}
    clusters = pl.DataFrame({"record_key": keys, "cluster_key": [pred[k] for k in keys]})
    truth = pl.DataFrame({"record_key": keys, "entity_id": [true[k] for k in keys]})
    by = pl.DataFrame({"record_key": keys, "station_id": [station[k] for k in keys]})
    table = {r["scope"]: r for r in evaluate(clusters, truth, by=by).to_dicts()}
    for scope_name, scope in [("overall", set(keys))] + [
        (s, {k for k in keys if station[k] == s}) for s in sorted(set(station.values()))
    ]:
        expected = brute_force(pred, true, scope)
        got = table[scope_name]
        for name, value in expected.items():
            assert got[name] == pytest.approx(value), (scope_name, name)


# --- errors per phenomenon --------------------------------------------------------------------


def test_phenomenon_errors_hand_example() -> None:
    from entity_resolution.evaluation import phenomenon_errors

    truth = pl.DataFrame({
        "record_key": list("abcdef"),
        "entity_id": ["e1", "e1", "e1", "e2", "e2", "e3"],
        "quirks": ["twin", "", "id_typo, twin", "namesake", None, "namesake"],
    })
    clusters = membership("cluster_key", c1="ab", c2="c", c3="def")
    # true pairs ab ac bc de; predicted ab de df ef; both ab de
    table = phenomenon_errors(clusters, truth)
    rows = {r["tag"]: r for r in table.to_dicts()}
    assert table["tag"].to_list() == ["id_typo", "namesake", "twin", "none", "all"]

    def check(tag, records, true, missed, pred, false):
        r = rows[tag]
        assert (r["records"], r["true_pairs"], r["missed_pairs"], r["predicted_pairs"], r["false_pairs"]) == (
            records, true, missed, pred, false), tag

    check("twin", 2, 3, 2, 1, 0)  # a, c: ab ac bc true, ac bc missed; ab predicted
    check("id_typo", 1, 2, 2, 0, 0)
    check("namesake", 2, 1, 0, 3, 2)  # d, f: de true; de df ef predicted, df ef false
    check("none", 2, 3, 1, 3, 1)  # b, e
    check("all", 6, 4, 2, 4, 2)
    assert rows["twin"]["missed_share"] == pytest.approx(2 / 3)
    assert rows["namesake"]["false_merge_share"] == pytest.approx(2 / 3)
    assert rows["id_typo"]["false_merge_share"] is None  # no predicted pair: undefined


def test_phenomenon_errors_match_listing_pairs() -> None:
    from entity_resolution.evaluation import phenomenon_errors

    rng = random.Random(5)
    tags = ["twin", "namesake", "id_15"]
    keys = [f"r{i}" for i in range(300)]
    quirks = [",".join(rng.sample(tags, rng.choice([0, 0, 1, 2]))) for _ in keys]
    entity = {k: f"e{rng.randrange(120)}" for k in keys}
    cluster = {k: f"c{rng.randrange(110)}" for k in keys}
    truth = pl.DataFrame({"record_key": keys, "entity_id": [entity[k] for k in keys], "quirks": quirks})
    clusters = pl.DataFrame({"record_key": keys, "cluster_key": [cluster[k] for k in keys]})
    got = {r["tag"]: r for r in phenomenon_errors(clusters, truth).to_dicts()}
    tag_of = {k: (set(q.split(",")) - {""}) or {"none"} for k, q in zip(keys, quirks)}
    for tag in [*tags, "none", "all"]:
        true = pred = missed = false = 0
        for a, b in itertools.combinations(keys, 2):
            if tag != "all" and tag not in tag_of[a] | tag_of[b]:
                continue
            same_e, same_c = entity[a] == entity[b], cluster[a] == cluster[b]
            true += same_e
            pred += same_c
            missed += same_e and not same_c
            false += same_c and not same_e
        r = got[tag]
        assert (r["true_pairs"], r["predicted_pairs"], r["missed_pairs"], r["false_pairs"]) == (
            true, pred, missed, false), tag
