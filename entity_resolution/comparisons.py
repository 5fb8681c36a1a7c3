"""Comparison vectors: for each candidate pair, which level of each comparison holds.

As in Splink, a comparison is an ordered list of levels (exact name; same pinyin; close by
Jaro-Winkler; ...); the first level that holds is the pair's level for that comparison, the
implicit "else" follows the listed levels, and a null on either side is level -1, which carries no
evidence. Scoring turns levels into weights; keeping the two apart lets the same vectors be used
for training, scoring and explaining.

Cost is kept proportional to what is undecided. Equality is tested on 64-bit hashes of the
values (one hash per record, gathered per pair: integer work, no string copies) and confirmed on
the actual values of the few pairs whose hashes agree, so a hash collision can never fake a
match. Fuzzy levels (RapidFuzz `cpdist`, all cores) run only on pairs that no earlier level has
decided, so the exact name pairs of a million-record run never reach Jaro-Winkler.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import polars as pl

from entity_resolution.blocking import prepare
from entity_resolution.config import (
    DISTANCE_KINDS,
    FUZZY_KINDS,
    ComparisonSettings,
    EntitySettings,
    LevelSettings,
    bundled_region_changes_path,
    read_region_changes,
)

GAMMA_PREFIX = "gamma_"
NULL_LEVEL = -1
UNSAMPLED = -2  # u estimation only: a random pair left out of the fuzzy subsample
_IDX = pl.UInt32


def gamma_column(name: str) -> str:
    return f"{GAMMA_PREFIX}{name}"


def _scorer(kind: str) -> tuple[Callable[..., Any], Callable[[float], float]]:
    """RapidFuzz scorer for a fuzzy kind and how to turn the threshold into its score_cutoff."""
    from rapidfuzz import fuzz
    from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

    if kind == "jaro_winkler":
        return JaroWinkler.normalized_similarity, float
    if kind == "token_set":
        return fuzz.token_set_ratio, lambda t: 100.0 * t
    if kind == "levenshtein":
        return Levenshtein.distance, int
    # Optimal string alignment: an adjacent transposition costs 1, as a keying slip does.
    return OSA.distance, int


def fuzzy_scores(left: pl.Series, right: pl.Series, kind: str, threshold: float) -> pl.Series:
    """Vectorised RapidFuzz scores of aligned string Series (similarity 0..1 or distance).

    Scores past the threshold are cut off early by RapidFuzz, which is what keeps a million
    random pairs cheap: most are rejected after a bound check.
    """
    from rapidfuzz import process

    if left.len() == 0:
        return pl.Series("score", [], dtype=pl.Float64)
    scorer, cutoff = _scorer(kind)
    out = process.cpdist(
        left.cast(pl.String).to_list(),
        right.cast(pl.String).to_list(),
        scorer=scorer,
        score_cutoff=cutoff(threshold),
        workers=-1,
    )
    scores = pl.Series("score", out).cast(pl.Float64)
    return scores / 100.0 if kind == "token_set" else scores


def scalar_scorer(kind: str, cutoff_threshold: float) -> Callable[[str, str], float]:
    """A per-pair twin of `fuzzy_scores` (plain Python, for a handful of pairs): RapidFuzz's
    scalar scorer with the same score_cutoff, similarities rounded to float32 as `cpdist` returns
    them, since a threshold compares with the rounded score (0.79999999 rounds up to reach 0.8)."""
    import numpy as np

    scorer, cutoff = _scorer(kind)
    limit = cutoff(cutoff_threshold)
    if kind in DISTANCE_KINDS:
        return lambda a, b: scorer(a, b, score_cutoff=limit)
    if kind == "token_set":  # Polars divides a Series by a scalar as a product with 1 / scalar
        return lambda a, b: float(np.float32(scorer(a, b, score_cutoff=limit))) * (1.0 / 100.0)
    return lambda a, b: float(np.float32(scorer(a, b, score_cutoff=limit)))


def id_15_form(value: pl.Expr) -> pl.Expr:
    """The 15-digit form of an ID number: digits 1-6 and 9-17 of an 18-digit one (dropping the
    century and the check character), or a 15-digit one as it is; null for other lengths."""
    length = value.str.len_chars()
    return (
        pl.when(length == 18)
        .then(pl.concat_str(value.str.slice(0, 6), value.str.slice(8, 9)))
        .when(length == 15)
        .then(value)
    )


def _id_part(value: pl.Expr, start: int, length: int) -> pl.Expr:
    return pl.when(value.str.len_chars() == 18).then(value.str.slice(start, length))


# Parts of an 18-digit ID number that ID levels compare: the region code (digits 1-6), the rest
# (digits 7-17: birth date, sequence and sex, which a region recoding leaves alone) and the
# first 15 digits (what a spreadsheet keeps of an 18-digit number).
_ID_TRANSFORMS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "id15": id_15_form,
    "region": lambda v: _id_part(v, 0, 6),
    "rest": lambda v: _id_part(v, 6, 11),
    "head15": lambda v: _id_part(v, 0, 15),
}


# Per-value twins of _ID_TRANSFORMS on an ID number's text (None where the Polars form is null).
ID_TEXT_TRANSFORMS: dict[str, Callable[[str], str | None]] = {
    "id15": lambda v: v[:6] + v[8:17] if len(v) == 18 else (v if len(v) == 15 else None),
    "region": lambda v: v[:6] if len(v) == 18 else None,
    "rest": lambda v: v[6:17] if len(v) == 18 else None,
    "head15": lambda v: v[:15] if len(v) == 18 else None,
}


@functools.lru_cache(maxsize=8)
def _region_groups(extra: tuple[tuple[str, str], ...]) -> tuple[list[str], list[str]]:
    """(codes, group label per code): codes joined by recodings (bundled table plus `extra`,
    in either direction, through chains and merges) share a label. A code outside the table
    is its own group."""
    rows = [(r["old_code"], r["new_code"]) for r in read_region_changes(bundled_region_changes_path())]
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for old, new in [*rows, *extra]:
        ra, rb = find(str(old)), find(str(new))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    codes = sorted(parent)
    return codes, ["g" + find(c) for c in codes]


def region_groups(settings: EntitySettings | None = None) -> tuple[list[str], list[str]]:
    """Region code -> recoding group, from the bundled GB/T 2260 table and the settings' rows."""
    extra = () if settings is None else tuple((r.old_code, r.new_code) for r in settings.region_changes)
    return _region_groups(extra)


