"""Correction tasks back to the source (信息智能核录、任务精准推送), as pure Polars.

Two things become a task routed to the station that owns the record:
(a) a failed row-level expectation on the station's record (an ID number failing its check
    digit, a stated birth date that differs from the ID's, ...), and
(b) a station's value that disagrees with the golden record's surviving value.
A task closes by itself when a later look at that record (its station's next drop, or the next
pass over its entity) no longer finds the problem. Task ids are deterministic, so finding the
same problem again is the same task.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import polars as pl

from collections.abc import Iterable
from functools import lru_cache

from entity_resolution.standardise.id_numbers import EARLIEST_BIRTH, id_check_char
from entity_resolution.standardise.org_codes import credit_check_char
from quality.suites import TEXT, ExpectationSpec, IdEvidence, SuiteSpec, TypeQuality, ValueCheck, registry_quality

# `closed_batch` of a task closed because another task on the same record and field took its
# place (`superseded:<task id>`), not because the station fixed anything: supervision leaves
# these out of the stations' figures.
SUPERSEDED = "superseded"

CANDIDATE_SCHEMA = {
    "task_id": pl.String, "station_id": pl.String, "record_key": pl.String, "entity_type": pl.String,
    "entity_id": pl.String, "field": pl.String, "station_value": pl.String, "expected_value": pl.String,
    "reason": pl.String, "source": pl.String, "opened_batch": pl.String, "evidence": pl.String,
}
CREDIT_CODE_SHAPE = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"  # GB 32100


@lru_cache(maxsize=1)
def _bundled() -> dict[str, TypeQuality]:
    return registry_quality()


@lru_cache(maxsize=1)
def _default_checks() -> dict[str, ValueCheck]:
    """field -> check, over the bundled types' declarations: what `valid_value` uses when the
    caller names no check (the first type to declare a field wins)."""
    out: dict[str, ValueCheck] = {}
    for q in _bundled().values():
        for f, c in q.values.items():
            out.setdefault(f, c)
    return out


def _default_evidence() -> IdEvidence | None:
    """The ID evidence of the first bundled type whose tasks derive values from an ID number."""
    for q in _bundled().values():
        for ev in q.id_evidence.values():
            return ev
    return None


def quality_of(entity_type: str, quality: TypeQuality | None = None) -> TypeQuality | None:
    """The TypeQuality handed in, else the bundled type's of that name (None for another)."""
    return quality if quality is not None else _bundled().get(entity_type)


def _quality_of_suite(suite: SuiteSpec, quality: TypeQuality | None) -> TypeQuality:
    if quality is not None:
        return quality
    q = _bundled().get(suite.entity_type)
    if q is not None and q.standardised == suite:
        return q
    return TypeQuality(suite.entity_type, suite, None, {}, {})


def _qualities(qualities: Iterable[TypeQuality] | None) -> list[TypeQuality]:
    return list(qualities) if qualities is not None else list(_bundled().values())


# -- validators: a value a task proposes must pass the same checks the standardisers apply ------
def valid_value(field: str, value: pl.Expr, *, earliest: dt.date = EARLIEST_BIRTH,
                today: dt.date | None = None, check: ValueCheck | None = None) -> pl.Expr:
    """Whether a (text) value of `field` could be right, by its check (the type's `values` in
    quality/defaults/suites.yaml, or its field's standardiser; default: the bundled types' check
    of a field of that name): an 18-digit ID number with its GB 11643 check digit and a plausible
    embedded birth date; a plausible date (earliest .. today); one of a set of values; a GB 32100
    credit code with its check character; a regular expression; otherwise any non-empty text. Null
    is never valid."""
    today = today or dt.date.today()
    check = check if check is not None else _default_checks().get(field, TEXT)
    v = value.cast(pl.String)
    if check.kind == "id_number":
        shaped = v.str.contains(r"^[0-9]{17}[0-9X]$").fill_null(False)
        born = v.str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False)
        ok = shaped & (id_check_char(v.str.slice(0, 17)) == v.str.slice(17, 1)) & born.is_between(earliest, today)
    elif check.kind == "date":
        ok = v.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_between(earliest, today)
    elif check.kind == "one_of":
        ok = v.is_in(list(check.values))
    elif check.kind == "credit_code":
        ok = v.str.contains(CREDIT_CODE_SHAPE) & (credit_check_char(v) == v.str.slice(17, 1))
    elif check.kind == "pattern":
        ok = v.str.contains(check.pattern or "")
    else:
        ok = v.str.strip_chars().str.len_chars() > 0
    return ok.fill_null(False)


