"""Fellegi-Sunter scoring: m and u per comparison level, trained without labels.

For each level of each comparison, m = P(level | same entity) and u = P(level | different
entities); a pair's match weight is log2 of the prior odds plus, per comparison, log2(m / u) of
its level, and its match probability follows from the weight. Every pair carries each
comparison's weight (`w_<name>`), so any decision can be explained term by term.

Training follows Splink, made cheap:
- u from random pairs drawn as random index arrays (`u_sample_pairs`, default 1M); the u of an
  exact first level is computed analytically from value frequencies instead (sum c(c-1) over
  n(n-1)), since a million random pairs see only a handful of agreeing ID numbers.
- m by expectation-maximisation with u fixed, once per blocking rule on the pairs that agree on
  that rule's keys, with the comparisons that read those keys left out of that session (they
  agree by construction there, so they cannot inform m). Each comparison's m is the average of
  the sessions that estimated it, weighted by their expected number of matches. EM runs on the
  distinct gamma patterns with their counts: a few thousand rows however many pairs there are.
- The prior (probability that two random records match) is the fixed point of
  lambda = E[matches among candidates] / all possible pairs, with m and u fixed.
- Term frequencies: sharing a common name (张伟) is weaker evidence than sharing a rare one, so
  the exact level of a `term_frequency` comparison uses the value's frequency as its u.
- Reviewers' judgements optionally recalibrate m: pairs judged "same" join EM's expected
  matches as certain ones, so m moves in proportion to how many judgements there are.

Decisions: match probability >= thresholds.match -> "match", >= thresholds.review -> "review",
else "non_match"; a pair that breaks a hard constraint (two different valid ID numbers) never
links: flagged in `constraint_violated`, it is "review" (with the guard named in `review_reason`)
when its score would reach the review threshold, since a wrong or swapped ID number is for a
person to settle, and "non_match" below it; a constraint with `refused: non_match` (two rooms
of one building) is the answer itself, and its pairs are "non_match" whatever their score.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from entity_resolution.blocking import cross_source_pairs, prepare, source_codes
from entity_resolution.comparisons import NULL_LEVEL, UNSAMPLED, gamma_column, gamma_frame, pair_index
from entity_resolution.config import FUZZY_KINDS, ComparisonSettings, DistinctValid, EntitySettings

M_FLOOR = 1e-6  # no level is ever impossible among matches: keeps log(m) finite
JUDGEMENT_PSEUDO_PAIRS = 20.0  # weight of m for a comparison EM could not estimate
MODEL_FORMAT = 1


def weight_column(name: str) -> str:
    return f"w_{name}"


@dataclass
class Model:
    """A trained Fellegi-Sunter model; store it and reuse it for incremental runs.

    m[c] and u[c] list probabilities per level of comparison c, the last being "else".
    tf[c]: value -> freq for term-frequency comparisons (values seen at least twice; rarer
    values use tf_minimum[c]). settings_hash ties the model to the comparisons it was
    trained for (EntitySettings.model_hash()).
    """

    lambda_: float
    m: dict[str, list[float]]
    u: dict[str, list[float]]
    tf: dict[str, pl.DataFrame] = field(default_factory=dict)
    settings_hash: str = ""
    tf_minimum: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def level_weights(self, comparison: str) -> list[float]:
        """log2(m / u) per level (else last)."""
        return [math.log2(m / u) for m, u in zip(self.m[comparison], self.u[comparison], strict=True)]

    @property
    def prior_weight(self) -> float:
        return math.log2(self.lambda_ / (1.0 - self.lambda_))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MODEL_FORMAT,
                "lambda": self.lambda_,
                "m": self.m,
                "u": self.u,
                "tf": {
                    c: {"values": t.get_column("value").to_list(), "freqs": t.get_column("freq").to_list()}
                    for c, t in self.tf.items()
                },
                "tf_minimum": self.tf_minimum,
                "settings_hash": self.settings_hash,
                "info": self.info,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Model:
        data = json.loads(text)
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"unknown model format {data.get('format')!r}")
        tf = {
            c: pl.DataFrame(
                {"value": t["values"], "freq": t["freqs"]},
                schema={"value": pl.String, "freq": pl.Float64},
            )
            for c, t in data["tf"].items()
        }
        return cls(
            lambda_=data["lambda"], m=data["m"], u=data["u"], tf=tf,
            settings_hash=data["settings_hash"], tf_minimum=data["tf_minimum"], info=data.get("info", {}),
        )


# ---------------------------------------------------------------------------------------- u


def _exact_first_u(values: pl.Series, source: pl.Series | None = None) -> float | None:
    """P(two distinct random records agree | both non-null) from value counts; with `source`
    (link_only), P(two random records of different sources agree | both non-null)."""
    if source is not None:
        frame = pl.DataFrame({"v": values.hash(), "s": source}).filter(values.is_not_null())
        per_value = frame.group_by("v").agg(pl.len().cast(pl.Float64).alias("c"))
        same = frame.group_by("v", "s").len().with_columns(pl.col("len").cast(pl.Float64))
        sizes = frame.group_by("s").len().get_column("len").cast(pl.Float64)
        total = float(sizes.sum())
        denom = total * total - float((sizes * sizes).sum())
        if denom <= 0:
            return None
        agree = float((per_value.get_column("c") ** 2).sum()) - float((same.get_column("len") ** 2).sum())
        return agree / denom
    counts = values.drop_nulls().hash().value_counts().get_column("count").cast(pl.Float64)
    total = float(counts.sum())
    if total < 2:
        return None
    return float((counts * (counts - 1)).sum()) / (total * (total - 1))


def _random_pairs(
    n: int, size: int, seed: int, source: pl.Series | None = None
) -> tuple[pl.Series, pl.Series]:
    """`size` random pairs of distinct row indices (with replacement across pairs); with
    `source` (link_only), pairs of records from different sources only (about `size`: drawn
    in proportion to the share of cross-source pairs, then filtered)."""
    base = pl.int_range(n, dtype=pl.UInt32, eager=True)
    if source is not None:
        shares = source.value_counts().get_column("count").cast(pl.Float64) / max(n, 1)
        cross = max(1.0 - float((shares * shares).sum()), 1e-6)
        size = min(int(size / cross) + 1, 50 * size)
    left = base.sample(size, with_replacement=True, seed=seed)
    right = base.sample(size, with_replacement=True, seed=seed + 1)
    keep = left != right
    if source is not None:
        keep = keep & (source.gather(left) != source.gather(right))
    return left.filter(keep), right.filter(keep)


def estimate_u(records: pl.DataFrame, settings: EntitySettings, *, seed: int) -> dict[str, list[float]]:
    """u per comparison level (else last) from random record pairs.

    Levels no sampled pair reached get half a pair's worth (u cannot be 0: an unseen level is
    rare, not impossible); "else" takes the remaining mass.
    """
    rec = prepare(records, settings)
    n = rec.height
    source = source_codes(rec, settings)
    possible = n * (n - 1) // 2 if source is None else cross_source_pairs(source)
    size = min(settings.estimation.u_sample_pairs, max(possible, 1))
    left, right = _random_pairs(n, size, seed, source)
    gammas = gamma_frame(rec, left, right, settings, fuzzy_limit=settings.estimation.u_fuzzy_pairs)
    out: dict[str, list[float]] = {}
    for comp in settings.comparisons:
        g = gammas.get_column(gamma_column(comp.name))
        k = len(comp.levels)
        counts = g.filter(g != NULL_LEVEL).value_counts()
        seen = dict(zip(counts[:, 0].to_list(), counts[:, 1].to_list(), strict=True))
        total = max(sum(seen.values()), 1)
        # Levels from the first fuzzy one on were counted on a subsample of the pairs that got
        # that far: scale them by (pairs that got that far) / (pairs evaluated).
        first_fuzzy = next((i for i, lv in enumerate(comp.levels) if lv.kind in FUZZY_KINDS), k + 1)
        evaluated = sum(c for lvl, c in seen.items() if lvl >= first_fuzzy)
        reached = evaluated + seen.get(UNSAMPLED, 0)
        scale = reached / evaluated if evaluated else 1.0
        u = [max(seen.get(i, 0) * (scale if i >= first_fuzzy else 1.0), 0.5) / total for i in range(k)]
        first = comp.levels[0]
        if first.kind == "exact":
            # Among pairs where the level's own column is present on both sides: an upper bound
            # when that column is nullable where the comparison's is not (a weaker weight).
            analytic = _exact_first_u(rec.get_column(first.column or comp.column), source)
            if analytic is not None:
                u[0] = max(analytic, 0.5 / (n * max(n - 1, 1)))
        rest = 1.0 - sum(u)
        if rest <= 0:  # tiny samples only: keep every level possible
            scale = 0.99 / sum(u)
            u = [x * scale for x in u]
            rest = 0.01
        out[comp.name] = u + [rest]
    return out


# ------------------------------------------------------------------------------ frequencies


def term_frequencies(records: pl.DataFrame, comp: ComparisonSettings) -> tuple[pl.DataFrame, float]:
    """value -> freq among non-null values, for values seen at least twice (only those can be
    shared by a pair); and the frequency to assume for any other value."""
    values = records.get_column(comp.column).drop_nulls().cast(pl.String)
    total = max(values.len(), 1)
    table = (
        values.value_counts(name="count")
        .rename({values.name: "value"})
        .filter(pl.col("count") >= 2)
        .select("value", (pl.col("count") / total).alias("freq"))
        .sort("value")
    )
    return table, 2.0 / total


# -------------------------------------------------------------------------------------- EM


def _patterns(gammas: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return gammas.group_by(columns).agg(pl.len().cast(pl.Float64).alias("count"))


def _log_bf(
    model_m: dict[str, list[float]], u: dict[str, list[float]], comps: list[ComparisonSettings]
) -> pl.Expr:
    """Natural-log Bayes factor of each pattern over the given comparisons (null levels: 0)."""
    terms = []
    for comp in comps:
        levels = list(range(len(comp.levels) + 1))
        w = [math.log(m / uu) for m, uu in zip(model_m[comp.name], u[comp.name], strict=True)]
        terms.append(
            pl.col(gamma_column(comp.name)).replace_strict(levels, w, default=0.0, return_dtype=pl.Float64)
        )
    return pl.sum_horizontal(terms) if terms else pl.lit(0.0)


def _initial_m(levels: int) -> list[float]:
    """Decreasing m for the listed levels, little for else: EM starts from "agreement is
    evidence" and must not begin by taking household members for duplicates."""
    head = [0.5 ** i for i in range(levels)]
    scale = 0.97 / sum(head)
    return [h * scale for h in head] + [0.03]


