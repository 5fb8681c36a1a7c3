"""One record against the resolved state: the front desk's match and search, with the batch model.

A station officer types what a resident says; the hub answers which entities that is, in
milliseconds, with the *same* decision batch resolution would give the record arriving in a drop.
So the record is standardised as ingest standardises it, its derived columns come from the same
settings, its candidates are the records sharing a block with it under the same blocking rules
and caps, the candidate pairs are compared and scored with the stored model (term frequencies
included), and the ID guard and reviewers' judgements act as clustering applies them.

Standardising and scoring go through the plain-Python twins of the batch's Polars functions
(`standardise_rows`, `PairScorer`): Polars costs tens of milliseconds per call whatever the
row count, the twins microseconds per record. The twins are tested value for value against the
Polars functions and answer None for anything they do not read exactly as Polars would; the
Polars functions (`standardise`, `comparison_vectors` and `score` on a frame of a few rows) then
answer instead.

`MatchIndex.build` reads the resolved state once (records, membership, model, judgements) and keeps
only what a query needs: the columns blocking, comparisons and the guard read (low-cardinality text
as Categorical; derived columns are evaluated per request, on the few candidates), the entity of
each record, and per blocking rule a sorted array of 64-bit key hashes with the rows they point to.
A query's blocks are then two binary searches per rule, not a scan; a million records cost a few
hundred MB.

From records to entities (what clustering would do with the record):
- per candidate entity, the record's best pair (highest match probability);
- a reviewer's 'same' between the record and a member links it (match); a 'different' keeps it
  out (non_match), as cannot-links do in clustering;
- the ID guard: when the record carries a trusted value of a `distinct_valid` column and the
  entity holds another trusted value, the record cannot join it: a "match" becomes "review" with
  the guard's reason (clustering refuses the union; the pair waits for a reviewer);
- entities are ranked by decision (match, review, non_match), then by best probability: the first
  "match" is the entity batch clustering joins the record to (its strongest unrefused edge).

`exclude_key` leaves one record out of the index for a query (its blocks count it back, so block
caps see the sizes batch saw): submitting a resolved record with its own key excluded asks "where
would batch put this record?", which is how the consistency with batch is tested and measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from core.entity_types import EntityType
from entity_resolution.blocking import derived_steps, with_derived
from entity_resolution.comparisons import comparison_vectors
from entity_resolution.config import EntitySettings
from entity_resolution.pair_scores import PairScorer
from entity_resolution.resolve import guard_records
from entity_resolution.scoring import Model, explain, score
from entity_resolution.service import needed_columns
from entity_resolution.standardise.dates import DEFAULT_DATE_FORMATS
from entity_resolution.standardise.library import output_schema, standardise, standardise_fields
from entity_resolution.standardise.rows import standardise_rows

DECISION_RANK = {"match": 0, "review": 1, "non_match": 2}
QUERY_KEY = "\x00query"  # the submitted record's key in the few-row frame (sorts before any real key)
MAX_VALUE_CHARS = 200
CATEGORICAL_SHARE = 0.2  # a text column with fewer distinct values than this share is kept Categorical
FEW_ROWS = pl.QueryOptFlags.none()  # a query's few rows: planning costs more than running (equal values)
_ISSUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): (.*)$", re.S)


class MatchInputError(ValueError):
    """The submitted record cannot be matched as given (unknown field, value too long, no key)."""


@dataclass(frozen=True)
class ResolvedState:
    """What the batch pipeline left for one entity type, as the warehouse hands it over."""

    records: pl.DataFrame  # standardised records: unique id + the columns resolution reads
    membership: pl.DataFrame  # record_key -> entity_id
    model_json: str
    judgements: pl.DataFrame  # left_id, right_id, verdict
    seq: int = 0  # the resolution run this state reflects


@dataclass
class _Rule:
    name: str
    keys: tuple[str, ...]
    cap: int
    hashes: np.ndarray  # sorted uint64 key hashes of the records with all keys present
    rows: np.ndarray  # uint32 record rows, aligned with hashes


@dataclass
class MatchResult:
    checks: list[dict]
    candidates: list[dict]  # entity_id, match_probability, decision, explanation, record_key, reason
    keys: dict[str, str] = field(default_factory=dict)  # standardised query keys (for the audit's hashes)


def _key_hash_expr(keys: Sequence[str]) -> pl.Expr:
    """The blocking key hash exactly as blocking computes it (null where a key is null)."""
    expr = pl.col(keys[0]).hash() if len(keys) == 1 else pl.struct(list(keys)).hash()
    ok = pl.all_horizontal([pl.col(k).is_not_null() for k in keys])
    return pl.when(ok).then(expr)


def _key_hash(frame: pl.DataFrame, keys: Sequence[str]) -> pl.Series:
    return frame.select(_key_hash_expr(keys).alias("h")).to_series()


def parse_checks(issues: str | None) -> list[dict]:
    """The standardiser's issue text ("field: message; ...") as a list of {field, message}."""
    out = []
    for part in (issues or "").split("; "):
        if not part:
            continue
        m = _ISSUE.match(part)
        out.append({"field": m.group(1), "message": m.group(2)} if m else {"field": None, "message": part})
    return out


