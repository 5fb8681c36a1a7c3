"""Scoring: unsupervised m/u, term frequencies, decisions and their explanations, end to end.

The end-to-end figures (pairwise precision and recall against the simulated truth, over all true
pairs rather than only the candidates) are printed with -s; timing lives in benchmarks.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import polars as pl
import pytest

from connectors.simulate.export import simulate_person_records
from entity_resolution.blocking import candidate_pairs, prepare
from entity_resolution.comparisons import comparison_vectors
from entity_resolution.config import EntitySettings, load_resolution
from entity_resolution.scoring import Model, estimate_u, explain, score, term_frequencies, train
from entity_resolution.standardise import standardise_persons


def pairwise(scored: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, float, int, int, int]:
    """Precision and recall of decision == 'match' against every true pair in `truth`."""
    sizes = truth.group_by("entity_id").len().get_column("len")
    true_pairs = int((sizes * (sizes - 1) // 2).sum())
    labelled = (
        scored.filter(pl.col("decision") == "match")
        .join(truth.rename({"record_key": "left_id", "entity_id": "le"}), on="left_id")
        .join(truth.rename({"record_key": "right_id", "entity_id": "re"}), on="right_id")
    )
    predicted = labelled.height
    correct = int((labelled["le"] == labelled["re"]).sum())
    return correct / max(predicted, 1), correct / max(true_pairs, 1), correct, predicted, true_pairs


@dataclasses.dataclass
class Run:
    records: pl.DataFrame
    truth: pl.DataFrame
    settings: EntitySettings
    gammas: pl.DataFrame
    model: Model
    scored: pl.DataFrame


@pytest.fixture(scope="module")
def run() -> Run:
    raw, truth = simulate_person_records(rows=20_000, seed=3, stations=20)
    records = standardise_persons(raw)
    person = load_resolution(None).entity("person")
    pairs, _ = candidate_pairs(records, person)
    gammas = comparison_vectors(pairs, records, person)
    model = train(records, gammas, person)
    return Run(records, truth, person, gammas, model, score(gammas, records, model, person))


def test_em_recovers_m_and_u(run: Run) -> None:
    m, u = run.model.m, run.model.u
    assert m["id_number"][0] > 0.8
    assert u["id_number"][0] < 0.001
    assert m["name"][0] > 0.8 and u["name"][0] < 0.001
    assert m["birth_date"][0] > 0.9 and u["birth_date"][0] < 0.001
    assert u["sex"][0] == pytest.approx(0.5, abs=0.02)
    assert m["sex"][0] > 0.95
    # A shared phone is strong evidence but matches often have another one (moves, changes); most
    # true pairs here are movers, so phone and address together are rare among them. u of both
    # together is that of housemates, not the product of two separate coincidences.
    assert 0.5 < m["contact"][0] + m["contact"][1] < 0.9 and u["contact"][1] < 1e-4
    assert m["contact"][0] < m["contact"][1] and u["contact"][0] < 1e-4
    for name in m:
        assert sum(m[name]) == pytest.approx(1.0) and sum(u[name]) == pytest.approx(1.0)
        assert all(x > 0 for x in m[name] + u[name])
    # The prior: about 2,558 true pairs among 20,000 * 19,999 / 2 possible ones.
    assert 0.5e-5 < run.model.lambda_ < 3e-5
    sessions = {s["session"]: s for s in run.model.info["sessions"]}
    assert set(sessions) == {"id_number", "name_pinyin_birth_date"}
    assert "id_number" not in sessions["id_number"]["estimated"]
    assert "name" not in sessions["name_pinyin_birth_date"]["estimated"]


def test_u_from_random_pairs_is_reproducible(run: Run) -> None:
    small = run.settings.model_copy(update={
        "estimation": run.settings.estimation.model_copy(update={"u_sample_pairs": 100_000, "u_fuzzy_pairs": 50_000})
    })
    a = estimate_u(run.records, small, seed=4)
    assert a == estimate_u(run.records, small, seed=4)
    # Exact first levels come from value frequencies, so they do not depend on the sample.
    assert a["id_number"][0] == run.model.u["id_number"][0]
    assert a["name"][2] == pytest.approx(run.model.u["name"][2], rel=0.5)


def test_pairwise_precision_and_recall_on_simulated_truth(run: Run) -> None:
    precision, recall, correct, predicted, true_pairs = pairwise(run.scored, run.truth)
    print(f"\n20k persons: precision {precision:.4f} recall {recall:.4f} "
          f"({correct} correct of {predicted} predicted, {true_pairs} true pairs)")
    assert precision >= 0.98
    assert recall >= 0.98


def test_scored_pairs_carry_weights_and_decisions(run: Run) -> None:
    sc = run.scored
    for c in run.settings.comparisons:
        assert f"w_{c.name}" in sc.columns
    for col in ("left_id", "right_id", "match_weight", "match_probability", "decision", "constraint_violated"):
        assert col in sc.columns
    th = run.settings.thresholds
    ok = sc.filter(~pl.col("constraint_violated"))
    assert ok.filter(pl.col("decision") == "match")["match_probability"].min() >= th.match
    review = ok.filter(pl.col("decision") == "review")["match_probability"]
    assert review.len() == 0 or (review.min() >= th.review and review.max() < th.match)
    # the ID guard never links: a refused pair the model scores high waits in review, with the reason
    refused = sc.filter(pl.col("constraint_violated"))
    assert "match" not in refused["decision"].to_list()
    assert refused.filter(pl.col("decision") == "review")["review_reason"].str.starts_with(
        "refused by the ID guard").all()
    assert (refused["decision"] == "review").to_list() == (refused["match_probability"] >= th.review).to_list()
    assert sc.filter(~pl.col("constraint_violated"))["review_reason"].null_count() == ok.height
    # Weights add up: prior + sum of comparison weights = match weight.
    wcols = [f"w_{c.name}" for c in run.settings.comparisons]
    total = sc.select(pl.sum_horizontal(pl.col(wcols).cast(pl.Float64)) + run.model.prior_weight).to_series()
    assert (total - sc["match_weight"]).abs().max() < 1e-3


def test_two_valid_id_numbers_never_match(run: Run) -> None:
    """Twins: same surname, birth date, address and phone, different (valid) ID numbers."""
    records = run.records
    a = records.filter(pl.col("id_valid")).head(1)
    b = a.with_columns(
        pl.lit("TWIN:1").alias("record_key"),
        pl.lit(a["id_number"][0][:14] + "999").alias("id_number"),  # any other number, flagged valid
    )
    both = pl.concat([records, b])
    pairs = pl.DataFrame({"left_id": [b["record_key"][0]], "right_id": [a["record_key"][0]]})
    out = score(comparison_vectors(pairs, both, run.settings), both, run.model, run.settings).row(0, named=True)
    assert out["constraint_violated"] is True
    # scored high, refused by the ID guard: a reviewer sees it with the reason, it never links
    assert out["match_probability"] >= run.settings.thresholds.review
    assert out["decision"] == "review"
    assert out["review_reason"] == "refused by the ID guard: both records carry a different valid ID number (id_number)"


def test_a_guard_that_is_the_answer_refuses_without_review(run: Run) -> None:
    """`refused: non_match` (two complete room addresses: two dwellings): the same high-scoring
    pair is a non-match with no reason, so nobody is asked to review what the guard settles."""
    records = run.records
    a = records.filter(pl.col("id_valid")).head(1)
    b = a.with_columns(pl.lit("TWIN:1").alias("record_key"), pl.lit(a["id_number"][0][:14] + "999").alias("id_number"))
    both = pl.concat([records, b])
    dv = run.settings.constraints.distinct_valid[0]
    settled = run.settings.model_copy(update={"constraints": run.settings.constraints.model_copy(
        update={"distinct_valid": (dv.model_copy(update={"refused": "non_match"}),)})})
    pairs = pl.DataFrame({"left_id": [b["record_key"][0]], "right_id": [a["record_key"][0]]})
    out = score(comparison_vectors(pairs, both, settled), both, run.model, settled).row(0, named=True)
    assert out["constraint_violated"] is True
    assert out["match_probability"] >= settled.thresholds.review
    assert out["decision"] == "non_match" and out["review_reason"] is None


def test_common_name_weighs_less_than_a_rare_one(run: Run) -> None:
    name = next(c for c in run.settings.comparisons if c.name == "name")
    template = run.records.filter(pl.col("name_norm").is_not_null()).head(1)

    def people(full_name: str, pinyin: str, n: int) -> pl.DataFrame:
        return pl.concat([
            template.with_columns(
                pl.lit(f"TF:{full_name}:{i}").alias("record_key"),
                pl.lit(full_name).alias("name_norm"),
                pl.lit(pinyin).alias("name_pinyin"),
            )
            for i in range(n)
        ])

    extra = pl.concat([people("张伟", "zhang wei", 60), people("慕容雪", "mu rong xue", 2)])
    records = pl.concat([run.records, extra])
    table, minimum = term_frequencies(prepare(records, run.settings), name)
    model = dataclasses.replace(run.model, tf={"name": table}, tf_minimum={"name": minimum})
    pairs = pl.DataFrame({"left_id": ["TF:张伟:0", "TF:慕容雪:0"], "right_id": ["TF:张伟:1", "TF:慕容雪:1"]})
    out = score(comparison_vectors(pairs, records, run.settings), records, model, run.settings)
    common, rare = out["w_name"].to_list()
    assert out["gamma_name"].to_list() == [0, 0]
    assert common < rare - 4  # 60 vs 2 bearers: log2(30) ~ 4.9 bits apart
    untagged = model.level_weights("name")[0]
    assert common < untagged < rare


def test_explain_adds_up_and_labels_levels(run: Run) -> None:
    row = run.scored.filter(pl.col("decision") == "match").row(0, named=True)
    parts = explain(row, run.model, run.settings)
    assert parts[0][0] == "prior"
    assert [p[0] for p in parts[1:]] == [c.name for c in run.settings.comparisons]
    assert sum(w for _, _, w in parts) == pytest.approx(row["match_weight"], abs=1e-3)
    labels = {c: lab for c, lab, _ in parts}
    assert labels["id_number"] in {"same ID number", "null (no evidence)", "same 15-digit form",
                                   "one substitution or adjacent transposition"}
    # Without the w_ columns, weights come from the model's levels.
    bare = {k: v for k, v in row.items() if not k.startswith("w_")}
    for (c, _, w), (_, _, w2) in zip(parts[1:], explain(bare, run.model, run.settings)[1:], strict=True):
        if c != "name":
            assert w == pytest.approx(w2, abs=1e-4)


def test_model_round_trips_through_json_and_guards_its_settings(run: Run) -> None:
    again = Model.from_json(run.model.to_json())
    assert again.m == run.model.m and again.u == run.model.u and again.lambda_ == run.model.lambda_
    assert again.tf["name"].equals(run.model.tf["name"])
    head = run.gammas.head(500)
    a = score(head, run.records, run.model, run.settings)
    b = score(head, run.records, again, run.settings)
    assert a.equals(b)
    other = run.settings.model_copy(update={"comparisons": run.settings.comparisons[:-1]})
    with pytest.raises(ValueError, match="retrain"):
        score(head.drop("gamma_contact"), run.records, run.model, other)


def test_incremental_scores_equal_the_full_run(run: Run) -> None:
    """Same model, new records: the pairs touching them score exactly as in a full run."""
    new = run.records["record_key"].sample(1_000, seed=9)
    pairs, _ = candidate_pairs(run.records, run.settings, new_keys=new)
    inc = score(comparison_vectors(pairs, run.records, run.settings), run.records, run.model, run.settings)
    full = run.scored.join(pairs.select("left_id", "right_id"), on=["left_id", "right_id"], how="semi")
    cols = ["left_id", "right_id", "match_weight", "decision"]
    assert inc.select(cols).sort(cols[:2]).equals(full.select(cols).sort(cols[:2]))


def test_judgements_recalibrate_m(run: Run) -> None:
    fast = run.settings.model_copy(update={
        "estimation": run.settings.estimation.model_copy(update={"u_sample_pairs": 20_000, "u_fuzzy_pairs": 5_000})
    })
    base = train(run.records, run.gammas, fast)
    # Reviewers say these pairs with different birth dates are the same people.
    judged = run.gammas.filter(pl.col("gamma_birth_date") == 3).head(40)
    judgements = judged.select("left_id", "right_id", pl.lit("same").alias("verdict"))
    tuned = train(run.records, run.gammas, fast, judgements=judgements)
    assert tuned.m["birth_date"][3] > 10 * base.m["birth_date"][3]
    assert sum(tuned.m["birth_date"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="verdict"):
        train(run.records, run.gammas, fast, judgements=judgements.with_columns(pl.lit("maybe").alias("verdict")))


# --------------------------------------------------------------------- a non-Chinese schema

GIVEN = ["james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william",
         "elizabeth", "david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
         "charles", "karen", "oliver", "amelia", "harry", "isla", "jack", "ava", "george", "emily"]
SURNAMES = ["smith", "jones", "williams", "taylor", "brown", "davies", "evans", "wilson", "thomas",
            "johnson", "roberts", "robinson", "thompson", "wright", "walker", "white", "edwards",
            "hughes", "green", "hall", "lewis", "harris", "clarke", "patel", "jackson", "wood"]
STREETS = ["high street", "station road", "main street", "park road", "church lane", "london road",
           "victoria road", "green lane", "manor road", "church street", "kings road", "queens road"]


def english_people(n_people: int, n_records: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Synthetic English-named records with typos, swapped dates, missing and reformatted fields."""
    r = random.Random(seed)

    def typo(s: str) -> str:
        i = r.randrange(len(s))
        return s[:i] + r.choice("abcdefghijklmnopqrstuvwxyz") + s[i + 1:]

    people = []
    for p in range(n_people):
        people.append({
            "given_name": r.choice(GIVEN), "surname": r.choice(SURNAMES),
            "dob": date(1940, 1, 1) + timedelta(days=r.randrange(60 * 365)),
            "street_address": f"{r.randrange(1, 200)} {r.choice(STREETS)}",
            "postcode": f"{r.choice(['SW', 'NW', 'E', 'N', 'LS', 'M'])}{r.randrange(1, 20)} {r.randrange(1, 9)}{r.choice('ABDEFGHJ')}{r.choice('LNPQRSTUW')}",
            "national_id": f"{r.choice('ABCEGHJK')}{r.choice('ABCEGHJK')}{r.randrange(10**6):06d}{r.choice('ABCD')}",
            "entity_id": f"E{p:05d}",
        })
    rows = []
    for k in range(n_records):
        person = dict(people[k] if k < n_people else people[r.randrange(n_people)])
        if k >= n_people:  # a second record of someone: noisy
            roll = r.random()
            if roll < 0.15:
                person["given_name"] = typo(person["given_name"])
            elif roll < 0.25:
                person["surname"] = typo(person["surname"])
            if r.random() < 0.1 and person["dob"].day <= 12:
                person["dob"] = person["dob"].replace(month=person["dob"].day, day=person["dob"].month)
            if r.random() < 0.15:
                person["national_id"] = None
            if r.random() < 0.2:
                person["street_address"] = person["street_address"].replace("road", "rd").replace("street", "st")
            if r.random() < 0.2:
                person["postcode"] = person["postcode"].replace(" ", "").lower()
            if r.random() < 0.1:
                person["given_name"] = person["given_name"].upper()
        person["record_key"] = f"EN:{k:05d}"
        rows.append(person)
    frame = pl.DataFrame(rows)
    return frame.drop("entity_id"), frame.select("record_key", "entity_id")


