"""The `resolution.yaml` contract: how each entity type is blocked, compared, scored and decided.

Everything that differs between entity types (persons, organisations, a foreign person schema)
is data in this file, so a new schema is onboarded by config, not code. The file is validated at
the edge with pydantic; a bad file fails before any data moves, with an error that names the
file, the key path (pydantic's location joined with ".") and what was expected: the project's
`core.errors.ConfigError` (entity resolution is a library of pure functions over Polars frames and
depends on `core` only, never on the ingestion layer or the warehouse).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.config import StrictConfig, format_validation_error, load_yaml, read_config_bytes
from core.errors import ConfigError

# Level kinds. Exact-style kinds are evaluated as Polars expressions; the fuzzy ones with
# RapidFuzz (`rapidfuzz.process.cpdist`) on the distinct value pairs that are still undecided.
LevelKind = Literal[
    "exact",  # equal values
    "jaro_winkler",  # Jaro-Winkler similarity >= threshold (0..1)
    "levenshtein",  # Levenshtein distance <= threshold (whole number of edits)
    "damerau_levenshtein",  # optimal-string-alignment distance <= threshold: substitution,
    #                         insertion, deletion or an adjacent transposition each cost 1
    "token_set",  # RapidFuzz token_set_ratio / 100 >= threshold, tokens split on whitespace
    "id_15_18",  # the same 15-digit form: digits 1-6 and 9-17 of an 18-digit ID (or a raw 15)
    "id_region_recoded",  # region codes (digits 1-6) differ but are one region under the GB/T 2260
    #                       change table (region_changes), and digits 7-17 agree
    "id_rest_agrees",  # region codes differ, digits 7-17 (birth date, sequence, sex) agree
    "id_spreadsheet_15",  # one value ends in "000" (a spreadsheet kept 15 digits) and the first
    #                       15 digits agree
    "date_swap",  # same year, day and month swapped
    "date_within",  # dates at most `days` apart
]

SIMILARITY_KINDS = frozenset({"jaro_winkler", "token_set"})
DISTANCE_KINDS = frozenset({"levenshtein", "damerau_levenshtein"})
FUZZY_KINDS = SIMILARITY_KINDS | DISTANCE_KINDS

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # comparison names become column names (gamma_<name>)


ID_KINDS = frozenset({"id_15_18", "id_region_recoded", "id_rest_agrees", "id_spreadsheet_15"})
_REGION_CODE = r"^[0-9]{6}$"
REGION_CHANGE_COLUMNS = ("old_code", "new_code", "since", "note")


class LevelSettings(StrictConfig):
    """One comparison level; levels are tried in order and the first that holds wins.

    `column` overrides the comparison's column for this level only (e.g. the pinyin of a name).
    """

    kind: LevelKind
    column: str | None = None
    threshold: float | None = None
    days: int | None = Field(default=None, ge=0)
    label: str | None = None

    @model_validator(mode="after")
    def _parameters(self) -> LevelSettings:
        if self.kind in SIMILARITY_KINDS:
            if self.threshold is None or not 0 < self.threshold <= 1:
                raise ValueError(f"level kind {self.kind} needs threshold, a similarity in (0, 1]")
        elif self.kind in DISTANCE_KINDS:
            if self.threshold is None or self.threshold < 1 or self.threshold != int(self.threshold):
                raise ValueError(f"level kind {self.kind} needs threshold, a whole number of edits >= 1")
        elif self.threshold is not None:
            raise ValueError(f"level kind {self.kind} takes no threshold")
        if self.kind == "date_within":
            if self.days is None:
                raise ValueError("level kind date_within needs days")
        elif self.days is not None:
            raise ValueError(f"level kind {self.kind} takes no days")
        return self

    def describe(self, default_column: str) -> str:
        """A label for explanations: the configured one, else generated from the level."""
        if self.label:
            return self.label
        col = self.column or default_column
        if self.kind in SIMILARITY_KINDS:
            return f"{self.kind}({col}) >= {self.threshold:g}"
        if self.kind in DISTANCE_KINDS:
            return f"{self.kind}({col}) <= {int(self.threshold or 0)}"
        if self.kind == "date_within":
            return f"{col} within {self.days} days"
        return f"{self.kind}({col})"


class ComparisonSettings(StrictConfig):
    """One attribute compared between the two records of a pair, as an ordered list of levels.

    The implicit last level is "else" (none of the listed levels holds); a null on either side
    gives level -1, which carries no evidence. `term_frequency` adjusts the first level (which
    must then be `exact` on `column`) by how common the shared value is.
    """

    name: str = Field(pattern=_NAME)
    column: str
    levels: tuple[LevelSettings, ...] = Field(min_length=1)
    term_frequency: bool = False

    @model_validator(mode="after")
    def _tf_level(self) -> ComparisonSettings:
        if len(self.levels) > 100:
            raise ValueError("at most 100 levels")
        first = self.levels[0]
        if self.term_frequency and (first.kind != "exact" or (first.column or self.column) != self.column):
            raise ValueError("term_frequency needs the first level to be exact on the comparison's column")
        return self

    def level_columns(self) -> list[str]:
        """Every column this comparison reads (its own first)."""
        cols = [self.column]
        for level in self.levels:
            if level.column and level.column not in cols:
                cols.append(level.column)
        return cols

    def labels(self) -> list[str]:
        """Label per level index 0..n (n = else)."""
        return [lv.describe(self.column) for lv in self.levels] + ["else"]


class BlockingRule(StrictConfig):
    """Records agreeing on all `keys` (none null) form a block; every pair in it is a candidate."""

    name: str = Field(pattern=_NAME)
    keys: tuple[str, ...] = Field(min_length=1)
    max_block_size: int | None = Field(default=None, ge=2)  # overrides the global cap


class BlockingSettings(StrictConfig):
    """Rules are united; `max_block_size` skips a block (a placeholder phone, say) that is bigger,
    since its pairs would cost quadratic time and carry little evidence."""

    max_block_size: int = Field(default=500, ge=2)
    rules: tuple[BlockingRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BlockingSettings:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"blocking rule names must be unique; repeated: {dupes}")
        if len(self.rules) > 31:
            raise ValueError("at most 31 blocking rules")
        return self

    def cap(self, rule: BlockingRule) -> int:
        return rule.max_block_size or self.max_block_size


class Thresholds(StrictConfig):
    """Match probabilities: >= match links the pair; >= review (and < match) goes to a reviewer."""

    match: float = Field(gt=0, le=1)
    review: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _order(self) -> Thresholds:
        if self.review >= self.match:
            raise ValueError(f"review ({self.review}) must be below match ({self.match})")
        return self


class RegionChange(StrictConfig):
    """One GB/T 2260 recoding: ID numbers issued under `old_code` may now read `new_code`."""

    old_code: str = Field(pattern=_REGION_CODE)
    new_code: str = Field(pattern=_REGION_CODE)
    since: str | None = None
    note: str | None = None


def bundled_region_changes_path() -> Path:
    return Path(str(resources.files("entity_resolution.defaults").joinpath("region_changes.csv")))


def read_region_changes(path: Path) -> list[dict[str, str | None]]:
    """Rows of a region-change CSV (old_code,new_code[,since,note]; lines starting with # are
    comments); ValueError naming the file and line for anything else."""
    import csv

    data = read_config_bytes(path, error=ValueError)
    if data is None:
        raise ValueError(f"{path}: file not found")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    header = next(csv.reader([lines[0][1]]))
    header = [h.strip() for h in header]
    if header[:2] != ["old_code", "new_code"] or not set(header) <= set(REGION_CHANGE_COLUMNS):
        raise ValueError(f"{path}: line {lines[0][0]}: header must be old_code,new_code[,since,note], got {','.join(header)}")
    rows = []
    for n, line in lines[1:]:
        cells = next(csv.reader([line]))
        if len(cells) > len(header):
            raise ValueError(f"{path}: line {n}: {len(cells)} fields, header has {len(header)}")
        row = {h: (c.strip() or None) for h, c in zip(header, cells, strict=False)}
        for key in ("old_code", "new_code"):
            value = row.get(key) or ""
            if not re.fullmatch(_REGION_CODE, value):
                raise ValueError(f"{path}: line {n}: {key} {value!r} is not a 6-digit region code")
        rows.append(row)
    return rows


class DistinctValid(StrictConfig):
    """Two records whose `column` values differ while both are flagged valid are never the same
    entity (two check-digit-valid ID numbers belong to two people)."""

    column: str
    valid_flag: str
    # What a pair the guard refuses becomes when the model scored it at or above the review
    # threshold: `review` when a person can settle it (a mistyped or swapped ID number), or
    # `non_match` when the guard is the answer (two rooms of one building are two dwellings).
    refused: Literal["review", "non_match"] = "review"
    # Words for the reviewer, after "refused by the guard: " (default: names the column).
    reason: str | None = None


class Constraints(StrictConfig):
    distinct_valid: tuple[DistinctValid, ...] = ()


class EstimationSettings(StrictConfig):
    """Unsupervised training: u from random pairs, m and the prior by expectation-maximisation.

    u_fuzzy_pairs: fuzzy levels (Jaro-Winkler, edit distances, token sets) are evaluated on at
    most this many of the random pairs still undecided when they are reached, and scaled up;
    exact and date levels use all u_sample_pairs. Fuzzy levels have u of 1e-4 or more, which a
    few hundred thousand pairs measure well, and RapidFuzz on a million random pairs would
    cost seconds per level.
    training_rules: the blocking rules whose pairs train m (one EM session each); default all.
    Leave out a rule whose blocks gather related non-matches (a phone shared by a household
    agrees on address too), since EM would take those families for duplicates.
    """

    u_sample_pairs: int = Field(default=1_000_000, ge=1_000)
    u_fuzzy_pairs: int = Field(default=200_000, ge=1_000)
    em_max_iterations: int = Field(default=25, ge=1)
    em_tolerance: float = Field(default=1e-4, gt=0)
    seed: int = 1
    prior_match_probability: float | None = Field(default=None, gt=0, lt=1)
    training_rules: tuple[str, ...] | None = None


LinkType = Literal["dedupe_only", "link_only", "link_and_dedupe"]


class EntitySettings(StrictConfig):
    """Everything needed to resolve one entity type.

    link_type (Splink's names): `dedupe_only` and `link_and_dedupe` make every blocked pair a
    candidate; `link_only` keeps only pairs whose records come from different sources
    (`source_column`), as when two files are linked and neither holds duplicates of its own:
    blocking drops same-source pairs, u is estimated on cross-source random pairs and the prior
    counts cross-source pairs only.
    """

    unique_id: str = "record_key"
    link_type: LinkType = "dedupe_only"
    source_column: str = "station_id"
    derived: dict[str, str] = Field(default_factory=dict)  # column -> Polars SQL expression
    blocking: BlockingSettings
    comparisons: tuple[ComparisonSettings, ...] = Field(min_length=1)
    thresholds: Thresholds
    constraints: Constraints = Constraints()
    estimation: EstimationSettings = EstimationSettings()
    # Golden-record survivorship per field; validated by entity_resolution.survivorship (kept raw
    # here so that resolution settings do not depend on it, and changing it never re-resolves).
    survivorship: dict[str, Any] | None = None
    # GB/T 2260 recodings added to the bundled table (defaults/region_changes.csv) for the
    # id_region_recoded level: a CSV path relative to the config file, or a list of such paths
    # and inline rows {old_code, new_code, since, note}. Stored as the rows read.
    region_changes: tuple[RegionChange, ...] = ()

    @field_validator("region_changes", mode="before")
    @classmethod
    def _region_files(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return ()
        items = [value] if isinstance(value, (str, dict)) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError("region_changes: a CSV file name, or a list of file names and rows")  # noqa: TRY004 - pydantic reports ValueError
        base = (info.context or {}).get("base_dir")
        rows: list[Any] = []
        for item in items:
            if isinstance(item, str):
                path = Path(item)
                if not path.is_absolute():
                    if base is None:
                        raise ValueError(f"region_changes file {item!r}: a relative path needs a config file to be relative to")
                    path = Path(base) / path
                rows.extend(read_region_changes(path))
            else:
                rows.append(item)
        return tuple(rows)

    @field_validator("derived")
    @classmethod
    def _sql(cls, derived: dict[str, str]) -> dict[str, str]:
        for column, expr in derived.items():
            try:
                pl.sql_expr(expr)
            except Exception as exc:  # noqa: BLE001 - polars raises several kinds for bad SQL
                raise ValueError(f"derived column {column!r}: not a Polars SQL expression: {exc}") from None
        return derived

    @model_validator(mode="after")
    def _names(self) -> EntitySettings:
        names = [c.name for c in self.comparisons]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"comparison names must be unique; repeated: {dupes}")
        if self.unique_id in self.derived:
            raise ValueError(f"unique_id {self.unique_id!r} cannot be a derived column")
        if self.link_type == "link_only" and self.source_column == self.unique_id:
            raise ValueError("source_column cannot be the unique_id (every record would be its own source)")
        rules = {r.name for r in self.blocking.rules}
        unknown = [r for r in self.estimation.training_rules or () if r not in rules]
        if unknown:
            raise ValueError(
                f"estimation.training_rules names unknown blocking rule(s) {unknown}; have {sorted(rules)}"
            )
        return self

    def training_rules(self) -> list[BlockingRule]:
        names = self.estimation.training_rules
        return [r for r in self.blocking.rules if names is None or r.name in names]

    def root_columns(self, column: str, _seen: frozenset[str] = frozenset()) -> set[str]:
        """The input columns a (possibly derived, possibly from other derived) column reads.

        Training uses this to leave out comparisons that agree by construction on a rule's
        pairs, so the condition of a top-level CASE WHEN does not count: it only blanks the value
        (id_key reads id_own, hence the birth date, only to drop a relative's ID), and pairs
        agreeing on id_key do not agree on birth date by construction."""
        if column not in self.derived or column in _seen:
            return {column}
        expr = pl.sql_expr(self.derived[column])
        names = expr.meta.root_names()
        if str(expr).startswith(".when("):
            parts = expr.meta.pop()  # predicate, otherwise, then
            values = [n for part in parts[1:] for n in part.meta.root_names()] if len(parts) == 3 else []
            names = values or names
        roots: set[str] = set()
        for name in names:
            roots |= self.root_columns(name, _seen | {column})
        return roots

    def needed_columns(self) -> list[str]:
        """Columns that blocking, comparison and constraints read, in a stable order."""
        cols: list[str] = []
        for rule in self.blocking.rules:
            cols.extend(rule.keys)
        for comp in self.comparisons:
            cols.extend(comp.level_columns())
        for dv in self.constraints.distinct_valid:
            cols.extend([dv.column, dv.valid_flag])
        if self.link_type == "link_only":
            cols.append(self.source_column)
        return list(dict.fromkeys(c for c in cols if c != self.unique_id))

    def model_hash(self) -> str:
        """Fingerprint of what a trained model depends on (comparisons and derived columns), so a
        stored model is never applied to comparisons it was not trained for. Thresholds and
        blocking may change freely without retraining."""
        used = set()
        for comp in self.comparisons:
            used.update(comp.level_columns())
        payload: dict[str, Any] = {
            "comparisons": [c.model_dump(mode="json") for c in self.comparisons],
            "derived": {k: v for k, v in sorted(self.derived.items()) if k in used},
        }
        if self.region_changes and any(lv.kind == "id_region_recoded" for c in self.comparisons for lv in c.levels):
            payload["region_changes"] = sorted((r.old_code, r.new_code) for r in self.region_changes)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class ResolutionConfig(StrictConfig):
    """The whole `resolution.yaml`."""

    version: Literal[1]
    entities: dict[str, EntitySettings] = Field(min_length=1)

    def entity(self, name: str) -> EntitySettings:
        try:
            return self.entities[name]
        except KeyError:
            raise ConfigError(
                f"no entity {name!r} in resolution config; have {sorted(self.entities)}"
            ) from None


def parse_resolution(data: object, *, source: Path | str = "<resolution config>") -> ResolutionConfig:
    """Validate already-parsed YAML/JSON data; `source` names it in errors."""
    base = Path(source).parent if isinstance(source, Path) else None
    try:
        return ResolutionConfig.model_validate(data, context={"base_dir": base})
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err, "resolution configuration")) from None


def default_resolution_path() -> Path:
    return Path(str(resources.files("entity_resolution.defaults").joinpath("resolution.yaml")))


def load_resolution(path: Path | None = None) -> ResolutionConfig:
    """Load and validate `resolution.yaml`; None loads the bundled defaults."""
    path = Path(path) if path is not None else default_resolution_path()
    return parse_resolution(load_yaml(path), source=path)