def trusted_id(frame: pl.DataFrame, *, earliest: dt.date = EARLIEST_BIRTH, today: dt.date | None = None,
               require_own: bool = True, evidence: IdEvidence | None = None) -> pl.Expr:
    """Whether a record's ID number is evidence for its birth date and sex: it passes its check
    digit, its embedded birth date is plausible, and it was given with 18 digits (a 15-digit number
    upgraded here has a check digit we computed ourselves, which confirms nothing). `evidence`:
    the columns of the ID field (default: the bundled type's whose tasks derive from an ID)."""
    today = today or dt.date.today()
    ev = evidence or _default_evidence()
    if ev is None or ev.valid not in frame.columns:
        return pl.lit(False)
    ok = pl.col(ev.valid).fill_null(False)
    if ev.upgraded in frame.columns:
        ok = ok & ~pl.col(ev.upgraded).fill_null(False)
    if ev.birth_date in frame.columns:
        ok = ok & pl.col(ev.birth_date).is_between(earliest, today).fill_null(False)
        if require_own and ev.stated_birth_date and ev.stated_birth_date in frame.columns:
            ok = ok & _plausibly_own(frame, ev)
    return ok


def _plausibly_own(frame: pl.DataFrame, ev: IdEvidence) -> pl.Expr:
    """False where the ID looks like another person's: its birth date differs from the stated one
    by more than a slip (same date, day and month swapped, or one of year, month and day off), or
    its sex differs as well as its date. Household members' IDs get entered on each other's
    records; such an ID is no evidence for this record's birth date or sex, and proposing its
    values would ask the station to break a correct record."""
    idb = pl.col(ev.birth_date)
    stated = pl.col(ev.stated_birth_date).cast(pl.Date, strict=False)
    parts_same = pl.sum_horizontal(
        (idb.dt.year() == stated.dt.year()).cast(pl.Int8),
        (idb.dt.month() == stated.dt.month()).cast(pl.Int8),
        (idb.dt.day() == stated.dt.day()).cast(pl.Int8),
    )
    swapped = (idb.dt.year() == stated.dt.year()) & (idb.dt.month() == stated.dt.day()) & (idb.dt.day() == stated.dt.month())
    slip = (parts_same >= 2) | swapped
    sex_differs = pl.lit(False)
    if ev.stated_sex and {ev.sex, ev.stated_sex} <= set(frame.columns):
        sex_differs = (pl.col(ev.sex) != pl.col(ev.stated_sex)).fill_null(False)
    date_differs = (idb != stated).fill_null(False)
    return (~date_differs | (slip.fill_null(True) & ~sex_differs)).fill_null(True)


def _plural(n: pl.Expr, one: str, many: str) -> pl.Expr:
    return pl.concat_str(n.cast(pl.String), pl.lit(" "), pl.when(n == 1).then(pl.lit(one)).otherwise(pl.lit(many)))


def task_id(station_id: str, record_key: str, field: str, kind: str) -> str:
    return hashlib.sha256(f"{station_id}|{record_key}|{field}|{kind}".encode()).hexdigest()[:40]


def _task_ids() -> pl.Expr:
    """`task_id` over the frame's station_id, record_key, field and kind, as `task_id()` does."""
    return pl.concat_str(["station_id", "record_key", "field", "kind"], separator="|").map_elements(
        lambda k: hashlib.sha256(k.encode()).hexdigest()[:40], return_dtype=pl.String)


def _text(frame: pl.DataFrame, column: str) -> pl.Expr:
    if column not in frame.columns:
        return pl.lit(None, pl.String)
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return pl.col(column).dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return pl.col(column).cast(pl.String)