def _em(
    patterns: pl.DataFrame,
    comps: list[ComparisonSettings],
    u: dict[str, list[float]],
    m0: dict[str, list[float]],
    *,
    iterations: int,
    tolerance: float,
) -> tuple[dict[str, list[float]], float, float, int]:
    """EM for m (u fixed) and the share of matches on one session's gamma patterns.

    Returns m per active comparison, lambda, expected matches, iterations run."""
    m = {c.name: list(m0[c.name]) for c in comps}
    lam = 0.5
    total = float(patterns.get_column("count").sum())
    expected = 0.0
    it = 0
    for it in range(1, iterations + 1):
        prior = math.log(lam / (1 - lam))
        post = patterns.with_columns(
            (1.0 / (1.0 + (-(pl.lit(prior) + _log_bf(m, u, comps))).exp()) * pl.col("count")).alias("pm")
        )
        expected = float(post.get_column("pm").sum())
        new_lam = min(max(expected / total, 1e-9), 1 - 1e-9)
        change = abs(new_lam - lam)
        for comp in comps:
            g = gamma_column(comp.name)
            sums = post.filter(pl.col(g) >= 0).group_by(g).agg(pl.col("pm").sum())
            by_level = dict(zip(sums.get_column(g).to_list(), sums.get_column("pm").to_list(), strict=True))
            denom = sum(by_level.values())
            if denom <= 0:
                continue
            levels = len(comp.levels) + 1
            # One pseudo-pair per level (Laplace): a level never seen among a session's matches
            # is rare, not impossible; without this a single typo would cost ~20 bits.
            new = [
                max((by_level.get(i, 0.0) + 1.0) / (denom + levels), M_FLOOR) for i in range(levels)
            ]
            s = sum(new)
            new = [x / s for x in new]
            change = max(change, max(abs(a - b) for a, b in zip(new, m[comp.name], strict=True)))
            m[comp.name] = new
        lam = new_lam
        if change < tolerance:
            break
    return m, lam, expected, it