@functools.lru_cache(maxsize=8)
def _region_group_map(extra: tuple[tuple[str, str], ...]) -> MappingProxyType[str, str]:
    codes, groups = _region_groups(extra)
    return MappingProxyType(dict(zip(codes, groups, strict=True)))


def region_group_map(settings: EntitySettings | None = None) -> Mapping[str, str]:
    """`region_groups` as a lookup for one value at a time: a code absent from it is its own
    group, as `replace` leaves a code outside the table as it is."""
    extra = () if settings is None else tuple((r.old_code, r.new_code) for r in settings.region_changes)
    return _region_group_map(extra)


class PairSides:
    """Both sides' values for pairs given as row indices into prepared records.

    Values and hashes are gathered once per column and cached, so several levels reading the
    same column (exact, then fuzzy) pay for one gather.
    """

    def __init__(
        self, records: pl.DataFrame, left: pl.Series, right: pl.Series, settings: EntitySettings | None = None
    ):
        self.records = records
        self.settings = settings
        self.left = left.cast(_IDX)
        self.right = right.cast(_IDX)
        self.n = left.len()
        self._hash: dict[str, tuple[pl.Series, pl.Series]] = {}
        self._values: dict[str, tuple[pl.Series, pl.Series]] = {}
        self._derived: dict[tuple[str, str], pl.Series] = {}
        self._fuzzy: dict[tuple[str, str], pl.Series] = {}

    def record_column(self, column: str, transform: str | None = None) -> pl.Series:
        if transform is None:
            return self.records.get_column(column)
        key = (column, transform)
        if key not in self._derived:
            if transform not in _ID_TRANSFORMS:  # pragma: no cover - internal misuse
                raise ValueError(transform)
            expr = _ID_TRANSFORMS[transform](pl.col(column).cast(pl.String))
            self._derived[key] = self.records.select(expr.alias(column)).to_series()
        return self._derived[key]

    def hashes(self, column: str, transform: str | None = None) -> tuple[pl.Series, pl.Series]:
        """Per-pair hashes of both sides; null where the value is null."""
        key = column if transform is None else f"{column}\x00{transform}"
        if key not in self._hash:
            values = self.record_column(column, transform)
            h = pl.select(
                pl.when(pl.lit(values).is_not_null()).then(pl.lit(values).hash())
            ).to_series()
            self._hash[key] = (h.gather(self.left), h.gather(self.right))
        return self._hash[key]

    def values(self, column: str) -> tuple[pl.Series, pl.Series]:
        if column not in self._values:
            values = self.records.get_column(column)
            self._values[column] = (values.gather(self.left), values.gather(self.right))
        return self._values[column]

    def fuzzy(self, column: str, kind: str, todo: pl.Series, cutoff: float) -> pl.Series:
        """Full-length scores (null where not computed) of `kind` on `column` for the `todo`
        rows with both values present. Cached: a later level of the same kind and column asks
        for a subset of these rows (decided rows only grow), so nothing is computed twice."""
        key = (column, kind)
        cached = self._fuzzy.get(key)
        if cached is not None:
            return cached
        hl, hr = self.hashes(column)
        rows = pl.select(
            pl.lit(todo) & pl.lit(hl).is_not_null() & pl.lit(hr).is_not_null()
        ).to_series().arg_true()
        scores = pl.repeat(None, self.n, dtype=pl.Float64, eager=True)
        if rows.len():
            lv, rv = self.subset_values(column, rows)
            scores = scores.scatter(rows, fuzzy_scores(lv, rv, kind, cutoff))
        self._fuzzy[key] = scores
        return scores

    def forget_scores(self) -> None:
        self._fuzzy.clear()

    def subset_values(
        self, column: str, rows: pl.Series, transform: str | None = None
    ) -> tuple[pl.Series, pl.Series]:
        """Values of both sides for the given pair rows only (no full-length gather)."""
        if column in self._values and transform is None:
            lv, rv = self._values[column]
            return lv.gather(rows), rv.gather(rows)
        values = self.record_column(column, transform)
        return values.gather(self.left.gather(rows)), values.gather(self.right.gather(rows))