def expectation_tasks(failures: pl.DataFrame, records: pl.DataFrame, suite: SuiteSpec, *,
                      station_id: str, batch_id: str, earliest: dt.date = EARLIEST_BIRTH,
                      today: dt.date | None = None, quality: TypeQuality | None = None) -> pl.DataFrame:
    """Tasks for the failing rows of row-level expectations that name a field to correct.

    `failures` is quality.validate's (expectation_id, key, value); `records` the batch's
    standardised records (record_key plus the fields the tasks read, entity_id if known);
    `quality` the type's (quality.suites.type_quality; default: the bundled type of the suite).

    Only trustworthy evidence: an expected value read from the record's ID number (its birth date
    or sex: a task `derived_from` an ID field) is proposed only when that ID is trusted
    (`trusted_id`); a record whose ID fails its check gets the ID task alone, never one copying
    the broken ID; a 15-digit ID upgraded here is no evidence either way (the task asks to verify
    both). Every proposed value passes `valid_value`. At most one task per record and field: the
    one proposing a value, else the first check in the suite, its evidence naming every check
    that failed.
    """
    today = today or dt.date.today()
    q = _quality_of_suite(suite, quality)
    evidences = q.id_evidence
    specs = [e for e in suite.expectations if e.task is not None]
    if not specs or failures.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    parts = []
    for rank, spec in enumerate(specs):
        keys = failures.filter(pl.col("expectation_id") == spec.id).select(pl.col("key").alias("record_key")).unique()
        if keys.height == 0:
            continue
        rows = records.join(keys, on="record_key", how="semi")
        task = spec.task
        reason = pl.lit(task.reason)
        check = f"Failed check {spec.id} (expected: {spec.description})."
        evidence = pl.lit(check)
        if task.issue_column and task.issue_column in rows.columns:
            issue = pl.col(task.issue_column)
            reason = pl.when(issue.is_not_null()).then(pl.concat_str([reason, pl.lit(": "), issue])).otherwise(reason)
            evidence = pl.concat_str(evidence, pl.when(issue.is_not_null()).then(
                pl.concat_str(pl.lit(" Problem: "), issue, pl.lit(".")),
            ).otherwise(pl.lit("")), pl.lit(f" {task.verify}" if task.verify else ""))
        expected = _text(rows, task.expected_column) if task.expected_column else pl.lit(None, pl.String)
        if task.derived_from is not None:
            ev = evidences[task.derived_from]
            if ev.valid not in rows.columns:
                continue
            # an invalid ID: the ID task alone (a null flag - no ID - is no evidence either)
            rows = rows.filter(pl.col(ev.valid).fill_null(False))
            upgraded = pl.col(ev.upgraded).fill_null(False) if ev.upgraded in rows.columns else pl.lit(False)
            # valid but with an embedded date outside quality.yaml's range: no evidence either
            checked = trusted_id(rows, earliest=earliest, today=today, require_own=False, evidence=ev)
            rows = rows.filter(checked | upgraded)
            trusted = trusted_id(rows, earliest=earliest, today=today, evidence=ev)
            # passes its checks but differs from the stated birth date by more than a slip
            foreign = trusted_id(rows, earliest=earliest, today=today, require_own=False, evidence=ev) & ~trusted
            what, src = q.label(task.field), q.label(ev.field)
            expected = pl.when(trusted).then(expected)
            reason = pl.when(trusted).then(pl.lit(
                f"stated {what} and the one in the {src} disagree")).when(foreign).then(pl.lit(
                f"stated {what} and the one in the {src} disagree: the ID may be another person's")).otherwise(pl.lit(
                f"stated {what} and the one in the 15-digit {src} disagree"))
            evidence = pl.when(trusted).then(pl.lit(
                f"{check} The {src} passes its GB 11643 check digit and its embedded birth date is "
                f"plausible, so its {what} is proposed; the two disagree: verify which is right.")).when(foreign).then(pl.lit(
                f"{check} The {src}'s birth date differs from the stated one by more than a slip (or its sex "
                f"differs as well): it may be a household member's ID entered on this record, so no value is "
                f"proposed; verify the {src} against the identity card.")).otherwise(pl.lit(
                f"{check} The {src} was given with 15 digits and upgraded by the hub, so no check digit "
                f"confirms it: no value is proposed; verify both the {what} and the {src}."))
        parts.append(rows.select(
            pl.lit(station_id).alias("station_id"), "record_key",
            pl.lit(suite.entity_type).alias("entity_type"),
            (pl.col("entity_id") if "entity_id" in rows.columns else pl.lit(None, pl.String)).alias("entity_id"),
            pl.lit(task.field).alias("field"),
            _text(rows, task.field).alias("station_value"),
            expected.cast(pl.String).alias("expected_value"),
            reason.alias("reason"),
            pl.lit("expectation").alias("source"),
            pl.lit(f"expectation:{spec.id}").alias("kind"),
            pl.lit(batch_id).alias("opened_batch"),
            evidence.alias("evidence"),
            pl.lit(rank).alias("_rank"),
        ))
    if not parts:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    out = pl.concat(parts, how="vertical_relaxed")
    if out.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    out = _only_valid_expected(out, q, earliest=earliest, today=today)
    # one task per record and field: the one that proposes a value, else the suite's first check
    out = out.sort(["record_key", "field", pl.col("expected_value").is_null(), "_rank"])
    evidence_all = pl.col("evidence").str.join(" ").over(["record_key", "field"])
    out = out.with_columns(evidence_all.alias("evidence")) if out.height else out
    out = out.unique(["record_key", "field"], keep="first", maintain_order=True)
    out = out.with_columns(_task_ids().alias("task_id"))
    return out.select(list(CANDIDATE_SCHEMA)).unique("task_id", keep="first").sort("task_id")