def _rule_agreement(rec: pl.DataFrame, left: pl.Series, right: pl.Series, keys: tuple[str, ...]) -> pl.Series:
    """Per pair: do both records agree on all keys (none null)?"""
    h = rec.select(
        pl.when(pl.all_horizontal([pl.col(k).is_not_null() for k in keys]))
        .then(pl.struct(list(keys)).hash())
    ).to_series()
    return (h.gather(left) == h.gather(right)).fill_null(False)


def _estimate_m(
    rec: pl.DataFrame,
    left: pl.Series,
    right: pl.Series,
    gammas: pl.DataFrame,
    settings: EntitySettings,
    u: dict[str, list[float]],
) -> tuple[dict[str, list[float]], dict[str, float], list[dict[str, Any]]]:
    """m per comparison, the expected matches behind each estimate, and a log of sessions."""
    est = settings.estimation
    gcols = [gamma_column(c.name) for c in settings.comparisons]
    m0 = {c.name: _initial_m(len(c.levels)) for c in settings.comparisons}
    sums: dict[str, list[float]] = {}
    weights: dict[str, float] = {}
    sessions: list[dict[str, Any]] = []

    def run(name: str, mask: pl.Series | None, comps: list[ComparisonSettings]) -> None:
        frame = gammas if mask is None else gammas.filter(mask)
        if frame.height == 0 or not comps:
            return
        m, lam, expected, iters = _em(
            _patterns(frame, gcols), comps, u, m0,
            iterations=est.em_max_iterations, tolerance=est.em_tolerance,
        )
        sessions.append({"session": name, "pairs": frame.height, "lambda": lam,
                         "expected_matches": expected, "iterations": iters,
                         "estimated": [c.name for c in comps]})
        for comp in comps:
            w = max(expected, 1e-9)
            acc = sums.setdefault(comp.name, [0.0] * (len(comp.levels) + 1))
            for i, x in enumerate(m[comp.name]):
                acc[i] += w * x
            weights[comp.name] = weights.get(comp.name, 0.0) + w

    for rule in settings.training_rules():
        keyroots = set().union(*(settings.root_columns(k) for k in rule.keys))
        active = [
            c for c in settings.comparisons
            if not keyroots & set().union(*(settings.root_columns(col) for col in c.level_columns()))
        ]
        run(rule.name, _rule_agreement(rec, left, right, rule.keys), active)
    missing = [c for c in settings.comparisons if c.name not in weights]
    if missing:  # every rule reads these comparisons' columns: estimate them on all pairs
        run("all_pairs", None, missing)
    m: dict[str, list[float]] = {}
    for comp in settings.comparisons:
        if comp.name in weights:
            m[comp.name] = [x / weights[comp.name] for x in sums[comp.name]]
        else:
            m[comp.name] = m0[comp.name]
    return m, weights, sessions


