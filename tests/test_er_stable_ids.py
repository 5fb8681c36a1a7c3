"""Stable entity ids: the contract the README states (same inputs same ids, new records never rename, a
merge keeps the older id, a split keeps the id on the largest part) and the change rows."""

from __future__ import annotations

import hashlib
from functools import partial

import polars as pl
import pytest

from entity_resolution import stable_ids
from entity_resolution.clustering import cluster

# The entity type's id prefix comes from its registry entry; these tests use "P".
assign_entity_ids = partial(stable_ids.assign_entity_ids, prefix="P")


def clusters(*groups: str) -> pl.DataFrame:
    """One string per cluster, one character per record key: clusters("ab", "c")."""
    rows = [(k, min(g)) for g in groups for k in g]
    return pl.DataFrame(
        rows, schema={"record_key": pl.String, "cluster_key": pl.String}, orient="row"
    )


def previous(**entities: tuple[str, int]) -> pl.DataFrame:
    """entity_id=(record keys, created seq)."""
    rows = [(k, eid, seq) for eid, (keys, seq) in entities.items() for k in keys]
    return pl.DataFrame(
        rows,
        schema={"record_key": pl.String, "entity_id": pl.String, "entity_created_seq": pl.Int64},
        orient="row",
    )


def ids_of(membership: pl.DataFrame) -> dict[str, str]:
    return dict(membership.select("record_key", "entity_id").iter_rows())


def change(changes: pl.DataFrame, entity_id: str) -> dict:
    rows = changes.filter(pl.col("entity_id") == entity_id).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def expected_id(smallest_key: str, prefix: str = "P", hex_chars: int = 12) -> str:
    return prefix + hashlib.sha1(smallest_key.encode()).hexdigest()[:hex_chars]


def test_first_run_creates_deterministic_ids() -> None:
    membership, changes = assign_entity_ids(clusters("ba", "c"), None, run_seq=1)
    assert membership.columns == ["record_key", "entity_id", "entity_created_seq"]
    assert ids_of(membership) == {
        "a": expected_id("a"),
        "b": expected_id("a"),
        "c": expected_id("c"),
    }
    assert membership["entity_created_seq"].to_list() == [1, 1, 1]
    assert sorted(changes["op"].to_list()) == ["create", "create"]
    assert change(changes, expected_id("a"))["record_keys_after"] == ["a", "b"]
    assert change(changes, expected_id("a"))["record_keys_before"] == []

    again, _ = assign_entity_ids(clusters("c", "ab").reverse(), None, run_seq=1)
    assert again.equals(membership)
    other_prefix, _ = assign_entity_ids(clusters("ab"), None, prefix="O", run_seq=1)
    assert other_prefix["entity_id"][0] == expected_id("a", "O")


def test_rerun_with_nothing_changed_changes_nothing() -> None:
    first, _ = assign_entity_ids(clusters("ab", "cde", "f"), None, run_seq=1)
    second, changes = assign_entity_ids(clusters("ab", "cde", "f"), first, run_seq=2)
    assert second.equals(first)
    assert changes.height == 0
    assert changes.columns == [
        "op",
        "entity_id",
        "entity_created_seq",
        "merged_into",
        "merged_from",
        "parts",
        "record_keys_before",
        "record_keys_after",
    ]


def test_new_records_never_rename() -> None:
    prev = previous(E1=("bc", 1))
    # "a" is new and now the smallest key of the cluster: the id must not follow it.
    membership, changes = assign_entity_ids(clusters("abc"), prev, run_seq=2)
    assert set(ids_of(membership).values()) == {"E1"}
    assert membership["entity_created_seq"].to_list() == [1, 1, 1]
    row = change(changes, "E1")
    assert (row["op"], row["record_keys_before"], row["record_keys_after"]) == (
        "update",
        ["b", "c"],
        ["a", "b", "c"],
    )


def test_merge_keeps_the_older_id() -> None:
    prev = previous(NEW=("ab", 5), OLD=("cd", 2))
    membership, changes = assign_entity_ids(clusters("abcd"), prev, run_seq=6)
    assert set(ids_of(membership).values()) == {"OLD"}
    assert membership["entity_created_seq"].unique().to_list() == [2]
    retired = change(changes, "NEW")
    assert (retired["op"], retired["merged_into"], retired["record_keys_after"]) == (
        "retire",
        "OLD",
        [],
    )
    kept = change(changes, "OLD")
    assert (kept["op"], kept["merged_from"], kept["record_keys_after"]) == (
        "merge",
        ["NEW"],
        list("abcd"),
    )


def test_merge_of_equally_old_entities_keeps_the_smallest_id() -> None:
    prev = previous(Pb=("a", 1), Pa=("b", 1), Pc=("c", 1))
    membership, changes = assign_entity_ids(clusters("abc"), prev, run_seq=2)
    assert set(ids_of(membership).values()) == {"Pa"}
    assert sorted(changes.filter(pl.col("op") == "retire")["merged_into"].to_list()) == ["Pa", "Pa"]


def test_split_keeps_the_id_on_the_largest_part() -> None:
    prev = previous(E1=("abcde", 1))
    membership, changes = assign_entity_ids(clusters("ab", "cde"), prev, run_seq=3)
    ids = ids_of(membership)
    assert ids["c"] == ids["d"] == ids["e"] == "E1"
    assert ids["a"] == ids["b"] == expected_id("a")
    assert membership.filter(pl.col("record_key") == "a")["entity_created_seq"].item() == 3
    row = change(changes, "E1")
    assert row["op"] == "split"
    assert row["parts"] == sorted(["E1", expected_id("a")])
    assert change(changes, expected_id("a"))["op"] == "create"