def _only_valid_expected(frame: pl.DataFrame, q: TypeQuality, *, earliest: dt.date, today: dt.date) -> pl.DataFrame:
    """Null every expected value that fails its field's validator (`valid_value`)."""
    if frame.height == 0:
        return frame
    fields = frame["field"].unique().to_list()
    ok = pl.lit(False)
    for f in fields:
        ok = pl.when(pl.col("field") == f).then(valid_value(f, pl.col("expected_value"), earliest=earliest,
                                                            today=today, check=q.check(f))).otherwise(ok)
    return frame.with_columns(pl.when(ok).then(pl.col("expected_value")).alias("expected_value"))


def _member_ok(members: pl.DataFrame, field: str, q: TypeQuality, *, earliest: dt.date, today: dt.date) -> pl.Expr:
    """Whether a member record's own value of `field` passes validation (for an ID field:
    trusted, i.e. not merely upgraded from 15 digits; a field with a validity flag: the
    standardiser's flag)."""
    ok = valid_value(field, pl.col("station_value"), earliest=earliest, today=today, check=q.check(field))
    ev = q.id_evidence.get(field)
    if ev is not None and ev.valid in members.columns:
        ok = ok & trusted_id(members, earliest=earliest, today=today, evidence=ev)
    flag = q.validity_flags.get(field)
    if flag is not None and flag in members.columns:
        ok = ok & pl.col(flag).fill_null(False)
    return ok