def _recalibrate(
    m: dict[str, list[float]],
    expected: dict[str, float],
    judged: pl.DataFrame,
    settings: EntitySettings,
) -> dict[str, list[float]]:
    """Add the pairs reviewers judged "same" to EM's matches as certain matches.

    m becomes (EM's expected count per level + judged count per level) / (EM's expected
    matches + judged pairs): judgements shift m in proportion to how many there are next to
    the matches EM already counted. Reviewers see hard cases, not a random sample of matches,
    so blending them in as counts (rather than replacing m) keeps them from dominating.
    """
    same = judged.filter(pl.col("verdict") == "same")
    out = dict(m)
    for comp in settings.comparisons:
        g = same.get_column(gamma_column(comp.name))
        g = g.filter(g >= 0)
        if g.len() == 0:
            continue
        counts = dict(zip(*[s.to_list() for s in g.value_counts().get_columns()], strict=True))
        n = float(g.len())
        w = expected.get(comp.name) or JUDGEMENT_PSEUDO_PAIRS
        blended = [(counts.get(i, 0) + w * x) / (n + w) for i, x in enumerate(m[comp.name])]
        out[comp.name] = [max(x, M_FLOOR) for x in blended]
    return out


def _prior(weights_sum: pl.Series, n_records: int, fixed: float | None, possible: int | None = None) -> float:
    """The prior that makes lambda = expected matches among candidates / all possible pairs
    (`possible`: default n(n-1)/2; link_only passes the cross-source pairs)."""
    if fixed is not None:
        return fixed
    possible = n_records * (n_records - 1) / 2 if possible is None else possible
    if possible <= 0 or weights_sum.len() == 0:
        return 1e-6
    lam = min(max(weights_sum.len() / possible, 1e-12), 0.5)
    frame = weights_sum.to_frame("w")
    for _ in range(100):
        logit = math.log2(lam / (1 - lam))
        expected = frame.select(
            (1.0 / (1.0 + (pl.lit(2.0) ** (-(pl.col("w") + logit))))).sum()
        ).item()
        new = min(max(expected / possible, 1e-15), 0.5)
        if abs(new - lam) <= 1e-6 * lam:
            lam = new
            break
        lam = new
    return lam