def test_split_tie_goes_to_the_part_with_the_smallest_key() -> None:
    prev = previous(E1=("abcd", 1))
    membership, _ = assign_entity_ids(clusters("bc", "ad"), prev, run_seq=2)
    assert ids_of(membership)["a"] == "E1"
    assert ids_of(membership)["b"] == expected_id("b")


def test_new_records_do_not_decide_which_part_keeps_the_id() -> None:
    # E1 splits 1:1; the part of "c" gained two new records but "b" is E1's smallest key.
    prev = previous(E1=("bc", 1))
    membership, _ = assign_entity_ids(clusters("b", "cxy"), prev, run_seq=2)
    ids = ids_of(membership)
    assert ids["b"] == "E1"
    assert ids["c"] == ids["x"] == expected_id("c")


def test_split_part_joining_another_entity_takes_that_id() -> None:
    prev = previous(E1=("abc", 1), F2=("d", 2))
    membership, changes = assign_entity_ids(clusters("ab", "cd"), prev, run_seq=3)
    ids = ids_of(membership)
    assert ids["a"] == ids["b"] == "E1"
    assert ids["c"] == ids["d"] == "F2"  # the minor part of E1 never competes for E1's id
    assert change(changes, "E1")["parts"] == ["E1", "F2"]
    assert change(changes, "F2")["op"] == "update"


def test_split_and_merge_at_once() -> None:
    # E1's larger part merges into the older O0; its smaller part gets a new id.
    prev = previous(O0=("x", 0), E1=("abc", 1))
    membership, changes = assign_entity_ids(clusters("abx", "c"), prev, run_seq=2)
    ids = ids_of(membership)
    assert ids["a"] == ids["b"] == ids["x"] == "O0"
    assert ids["c"] == expected_id("c")
    row = change(changes, "E1")
    assert (row["op"], row["merged_into"], row["parts"]) == (
        "retire",
        "O0",
        sorted(["O0", expected_id("c")]),
    )


def test_entity_whose_records_are_all_gone_retires() -> None:
    prev = previous(E1=("ab", 1), E2=("c", 1))
    membership, changes = assign_entity_ids(clusters("c"), prev, run_seq=2)
    assert ids_of(membership) == {"c": "E2"}
    row = change(changes, "E1")
    assert (row["op"], row["merged_into"], row["record_keys_before"]) == (
        "retire",
        None,
        ["a", "b"],
    )


def test_ids_that_exist_or_existed_are_never_reused() -> None:
    # The digest id of "a" is taken by a live entity, and its 16-hex extension was retired.
    live = expected_id("a")
    retired = expected_id("a", hex_chars=16)
    prev = previous(**{live: ("z", 1)})
    membership, _ = assign_entity_ids(clusters("a", "z"), prev, run_seq=2, issued_ids=[retired])
    assert ids_of(membership) == {"a": expected_id("a", hex_chars=20), "z": live}


def test_same_inputs_same_ids_in_any_order() -> None:
    prev = previous(E1=("abc", 1), E2=("de", 2), E3=("f", 3))
    now = clusters("ab", "cde", "fg", "h")
    m1, c1 = assign_entity_ids(now, prev, run_seq=4)
    m2, c2 = assign_entity_ids(
        now.sample(fraction=1.0, shuffle=True, seed=1),
        prev.sample(fraction=1.0, shuffle=True, seed=2),
        run_seq=4,
    )
    assert m1.equals(m2)
    assert c1.equals(c2)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="unique"):
        assign_entity_ids(pl.concat([clusters("ab"), clusters("ab")]), None, run_seq=1)
    with pytest.raises(ValueError, match="not be null"):
        assign_entity_ids(
            clusters("ab"), previous(E1=("ab", 1)).with_columns(entity_id=None), run_seq=2
        )


def test_digest_clashes_lengthen_ids_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    # With 1-hex digests, 40 new clusters must clash among themselves.
    monkeypatch.setattr(stable_ids, "ID_HEX", 1)
    now = clusters(*[chr(0x4E00 + i) for i in range(40)])
    m1, _ = assign_entity_ids(now, None, run_seq=1)
    m2, _ = assign_entity_ids(now.reverse(), None, run_seq=1)
    assert m1.equals(m2)
    assert m1["entity_id"].n_unique() == 40
    smallest = min(now["record_key"].to_list())
    assert ids_of(m1)[smallest] == expected_id(smallest, hex_chars=1)


def test_reviewer_split_flows_through_to_ids() -> None:
    records = pl.DataFrame(
        {
            "record_key": ["a", "b", "c", "d"],
            "id_number": [None] * 4,
            "id_valid": [None] * 4,
        }
    )
    scored = pl.DataFrame(
        {
            "left_id": ["a", "b", "c"],
            "right_id": ["b", "c", "d"],
            "match_probability": [0.99, 0.90, 0.95],
        }
    )
    run1, _ = assign_entity_ids(cluster(records, scored), None, run_seq=1)
    entity = run1["entity_id"][0]
    assert run1["entity_id"].n_unique() == 1

    verdict = pl.DataFrame({"left_id": ["a"], "right_id": ["d"], "verdict": ["different"]})
    run2, changes = assign_entity_ids(cluster(records, scored, judgements=verdict), run1, run_seq=2)
    # b-c (0.90) is the weakest link between a and d: {a, b} and {c, d}, 2 each; the tie goes
    # to the part holding "a".
    assert ids_of(run2) == {"a": entity, "b": entity, "c": expected_id("c"), "d": expected_id("c")}
    assert change(changes, entity)["op"] == "split"
