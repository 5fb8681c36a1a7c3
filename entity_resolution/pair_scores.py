"""A plain-Python twin of `comparison_vectors` + `score` for one record and its few candidates.

The front desk compares one typed record with a handful of candidates. Through Polars that costs
tens of milliseconds whatever the row count (frames, expressions, joins per call); in plain Python
with RapidFuzz's scalar scorers it costs microseconds per pair. The twin must give exactly what the
Polars path gives, so every rule here mirrors one there, and reuses its parts (the RapidFuzz scorer
and cutoff, the ID transforms, the region table, the guard's words):

- a null in the comparison's own column is level -1; levels are tried in order, the first that
  holds wins, else len(levels);
- exact: equal values (as Polars compares them: NaN equals NaN); ID levels compare the same
  parts of the text; date levels read Date (or Datetime) values only;
- fuzzy levels are scored with the loosest threshold of their kind and column in the comparison as
  RapidFuzz's cutoff, similarities rounded to float32 as `cpdist` returns them;
- weights are rounded to float32 as `_weights` stores them (term frequencies included: ln(m/f) /
  ln 2, as Polars takes log 2), summed in comparison order, then added to the prior, as `score`
  does; the guard and the decision follow `score` rule for rule.

Whatever the twin cannot read exactly as Polars would (a value type it does not know, a missing
column, a date given as text, which Polars refuses) makes it answer None: the caller then takes the
Polars path, which gives the answer or the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl

from entity_resolution.comparisons import (
    ID_TEXT_TRANSFORMS,
    NULL_LEVEL,
    fuzzy_cutoffs,
    gamma_column,
    region_group_map,
    scalar_scorer,
)
from entity_resolution.config import (
    DISTANCE_KINDS,
    FUZZY_KINDS,
    EntitySettings,
    LevelSettings,
)
from entity_resolution.scoring import Model, guard_reason, weight_column

_DATE_KINDS = frozenset({"date_swap", "date_within"})
_LN2 = math.log(2.0)  # Polars' log(2) is ln(x) / ln(2), which differs from math.log2 in the last bit
_EXACT_TYPES = (str, int, float, date)  # bool is an int, datetime a date


class _Uncovered(Exception):
    """A value the twin cannot read exactly as the Polars path would: the caller falls back."""


LevelTest = Callable[[Any, Any, dict[str, float]], bool]  # (left value, right value, scores so far)


@dataclass(frozen=True)
class _Comparison:
    name: str
    column: str
    levels: tuple[tuple[str, LevelTest], ...]  # (column the level reads, its test on two non-null values)
    gamma: str
    weight: str


@dataclass(frozen=True)
class _Guard:
    column: str
    flag: str
    review: bool  # refused: review (else non_match)
    reason: str


@dataclass(frozen=True)
class _Plan:
    """What a settings object asks of every pair, worked out once per settings object."""

    settings_hash: str
    uid: str
    comparisons: tuple[_Comparison, ...]
    guards: tuple[_Guard, ...]
    date_columns: tuple[str, ...]
    match: float
    review: float


def _compile(settings: EntitySettings) -> _Plan:
    regions = region_group_map(settings)
    comparisons = []
    for comp in settings.comparisons:
        cutoffs = fuzzy_cutoffs(comp)
        levels = tuple((lv.column or comp.column, _level_test(lv, lv.column or comp.column, cutoffs, regions))
                       for lv in comp.levels)
        comparisons.append(_Comparison(comp.name, comp.column, levels, gamma_column(comp.name),
                                       weight_column(comp.name)))
    guards = tuple(
        _Guard(dv.column, dv.valid_flag, dv.refused == "review", guard_reason(dv))
        for dv in settings.constraints.distinct_valid
    )
    dates = {lv.column or c.column for c in settings.comparisons for lv in c.levels if lv.kind in _DATE_KINDS}
    return _Plan(settings.model_hash(), settings.unique_id, tuple(comparisons), guards, tuple(sorted(dates)),
                 settings.thresholds.match, settings.thresholds.review)


class _TfLookup:
    """value -> freq of a model's term-frequency table: a dict of every name of a million-record
    model would cost hundreds of MB in the serving process, and a Polars search per lookup about a
    millisecond. So the values' Python hashes are kept sorted in a NumPy array (8 bytes a value; the
    hashes are this process's, built here and read here), a lookup is one `searchsorted`, and a hit
    is confirmed against the value itself (equal hashes of unequal values answer what they are)."""

    CHUNK = 100_000  # values hashed at a time: the build never holds them all as Python strings

    def __init__(self, table: pl.DataFrame):
        values = table.get_column("value").cast(pl.String)
        hashes = np.empty(values.len(), dtype=np.int64)
        for start in range(0, values.len(), self.CHUNK):
            part = values.slice(start, self.CHUNK).to_list()
            hashes[start:start + len(part)] = [hash(v) for v in part]
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.values = values.gather(order)
        self.freqs = table.get_column("freq").to_numpy()[order]

    def get(self, value: str | None, default: float) -> float:
        h = hash(value)
        i = int(np.searchsorted(self.hashes, h))
        while i < self.hashes.size and self.hashes[i] == h:
            if self.values[i] == value:
                return float(self.freqs[i])
            i += 1
        return default


# ------------------------------------------------------------------------------- values


def _same(a: Any, b: Any) -> bool:
    """Equality as Polars compares two values of one column (NaN equals NaN)."""
    if type(a) is str and type(b) is str:
        return a == b
    if not isinstance(a, _EXACT_TYPES) or not isinstance(b, _EXACT_TYPES):
        raise _Uncovered
    if isinstance(a, str) != isinstance(b, str) or isinstance(a, date) != isinstance(b, date) \
            or isinstance(a, datetime) != isinstance(b, datetime):
        raise _Uncovered  # mixed types: Polars would cast one side first
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _text(value: Any) -> str:
    """The value cast to String as Polars casts it, for the kinds that compare text."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is date:
        return value.isoformat()
    raise _Uncovered  # floats and datetimes print differently in Polars