def test_person_en_schema_resolves_with_no_code_change() -> None:
    records, truth = english_people(1_700, 2_000, seed=21)
    assert set(records.columns) == {"record_key", "given_name", "surname", "dob", "street_address",
                                    "postcode", "national_id"}
    settings = load_resolution(None).entity("person_en")
    pairs, stats = candidate_pairs(records, settings, truth=truth)
    assert stats["cumulative_completeness"][-1] > 0.97
    gammas = comparison_vectors(pairs, records, settings)
    model = train(records, gammas, settings)
    scored = score(gammas, records, model, settings)
    precision, recall, correct, predicted, true_pairs = pairwise(scored, truth)
    print(f"\nperson_en: precision {precision:.4f} recall {recall:.4f} ({correct}/{predicted}, {true_pairs} true)")
    assert precision >= 0.95 and recall >= 0.9
    assert model.m["national_id"][0] > 0.7


# ------------------------------------------------------------------------------ organisations


def test_organisation_settings_resolve_simulated_organisations() -> None:
    from connectors.simulate.network import build_network
    from connectors.simulate.noise import DEFAULT_NOISE, organisation_noise
    from connectors.simulate.orgs import generate_organisations, organisation_residences
    from connectors.simulate.people import DEFAULT_POPULATION, generate_population
    from connectors.simulate.render import render_organisations
    from connectors.simulate.rng import Rng
    from entity_resolution.standardise import ORGANISATION_FIELDS, standardise_organisations

    rng = Rng(5)
    net = build_network(30, 5)
    orgs = generate_organisations(rng, net, generate_population(rng, net, 5_000, DEFAULT_POPULATION), 3_000)
    rows = render_organisations(rng, net, orgs, organisation_residences(rng, net, orgs))
    rows, _ = organisation_noise(rng, rows, DEFAULT_NOISE)
    truth = rows.select("record_key", "entity_id")
    records = standardise_organisations(rows.select("record_key", *ORGANISATION_FIELDS))
    settings = load_resolution(None).entity("organisation")
    pairs, _ = candidate_pairs(records, settings)
    gammas = comparison_vectors(pairs, records, settings)
    model = train(records, gammas, settings)
    scored = score(gammas, records, model, settings)
    precision, recall, correct, predicted, true_pairs = pairwise(scored, truth)
    print(f"\norganisations: precision {precision:.4f} recall {recall:.4f} ({correct}/{predicted}, {true_pairs} true)")
    assert true_pairs > 50
    assert precision >= 0.95 and recall >= 0.95
