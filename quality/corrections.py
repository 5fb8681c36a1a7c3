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

from entity_resolution.standardise.id_numbers import EARLIEST_BIRTH, id_check_char
from entity_resolution.standardise.org_codes import credit_check_char
from quality.suites import CREDIT_CODE_RE, PHONE_RE, STANDARDISED, SuiteSpec

# `closed_batch` of a task closed because another task on the same record and field took its
# place (`superseded:<task id>`), not because the station fixed anything: supervision leaves
# these out of the stations' figures.
SUPERSEDED = "superseded"

CANDIDATE_SCHEMA = {
    "task_id": pl.String, "station_id": pl.String, "record_key": pl.String, "entity_type": pl.String,
    "entity_id": pl.String, "field": pl.String, "station_value": pl.String, "expected_value": pl.String,
    "reason": pl.String, "source": pl.String, "opened_batch": pl.String, "evidence": pl.String,
}
# Expectation tasks whose expected value is read from the record's own ID number.
ID_DERIVED = tuple(e.id for e in STANDARDISED["person"].expectations if e.task and e.task.derived_from == "id_number")
LABELS = {"id_number": "ID number", "birth_date": "birth date", "sex": "sex", "name_norm": "name",
          "credit_code": "credit code", "legal_rep_norm": "legal representative", "phone": "phone number"}


def _label(field: str) -> str:
    return LABELS.get(field, field.replace("_", " "))


# -- validators: a value a task proposes must pass the same checks the standardisers apply ------
def valid_value(field: str, value: pl.Expr, *, earliest: dt.date = EARLIEST_BIRTH,
                today: dt.date | None = None) -> pl.Expr:
    """Whether a (text) value of `field` could be right: an 18-digit ID number with its GB 11643
    check digit and a plausible embedded birth date; a plausible birth date (earliest .. today);
    M or F; a GB 32100 credit code with its check character; a normalised phone; otherwise any
    non-empty text. Null is never valid."""
    today = today or dt.date.today()
    v = value.cast(pl.String)
    if field == "id_number":
        shaped = v.str.contains(r"^[0-9]{17}[0-9X]$").fill_null(False)
        born = v.str.slice(6, 8).str.strptime(pl.Date, "%Y%m%d", strict=False)
        ok = shaped & (id_check_char(v.str.slice(0, 17)) == v.str.slice(17, 1)) & born.is_between(earliest, today)
    elif field == "birth_date":
        ok = v.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_between(earliest, today)
    elif field == "sex":
        ok = v.is_in(["M", "F"])
    elif field == "credit_code":
        ok = v.str.contains(CREDIT_CODE_RE) & (credit_check_char(v) == v.str.slice(17, 1))
    elif field == "phone":
        ok = v.str.contains(PHONE_RE)
    else:
        ok = v.str.strip_chars().str.len_chars() > 0
    return ok.fill_null(False)


def trusted_id(frame: pl.DataFrame, *, earliest: dt.date = EARLIEST_BIRTH, today: dt.date | None = None,
               require_own: bool = True) -> pl.Expr:
    """Whether a record's ID number is evidence for its birth date and sex: it passes its check
    digit, its embedded birth date is plausible, and it was given with 18 digits (a 15-digit number
    upgraded here has a check digit we computed ourselves, which confirms nothing)."""
    today = today or dt.date.today()
    if "id_valid" not in frame.columns:
        return pl.lit(False)
    ok = pl.col("id_valid").fill_null(False)
    if "id_upgraded" in frame.columns:
        ok = ok & ~pl.col("id_upgraded").fill_null(False)
    if "id_birth_date" in frame.columns:
        ok = ok & pl.col("id_birth_date").is_between(earliest, today).fill_null(False)
        if require_own and "birth_date" in frame.columns:
            ok = ok & _plausibly_own(frame)
    return ok