def _scatter_true(n: int, rows: pl.Series) -> pl.Series:
    out = pl.repeat(False, n, dtype=pl.Boolean, eager=True)
    if rows.len():
        out = out.scatter(rows, True)
    return out


def _equal(sides: PairSides, column: str, todo: pl.Series, transform: str | None = None) -> pl.Series:
    """Rows (among `todo`) whose values are equal: hashes first, then the values confirm."""
    hl, hr = sides.hashes(column, transform)
    candidates = pl.select(pl.lit(todo) & (pl.lit(hl) == pl.lit(hr)).fill_null(False)).to_series()
    rows = candidates.arg_true()
    if rows.len() == 0:
        return candidates
    lv, rv = sides.subset_values(column, rows, transform)
    same = (lv == rv).fill_null(False)
    return _scatter_true(sides.n, rows.filter(same))


def _id_level(kind: str, sides: PairSides, column: str, todo: pl.Series) -> pl.Series:
    """ID levels: hashes of a part narrow the rows, the values of those few rows decide."""
    if kind == "id_spreadsheet_15":
        ends = sides.record_column(column).cast(pl.String).str.ends_with("000")
        either = (ends.gather(sides.left) | ends.gather(sides.right)).fill_null(False)
        return _equal(sides, column, todo & either, transform="head15")
    hit = _equal(sides, column, todo, transform="rest")
    rows = hit.arg_true()
    if rows.len() == 0:
        return hit
    lr, rr = sides.subset_values(column, rows, transform="region")
    keep = (lr != rr).fill_null(False)
    if kind == "id_region_recoded":
        codes, groups = region_groups(sides.settings)
        lg = lr.replace(codes, groups)
        rg = rr.replace(codes, groups)
        keep = keep & (lg == rg).fill_null(False)
    return _scatter_true(sides.n, rows.filter(keep))


def _dates(sides: PairSides, column: str) -> tuple[pl.Series, pl.Series]:
    lv, rv = sides.values(column)
    if lv.dtype != pl.Date:
        lv, rv = lv.cast(pl.Date, strict=False), rv.cast(pl.Date, strict=False)
    return lv, rv


def level_holds(
    level: LevelSettings, column: str, sides: PairSides, todo: pl.Series, loosest: float | None = None
) -> pl.Series:
    """Boolean per pair: does `level` hold? Evaluated only where `todo`; False elsewhere.

    `loosest`: the loosest threshold of this fuzzy kind on this column within the comparison,
    used as RapidFuzz's cutoff so that later, looser levels can reuse the scores.
    """
    col = level.column or column
    kind = level.kind
    if kind == "exact":
        return _equal(sides, col, todo)
    if kind == "id_15_18":
        return _equal(sides, col, todo, transform="id15")
    if kind in ("id_region_recoded", "id_rest_agrees", "id_spreadsheet_15"):
        return _id_level(kind, sides, col, todo)
    if kind in ("date_swap", "date_within"):
        lv, rv = _dates(sides, col)
        frame = pl.DataFrame({"l": lv, "r": rv, "todo": todo})
        lc, rc = pl.col("l"), pl.col("r")
        if kind == "date_swap":
            cond = (
                (lc.dt.year() == rc.dt.year())
                & (lc.dt.month() == rc.dt.day())
                & (lc.dt.day() == rc.dt.month())
                & (lc != rc)
            )
        else:
            cond = (lc - rc).dt.total_days().abs() <= (level.days or 0)
        return frame.select((pl.col("todo") & cond).fill_null(False)).to_series()
    # Fuzzy kinds: only undecided rows with both values present reach RapidFuzz, and levels
    # of one kind on one column (address >= 0.9, then >= 0.7) share one computation.
    threshold = float(level.threshold or 0)
    scores = sides.fuzzy(col, kind, todo, loosest if loosest is not None else threshold)
    holds = scores <= threshold if kind in DISTANCE_KINDS else scores >= threshold
    return pl.select(pl.lit(todo) & pl.lit(holds).fill_null(False)).to_series()


