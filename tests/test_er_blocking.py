"""Blocking: united rules, first-rule credit, caps, statistics, incremental = subset of full."""

from __future__ import annotations

import polars as pl
import pytest

from connectors.simulate.export import simulate_person_records
from core.errors import ConfigError
from entity_resolution.blocking import (candidate_pairs, derived_steps, pair_completeness, prepare, sharing_blocks,
                                        with_derived)
from entity_resolution.config import EntitySettings, load_resolution
from entity_resolution.standardise import standardise_persons


def settings(rules: list[dict], *, cap: int = 500, derived: dict | None = None) -> EntitySettings:
    return EntitySettings.model_validate(
        {
            "derived": derived or {},
            "blocking": {"max_block_size": cap, "rules": rules},
            "comparisons": [{"name": "name", "column": "name", "levels": [{"kind": "exact"}]}],
            "thresholds": {"match": 0.9, "review": 0.5},
        }
    )


@pytest.fixture()
def small() -> pl.DataFrame:
    # Deliberately not sorted by record_key: prepare() sorts, so results do not depend on order.
    return pl.DataFrame(
        {
            "record_key": ["e", "a", "c", "b", "d", "f", "g"],
            "name": ["张伟", "张伟", "张伟", "李娜", "李娜", None, "王芳"],
            "phone": ["1", "1", None, "2", "2", "1", "1"],
            "born": ["1990", "1990", "1990", "1985", "1986", "1990", None],
        }
    )


def pair_set(pairs: pl.DataFrame) -> set[tuple[str, str]]:
    return set(pairs.select("left_id", "right_id").iter_rows())


def test_rules_are_united_and_credited_to_the_first_rule(small: pl.DataFrame) -> None:
    s = settings([
        {"name": "phone", "keys": ["phone"]},
        {"name": "name_born", "keys": ["name", "born"]},
    ])
    pairs, stats = candidate_pairs(small, s)
    # phone "1": a, e, f, g -> 6 pairs; phone "2": b, d -> 1; name+born: 张伟/1990 = a, c, e -> 3,
    # of which (a, e) was found by phone already. Null keys never block (c's phone, f's name).
    expected_phone = {("a", "e"), ("a", "f"), ("a", "g"), ("e", "f"), ("e", "g"), ("f", "g"), ("b", "d")}
    expected_name = {("a", "c"), ("c", "e")}
    assert pair_set(pairs) == expected_phone | expected_name
    assert pairs.height == len(expected_phone | expected_name)  # each pair once
    assert (pairs["left_id"] < pairs["right_id"]).all()
    by_rule = {r: set(pairs.filter(pl.col("first_rule") == r).select("left_id", "right_id").iter_rows())
               for r in ("phone", "name_born")}
    assert by_rule == {"phone": expected_phone, "name_born": expected_name}
    assert stats.to_dicts() == [
        {"rule": "phone", "blocks": 2, "pairs": 7, "pairs_new": 7, "capped_blocks": 0,
         "reduction_ratio": pytest.approx(1 - 7 / 21)},
        {"rule": "name_born", "blocks": 1, "pairs": 3, "pairs_new": 2, "capped_blocks": 0,
         "reduction_ratio": pytest.approx(1 - 3 / 21)},
    ]


def test_row_order_does_not_change_the_pairs(small: pl.DataFrame) -> None:
    s = settings([{"name": "phone", "keys": ["phone"]}, {"name": "name", "keys": ["name"]}])
    a, _ = candidate_pairs(small, s)
    b, _ = candidate_pairs(small.sample(fraction=1.0, shuffle=True, seed=7), s)
    assert a.to_dicts() == b.to_dicts()


def test_block_cap_skips_big_blocks_and_counts_them(small: pl.DataFrame) -> None:
    s = settings([
        {"name": "phone", "keys": ["phone"]},  # block "1" has 4 records > cap 3
        {"name": "name", "keys": ["name"], "max_block_size": 2},  # 张伟 has 3 > 2; 李娜 ok
    ], cap=3)
    pairs, stats = candidate_pairs(small, s)
    assert pair_set(pairs) == {("b", "d")}
    assert stats.select("rule", "blocks", "pairs", "pairs_new", "capped_blocks").to_dicts() == [
        {"rule": "phone", "blocks": 1, "pairs": 1, "pairs_new": 1, "capped_blocks": 1},
        {"rule": "name", "blocks": 1, "pairs": 1, "pairs_new": 0, "capped_blocks": 1},
    ]


def test_derived_keys_are_sql_expressions(small: pl.DataFrame) -> None:
    s = settings([{"name": "decade", "keys": ["decade"]}], derived={"decade": "LEFT(born, 3)"})
    prepared = prepare(small, s)
    assert prepared.columns[0] == "record_key" and "decade" in prepared.columns
    assert prepared["record_key"].to_list() == sorted(small["record_key"].to_list())
    pairs, _ = candidate_pairs(small, s)
    # "199": a, c, e, f ; "198": b, d
    assert pairs.height == 6 + 1


def _stepped(frame: pl.DataFrame, steps: list[list[pl.Expr]]) -> pl.DataFrame:
    for step in steps:
        frame = frame.with_columns(step)
    return frame