def _plausibly_own(frame: pl.DataFrame) -> pl.Expr:
    """False where the ID looks like another person's: its birth date differs from the stated one
    by more than a slip (same date, day and month swapped, or one of year, month and day off), or
    its sex differs as well as its date. Household members' IDs get entered on each other's
    records; such an ID is no evidence for this record's birth date or sex, and proposing its
    values would ask the station to break a correct record."""
    idb = pl.col("id_birth_date")
    stated = pl.col("birth_date").cast(pl.Date, strict=False)
    parts_same = pl.sum_horizontal(
        (idb.dt.year() == stated.dt.year()).cast(pl.Int8),
        (idb.dt.month() == stated.dt.month()).cast(pl.Int8),
        (idb.dt.day() == stated.dt.day()).cast(pl.Int8),
    )
    swapped = (idb.dt.year() == stated.dt.year()) & (idb.dt.month() == stated.dt.day()) & (idb.dt.day() == stated.dt.month())
    slip = (parts_same >= 2) | swapped
    sex_differs = pl.lit(False)
    if {"id_sex", "sex"} <= set(frame.columns):
        sex_differs = (pl.col("id_sex") != pl.col("sex")).fill_null(False)
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
                      today: dt.date | None = None) -> pl.DataFrame:
    """Tasks for the failing rows of row-level expectations that name a field to correct.

    `failures` is quality.validate's (expectation_id, key, value); `records` the batch's
    standardised records (record_key plus the fields the tasks read, entity_id if known).

    Only trustworthy evidence: an expected value read from the record's ID number (its birth date
    or sex) is proposed only when that ID is trusted (`trusted_id`); a record whose ID fails its
    check gets the ID task alone, never one copying the broken ID; a 15-digit ID upgraded here is
    no evidence either way (the task asks to verify both). Every proposed value passes
    `valid_value`. At most one task per record and field: the one proposing a value, else the
    first check in the suite, its evidence naming every check that failed.
    """
    today = today or dt.date.today()
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
        if task.field == "id_number" and "id_issue" in rows.columns:
            reason = pl.when(pl.col("id_issue").is_not_null()).then(
                pl.concat_str([reason, pl.lit(": "), pl.col("id_issue")])).otherwise(reason)
            evidence = pl.concat_str(evidence, pl.when(pl.col("id_issue").is_not_null()).then(
                pl.concat_str(pl.lit(" Problem: "), pl.col("id_issue"), pl.lit(".")),
            ).otherwise(pl.lit("")), pl.lit(" Verify the ID number against the identity card."))
        elif task.field == "credit_code" and "credit_code_issue" in rows.columns:
            reason = pl.when(pl.col("credit_code_issue").is_not_null()).then(
                pl.concat_str([reason, pl.lit(": "), pl.col("credit_code_issue")])).otherwise(reason)
            evidence = pl.concat_str(evidence, pl.when(pl.col("credit_code_issue").is_not_null()).then(
                pl.concat_str(pl.lit(" Problem: "), pl.col("credit_code_issue"), pl.lit(".")),
            ).otherwise(pl.lit("")), pl.lit(" Verify the code against the business licence."))
        expected = _text(rows, task.expected_column) if task.expected_column else pl.lit(None, pl.String)
        if task.derived_from == "id_number":
            if "id_valid" not in rows.columns:
                continue
            # an invalid ID: the ID task alone (a null flag - no ID - is no evidence either)
            rows = rows.filter(pl.col("id_valid").fill_null(False))
            upgraded = pl.col("id_upgraded").fill_null(False) if "id_upgraded" in rows.columns else pl.lit(False)
            # valid but with an embedded date outside quality.yaml's range: no evidence either
            checked = trusted_id(rows, earliest=earliest, today=today, require_own=False)
            rows = rows.filter(checked | upgraded)
            trusted = trusted_id(rows, earliest=earliest, today=today)
            # passes its checks but differs from the stated birth date by more than a slip
            foreign = trusted_id(rows, earliest=earliest, today=today, require_own=False) & ~trusted
            what = _label(task.field)
            expected = pl.when(trusted).then(expected)
            reason = pl.when(trusted).then(pl.lit(
                f"stated {what} and the one in the ID number disagree")).when(foreign).then(pl.lit(
                f"stated {what} and the one in the ID number disagree: the ID may be another person's")).otherwise(pl.lit(
                f"stated {what} and the one in the 15-digit ID number disagree"))
            evidence = pl.when(trusted).then(pl.lit(
                f"{check} The ID number passes its GB 11643 check digit and its embedded birth date is "
                f"plausible, so its {what} is proposed; the two disagree: verify which is right.")).when(foreign).then(pl.lit(
                f"{check} The ID number's birth date differs from the stated one by more than a slip (or its sex "
                f"differs as well): it may be a household member's ID entered on this record, so no value is "
                f"proposed; verify the ID number against the identity card.")).otherwise(pl.lit(
                f"{check} The ID number was given with 15 digits and upgraded by the hub, so no check digit "
                f"confirms it: no value is proposed; verify both the {what} and the ID number."))
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
    out = _only_valid_expected(out, earliest=earliest, today=today)
    # one task per record and field: the one that proposes a value, else the suite's first check
    out = out.sort(["record_key", "field", pl.col("expected_value").is_null(), "_rank"])
    evidence_all = pl.col("evidence").str.join(" ").over(["record_key", "field"])
    out = out.with_columns(evidence_all.alias("evidence")) if out.height else out
    out = out.unique(["record_key", "field"], keep="first", maintain_order=True)
    out = out.with_columns(_task_ids().alias("task_id"))
    return out.select(list(CANDIDATE_SCHEMA)).unique("task_id", keep="first").sort("task_id")