def _day(value: Any) -> date:
    """The value as `_dates` casts it to Date; text is refused there, so it is here too."""
    if type(value) is date:
        return value
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.date()
    raise _Uncovered


def _flag(value: Any) -> bool | None:
    """A valid flag cast to Boolean as `_broken` casts it (None stays null)."""
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    raise _Uncovered


def _exact(a: Any, b: Any, scores: dict[str, float]) -> bool:
    return a == b if type(a) is str and type(b) is str else _same(a, b)


def _level_test(level: LevelSettings, column: str, cutoffs: dict[tuple[str, str], float],
                regions: Mapping[str, str]) -> LevelTest:
    """The level as a test on two non-null values of its column, mirroring `level_holds`."""
    kind = level.kind
    if kind == "exact":
        return _exact
    if kind == "date_swap":
        def swapped(a: Any, b: Any, scores: dict[str, float]) -> bool:
            da, db = _day(a), _day(b)
            return da.year == db.year and da.month == db.day and da.day == db.month and da != db
        return swapped
    if kind == "date_within":
        days = level.days or 0
        return lambda a, b, scores: abs((_day(a) - _day(b)).days) <= days
    if kind in FUZZY_KINDS:
        scorer, threshold = scalar_scorer(kind, cutoffs[(column, kind)]), float(level.threshold or 0)
        key = f"{column}\x00{kind}"  # levels of one kind on one column share a score, as `PairSides.fuzzy` does
        distance = kind in DISTANCE_KINDS

        def fuzzy(a: Any, b: Any, scores: dict[str, float]) -> bool:
            score = scores.get(key)
            if score is None:
                score = scores[key] = scorer(_text(a), _text(b))
            return score <= threshold if distance else score >= threshold
        return fuzzy
    return _id_test(kind, regions)


def _id_test(kind: str, regions: Mapping[str, str]) -> LevelTest:
    """ID levels on the parts `_ID_TRANSFORMS` cut (ID_TEXT_TRANSFORMS, their per-value twins)."""
    id15, region, rest, head15 = (ID_TEXT_TRANSFORMS[k] for k in ("id15", "region", "rest", "head15"))
    if kind == "id_15_18":
        def same_15(a: Any, b: Any, scores: dict[str, float]) -> bool:
            form = id15(_text(a))
            return form is not None and form == id15(_text(b))
        return same_15
    if kind == "id_spreadsheet_15":
        def spreadsheet(a: Any, b: Any, scores: dict[str, float]) -> bool:
            ta, tb = _text(a), _text(b)
            head = head15(ta)
            return (ta.endswith("000") or tb.endswith("000")) and head is not None and head == head15(tb)
        return spreadsheet
    recoded = kind == "id_region_recoded"

    def other_region(a: Any, b: Any, scores: dict[str, float]) -> bool:
        """Digits 7-17 agree and the region codes differ (one region under the recodings)."""
        ta, tb = _text(a), _text(b)
        tail = rest(ta)
        if tail is None or tail != rest(tb):
            return False
        ra, rb = region(ta), region(tb)
        return ra != rb and (not recoded or regions.get(ra, ra) == regions.get(rb, rb))  # type: ignore[arg-type]
    return other_region


def _gamma(comp: _Comparison, left: Mapping[str, Any], right: Mapping[str, Any]) -> int:
    if left[comp.column] is None or right[comp.column] is None:
        return NULL_LEVEL
    scores: dict[str, float] = {}
    i = 0
    for column, test in comp.levels:
        a, b = left[column], right[column]
        if a is not None and b is not None and test(a, b, scores):
            return i
        i += 1
    return i


# ------------------------------------------------------------------------------- scoring


def _float32(x: float) -> float:
    return float(np.float32(x))


def _probability(weight: float) -> float:
    """1 / (1 + 2^-w) as Polars computes it (an overflowing power is inf, giving 0)."""
    try:
        return 1.0 / (1.0 + 2.0 ** (-weight))
    except OverflowError:
        return 0.0