def golden_disagreements(members: pl.DataFrame, golden: pl.DataFrame, fields: list[str], *,
                         entity_type: str, earliest: dt.date = EARLIEST_BIRTH,
                         today: dt.date | None = None, quality: TypeQuality | None = None) -> pl.DataFrame:
    """Member records whose value of a configured field differs from the golden record's, where
    the golden value is the better-supported one.

    `members`: entity_id, record_key, station_id, batch_id and the fields (plus, when present, the
    type's validity columns: its ID fields' evidence (id_valid, id_upgraded, id_birth_date,
    id_sex), the flags of its `is_true` checks (credit_code_valid)); `golden`: entity_id and the
    same fields (surviving values); `quality`: the type's (default: the bundled type's). Values are compared as text; a missing value
    on either side is no disagreement (missing data is completeness, not a correction).

    The golden value is proposed only when it passes `valid_value` and member records whose value
    passes validation give it; and only when that support beats the record's own value: its value
    fails validation, or more stations (at equal stations, more records) give the golden value
    than give the record's. A stated birth date or sex that the record's own trusted ID number
    confirms is never questioned. The evidence counts the records and stations, no values.
    """
    today = today or dt.date.today()
    fields = [f for f in fields if f in members.columns and f in golden.columns]
    if not fields or members.height == 0 or golden.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    q = quality_of(entity_type, quality) or TypeQuality(entity_type, SuiteSpec("", "standardised", entity_type),
                                                        None, {}, {})
    evidences = list(q.id_evidence.values())
    wanted = [*(c for ev in evidences for c in ev.columns), *q.validity_flags.values()]
    extra = [c for c in dict.fromkeys(wanted) if c in members.columns and c not in fields]
    parts = []
    for f in fields:
        mine = members.select("entity_id", "record_key", "station_id", "batch_id", *extra,
                              _text(members, f).alias("station_value")).filter(pl.col("station_value").is_not_null())
        mine = mine.with_columns(_member_ok(mine, f, q, earliest=earliest, today=today).alias("_ok"))
        # a stated value the record's own trusted ID confirms (birth date, sex)
        confirmed = pl.lit(False)
        for ev in evidences:
            own_col = ev.birth_date if f == ev.stated_birth_date else ev.sex if f == ev.stated_sex else None
            if own_col is not None and ev.valid in mine.columns:
                confirmed = confirmed | (trusted_id(mine, earliest=earliest, today=today, evidence=ev)
                                         & (_text(mine, own_col) == pl.col("station_value"))).fill_null(False)
        mine = mine.with_columns(confirmed.alias("_confirmed"))
        # per entity and value: records and stations giving it (all, and those that pass validation)
        counts = mine.group_by("entity_id", "station_value").agg(
            pl.len().alias("_n"), pl.col("station_id").n_unique().alias("_s"),
            pl.col("_ok").sum().alias("_n_ok"), pl.col("station_id").filter(pl.col("_ok")).n_unique().alias("_s_ok"))
        totals = mine.group_by("entity_id").agg(pl.len().alias("_n_all"), pl.col("station_id").n_unique().alias("_s_all"))
        theirs = golden.select("entity_id", _text(golden, f).alias("expected_value")).filter(
            pl.col("expected_value").is_not_null()
            & valid_value(f, pl.col("expected_value"), earliest=earliest, today=today, check=q.check(f)))
        g_support = counts.select("entity_id", pl.col("station_value").alias("expected_value"),
                                  pl.col("_n_ok").alias("_n_g"), pl.col("_s_ok").alias("_s_g"))
        diff = (mine.join(theirs, on="entity_id")
                .filter(pl.col("station_value") != pl.col("expected_value"))
                .join(g_support, on=["entity_id", "expected_value"], how="left")
                .join(counts.select("entity_id", "station_value", pl.col("_n").alias("_n_v"), pl.col("_s").alias("_s_v")),
                      on=["entity_id", "station_value"], how="left")
                .join(totals, on="entity_id", how="left")
                .with_columns(pl.col("_n_g").fill_null(0), pl.col("_s_g").fill_null(0)))
        stronger = (~pl.col("_ok") | (pl.col("_s_g") > pl.col("_s_v"))
                    | ((pl.col("_s_g") == pl.col("_s_v")) & (pl.col("_n_g") > pl.col("_n_v"))))
        diff = diff.filter((pl.col("_n_g") > 0) & stronger & ~pl.col("_confirmed"))
        what = q.label(f)
        own = pl.when(pl.col("_ok")).then(pl.concat_str(
            pl.lit(f" This record's {what} is given by "), _plural(pl.col("_n_v"), "record", "records"),
            pl.lit(" at "), _plural(pl.col("_s_v"), "station", "stations"), pl.lit("."),
        )).otherwise(pl.lit(f" This record's {what} fails validation."))
        evidence = pl.concat_str(
            pl.lit(f"The golden record's surviving {what} passes validation; "),
            pl.col("_n_g").cast(pl.String), pl.lit(" of "), _plural(pl.col("_n_all"), "linked record", "linked records"),
            pl.when(pl.col("_n_g") == 1).then(pl.lit(" gives")).otherwise(pl.lit(" give")),
            pl.lit(" this value, at "), _plural(pl.col("_s_g"), "station", "stations"),
            pl.lit(" (each passing validation)."), own)
        parts.append(diff.select(
            "entity_id", "record_key", "station_id", "batch_id", pl.lit(f).alias("field"), "station_value",
            "expected_value", evidence.alias("evidence")))
    diff = pl.concat(parts, how="vertical_relaxed")
    return diff.with_columns(
        pl.lit(entity_type).alias("entity_type"),
        pl.concat_str([pl.col("field"), pl.lit(" differs from the golden record's surviving value")]).alias("reason"),
        pl.lit("golden_disagreement").alias("source"),
        pl.concat_str([pl.lit("golden:"), pl.col("field")]).alias("kind"),
        pl.col("batch_id").alias("opened_batch"),
    ).with_columns(_task_ids().alias("task_id")).select(list(CANDIDATE_SCHEMA)).sort("task_id")