def _only_valid_expected(frame: pl.DataFrame, *, earliest: dt.date, today: dt.date) -> pl.DataFrame:
    """Null every expected value that fails its field's validator (`valid_value`)."""
    if frame.height == 0:
        return frame
    fields = frame["field"].unique().to_list()
    ok = pl.lit(False)
    for f in fields:
        ok = pl.when(pl.col("field") == f).then(valid_value(f, pl.col("expected_value"), earliest=earliest,
                                                            today=today)).otherwise(ok)
    return frame.with_columns(pl.when(ok).then(pl.col("expected_value")).alias("expected_value"))


def _member_ok(members: pl.DataFrame, field: str, *, earliest: dt.date, today: dt.date) -> pl.Expr:
    """Whether a member record's own value of `field` passes validation (for ID numbers: trusted,
    i.e. not merely upgraded from 15 digits; for credit codes the standardiser's flag)."""
    ok = valid_value(field, pl.col("station_value"), earliest=earliest, today=today)
    if field == "id_number" and "id_valid" in members.columns:
        ok = ok & trusted_id(members, earliest=earliest, today=today)
    if field == "credit_code" and "credit_code_valid" in members.columns:
        ok = ok & pl.col("credit_code_valid").fill_null(False)
    return ok


def golden_disagreements(members: pl.DataFrame, golden: pl.DataFrame, fields: list[str], *,
                         entity_type: str, earliest: dt.date = EARLIEST_BIRTH,
                         today: dt.date | None = None) -> pl.DataFrame:
    """Member records whose value of a configured field differs from the golden record's, where
    the golden value is the better-supported one.

    `members`: entity_id, record_key, station_id, batch_id and the fields (plus, when present, the
    validity columns id_valid, id_upgraded, id_birth_date, id_sex, credit_code_valid); `golden`:
    entity_id and the same fields (surviving values). Values are compared as text; a missing value
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
    extra = [c for c in ("id_valid", "id_upgraded", "id_birth_date", "id_sex", "credit_code_valid")
             if c in members.columns and c not in fields]
    parts = []
    for f in fields:
        mine = members.select("entity_id", "record_key", "station_id", "batch_id", *extra,
                              _text(members, f).alias("station_value")).filter(pl.col("station_value").is_not_null())
        mine = mine.with_columns(_member_ok(mine, f, earliest=earliest, today=today).alias("_ok"))
        if f in ("birth_date", "sex") and "id_valid" in mine.columns:
            own = _text(mine, "id_birth_date" if f == "birth_date" else "id_sex")
            mine = mine.with_columns(
                (trusted_id(mine, earliest=earliest, today=today) & (own == pl.col("station_value"))).fill_null(False)
                .alias("_confirmed"))
        else:
            mine = mine.with_columns(pl.lit(False).alias("_confirmed"))
        # per entity and value: records and stations giving it (all, and those that pass validation)
        counts = mine.group_by("entity_id", "station_value").agg(
            pl.len().alias("_n"), pl.col("station_id").n_unique().alias("_s"),
            pl.col("_ok").sum().alias("_n_ok"), pl.col("station_id").filter(pl.col("_ok")).n_unique().alias("_s_ok"))
        totals = mine.group_by("entity_id").agg(pl.len().alias("_n_all"), pl.col("station_id").n_unique().alias("_s_all"))
        theirs = golden.select("entity_id", _text(golden, f).alias("expected_value")).filter(
            pl.col("expected_value").is_not_null()
            & valid_value(f, pl.col("expected_value"), earliest=earliest, today=today))
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
        what = _label(f)
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


def id_derived_task_ids(tasks: pl.DataFrame) -> pl.Series:
    """The ids the birth-date and sex tasks read from the ID number would have, for the
    (station_id, record_key) pairs of `tasks`."""
    pairs = tasks.select("station_id", "record_key").unique()
    frames = [pairs.with_columns(pl.lit(spec.task.field).alias("field"), pl.lit(f"expectation:{spec.id}").alias("kind"))
              for spec in STANDARDISED["person"].expectations if spec.id in ID_DERIVED]
    if not frames or pairs.height == 0:
        return pl.Series("task_id", [], pl.String)
    return pl.concat(frames).select(_task_ids().alias("task_id"))["task_id"]


def own_check_tasks(members: pl.DataFrame, entity_type: str, *, earliest: dt.date = EARLIEST_BIRTH,
                    today: dt.date | None = None) -> pl.DataFrame:
    """The expectation tasks a member record's own values call for, as the station pass would open
    them (same ids): an invalid ID number or credit code, an implausible birth date, a stated birth
    date or sex differing from a trusted ID. The golden pass reopens them where a golden task that
    covered them goes away."""
    today = today or dt.date.today()
    suite = STANDARDISED.get(entity_type)
    if suite is None or members.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    checks = {}
    cols = members.columns
    if entity_type == "person":
        if "id_valid" in cols and "id_number" in cols:
            checks["validity.id_number"] = pl.col("id_number").is_not_null() & ~pl.col("id_valid").fill_null(True)
        if "birth_date" in cols:
            checks["validity.birth_date.plausible"] = pl.col("birth_date").is_not_null() & ~pl.col(
                "birth_date").is_between(earliest, today)
            if "id_birth_date" in cols:
                checks["consistency.birth_date"] = pl.col("birth_date") != pl.col("id_birth_date")
        if "sex" in cols and "id_sex" in cols:
            checks["consistency.sex"] = pl.col("sex") != pl.col("id_sex")
    elif "credit_code_valid" in cols and "credit_code" in cols:
        checks["validity.credit_code"] = pl.col("credit_code").is_not_null() & ~pl.col("credit_code_valid").fill_null(True)
    if not checks:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    failures = pl.concat([members.filter(expr.fill_null(False)).select(
        pl.lit(eid).alias("expectation_id"), pl.col("record_key").alias("key")) for eid, expr in checks.items()])
    out = []
    for (station, batch), rows in members.group_by("station_id", "batch_id"):
        f = failures.join(rows.select(pl.col("record_key").alias("key")), on="key", how="semi")
        if f.height:
            out.append(expectation_tasks(f, rows, suite, station_id=station, batch_id=batch, earliest=earliest,
                                         today=today))
    return pl.concat(out) if out else pl.DataFrame(schema=CANDIDATE_SCHEMA)


def covered_expectations(found: pl.DataFrame, open_golden: pl.DataFrame,
                         current_ids: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The station pass's side of `arbitrate`: (expectation tasks to open, open golden tasks to
    close). An open golden task still about the record's current value covers an expectation task
    on the same field that proposes nothing, and the birth-date and sex tasks read from an ID number
    it questions; an expectation task that proposes a value (the record's own trusted ID) replaces it."""
    if found.height == 0 or open_golden.height == 0:
        return found, open_golden.select("task_id", "record_key").head(0)
    g = open_golden.select("record_key", "field", "station_value", pl.col("task_id").alias("_g"))
    on_field = found.join(g, on=["record_key", "field", "station_value"], how="left")
    drop = on_field.filter(pl.col("_g").is_not_null() & pl.col("expected_value").is_null())["task_id"]
    replaced = on_field.filter(pl.col("_g").is_not_null() & pl.col("expected_value").is_not_null())["_g"]
    # the current ID is what the golden ID task questions: the station value of that task
    questioned = g.filter(pl.col("field") == "id_number").select("record_key", pl.col("station_value").alias("_id"))
    derived_ids = id_derived_task_ids(found)
    derived = found.filter(pl.col("task_id").is_in(derived_ids.implode())).join(questioned, on="record_key")
    if current_ids is not None and derived.height:  # only while the record still holds that ID
        derived = derived.join(current_ids.select("record_key", _text(current_ids, "id_number").alias("_cur")),
                               on="record_key").filter(pl.col("_cur") == pl.col("_id"))
    drop = pl.concat([drop, derived["task_id"]])
    keep = found.filter(~pl.col("task_id").is_in(drop.implode()))
    return keep, open_golden.filter(pl.col("task_id").is_in(replaced.implode())).select("task_id", "record_key")