def fuzzy_cutoffs(comp: ComparisonSettings) -> dict[tuple[str, str], float]:
    """Per (column, kind) of the comparison's fuzzy levels, the loosest threshold: RapidFuzz's
    cutoff for all of them, so that later, looser levels can reuse the scores."""
    loosest: dict[tuple[str, str], float] = {}
    for level in comp.levels:
        if level.kind in FUZZY_KINDS:
            key = (level.column or comp.column, level.kind)
            t = float(level.threshold or 0)
            pick = max if level.kind in DISTANCE_KINDS else min
            loosest[key] = pick(loosest.get(key, t), t)
    return loosest


def comparison_gamma(
    comp: ComparisonSettings, sides: PairSides, *, fuzzy_limit: int | None = None
) -> pl.Series:
    """Level index per pair (Int8): 0.. for listed levels, len(levels) for else, -1 for null.

    `fuzzy_limit` (u estimation on random pairs only): when the first fuzzy level is reached,
    only the first `fuzzy_limit` undecided pairs go on; the others get UNSAMPLED (-2), and the
    caller scales the later levels' counts up (pairs are in random order, so this is a random
    subsample of the undecided ones).
    """
    hl, hr = sides.hashes(comp.column)
    null = (hl.is_null() | hr.is_null()).alias("null")
    gamma = pl.repeat(len(comp.levels), sides.n, dtype=pl.Int8, eager=True)
    decided = null
    sides.forget_scores()  # scores are shared between levels of one comparison only
    loosest = fuzzy_cutoffs(comp)
    unsampled = None
    for i, level in enumerate(comp.levels):
        if fuzzy_limit is not None and unsampled is None and level.kind in FUZZY_KINDS:
            todo_rows = (~decided).arg_true()
            unsampled = _scatter_true(sides.n, todo_rows.slice(fuzzy_limit))
            decided = decided | unsampled
        key = (level.column or comp.column, level.kind)
        hit = level_holds(level, comp.column, sides, ~decided, loosest.get(key))
        gamma = pl.select(
            pl.when(pl.lit(hit)).then(pl.lit(i, dtype=pl.Int8)).otherwise(pl.lit(gamma))
        ).to_series()
        decided = decided | hit
    if unsampled is not None:
        gamma = pl.select(
            pl.when(pl.lit(unsampled)).then(pl.lit(UNSAMPLED, dtype=pl.Int8)).otherwise(pl.lit(gamma))
        ).to_series()
    return pl.select(
        pl.when(pl.lit(null)).then(pl.lit(NULL_LEVEL, dtype=pl.Int8)).otherwise(pl.lit(gamma))
    ).to_series().alias(gamma_column(comp.name))


def gamma_frame(
    records: pl.DataFrame,
    left: pl.Series,
    right: pl.Series,
    settings: EntitySettings,
    *,
    fuzzy_limit: int | None = None,
) -> pl.DataFrame:
    """gamma_<name> columns for pairs given as row indices into prepared `records`."""
    sides = PairSides(records, left, right, settings)
    return pl.DataFrame(
        [comparison_gamma(comp, sides, fuzzy_limit=fuzzy_limit) for comp in settings.comparisons]
    )


def pair_index(pairs: pl.DataFrame, records: pl.DataFrame, unique_id: str) -> tuple[pl.Series, pl.Series]:
    """Row indices in prepared `records` of each pair's left_id and right_id."""
    lookup = records.select(
        pl.col(unique_id).alias("id"), pl.int_range(records.height, dtype=_IDX).alias("i")
    )
    out = []
    for side in ("left_id", "right_id"):
        idx = (
            pairs.select(pl.col(side).cast(lookup.schema["id"]).alias("id"))
            .join(lookup, on="id", how="left", maintain_order="left")
            .get_column("i")
        )
        if idx.null_count():
            missing = pairs.get_column(side).filter(idx.is_null()).head(3).to_list()
            raise ValueError(f"pairs refer to {side} values absent from the records, e.g. {missing}")
        out.append(idx)
    return out[0], out[1]


def comparison_vectors(pairs: pl.DataFrame, records: pl.DataFrame, settings: EntitySettings) -> pl.DataFrame:
    """left_id, right_id (and first_rule when present) plus one Int8 gamma_<name> per comparison.

    `records` may be standardised or already prepared (see blocking.prepare).
    """
    rec = prepare(records, settings)
    left, right = pair_index(pairs, rec, settings.unique_id)
    keep = [c for c in ("left_id", "right_id", "first_rule") if c in pairs.columns]
    return pairs.select(keep).hstack(gamma_frame(rec, left, right, settings))