def _derived_specs(qualities: Iterable[TypeQuality] | None) -> dict[str, list[ExpectationSpec]]:
    """ID field -> the expectations whose expected value is read from it (birth date, sex), over
    the types given (default: the bundled ones)."""
    out: dict[str, list[ExpectationSpec]] = {}
    for q in _qualities(qualities):
        for spec in q.derived:
            mine = out.setdefault(spec.task.derived_from, [])
            if all((s.id, s.task.field) != (spec.id, spec.task.field) for s in mine):
                mine.append(spec)
    return out


def id_derived_task_ids(tasks: pl.DataFrame, qualities: Iterable[TypeQuality] | None = None, *,
                        source: str | None = None) -> pl.Series:
    """The ids the birth-date and sex tasks read from an ID number (of `source`, or any) would
    have, for the (station_id, record_key) pairs of `tasks`."""
    pairs = tasks.select("station_id", "record_key").unique()
    specs = [s for src, ss in _derived_specs(qualities).items() if source in (None, src) for s in ss]
    frames = [pairs.with_columns(pl.lit(spec.task.field).alias("field"), pl.lit(f"expectation:{spec.id}").alias("kind"))
              for spec in specs]
    if not frames or pairs.height == 0:
        return pl.Series("task_id", [], pl.String)
    return pl.concat(frames).select(_task_ids().alias("task_id"))["task_id"]


def derived_fields(qualities: Iterable[TypeQuality] | None = None) -> dict[str, list[str]]:
    """ID field -> the fields whose tasks read their expected value from it."""
    return {src: list(dict.fromkeys(s.task.field for s in specs)) for src, specs in _derived_specs(qualities).items()}


def _bound(value: object, earliest: dt.date, today: dt.date) -> object:
    if isinstance(value, dict) and "$PARAMETER" in value:
        return {"earliest_date": earliest, "today": today}.get(value["$PARAMETER"])
    return value


def _failing(spec: ExpectationSpec, columns: list[str], q: TypeQuality, earliest: dt.date,
             today: dt.date) -> pl.Expr | None:
    """Where a row fails a row-level expectation, in Polars (as GX judges it: a missing value
    fails only `not null`, a pair with a missing side is skipped); None when the frame lacks a
    column it reads or it is no row-level check with a task. A code's flag (ID number, credit
    code: false for a blank value too) counts only where the code is given."""
    if spec.task is None or not all(c in columns for c in spec.value_columns):
        return None
    k = spec.kwargs
    col = pl.col(k["column"]) if "column" in k else None
    if spec.type == "ExpectColumnValuesToBeInSet":
        code = q.check(spec.task.field).kind in ("id_number", "credit_code") and spec.task.field in columns
        present = pl.col(spec.task.field).is_not_null() if code else pl.lit(True)
        return present & ~col.is_in(k["value_set"]).fill_null(True)
    if spec.type == "ExpectColumnValuesToBeBetween":
        lo, hi = _bound(k.get("min_value"), earliest, today), _bound(k.get("max_value"), earliest, today)
        return col.is_not_null() & ~col.is_between(lo, hi)
    if spec.type == "ExpectColumnPairValuesToBeEqual":
        return pl.col(k["column_A"]) != pl.col(k["column_B"])
    if spec.type == "ExpectColumnValuesToMatchRegex":
        return col.is_not_null() & ~col.cast(pl.String).str.contains(k["regex"])
    return None