def train(
    records: pl.DataFrame,
    pairs_gamma: pl.DataFrame,
    settings: EntitySettings,
    *,
    judgements: pl.DataFrame | None = None,
) -> Model:
    """Estimate u (random pairs), m (EM per blocking rule), the prior and term frequencies.

    judgements: left_id, right_id, verdict ('same' | 'different'); pairs judged 'same'
    recalibrate m (see module docstring). Pairs need not be among pairs_gamma.
    """
    rec = prepare(records, settings)
    est = settings.estimation
    u = estimate_u(rec, settings, seed=est.seed)
    left, right = pair_index(pairs_gamma, rec, settings.unique_id)
    gcols = [gamma_column(c.name) for c in settings.comparisons]
    gammas = pairs_gamma.select(gcols)
    m, expected, sessions = _estimate_m(rec, left, right, gammas, settings, u)
    if judgements is not None and judgements.height:
        bad = judgements.filter(~pl.col("verdict").is_in(["same", "different"]))
        if bad.height:
            got = bad.get_column("verdict").unique().to_list()
            raise ValueError(f"verdict must be 'same' or 'different', got {got}")
        # A judgement about a record that has since gone cannot inform the model: skip it.
        known = rec.get_column(settings.unique_id).implode()
        judgements = judgements.filter(pl.col("left_id").is_in(known) & pl.col("right_id").is_in(known))
    if judgements is not None and judgements.height:
        jl, jr = pair_index(judgements, rec, settings.unique_id)
        judged = judgements.select("verdict").hstack(gamma_frame(rec, jl, jr, settings))
        m = _recalibrate(m, expected, judged, settings)
    tf: dict[str, pl.DataFrame] = {}
    tf_min: dict[str, float] = {}
    for comp in settings.comparisons:
        if comp.term_frequency:
            tf[comp.name], tf_min[comp.name] = term_frequencies(rec, comp)
    model = Model(
        lambda_=0.5, m=m, u=u, tf=tf, settings_hash=settings.model_hash(), tf_minimum=tf_min,
        info={"records": rec.height, "pairs": pairs_gamma.height, "sessions": sessions,
              "judgements": 0 if judgements is None else judgements.height},
    )
    weights = _weights(gammas, rec, left, settings, model)
    total = (
        weights.select(pl.sum_horizontal(pl.all())).to_series()
        if weights.width
        else pl.Series([], dtype=pl.Float64)
    )
    source = source_codes(rec, settings)
    model.lambda_ = _prior(total, rec.height, est.prior_match_probability,
                           None if source is None else cross_source_pairs(source))
    return model