def _one_by_one(frame: pl.DataFrame, settings: EntitySettings, names: list[str]) -> pl.DataFrame:
    """The reference: each derived column in declaration order, one with_columns each, a column the
    frame has taken as it is."""
    have = set(frame.columns)
    for name, sql in settings.derived.items():
        if name in names and name not in have:
            frame = frame.with_columns(pl.sql_expr(sql).alias(name))
    return frame


def test_derived_steps_give_the_values_of_one_by_one_in_fewer_steps(small: pl.DataFrame) -> None:
    # Derived columns are evaluated in steps (one per length of the chain of reads), by batch
    # (with_derived) and the front desk alike: the values must be those of one column at a time.
    chained = {"decade": "LEFT(born, 3)", "tag": "name || '|' || phone", "decade_tag": "decade || tag",
               "century": "LEFT(born, 2)", "both": "decade_tag || century"}
    s = settings([{"name": "decade", "keys": ["decade"]}], derived=chained)
    steps = derived_steps(s, small.columns, list(chained))
    assert [len(step) for step in steps] == [3, 1, 1]  # decade, tag, century; decade_tag; both
    expected = _one_by_one(small, s, list(chained))
    assert _stepped(small, steps).select(expected.columns).equals(expected)
    assert with_derived(small, s, list(chained)).select(expected.columns).equals(expected)
    shipped = load_resolution().entity("person")  # the shipped settings, on simulated records
    frame = standardise_persons(simulate_person_records(rows=300, seed=5, stations=3)[0]).drop(
        list(shipped.derived), strict=False)
    expected = _one_by_one(frame, shipped, list(shipped.derived))
    got = with_derived(frame, shipped, list(shipped.derived))
    assert got.select(expected.columns).equals(expected)
    for kind in ("person", "organisation"):
        entity = load_resolution().entity(kind)
        assert len(derived_steps(entity, [], list(entity.derived))) < len(entity.derived)


def test_derived_steps_take_a_derived_column_the_frame_has_as_it_is(small: pl.DataFrame) -> None:
    # "born" is a column of the frame and a derived one: it is kept (a prepared frame is not
    # prepared again) and "late" reads it.
    s = settings([{"name": "b", "keys": ["born"]}],
                 derived={"early": "born || 'x'", "born": "LEFT(born, 2)", "late": "born || 'y'"})
    steps = derived_steps(s, small.columns, ["early", "born", "late"])
    assert [len(step) for step in steps] == [2]
    expected = _one_by_one(small, s, ["early", "born", "late"])
    assert with_derived(small, s, ["early", "born", "late"]).equals(expected)
    assert expected.filter(pl.col("record_key") == "a").select("born", "early", "late").row(0) == ("1990", "1990x", "1990y")


def test_a_derived_column_that_cannot_be_evaluated_is_named(small: pl.DataFrame) -> None:
    s = settings([{"name": "decade", "keys": ["decade"]}],
                 derived={"decade": "LEFT(born, 3)", "broken": "no_such_column || 'x'"})
    with pytest.raises(ConfigError, match=r"derived\.broken: cannot evaluate"):
        with_derived(small, s, ["decade", "broken"])


def test_duplicate_ids_are_rejected(small: pl.DataFrame) -> None:
    s = settings([{"name": "phone", "keys": ["phone"]}])
    with pytest.raises(ValueError, match="not unique"):
        prepare(pl.concat([small, small.head(1)]), s)


def test_truth_statistics_and_pair_completeness(small: pl.DataFrame) -> None:
    truth = pl.DataFrame({"record_key": list("abcdefg"), "entity_id": ["P1", "P2", "P1", "P2", "P1", "P3", "P4"]})
    s = settings([{"name": "phone", "keys": ["phone"]}, {"name": "name_born", "keys": ["name", "born"]}])
    pairs, stats = candidate_pairs(small, s, truth=truth)
    # true pairs: (a, c), (a, e), (c, e), (b, d) = 4; phone finds (a, e), (b, d); name_born (a, c), (c, e), (a, e)
    assert stats["pair_completeness"].to_list() == [pytest.approx(2 / 4), pytest.approx(3 / 4)]
    assert stats["cumulative_completeness"].to_list() == [pytest.approx(2 / 4), pytest.approx(1.0)]
    assert pair_completeness(pairs, truth) == pytest.approx(1.0)
    assert pair_completeness(pairs.filter(pl.col("first_rule") == "phone"), truth) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def simulated() -> tuple[pl.DataFrame, pl.DataFrame]:
    raw, truth = simulate_person_records(rows=6000, seed=11, stations=12)
    return standardise_persons(raw), truth