def own_check_tasks(members: pl.DataFrame, entity_type: str, *, earliest: dt.date = EARLIEST_BIRTH,
                    today: dt.date | None = None, quality: TypeQuality | None = None) -> pl.DataFrame:
    """The expectation tasks a member record's own values call for, as the station pass would open
    them (same ids): every row-level check with a task of the type's standardised suite whose
    columns the members carry (an invalid ID number or credit code, an implausible birth date, a
    stated birth date or sex differing from a trusted ID). The golden pass reopens them where a
    golden task that covered them goes away. `quality`: the type's (default: the bundled type's)."""
    today = today or dt.date.today()
    q = quality_of(entity_type, quality)
    if q is None or members.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    checks = {}
    for spec in q.standardised.expectations:
        expr = _failing(spec, members.columns, q, earliest, today)
        if expr is not None:
            checks.setdefault(spec.id, expr)
    if not checks:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    failures = pl.concat([members.filter(expr.fill_null(False)).select(
        pl.lit(eid).alias("expectation_id"), pl.col("record_key").alias("key")) for eid, expr in checks.items()])
    out = []
    for (station, batch), rows in members.group_by("station_id", "batch_id"):
        f = failures.join(rows.select(pl.col("record_key").alias("key")), on="key", how="semi")
        if f.height:
            out.append(expectation_tasks(f, rows, q.standardised, station_id=station, batch_id=batch,
                                         earliest=earliest, today=today, quality=q))
    return pl.concat(out) if out else pl.DataFrame(schema=CANDIDATE_SCHEMA)


def _questioned_derived(tasks: pl.DataFrame, golden: pl.DataFrame, qualities: Iterable[TypeQuality] | None
                        ) -> list[tuple[str, pl.DataFrame]]:
    """(ID field, tasks of `tasks` read from that ID joined with the golden tasks on the same
    record questioning it: `_id` its value, `covered_by` the golden task), per ID field."""
    out = []
    for source in _derived_specs(qualities):
        questioned = golden.filter(pl.col("field") == source).select(
            "record_key", pl.col("station_value").alias("_id"), pl.col("task_id").alias("covered_by"))
        ids = id_derived_task_ids(tasks, qualities, source=source)
        out.append((source, tasks.filter(pl.col("task_id").is_in(ids.implode())).join(questioned, on="record_key")))
    return out