def _guard(plan: _Plan, left: Mapping[str, Any], right: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(constraint violated, reason of the first broken `refused: review` constraint or None)."""
    violated, reason = False, None
    for g in plan.guards:
        fa, fb = _flag(left[g.flag]), _flag(right[g.flag])  # both read: Polars casts the whole column
        both = fa is True and fb is True
        a, b = left[g.column], right[g.column]
        if both and a is not None and b is not None and not _same(a, b):
            violated = True
            if g.review and reason is None:
                reason = g.reason
    return violated, reason


def _decision(plan: _Plan, p: float, violated: bool, reason: str | None) -> tuple[str, str | None]:
    """`score`'s decision and review_reason for one pair."""
    if reason is not None and p >= plan.review:
        return "review", reason
    if violated:
        return "non_match", None
    if p >= plan.match:
        return "match", None
    return ("review" if p >= plan.review else "non_match"), None


def _compute_weights(plan: _Plan, model: Model) -> list[tuple[list[float], _TfLookup | None, float, float]]:
    """Per comparison: the float32 weight per level, and for a term-frequency comparison its
    value -> freq lookup, the frequency of an unlisted value and m of the first level."""
    out = []
    for comp in plan.comparisons:
        levels = [_float32(w) for w in model.level_weights(comp.name)]
        table = model.tf.get(comp.name)
        if table is None:
            out.append((levels, None, 0.0, 0.0))
        else:
            floor = model.tf_minimum.get(comp.name, model.u[comp.name][0])
            out.append((levels, _TfLookup(table), floor, model.m[comp.name][0]))
    return out


def _score_one(plan: _Plan, weights: list, prior: float, left: Mapping[str, Any],
               right: Mapping[str, Any]) -> dict[str, Any]:
    for column in plan.date_columns:  # Polars casts the whole column, so text fails even unread
        for v in (left[column], right[column]):
            if v is not None and type(v) is not date:
                _day(v)
    row: dict[str, Any] = {"left_id": left[plan.uid], "right_id": right[plan.uid]}
    ws = []
    for comp, (levels, tf, floor, m0) in zip(plan.comparisons, weights, strict=True):
        g = _gamma(comp, left, right)
        row[comp.gamma] = g
        if g == NULL_LEVEL:
            w = 0.0
        elif g == 0 and tf is not None:
            freq = tf.get(_text(left[comp.column]), floor)
            w = _float32(math.log(m0 / freq) / _LN2)
        else:
            w = levels[g]
        ws.append(w)
    for comp, w in zip(plan.comparisons, ws, strict=True):
        row[comp.weight] = w
    total = 0.0
    for w in ws:
        total += w
    weight = prior + total
    p = _probability(weight)
    violated, reason = _guard(plan, left, right)
    decision, why = _decision(plan, p, violated, reason)
    row.update(match_weight=weight, match_probability=p, constraint_violated=violated,
               decision=decision, review_reason=why)
    return row


class PairScorer:
    """The twin for one (settings, model), worked out once: the comparisons' level tests, the
    region table, the weights and the term-frequency lookups. A front desk's index holds one for
    as long as it serves; a new resolution run builds a new index, so a new scorer.

    Raises ValueError for a model trained for other settings, as `score` does."""

    def __init__(self, settings: EntitySettings, model: Model):
        self.plan = _compile(settings)
        if model.settings_hash and model.settings_hash != self.plan.settings_hash:
            raise ValueError(
                "model was trained for other comparison settings "
                f"(model {model.settings_hash}, settings {self.plan.settings_hash}): retrain it"
            )
        self.weights = _compute_weights(self.plan, model)
        self.prior = model.prior_weight

    def score(self, left: Mapping[str, object], rights: Sequence[Mapping[str, object]]) -> list[dict] | None:
        """Per right, the row `score(comparison_vectors(pairs, records, settings), records, model,
        settings)` gives for the pair (left_id = left's unique id, right_id = right's): left_id,
        right_id, gamma_<name>, w_<name>, match_weight, match_probability, constraint_violated,
        decision, review_reason.

        Rows are records as `prepare` leaves them: every column the settings read, derived ones
        included. None when a value is one the twin does not read exactly as Polars would (the
        caller then takes the Polars path). Ids that are null or repeated raise as the Polars path
        does."""
        plan = self.plan
        try:
            ids = [left[plan.uid], *(r[plan.uid] for r in rights)]
            if any(i is None for i in ids):
                raise ValueError(f"{plan.uid}: null id(s)")
            if len(set(ids)) != len(ids):
                raise ValueError(f"{plan.uid}: ids are not unique")
            return [_score_one(plan, self.weights, self.prior, left, right) for right in rights]
        except (_Uncovered, KeyError):  # KeyError: a column the rows lack
            return None


def score_pair_rows(left: Mapping[str, object], rights: Sequence[Mapping[str, object]],
                    settings: EntitySettings, model: Model) -> list[dict] | None:
    """`PairScorer(settings, model).score(left, rights)`, for one call."""
    return PairScorer(settings, model).score(left, rights)