class MatchIndex:
    """The resolved state of one entity type, held for single-record matching and exact search."""

    def __init__(self, *, settings: EntitySettings, entity_type: EntityType, model: Model, records: pl.DataFrame,
                 schema: dict[str, pl.DataType], entity_codes: np.ndarray, entity_ids: list[str],
                 member_order: np.ndarray, member_start: np.ndarray, guards: list[np.ndarray],
                 rules: list[_Rule], judgements: pl.DataFrame, seq: int,
                 date_formats: Sequence[str], today: date | None):
        self.settings, self.entity_type, self.model = settings, entity_type, model
        self.records, self.schema = records, schema
        self.entity_codes, self.entity_ids = entity_codes, entity_ids
        self.member_order, self.member_start = member_order, member_start
        self.guards, self.rules, self.judgements, self.seq = guards, rules, judgements, seq
        self.date_formats, self.today = tuple(date_formats), today
        self.scorer = PairScorer(settings, model)  # the pair-scoring twin, worked out once per index
        self.uid = settings.unique_id
        self._keys = records.get_column(self.uid)
        self._derived = derived_steps(settings, records.columns)
        self._made: dict[tuple, list[pl.Expr]] = {}
        self.fields = tuple(f for f in entity_type.canonical_fields if f != "local_id")
        self._field_columns = [c for c in schema if c in self.fields]  # the submitted fields, standardised

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, state: ResolvedState, settings: EntitySettings, entity_type: EntityType, *,
              date_formats: Sequence[str] = DEFAULT_DATE_FORMATS, today: date | None = None) -> MatchIndex:
        """Index the resolved state: needed columns only, entity per record, hashes per blocking rule."""
        uid = settings.unique_id
        model = Model.from_json(state.model_json)
        roots = set(needed_columns(settings))
        columns = [c for c in state.records.columns if c in roots and c not in settings.derived]
        # The build's peak is the serving process's: no copy of the records where none is needed.
        # The warehouse reads them one row per key in key order; otherwise deduplicate and sort.
        records = state.records.select(columns)
        keys = records.get_column(uid)
        if keys.len() > 1 and not (keys.slice(1) > keys.slice(0, keys.len() - 1)).all():
            records = records.unique(uid, keep="last").sort(uid)
        ent = (records.select(uid).join(state.membership.select(pl.col("record_key").alias(uid), "entity_id"),
                                        on=uid, how="left", maintain_order="left").get_column("entity_id"))
        if ent.len() != records.height:
            raise ValueError("the resolved membership lists a record twice")
        if ent.null_count():  # records outside the last run's membership (inner join): left out
            records, ent = records.filter(ent.is_not_null()), ent.drop_nulls()
        entity_codes = (ent.rank("dense") - 1).to_numpy().astype(np.uint32)
        entity_ids = ent.unique().sort().to_list()
        # Members by entity: rows sorted by entity code; start offset per code.
        member_order = np.argsort(entity_codes, kind="stable").astype(np.uint32)
        counts = np.bincount(entity_codes, minlength=len(entity_ids))
        member_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        guard_frame = guard_records(records, settings)
        guards = []
        for dv in settings.constraints.distinct_valid:
            h = guard_frame.select(pl.when(pl.col(dv.valid_flag).cast(pl.Boolean).fill_null(False))
                                   .then(pl.col(dv.column).hash())).to_series()
            guards.append(h.fill_null(0).to_numpy().astype(np.uint64))  # 0: no trusted value
        schema = dict(records.schema)
        rules = []
        for rule in settings.blocking.rules:
            h = _key_hash(with_derived(records, settings, rule.keys), rule.keys)
            rows = h.is_not_null().arg_true()
            hv = h.gather(rows).to_numpy().astype(np.uint64)
            order = np.argsort(hv, kind="stable")
            rules.append(_Rule(rule.name, rule.keys, settings.blocking.cap(rule), hv[order],
                               rows.to_numpy().astype(np.uint32)[order]))
        n = max(records.height, 1)
        compact = []
        for name, dtype in records.schema.items():
            if name != uid and dtype == pl.String and records.get_column(name).n_unique() < CATEGORICAL_SHARE * n:
                compact.append(pl.col(name).cast(pl.Categorical))
        if compact:
            records = records.with_columns(compact)
        judgements = state.judgements.select("left_id", "right_id", "verdict") if state.judgements.height else \
            pl.DataFrame(schema={"left_id": pl.String, "right_id": pl.String, "verdict": pl.String})
        index = cls(settings=settings, entity_type=entity_type, model=model, records=records, schema=schema,
                    entity_codes=entity_codes, entity_ids=entity_ids, member_order=member_order,
                    member_start=member_start, guards=guards, rules=rules, judgements=judgements, seq=state.seq,
                    date_formats=date_formats, today=today)
        # the standardiser twin's one-time set-up (Unicode tables read from Polars, about a second)
        # here, while the index is built, rather than in the first officer's request
        index.standardised({f: "0 张" for f in index.fields})
        return index

    @property
    def size(self) -> int:
        return self.records.height

    # -- the submitted record -----------------------------------------------------------------
    def check_input(self, record: Mapping[str, object]) -> dict[str, str | None]:
        """The record's fields as text, all of the type's fields present; MatchInputError for an
        unknown field, a value that is not text or one longer than MAX_VALUE_CHARS."""
        unknown = sorted(set(record) - set(self.fields))
        if unknown:
            raise MatchInputError(f"unknown field(s) {unknown} for {self.entity_type.name}; "
                                  f"known: {list(self.fields)}")
        values: dict[str, str | None] = {}
        for f in self.fields:
            v = record.get(f)
            if v is not None and not isinstance(v, str):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    v = str(v)
                else:
                    raise MatchInputError(f"field {f!r}: expected text, got {type(v).__name__}")
            if v is not None and len(v) > MAX_VALUE_CHARS:
                raise MatchInputError(f"field {f!r}: longer than {MAX_VALUE_CHARS} characters")
            values[f] = v
        return values

    def standardised_many(self, records: Sequence[Mapping[str, object]], keys: Sequence[str], *,
                          by_field: bool = False) -> pl.DataFrame:
        """Records standardised as ingest does, as rows of the index's columns plus `issues`: by the
        plain-Python twin (`standardise_rows`), or when it declines by the Polars standardiser (one
        frame: Polars costs per call, not per row).

        `by_field`, on the Polars path: when the records give only fields the type's standardiser can
        standardise alone (an ID number, a phone: `standardise_fields`), only those fields' steps
        run; the columns of fields not given are null, as the whole standardiser leaves them, and
        `issues` is null. For lookups (search), which read neither other fields nor issues."""
        return self._standardised(records, keys, by_field=by_field).collect(optimizations=FEW_ROWS)

    def _standardised(self, records: Sequence[Mapping[str, object]], keys: Sequence[str], *,
                      by_field: bool = False) -> pl.LazyFrame:
        rows = [self.check_input(r) for r in records]
        keyed = [{self.uid: k, **r} for k, r in zip(keys, rows, strict=True)]
        done = standardise_rows(keyed, self.entity_type, date_formats=self.date_formats, today=self.today)
        if done is not None:  # the plain-Python twin: the same values in microseconds
            std = pl.DataFrame(done, schema={self.uid: pl.String, **output_schema(self.entity_type)}, orient="row")
        else:
            given = [f for f in self.fields if any(r[f] is not None for r in rows)]
            std = None
            if by_field and given:
                raw = pl.DataFrame([{self.uid: k[self.uid], **{f: k[f] for f in given}} for k in keyed],
                                   schema={self.uid: pl.String, **{f: pl.String for f in given}})
                std = standardise_fields(raw, self.entity_type, given, today=self.today)
            if std is None:
                std = standardise(pl.DataFrame(keyed, schema={self.uid: pl.String, **{f: pl.String for f in self.fields}}),
                                  self.entity_type, date_formats=self.date_formats, today=self.today)
        return std.lazy().select(self._exprs(("standardised", *std.columns), lambda: [
            *(pl.col(c).cast(t) if c in std.columns else pl.lit(None, dtype=t).alias(c) for c, t in self.schema.items()),
            pl.col("issues") if "issues" in std.columns else pl.lit(None, dtype=pl.String).alias("issues")]))

    def _exprs(self, key: tuple, make: Callable[[], list[pl.Expr]]) -> list[pl.Expr]:
        """The expressions a query of a few rows evaluates, built once per index and shape (building
        them in Python cost about as much as evaluating them)."""
        got = self._made.get(key)
        if got is None:
            got = self._made[key] = make()
        return got

    def standardised(self, record: Mapping[str, object], key: str = QUERY_KEY) -> pl.DataFrame:
        """One record standardised as ingest does (see standardised_many)."""
        return self.standardised_many([record], [key])

    def _derived_lazy(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        for step in self._derived:
            lf = lf.with_columns(step)
        return lf

    def _queries(self, records: Sequence[Mapping[str, object]], keys: Sequence[str], *, by_field: bool = False
                 ) -> tuple[pl.DataFrame, list[str | None], list[np.ndarray], list[list[int]]]:
        """The records standardised (`standardised_many`), their derived columns and their hashes in
        one Polars query: (the queries with their derived columns, their issues, per blocking rule
        their key hashes (as `_key_hash`; 0 where a key is missing, which no stored record has), per
        query and guard constraint the hash of its trusted value (0: none))."""
        dvs = self.settings.constraints.distinct_valid
        hashed = self._exprs(("hashes",), lambda: [
            *(_key_hash_expr(rule.keys).fill_null(0).alias(f"_h{j}") for j, rule in enumerate(self.rules)),
            *(pl.when(pl.col(dv.valid_flag).cast(pl.Boolean).fill_null(False)).then(pl.col(dv.column).hash())
              .fill_null(0).alias(f"_g{k}") for k, dv in enumerate(dvs))])
        frame = (self._derived_lazy(self._standardised(records, keys, by_field=by_field)).with_columns(hashed)
                 .collect(optimizations=FEW_ROWS))
        rules = [frame.get_column(f"_h{j}").to_numpy().astype(np.uint64) for j in range(len(self.rules))]
        columns = [frame.get_column(f"_g{k}").to_list() for k in range(len(dvs))]
        guards = [list(v) for v in zip(*columns, strict=True)] if columns else [[] for _ in range(frame.height)]
        issues = frame.get_column("issues").to_list()
        queries = frame.drop("issues", *(e.meta.output_name() for e in hashed))
        return queries, issues, rules, guards

    def _rows(self, rows: np.ndarray, *, derived: bool = False) -> pl.DataFrame:
        """Stored records by row, as text (and with their derived columns)."""
        out = self.records[rows]
        cats = self._exprs(("rows",), lambda: [pl.col(c).cast(pl.String) for c, t in out.schema.items()
                                                if t == pl.Categorical])
        lf = out.lazy().with_columns(cats)
        return (self._derived_lazy(lf) if derived else lf).collect(optimizations=FEW_ROWS)

    def _self_row(self, key: str | None) -> int | None:
        if key is None:
            return None
        i = int(self._keys.search_sorted(key))
        return i if i < self._keys.len() and self._keys[i] == key else None

    def _blocks(self, hashes: list[np.ndarray], owns: Sequence[int | None]) -> list[np.ndarray]:
        """Per query, the rows sharing a block with it under some rule (block caps as batch applies
        them: the query counts as one of its block's records, its own stored row does not).
        `hashes`: per rule the queries' key hashes (`_queries`)."""
        found: list[list[np.ndarray]] = [[] for _ in owns]
        for rule, (los, his) in zip(self.rules, self._ranges(hashes), strict=True):
            for i, (lo, hi) in enumerate(zip(los, his, strict=True)):
                if lo == hi:
                    continue
                rows = rule.rows[lo:hi]
                if owns[i] is not None:
                    rows = rows[rows != owns[i]]
                if 1 <= rows.size <= rule.cap - 1:  # block size with the query: 2 .. cap
                    found[i].append(rows)
        return [np.unique(np.concatenate(f)) if f else np.empty(0, dtype=np.uint32) for f in found]

    def _ranges(self, hashes: list[np.ndarray]) -> list[tuple[list[int], list[int]]]:
        """Per rule, the queries' blocks as [lo, hi) ranges of its sorted hashes (empty for a
        missing key): two binary searches per rule for all the queries."""
        out = []
        for rule, h in zip(self.rules, hashes, strict=True):
            lo = np.searchsorted(rule.hashes, h, "left")
            hi = np.where(h == 0, lo, np.searchsorted(rule.hashes, h, "right"))
            out.append((lo.tolist(), hi.tolist()))
        return out

    # -- match ----------------------------------------------------------------------------------
    def match(self, record: Mapping[str, object], *, limit: int = 10, exclude_key: str | None = None) -> MatchResult:
        """Candidate entities for one raw record, best first (see the module docstring)."""
        return self.match_many([record], limit=limit, exclude_keys=[exclude_key])[0]

    def match_many(self, records: Sequence[Mapping[str, object]], *, limit: int = 10,
                   exclude_keys: Sequence[str | None] | None = None) -> list[MatchResult]:
        """`match` for several records at once: one standardisation, one comparison and one scoring
        call for all their candidate pairs (a server batches concurrent requests through this)."""
        exclude_keys = list(exclude_keys) if exclude_keys is not None else [None] * len(records)
        qkeys = [f"{QUERY_KEY}{i:06d}" for i in range(len(records))]  # sort before every real key
        queries, issues, hashes, guards = self._queries(records, qkeys)
        owns = [self._self_row(k) for k in exclude_keys]
        found = self._blocks(hashes, owns)
        results: list[MatchResult | None] = [None] * len(records)
        qrows = queries.to_dicts()
        keyrows = [{c: r[c] for c in self._field_columns} for r in qrows]
        every = np.unique(np.concatenate(found)) if any(r.size for r in found) else np.empty(0, dtype=np.uint32)
        parts: dict[int, list[dict]] = {}
        if every.size:
            cand = self._rows(every, derived=True)  # per request: held for a million records they cost 150+ MB
            values = {r[self.uid]: r for r in cand.iter_rows(named=True)}
            cand_ids = cand.get_column(self.uid).to_list()
            parts = self._best_pairs(found, every, qrows, cand_ids, values)
            if parts is None:
                parts = self._best_pairs_polars(found, every, qkeys, queries, cand)
        for i in range(len(records)):
            keys = {k: str(v) for k, v in keyrows[i].items() if v is not None}
            checks = parse_checks(issues[i])
            if not found[i].size:
                results[i] = MatchResult(checks, [], keys)
                continue
            results[i] = MatchResult(checks, self._entities(parts[i], qrows[i], guards[i], exclude_keys[i],
                                                            owns[i], limit), keys)
        return results

    def _best_pairs(self, found: list[np.ndarray], every: np.ndarray, qrows: list[dict], cand_ids: list[str],
                    values: dict[str, dict]) -> dict[int, list[dict]] | None:
        """Per query, its best scored pair per candidate entity (see `_entities`), by the
        plain-Python twin of comparisons and scoring (entity_resolution/pair_scores.py); None when
        the twin cannot read a value exactly as Polars would (then `_best_pairs_polars`)."""
        out: dict[int, list[dict]] = {}
        for i, rows in enumerate(found):
            if not rows.size:
                continue
            pos = np.searchsorted(every, rows)
            keys = [cand_ids[p] for p in pos]
            scored = self.scorer.score(qrows[i], [values[k] for k in keys])
            if scored is None:
                return None
            best: dict[int, dict] = {}
            for row, key, code in zip(scored, keys, self.entity_codes[rows].tolist(), strict=True):
                row["_cand"], row["_entity"] = key, code
                held = best.get(code)
                if held is None or (row["match_probability"], held["_cand"]) > (held["match_probability"], key):
                    best[code] = row
            out[i] = list(best.values())
        return out

    def _best_pairs_polars(self, found: list[np.ndarray], every: np.ndarray, qkeys: list[str],
                           queries: pl.DataFrame, cand: pl.DataFrame) -> dict[int, list[dict]]:
        """`_best_pairs` by the batch's own Polars functions, for every query at once."""
        with_q = [i for i, r in enumerate(found) if r.size]
        tiny = pl.concat([queries[with_q], cand], how="vertical_relaxed")
        cand_ids = cand.get_column(self.uid)
        pos = np.concatenate([np.searchsorted(every, found[i]) for i in with_q])
        qidx = np.concatenate([np.full(found[i].size, i, dtype=np.uint32) for i in with_q])
        pairs = pl.DataFrame({"left_id": [qkeys[i] for i in qidx], "right_id": cand_ids.gather(pos)})
        scored = score(comparison_vectors(pairs, tiny, self.settings), tiny, self.model, self.settings)
        codes = self.entity_codes[every[pos]]
        best = (scored.with_columns(pl.Series("_q", qidx), pl.Series("_cand", cand_ids.gather(pos)),
                                    pl.Series("_entity", codes, dtype=pl.UInt32))
                .sort(["_q", "match_probability", "_cand"], descending=[False, True, False])
                .unique(["_q", "_entity"], keep="first", maintain_order=True))
        return {int(q): part.to_dicts() for (q,), part in best.partition_by("_q", as_dict=True).items()}

    def _entities(self, best: list[dict], qrow: dict, qguard: list[int], key: str | None, own: int | None,
                  limit: int) -> list[dict]:
        """One query's entities: its best pair per entity (`best`), then the
        judgements and the ID guard as clustering applies them, ranked by decision then probability."""
        judged = self._judged(key) if own is not None and key is not None else {}
        # Clustering applies a record's edges strongest first, ties by pair (left_id, right_id):
        # the same order here, so what the record joins first decides what it can join after.
        me = key if key is not None else QUERY_KEY
        rows = sorted(best, key=lambda r: (-r["match_probability"], min(me, r["_cand"]), max(me, r["_cand"])))
        joined = [{h} if h else set() for h in qguard]
        out: list[dict] = []
        pairs: dict[int, dict] = {}
        for row in rows:
            code = row["_entity"]
            decision, reason = row["decision"], row.get("review_reason")
            verdict = judged.get(code)
            if verdict == "same":
                decision, reason = "match", "judged the same by a reviewer"
            elif verdict == "different":
                decision, reason = "non_match", "judged different by a reviewer"
            elif decision == "match":
                theirs = self._trusted(code, own)
                clash = self._guard_clash(joined, theirs)
                if clash:
                    decision, reason = "review", clash
                else:
                    joined = [a | b for a, b in zip(joined, theirs, strict=True)]
            out.append({
                "entity_id": self.entity_ids[code],
                "match_probability": float(row["match_probability"]),
                "match_weight": float(row["match_weight"]),
                "decision": decision,
                "reason": reason,
                "record_key": row["_cand"],
                "explanation": [],
            })
            pairs[id(out[-1])] = row  # explained below, for the candidates kept
        for code in set(judged) - {r["_entity"] for r in best}:
            if judged[code] == "same":  # a reviewer linked them although blocking does not pair them
                out.append({"entity_id": self.entity_ids[code], "match_probability": 1.0,
                            "match_weight": math.inf, "decision": "match",
                            "reason": "judged the same by a reviewer", "record_key": None, "explanation": []})
        order = {id(c): i for i, c in enumerate(out)}  # ties keep clustering's order
        out.sort(key=lambda c: (DECISION_RANK[c["decision"]], -c["match_probability"], order[id(c)]))
        out = out[:limit]
        for c in out:
            if id(c) in pairs:
                c["explanation"] = self._explain(pairs[id(c)], qrow)
        return out

    def _explain(self, row: dict, query: dict) -> list[dict]:
        """Per comparison its level and weight, with the value submitted; never the candidate's own
        value (that reaches a caller only in the masked golden record)."""
        parts = []
        for comparison, level, weight in explain(row, self.model, self.settings):
            if comparison == "prior":
                parts.append({"comparison": "prior", "level": level, "weight": round(weight, 4)})
                continue
            column = next(c.column for c in self.settings.comparisons if c.name == comparison)
            parts.append({"comparison": comparison, "level": level, "weight": round(float(weight), 4),
                          "query": _text(query.get(column))})
        return parts

    def _judged(self, key: str) -> dict[int, str]:
        """Entity code -> verdict of reviewers' judgements between `key` and the entity's members
        ('different' wins over 'same', as in clustering)."""
        j = self.judgements.filter((pl.col("left_id") == key) | (pl.col("right_id") == key))
        out: dict[int, str] = {}
        for left, right, verdict in j.iter_rows():
            other = right if left == key else left
            row = self._self_row(other)
            if row is None:
                continue
            code = int(self.entity_codes[row])
            if out.get(code) != "different":
                out[code] = verdict
        return out

    def _trusted(self, code: int, own: int | None) -> list[set[int]]:
        """Per guard constraint, the hashes of the trusted values the entity's records hold."""
        members = self.member_order[self.member_start[code]:self.member_start[code + 1]]
        if own is not None:
            members = members[members != own]
        return [set(values[members][values[members] != 0].tolist()) for values in self.guards]

    def _guard_clash(self, joined: list[set[int]], theirs: list[set[int]]) -> str | None:
        """Why joining an entity holding `theirs` to what the record has joined so far (`joined`,
        its own trusted values first) is refused, as clustering's guard refuses the union."""
        for dv, mine, other in zip(self.settings.constraints.distinct_valid, joined, theirs, strict=True):
            if mine and other and (len(mine | other) > 1):
                return (f"refused by the ID guard: joining would put two different valid {dv.column} values "
                        f"in one entity")
        return None

    # -- search ---------------------------------------------------------------------------------
    def search(self, record: Mapping[str, object], *, limit: int) -> tuple[list[str], list[str], dict[str, str]]:
        """Entities whose records equal the given fields exactly (standardised), found through the
        blocking rules whose keys the given fields fully determine.

        Returns (entity ids, the rules used, the standardised keys). A search no rule can serve
        (a name alone, say) is refused with MatchInputError: every search carries a selective key.
        A rule's block over its cap is not selective either: refused like a missing key.
        """
        got = self.search_many([record], limit=limit)[0]
        if isinstance(got, Exception):
            raise got
        return got

    def search_many(self, records: Sequence[Mapping[str, object]], *, limit: int, by_field: bool = True
                    ) -> list[tuple[list[str], list[str], dict[str, str]] | MatchInputError]:
        """`search` for several records with one standardisation; a refused one is its
        MatchInputError in place (bad fields raise, as they would for one). `by_field`: see
        `standardised_many` (False: the whole standardiser, the reference the fast path is tested
        against)."""
        queries, _, hashes, _ = self._queries(records, [f"{QUERY_KEY}{i:06d}" for i in range(len(records))],
                                              by_field=by_field)
        ranges = self._ranges(hashes)
        stdrows = queries.to_dicts()
        keyrows = [{c: r[c] for c in self._field_columns} for r in stdrows]
        out: list = []
        pending: list[tuple] = []  # (i, block rows, rules used, keys, exact values): filtered together
        for i, record in enumerate(records):
            given = {k for k, v in record.items() if v not in (None, "")}
            keys = {k: str(v) for k, v in keyrows[i].items() if v is not None}
            found: list[np.ndarray] = []
            used: list[str] = []
            for rule, h, (los, his) in zip(self.rules, hashes, ranges, strict=True):
                if h[i] == 0:  # a key missing
                    continue
                lo, hi = los[i], his[i]
                if hi - lo > rule.cap:
                    continue
                used.append(rule.name)
                found.append(rule.rows[lo:hi])
            if not used:
                out.append(MatchInputError(
                    "not a selective search: give a key that identifies (for example an ID number, a phone, "
                    f"or a name with a birth date); got {sorted(given) or 'nothing'}"))
                continue
            rows = np.unique(np.concatenate(found))
            if rows.size == 0:
                out.append(([], used, keys))
                continue
            exact = {}
            for f in sorted(given):
                col = next((c for c in (f"{f}_norm", f) if c in self.schema), None)
                if col is not None and stdrows[i].get(col) is not None:
                    exact[col] = stdrows[i][col]
            out.append(None)
            pending.append((i, rows, used, keys, exact))
        if pending:
            codes = self._exact_hits([(rows, exact) for _, rows, _, _, exact in pending])
            for (i, _, used, keys, _), found_codes in zip(pending, codes, strict=True):
                out[i] = (sorted({self.entity_ids[c] for c in found_codes})[:limit], used, keys)
        return out

    def _exact_hits(self, queries: list[tuple[np.ndarray, dict[str, object]]]) -> list[np.ndarray]:
        """Per (block rows, {column: standardised value}) query, the entity codes of the rows whose
        columns equal every given value: one gather and one filter for all the queries (a filter
        per query costs a Polars call each). Equality as Polars compares (a null never equals)."""
        every = np.unique(np.concatenate([rows for rows, _ in queries]))
        cand = self._rows(every)
        qidx = np.concatenate([np.full(rows.size, j, dtype=np.uint32) for j, (rows, _) in enumerate(queries)])
        pos = np.concatenate([np.searchsorted(every, rows) for rows, _ in queries])
        cols = sorted({c for _, exact in queries for c in exact})
        given = [pl.Series(f"_q{k}", [exact.get(c) for _, exact in queries], dtype=cand.schema[c]).gather(qidx)
                 for k, c in enumerate(cols)]
        holds = [pl.col(f"_q{k}").is_null() | (pl.col(c) == pl.col(f"_q{k}")) for k, c in enumerate(cols)]
        pairs = cand.select(cols)[pos].with_columns(*given, pl.Series("_j", qidx), pl.Series("_row", every[pos]))
        hit = pairs.filter(pl.all_horizontal(holds)) if holds else pairs
        j, rows = hit.get_column("_j").to_numpy(), hit.get_column("_row").to_numpy()
        return [self.entity_codes[rows[j == k]] for k in range(len(queries))]


def _text(value: object) -> str | None:
    return None if value is None else str(value)