def arbitrate(golden_found: pl.DataFrame, open_expectation: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Golden-record tasks against the open expectation tasks of the same records, so that two
    open tasks never contradict: (golden tasks to keep, expectation tasks they cover).

    On one record and field, an expectation task that proposes a value (the record's own trusted
    ID) wins and the golden task is dropped; one that proposes nothing (the value fails its check)
    is covered by the golden task, which names the valid value and its support, and the failed
    check is added to its evidence. A golden task on the ID number also covers the record's
    birth-date and sex tasks read from that ID: the ID itself is in question.
    """
    if golden_found.height == 0 or open_expectation.height == 0:
        return golden_found, open_expectation.head(0).with_columns(pl.lit(None, pl.String).alias("covered_by"))
    e = open_expectation.select("task_id", "record_key", "field", "expected_value", "reason")
    proposes = e.filter(pl.col("expected_value").is_not_null())
    keep = golden_found.join(proposes.select("record_key", "field"), on=["record_key", "field"], how="anti")
    same_field = e.filter(pl.col("expected_value").is_null()).join(
        keep.select("record_key", "field", pl.col("task_id").alias("covered_by")), on=["record_key", "field"])
    id_tasks = keep.filter(pl.col("field") == "id_number").select("record_key", pl.col("task_id").alias("covered_by"))
    derived = e.filter(pl.col("task_id").is_in(id_derived_task_ids(open_expectation).implode())).join(
        id_tasks, on="record_key")
    covered = pl.concat([same_field, derived.select(same_field.columns)], how="vertical_relaxed").unique("task_id")
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