# ----------------------------------------------------------------------------------- scoring


def _weights(
    gammas: pl.DataFrame, rec: pl.DataFrame, left: pl.Series, settings: EntitySettings, model: Model
) -> pl.DataFrame:
    """w_<name> per pair: log2(m/u) of its level, 0 for null, TF-adjusted exact levels."""
    cols = []
    for comp in settings.comparisons:
        g = gammas.get_column(gamma_column(comp.name))
        levels = list(range(len(comp.levels) + 1))
        w = g.replace_strict(levels, model.level_weights(comp.name), default=0.0, return_dtype=pl.Float64)
        if comp.name in model.tf:
            rows = (g == 0).arg_true()
            if rows.len():
                values = rec.get_column(comp.column).cast(pl.String).gather(left.gather(rows))
                freq = (
                    values.to_frame("value")
                    .join(model.tf[comp.name], on="value", how="left", maintain_order="left")
                    .get_column("freq")
                    .fill_null(model.tf_minimum.get(comp.name, model.u[comp.name][0]))
                )
                m0 = model.m[comp.name][0]
                w = w.scatter(rows, (m0 / freq).log(2))
        cols.append(w.cast(pl.Float32).alias(weight_column(comp.name)))
    return pl.DataFrame(cols)


def _broken(rec: pl.DataFrame, left: pl.Series, right: pl.Series, dv: DistinctValid) -> pl.Series:
    """Per pair, whether it breaks one constraint: both values flagged valid, and different."""
    values, valid = rec.get_column(dv.column), rec.get_column(dv.valid_flag).cast(pl.Boolean)
    both = (valid.gather(left) & valid.gather(right)).fill_null(False)
    differ = (values.gather(left) != values.gather(right)).fill_null(False)
    return both & differ


def _violations(rec: pl.DataFrame, left: pl.Series, right: pl.Series, settings: EntitySettings,
                *, refused: str | None = None) -> pl.Series:
    """Per pair, whether it breaks a constraint (of those whose refusals become `refused`, when given)."""
    out = pl.repeat(False, left.len(), dtype=pl.Boolean, eager=True)
    for dv in settings.constraints.distinct_valid:
        if refused is None or dv.refused == refused:
            out = out | _broken(rec, left, right, dv)
    return out.alias("constraint_violated")


def guard_reason(dv: DistinctValid) -> str:
    """The words a reviewer reads for a pair this constraint refused (its `reason`, else one
    naming the column); shared with the plain-Python twin of scoring (pair_scores)."""
    label = " ".join("ID" if w == "id" else w for w in dv.column.split("_"))
    return "refused by the " + (f"guard: {dv.reason}" if dv.reason else
                                f"ID guard: both records carry a different valid {label} ({dv.column})")


def _violation_reasons(rec: pl.DataFrame, left: pl.Series, right: pl.Series, settings: EntitySettings) -> pl.Series:
    """Per pair, why the guard sends it to review, in words (null when no such constraint is broken)."""
    out = pl.repeat(None, left.len(), dtype=pl.String, eager=True)
    for dv in reversed(settings.constraints.distinct_valid):  # the first constraint's words win
        if dv.refused != "review":
            continue
        words = guard_reason(dv)
        out = pl.select(pl.when(_broken(rec, left, right, dv)).then(pl.lit(words)).otherwise(out)).to_series()
    return out.alias("review_reason")