def test_incremental_pairs_are_exactly_the_full_pairs_touching_new_records(simulated) -> None:
    records, _ = simulated
    person = load_resolution(None).entity("person")
    # A small cap so that capped blocks are part of what must agree.
    person = person.model_copy(update={"blocking": person.blocking.model_copy(update={"max_block_size": 3})})
    full, full_stats = candidate_pairs(records, person)
    assert full_stats["capped_blocks"].sum() > 0
    new = records["record_key"].sample(600, seed=5)
    inc, inc_stats = candidate_pairs(records, person, new_keys=new)
    new_set = set(new.to_list())
    expected = full.filter(pl.col("left_id").is_in(new_set) | pl.col("right_id").is_in(new_set))
    assert inc.height == expected.height > 0
    assert inc.sort("left_id", "right_id").to_dicts() == expected.sort("left_id", "right_id").to_dicts()
    # Stats count the pairs touching new records, rule by rule.
    per_rule = expected.group_by("first_rule").len()
    assert dict(zip(inc_stats["rule"], inc_stats["pairs_new"], strict=True)) == {
        r: int(per_rule.filter(pl.col("first_rule") == r)["len"].sum()) for r in inc_stats["rule"]
    }
    # Blocking only the records that share a block with a new one gives the same pairs and stats.
    subset = sharing_blocks(records, person, new)
    assert subset.height < records.height / 2
    sub, sub_stats = candidate_pairs(subset, person, new_keys=new, population=records.height)
    assert sub.sort("left_id", "right_id").to_dicts() == expected.sort("left_id", "right_id").to_dicts()
    assert sub_stats.to_dicts() == inc_stats.to_dicts()


def test_default_person_rules_find_nearly_all_true_pairs(simulated) -> None:
    records, truth = simulated
    person = load_resolution(None).entity("person")
    pairs, stats = candidate_pairs(records, person, truth=truth)
    completeness = pair_completeness(pairs, truth)
    assert completeness >= 0.995
    assert stats["cumulative_completeness"][-1] == pytest.approx(completeness)
    assert stats["reduction_ratio"].min() > 0.999
    assert stats["pairs_new"].sum() == pairs.height


# --- sparse records: neither ID nor birth date ---------------------------------------------------


@pytest.fixture(scope="module")
def sparse_run():
    import datetime as dt

    from connectors.simulate.export import simulate_person_records
    from entity_resolution.config import load_resolution
    from entity_resolution.resolve import resolve
    from entity_resolution.standardise import standardise_persons

    raw, _ = simulate_person_records(rows=20000, seed=5, stations=20)
    base = {c: None for c in raw.columns}
    def rec(key: str, name: str, phone: str | None, address: str) -> dict:
        return {**base, "record_key": key, "station_id": key.split(":")[0], "local_id": key, "name": name,
                "sex": "男", "phone": phone, "address": address, "area_code": "500103001001"}
    placeholder = "13800000000"  # shared by 600 records: its phone block is over the cap
    filler = [rec(f"ZZ:{i}", f"路人{i}", placeholder, f"重庆市渝中区解放碑街道狮岩社区银杏巷{i}号") for i in range(600)]
    extra = [
        rec("SPA:1", "欧阳明轩", placeholder, "重庆市渝中区解放碑街道狮岩社区银杏巷111号15栋2单元1302室"),
        rec("SPB:1", "欧阳明轩", placeholder, "重庆市渝中区解放碑街道狮岩社区银杏巷111号15栋2单元1302室"),
        rec("SPA:2", "司马文静", None, "重庆市渝中区解放碑街道狮岩社区幸福路161号2栋6单元2808室"),
        rec("SPB:2", "司马文静", None, "渝中区解放碑街道狮岩社区幸福路161号2栋6单元2808室"),
    ]
    records = pl.concat([raw, pl.DataFrame(filler + extra, schema=raw.schema)])
    std = standardise_persons(records, today=dt.date(2026, 1, 1))
    settings = load_resolution(None).entities["person"]
    return resolve(std, settings), settings


def test_sparse_pairs_become_candidates_and_link(sparse_run) -> None:
    res, settings = sparse_run
    sc = res.scored.scored
    clusters = dict(res.clusters.iter_rows())
    for (a, b), rule in [(("SPA:1", "SPB:1"), "name_phone"), (("SPA:2", "SPB:2"), "name_building")]:
        row = sc.filter((pl.col("left_id") == a) & (pl.col("right_id") == b))
        assert row.height == 1, (a, b)
        assert row["first_rule"][0] == rule
    # Name, phone and address agree: linked.
    assert clusters["SPA:1"] == clusters["SPB:1"]
    # Name and address only (no phone, ID or birth date): housemates share an address, so the
    # address alone weighs less than address and phone together; a reviewer decides.
    row = sc.filter((pl.col("left_id") == "SPA:2") & (pl.col("right_id") == "SPB:2")).row(0, named=True)
    assert row["decision"] == "review" and 0.5 <= row["match_probability"] < 0.95, row


def test_sparse_rules_respect_the_block_caps(sparse_run) -> None:
    res, settings = sparse_run
    stats = {r["rule"]: r for r in res.scored.block_stats.to_dicts()}
    assert stats["phone"]["capped_blocks"] >= 1  # the placeholder phone's 600 records: skipped
    sc = res.scored.scored
    filler = sc.filter(pl.col("left_id").str.starts_with("ZZ:") & pl.col("right_id").str.starts_with("ZZ:"))
    assert filler.height == 0  # no pair of the capped block came in through any rule