def covered_expectations(found: pl.DataFrame, open_golden: pl.DataFrame,
                         current_ids: pl.DataFrame | None = None, *,
                         qualities: Iterable[TypeQuality] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The station pass's side of `arbitrate`: (expectation tasks to open, open golden tasks to
    close). An open golden task still about the record's current value covers an expectation task
    on the same field that proposes nothing, and the birth-date and sex tasks read from an ID number
    it questions; an expectation task that proposes a value (the record's own trusted ID) replaces it.
    `current_ids`: record_key and the records' current ID fields; `qualities`: the types whose
    ID-derived tasks count (default: the bundled ones)."""
    if found.height == 0 or open_golden.height == 0:
        return found, open_golden.select("task_id", "record_key").head(0)
    g = open_golden.select("record_key", "field", "station_value", pl.col("task_id").alias("_g"))
    on_field = found.join(g, on=["record_key", "field", "station_value"], how="left")
    drop = on_field.filter(pl.col("_g").is_not_null() & pl.col("expected_value").is_null())["task_id"]
    replaced = on_field.filter(pl.col("_g").is_not_null() & pl.col("expected_value").is_not_null())["_g"]
    # the current ID is what the golden ID task questions: the station value of that task
    drops = [drop]
    for source, derived in _questioned_derived(found, open_golden, qualities):
        if current_ids is not None and derived.height:  # only while the record still holds that ID
            derived = derived.join(current_ids.select("record_key", _text(current_ids, source).alias("_cur")),
                                   on="record_key").filter(pl.col("_cur") == pl.col("_id"))
        drops.append(derived["task_id"])
    drop = pl.concat(drops)
    keep = found.filter(~pl.col("task_id").is_in(drop.implode()))
    return keep, open_golden.filter(pl.col("task_id").is_in(replaced.implode())).select("task_id", "record_key")


def arbitrate(golden_found: pl.DataFrame, open_expectation: pl.DataFrame, *,
              qualities: Iterable[TypeQuality] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Golden-record tasks against the open expectation tasks of the same records, so that two
    open tasks never contradict: (golden tasks to keep, expectation tasks they cover).

    On one record and field, an expectation task that proposes a value (the record's own trusted
    ID) wins and the golden task is dropped; one that proposes nothing (the value fails its check)
    is covered by the golden task, which names the valid value and its support, and the failed
    check is added to its evidence. A golden task on an ID number also covers the record's
    birth-date and sex tasks read from that ID: the ID itself is in question.
    """
    if golden_found.height == 0 or open_expectation.height == 0:
        return golden_found, open_expectation.head(0).with_columns(pl.lit(None, pl.String).alias("covered_by"))
    e = open_expectation.select("task_id", "record_key", "field", "expected_value", "reason")
    proposes = e.filter(pl.col("expected_value").is_not_null())
    keep = golden_found.join(proposes.select("record_key", "field"), on=["record_key", "field"], how="anti")
    same_field = e.filter(pl.col("expected_value").is_null()).join(
        keep.select("record_key", "field", pl.col("task_id").alias("covered_by")), on=["record_key", "field"])
    derived = [d.select(same_field.columns) for _, d in _questioned_derived(
        open_expectation.select("task_id", "station_id", "record_key", "field", "expected_value", "reason"),
        keep.with_columns(pl.col("station_value").cast(pl.String)), qualities)]
    covered = pl.concat([same_field, *derived], how="vertical_relaxed").unique("task_id")
    notes = same_field.group_by("covered_by").agg(pl.col("reason").str.join("; ").alias("_also"))
    keep = keep.join(notes, left_on="task_id", right_on="covered_by", how="left").with_columns(
        pl.when(pl.col("_also").is_not_null()).then(pl.concat_str(
            pl.col("evidence"), pl.lit(" The record also fails its own check ("), pl.col("_also"), pl.lit(")."),
        )).otherwise(pl.col("evidence")).alias("evidence")).drop("_also")
    return keep.select(golden_found.columns), covered


def reconcile(found: pl.DataFrame, open_tasks: pl.DataFrame, examined: pl.Series, *, source: str,
              batch_of: pl.DataFrame | None = None, now: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What to open and what to close, given what a pass found among the records it examined.

    Opens every found task that is not open already; closes every open task of this `source`
    on an examined record that the pass no longer finds. `batch_of` (record_key, batch_id) names
    the batch that fixed it (the record's current batch).
    """
    open_ids = open_tasks["task_id"] if open_tasks.height else pl.Series("task_id", [], pl.String)
    to_open = found.filter(~pl.col("task_id").is_in(open_ids.implode())).with_columns(
        pl.lit(now).alias("opened_at"))
    gone = open_tasks.filter(
        (pl.col("source") == source) & pl.col("record_key").is_in(examined.implode())
        & ~pl.col("task_id").is_in(found["task_id"].implode()))
    closed = gone.select("task_id", "record_key")
    if batch_of is not None and batch_of.height:
        closed = closed.join(batch_of.select("record_key", pl.col("batch_id").alias("closed_batch")).unique("record_key"),
                             on="record_key", how="left")
    else:
        closed = closed.with_columns(pl.lit(None, pl.String).alias("closed_batch"))
    return to_open, closed.with_columns(pl.lit(now).alias("closed_at")).select("task_id", "closed_at", "closed_batch")