def score(
    pairs_gamma: pl.DataFrame, records: pl.DataFrame, model: Model, settings: EntitySettings
) -> pl.DataFrame:
    """Scored pairs: the input columns, w_<name> per comparison (log2 Bayes factor, TF
    included), match_weight, match_probability, constraint_violated, decision and review_reason
    (why a pair refused by the ID guard waits for a reviewer; null otherwise)."""
    if model.settings_hash and model.settings_hash != settings.model_hash():
        raise ValueError(
            "model was trained for other comparison settings "
            f"(model {model.settings_hash}, settings {settings.model_hash()}): retrain it"
        )
    rec = prepare(records, settings)
    # Scoring a scored frame again (say with a new model) replaces its scores.
    produced = [weight_column(c.name) for c in settings.comparisons] + [
        "match_weight", "match_probability", "constraint_violated", "decision", "review_reason"]
    pairs_gamma = pairs_gamma.drop(produced, strict=False)
    left, right = pair_index(pairs_gamma, rec, settings.unique_id)
    weights = _weights(pairs_gamma, rec, left, settings, model)
    th = settings.thresholds
    out = pairs_gamma.hstack(weights).with_columns(
        (
            pl.lit(model.prior_weight) + pl.sum_horizontal(pl.col(weights.columns).cast(pl.Float64))
        ).alias("match_weight")
    )
    out = out.with_columns(
        (1.0 / (1.0 + pl.lit(2.0) ** (-pl.col("match_weight")))).alias("match_probability"),
        _violations(rec, left, right, settings),
    )
    p = pl.col("match_probability")
    violated = pl.col("constraint_violated")
    reviewable = (_violations(rec, left, right, settings, refused="review")
                  if out["constraint_violated"].any() else pl.repeat(False, out.height, eager=True))
    reasons = _violation_reasons(rec, left, right, settings) if reviewable.any() else None
    out = out.with_columns(
        pl.when(pl.lit(reviewable) & (p >= th.review))
        .then(pl.lit("review"))
        .when(violated)
        .then(pl.lit("non_match"))
        .when(p >= th.match)
        .then(pl.lit("match"))
        .when(p >= th.review)
        .then(pl.lit("review"))
        .otherwise(pl.lit("non_match"))
        .alias("decision")
    )
    # Why a pair waits for a reviewer although the model scored it high enough: only the guard's
    # refusals carry a reason (an undecided score needs none).
    if reasons is None:
        return out.with_columns(pl.lit(None, dtype=pl.String).alias("review_reason"))
    return out.with_columns(
        pl.when(pl.lit(reviewable) & (p >= th.review)).then(reasons).otherwise(None).alias("review_reason")
    )


def explain(pair_row: dict[str, Any], model: Model, settings: EntitySettings) -> list[tuple[str, str, float]]:
    """(comparison, level label, weight) for one scored pair, the prior first.

    Uses the row's w_<name> when present (term frequencies included); otherwise the level's
    weight from the model. The weights plus the prior add up to match_weight.
    """
    rows: list[tuple[str, str, float]] = [("prior", f"lambda = {model.lambda_:.3g}", model.prior_weight)]
    for comp in settings.comparisons:
        g = pair_row.get(gamma_column(comp.name))
        if g is None or g < 0:
            rows.append((comp.name, "null (no evidence)", 0.0))
            continue
        label = comp.labels()[int(g)]
        w = pair_row.get(weight_column(comp.name))
        if w is None:
            w = model.level_weights(comp.name)[int(g)]
        elif comp.name in model.tf and g == 0:
            label += " (term frequency adjusted)"
        rows.append((comp.name, label, float(w)))
    return rows
