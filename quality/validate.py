"""Running a suite through Great Expectations on Polars frames.

GX cannot validate Polars, and importing it costs seconds and hundreds of MB, so it is imported
here, inside the functions, only when something is validated - never when Dagster loads the code
location. Frames are handed over as pandas, a suite run at a time: `validate` runs one frame (a
golden or freshness frame, or one batch); `validate_many` runs a set of station batches as one
frame with a hidden batch column and splits GX's result back into one `Validation` per batch,
the same as validating each batch alone. Most of a suite run is GX's fixed cost per expectation
(its metric graph), not rows: 0.1-0.3 s per suite per batch, which dominated a run of many
stations. The GX project is a file context under `<data>/quality/gx`, so results accumulate into
Data Docs there (a set is one result, one page per suite per set).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quality.suites import ExpectationSpec, SuiteSpec

RESULT_SCHEMA = {
    "expectation_id": pl.String, "expectation_type": pl.String, "column_name": pl.String,
    "dimension": pl.String, "success": pl.Boolean, "element_count": pl.Int64, "unexpected_count": pl.Int64,
    "unexpected_percent": pl.Float64, "observed_value": pl.String, "sample_rows": pl.String,
    # not stored as columns (observed_value carries them): the share of rows that met the
    # expectation and the share it needed (its `mostly`), for the caller's metadata
    "pass_rate": pl.Float64, "threshold": pl.Float64,
}
FAILURE_SCHEMA = {"expectation_id": pl.String, "key": pl.String, "value": pl.String}

log = logging.getLogger(__name__)

# validate_many: the hidden column naming each row's batch in a set (GX lists it with every
# failing row), and what joins a batch's index to a value that must be unique within its batch.
# Any non-digit joiner keeps (batch, value) pairs apart: the index is the digits before the first.
BATCH_COLUMN = "__enteronce_batch__"
SCOPE = "\u241f"  # ␟
# The expectations validate_many can split per batch: each judges a row on its own values
# (uniqueness: within the batch, by scoping), and GX's pass rate counts every row ("rows"), the
# rows with a value ("values": GX leaves missing ones out) or the rows its `ignore_row_if` keeps
# ("pair"). A suite with any other expectation (an aggregate, an order or z-score over the column)
# is validated batch by batch.
SPLITTABLE = {
    "ExpectColumnValuesToNotBeNull": "rows", "ExpectColumnValuesToBeNull": "rows",
    "ExpectColumnValuesToBeUnique": "values", "ExpectColumnValuesToMatchRegex": "values",
    "ExpectColumnValuesToNotMatchRegex": "values", "ExpectColumnValuesToBeInSet": "values",
    "ExpectColumnValuesToNotBeInSet": "values", "ExpectColumnValuesToBeBetween": "values",
    "ExpectColumnPairValuesToBeEqual": "pair",
}
_NULL_SAFE = ("ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeNull", "ExpectColumnValuesToBeUnique")


@dataclass(frozen=True)
class Validation:
    """One suite run on one frame: the summary, a row per expectation, and every failing row.

    An expectation succeeds when the share of rows that meet it is at least its threshold (GX's
    `mostly`), so `failures` lists unexpected rows of succeeding expectations too: one bad row in
    200 passes the suite and still becomes a correction task."""

    run_id: str
    suite: SuiteSpec
    success: bool
    evaluated: int
    successful: int
    started_at: dt.datetime
    finished_at: dt.datetime
    results: pl.DataFrame  # RESULT_SCHEMA
    failures: pl.DataFrame  # FAILURE_SCHEMA: expectation_id, key (record key / entity id), value


def run_id_for(suite: str, label: str, started_at: dt.datetime) -> str:
    return hashlib.sha256(f"{suite}|{label}|{started_at.isoformat()}".encode()).hexdigest()[:40]


_PROJECTS: dict[Path, "GxProject"] = {}


def _bound_partial_indices() -> None:
    """GX lists the index columns of every failing row and then keeps the first
    `partial_unexpected_count` of them unless the result format is COMPLETE: a golden suite over 1M
    records looked up each of its failing rows cell by cell for ten samples (a third of its time).
    Handing GX's helper only the rows it keeps gives the same list, and the rows it lists are
    read column-wise (`_rows_by_name`). Done once, and only where GX has that helper in that
    module (a GX without it is left as it is)."""
    from great_expectations.expectations.metrics.map_metric_provider import (
        map_condition_auxilliary_methods as aux,
    )

    compute = getattr(aux, "compute_unexpected_pandas_indices", None)
    if compute is None or getattr(compute, "enteronce_bounded", False):
        return

    def bounded(domain_records_df, expectation_domain_column_list, result_format, execution_engine, metrics):
        keep = result_format.get("partial_unexpected_count")
        if (result_format.get("result_format") != "COMPLETE" and isinstance(keep, int) and keep >= 0
                and not result_format.get("exclude_unexpected_values", False)):
            domain_records_df = domain_records_df.head(keep)
        listed = _rows_by_name(domain_records_df, expectation_domain_column_list, result_format)
        if listed is not None:
            return listed
        return compute(domain_records_df=domain_records_df,
                       expectation_domain_column_list=expectation_domain_column_list,
                       result_format=result_format, execution_engine=execution_engine, metrics=metrics)

    bounded.enteronce_bounded = True
    aux.compute_unexpected_pandas_indices = bounded


def _rows_by_name(frame, domain: list[str] | None, result_format: dict) -> list[dict] | None:
    """GX's list of failing rows by named index columns (each row: its domain columns, each followed
    by the index columns, as GX orders them), built at once rather than cell by cell with `.at`:
    a station batch's COMPLETE result lists every failing row, tens of thousands in a whole export.
    None where GX takes another path (a named pandas index, values excluded, a column missing)."""
    names = result_format.get("unexpected_index_column_names")
    if (not names or not domain or result_format.get("exclude_unexpected_values", False)
            or frame.index.names[0] is not None or not frame.columns.is_unique):
        return None
    columns = list(dict.fromkeys(c for d in domain for c in (d, *names)))
    if any(c not in frame.columns for c in columns):
        return None
    return frame[columns].to_dict("records")


# What GX keeps of every failing row in a COMPLETE result; its own partial lists stay as they are.
_EVERY_ROW = ("unexpected_list", "unexpected_index_list")


def _store_samples_only(store) -> None:
    """GX writes every validation result to its store as JSON, for Data Docs. A station batch is
    validated with COMPLETE results, which list every failing row (tens of thousands in a 30,000-row
    export: 3 of a 10k drop's 11 s of station checks went into writing them). enteronce reads the
    failing rows from the result in memory and keeps them in the warehouse; the stored copy needs
    only what Data Docs show, so it keeps as many rows as the partial lists hold (the samples) and
    the counts. The result the caller gets is untouched."""
    original = store.store_validation_results
    if getattr(original, "enteronce_samples_only", False):
        return

    def samples_only(suite_validation_result, *args, **kwargs):
        saved = []
        for r in suite_validation_result.results:
            res = r.result
            if isinstance(res, dict) and any(k in res for k in (*_EVERY_ROW, "unexpected_index_query")):
                keep = len(res.get("partial_unexpected_list") or res.get("partial_unexpected_index_list") or [])
                saved.append((r, res))
                r.result = {k: (v[:keep] if k in _EVERY_ROW and isinstance(v, list) else v)
                            for k, v in res.items() if k != "unexpected_index_query"}
        try:
            return original(suite_validation_result, *args, **kwargs)
        finally:
            for r, res in saved:
                r.result = res

    samples_only.enteronce_samples_only = True
    store.store_validation_results = samples_only


def docs_index(root: Path) -> Path:
    """Where the Data Docs of the GX project under `root` start."""
    return Path(root) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


class Done:
    """A set validated already (`GxProject.submit_many`): what quality.gx_worker's pending set
    gives once its process answers."""

    def __init__(self, validations: list[Validation]):
        self._validations = validations

    def result(self) -> list[Validation]:
        return self._validations


def gx_project(root: Path) -> "GxProject":
    """One GX project per folder per process: its context and definitions are made once."""
    root = Path(root).resolve()
    if root not in _PROJECTS:
        _PROJECTS[root] = GxProject(root)
    return _PROJECTS[root]


class GxProject:
    """A GX file context under `root`, with one pandas asset per suite, reused for many runs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._context = None
        self._definitions: dict[tuple, object] = {}

    @property
    def context(self):
        if self._context is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no phoning home, ever
            import great_expectations as gx
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every in-memory batch below 1 GB (an md5 of pandas' hash of each
            # row): nearly a third of a golden suite's time at 1M records, for a batch marker
            # enteronce never reads (its runs are named by run_id). The engine reads this
            # module constant on every batch; a GX without it is left as it is.
            if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
                pandas_execution_engine.HASH_THRESHOLD = 0
            _bound_partial_indices()

            self.root.mkdir(parents=True, exist_ok=True)
            self._context = gx.get_context(mode="file", project_root_dir=str(self.root))
            _store_samples_only(self._context.validation_results_store)
            variables = self._context.variables
            if variables.progress_bars is None or getattr(variables.progress_bars, "globally", True) is not False:
                from great_expectations.data_context.types.base import ProgressBarsConfig

                variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
                variables.save()
        return self._context

    @property
    def docs_index(self) -> Path:
        return docs_index(self.root)

    def definition(self, suite: SuiteSpec, thresholds: dict[str, float] | None = None):
        """The suite's GX validation definition (suite + whole-dataframe batch), made once per
        set of thresholds: each expectation's `mostly` is its threshold (none: every row)."""
        thresholds = thresholds or {}
        cache_key = (suite.name, tuple(sorted(thresholds.items())))
        if cache_key in self._definitions:
            return self._definitions[cache_key]
        import great_expectations as gx

        ctx = self.context
        try:
            source = ctx.data_sources.get("enteronce_frames")
        except (KeyError, LookupError, ValueError):
            source = ctx.data_sources.add_pandas("enteronce_frames")
        try:
            asset = source.get_asset(suite.name)
        except LookupError:
            asset = source.add_dataframe_asset(suite.name)
        try:
            batch = asset.get_batch_definition("frame")
        except (KeyError, LookupError):
            batch = asset.add_batch_definition_whole_dataframe("frame")
        gx_suite = gx.ExpectationSuite(name=suite.name, expectations=[_expectation(e, thresholds.get(e.id))
                                                                      for e in suite.expectations])
        gx_suite = ctx.suites.add_or_update(gx_suite)
        definition = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
        # one definition per suite at a time: GX keeps the suite under its name
        self._definitions = {k: d for k, d in self._definitions.items() if k[0] != suite.name}
        self._definitions[cache_key] = definition
        return definition

    def validate(self, frame: pl.DataFrame, suite: SuiteSpec, *, label: str, parameters: dict,
                 samples: int = 10, thresholds: dict[str, float] | None = None,
                 min_failing_rows: int = 1, complete: bool = True) -> Validation:
        """Validate `frame` (the suite's columns) and collect results and every failing row.

        `thresholds` (expectation id -> share of rows, `QualityConfig.thresholds_of`) decide each
        expectation's success; without them every row must meet it. A row-level expectation below
        a threshold under 1.0 with fewer than `min_failing_rows` failing rows passes all the same: in a batch
        of 4 records one slip is 25 %, which says nothing about the export (its row still becomes a
        correction task).

        `complete=False` (a suite over every golden record, whose failing rows open no task): GX
        lists only `samples` failing rows per expectation instead of all of them, and `failures`
        holds those. At 1M records the full lists were a third of the validation's time, most of
        it GX storing them in its validation results."""
        thresholds = thresholds or {}
        definition = self.definition(suite, thresholds)
        started = dt.datetime.now(dt.timezone.utc)
        key = suite.key_column
        result = _run(definition, _plain(frame, suite.columns), name=label, started=started, parameters=parameters,
                      index=[key], samples=samples, complete=complete)
        finished = dt.datetime.now(dt.timezone.utc)
        specs = {e.id: e for e in suite.expectations}
        rows, failures = [], []
        for r in result.results:
            spec = specs[r.expectation_config.meta["expectation_id"]]
            res = r.result or {}
            listed = res.get("unexpected_index_list") if complete else res.get("partial_unexpected_index_list")
            failing = [(spec.id, str(i.get(key)), _show(spec, i)) for i in (listed or []) if isinstance(i, dict)]
            failures += failing
            rows.append(_summarise(spec, r.expectation_config.type, res, bool(r.success), _error(r.exception_info),
                                   [(k, v) for _, k, v in failing[:samples]] if failing else None,
                                   thresholds=thresholds, min_failing_rows=min_failing_rows))
        return _validation(suite, label, started, finished, rows,
                           pl.DataFrame(failures, schema=FAILURE_SCHEMA, orient="row"))

    def validate_many(self, frames: Sequence[tuple[str, pl.DataFrame]], suite: SuiteSpec, *, parameters: dict,
                      samples: int = 10, thresholds: dict[str, float] | None = None,
                      min_failing_rows: int = 1) -> list[Validation]:
        """Validate a set of station batches, (label, frame) each, in one GX run of the suite:
        one `Validation` per batch, in order, equal to `validate(frame, suite, label=label, ...)`
        of each batch alone (failing rows listed in full, as for a station batch).

        GX's cost of a suite run is mostly fixed (its metric graph per expectation), so 40 batches
        in one run cost little more than one. The batches go to GX as one frame with a hidden
        batch column, listed beside the key of every failing row; each batch's counts, pass rates
        and successes are then worked out as GX works them out (`_split_counts`), and a value that
        must be unique is scoped by its batch (`_scoped`), so the same local id in two batches is
        no duplicate. Where that could differ from a batch alone, the batches are validated one
        by one instead: an expectation outside SPLITTABLE, data whose pandas types would differ
        (`_stack`), an expectation that raised (its error may belong to one batch only), or
        counts that do not add up to GX's own. Each batch keeps its run id
        (run_id_for(suite, label, start)); its start and finish are its share, by rows, of the
        set's run, in order, so the later batch of a station still has the later run. GX stores
        one result for the set."""
        frames = list(frames)
        thresholds = thresholds or {}
        kw = {"parameters": parameters, "samples": samples, "thresholds": thresholds,
              "min_failing_rows": min_failing_rows}
        stacked = _stack([f for _, f in frames], suite) if len(frames) > 1 and _splittable(suite) else None
        found = self._validate_set(stacked, [label for label, _ in frames], suite, **kw) if stacked is not None \
            else None
        if found is None:
            return [self.validate(frame, suite, label=label, **kw) for label, frame in frames]
        return found

    def submit_many(self, frames: Sequence[tuple[str, pl.DataFrame]], suite: SuiteSpec, **kwargs) -> Done:
        """`validate_many`, answered at once (the worker's `submit_many` answers later)."""
        return Done(self.validate_many(frames, suite, **kwargs))

    def _validate_set(self, stacked: pl.DataFrame, labels: list[str], suite: SuiteSpec, *, parameters: dict,
                      samples: int, thresholds: dict[str, float], min_failing_rows: int) -> list[Validation] | None:
        """One GX run over the stacked batches, split per batch; None where the split would not
        be what each batch alone gives (the caller then validates them one by one)."""
        definition = self.definition(suite, thresholds)
        expectations = {e.meta["expectation_id"]: e for e in definition.suite.expectations}
        settings = {spec.id: _split_settings(spec, expectations.get(spec.id)) for spec in suite.expectations}
        if any(v is None for v in settings.values()):
            return None
        key = suite.key_column
        counts = _considered(stacked, suite, settings, len(labels))
        started = dt.datetime.now(dt.timezone.utc)
        result = _run(definition, _scoped(stacked, suite), name=f"{labels[0]}_and_{len(labels) - 1}_more",
                      started=started, parameters=parameters, index=[key, BATCH_COLUMN], samples=samples)
        finished = dt.datetime.now(dt.timezone.utc)
        specs = {e.id: e for e in suite.expectations}
        rows: list[list[dict]] = [[] for _ in labels]
        failures: list[pl.DataFrame] = []
        for r in result.results:
            spec = specs[r.expectation_config.meta["expectation_id"]]
            res = r.result or {}
            if _error(r.exception_info) is not None:
                log.info("%s: %s raised over a set of %d batches; validating them one by one",
                         suite.name, spec.id, len(labels))
                return None
            failing = _failing_rows(spec, res, key, scoped=spec.type == "ExpectColumnValuesToBeUnique")
            split = _split_counts(counts, failing, spec)
            if not _adds_up(split, res, settings[spec.id][0]):
                log.warning("%s: %s per batch does not add up to GX's counts over the set; validating the %d "
                            "batches one by one", suite.name, spec.id, len(labels))
                return None
            failures.append(failing)
            samples_of = _samples(failing, samples)
            for b in split.iter_rows(named=True):
                res_b, success = _split_result(settings[spec.id], b["element_count"], b["considered"],
                                               b["unexpected_count"])
                rows[b["batch"]].append(_summarise(spec, r.expectation_config.type, res_b, success, None,
                                                   samples_of.get(b["batch"]), thresholds=thresholds,
                                                   min_failing_rows=min_failing_rows))
        every = pl.concat(failures) if failures else _failing_rows(None, {}, key)
        by_batch = {b: f for (b,), f in every.partition_by("batch", as_dict=True, maintain_order=True).items()}
        empty = pl.DataFrame(schema=FAILURE_SCHEMA)
        times = _shares(started, finished, counts["element_count"].to_list())
        return [_validation(suite, label, start, end, rows[i],
                            by_batch[i].select(FAILURE_SCHEMA.keys()) if i in by_batch else empty)
                for i, (label, (start, end)) in enumerate(zip(labels, times))]

    def build_docs(self) -> Path:
        """Render Data Docs for the results that have no page yet, then the index.

        GX's renderers and templates draw the pages, but enteronce writes them
        (quality.report.gxdocs): station values escaped, each page run through an allow-list
        sanitiser, a Content-Security-Policy and local copies of the CSS and script, so that a
        value a station sent cannot run script in an auditor's browser and the pages need no
        network. Only results without a page are rendered, which keeps a pass proportional to
        what it validated (a full build re-renders every result ever stored).
        """
        from quality.report.gxdocs import build_site

        return build_site(self.context, self.docs_index.parent)


def _run(definition, frame: pl.DataFrame, *, name: str, started: dt.datetime, parameters: dict, index: list[str],
         samples: int, complete: bool = True):
    """GX's run of a validation definition over `frame`, handed over as pandas; the failing rows
    listed by their `index` columns (all of them, or `samples` unless `complete`). GX files the
    result under the run's `name`."""
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier

    return definition.run(
        batch_parameters={"dataframe": pd.DataFrame(frame.to_dict(as_series=False))},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE" if complete else "SUMMARY", "unexpected_index_column_names": index,
                       "partial_unexpected_count": samples},
        run_id=RunIdentifier(run_name=name.replace("/", "_").replace("\\", "_"), run_time=started),
    )


def _expectation(spec: ExpectationSpec, mostly: float | None = None):
    import great_expectations.expectations as gxe

    cls = getattr(gxe, spec.type)
    # `mostly` exists on row-level (map) expectations; an aggregate one passes or fails as a whole.
    extra = {"mostly": mostly} if mostly is not None and mostly < 1.0 and "mostly" in getattr(cls, "__fields__", {}) else {}
    # GX renders a description as markup (it becomes the expectation's line in Data Docs):
    # "record key is <station>:<local id>" must be given as text.
    return cls(**spec.kwargs, **extra, meta={"expectation_id": spec.id, "dimension": spec.dimension},
               description=html.escape(spec.description, quote=False))


def _summarise(spec: ExpectationSpec, expectation_type: str, res: dict, success: bool, error: str | None,
               sample: list[tuple[str, str | None]] | None, *, thresholds: dict[str, float],
               min_failing_rows: int) -> dict:
    """One RESULT_SCHEMA row from GX's result of an expectation (`res`, its success, the error it
    raised, its first failing rows as (key, value)): the same for a frame run alone and for one
    batch of a set (whose `res` and success validate_many works out as GX would)."""
    observed = res.get("observed_value")
    rate = _pass_rate(res)
    threshold = float(thresholds.get(spec.id, 1.0)) if rate is not None else None
    if observed is None and rate is not None:  # a row-level expectation: its rate against its threshold
        observed = {"pass_rate": round(rate, 6), "threshold": threshold,
                    "failing_rows": int(res.get("unexpected_count") or 0)}
    if error is not None:  # an expectation that could not be evaluated says why
        observed = {"error": error}
    elif (not success and rate is not None and threshold is not None and threshold < 1.0
          and int(res.get("unexpected_count") or 0) < min_failing_rows):  # 1.0: every row, as asked
        success = True
        observed = {**observed, "tolerated": f"fewer than min_failing_rows ({min_failing_rows}) failing rows"}
    return {
        "expectation_id": spec.id, "expectation_type": expectation_type,
        "column_name": spec.column, "dimension": spec.dimension, "success": success,
        "element_count": res.get("element_count"), "unexpected_count": res.get("unexpected_count"),
        "unexpected_percent": res.get("unexpected_percent"),
        "observed_value": None if observed is None else json.dumps(observed, default=str, ensure_ascii=False),
        "sample_rows": None if sample is None else json.dumps([{"record_key": k, "value": v} for k, v in sample],
                                                              ensure_ascii=False),
        "pass_rate": rate, "threshold": threshold,
    }


def _validation(suite: SuiteSpec, label: str, started: dt.datetime, finished: dt.datetime, rows: list[dict],
                failures: pl.DataFrame) -> Validation:
    return Validation(
        run_id=run_id_for(suite.name, label, started), suite=suite, success=all(r["success"] for r in rows),
        evaluated=len(rows), successful=sum(r["success"] for r in rows), started_at=started, finished_at=finished,
        results=pl.DataFrame(rows, schema=RESULT_SCHEMA), failures=failures)


# -- validate_many: one GX run over a set of batches, split per batch ---------------------------
def _splittable(suite: SuiteSpec) -> bool:
    """Whether every expectation of the suite judges a row on its own (SPLITTABLE), unconditioned,
    and a column scoped for uniqueness is read by nothing that would see the scope (the key, a
    value shown or matched by another expectation)."""
    if any(e.type not in SPLITTABLE or "row_condition" in e.kwargs for e in suite.expectations):
        return False
    scoped = {e.kwargs["column"] for e in suite.expectations if e.type == "ExpectColumnValuesToBeUnique"}
    read = {c for e in suite.expectations if e.type not in _NULL_SAFE for c in e.value_columns}
    return not (scoped & (read | {suite.key_column}))


def _missing(name: str, dtype: pl.DataType) -> pl.Expr:
    """A value pandas (and so GX) counts as missing: null, and NaN in a float column."""
    col = pl.col(name)
    return col.is_null() | col.is_nan() if dtype.is_float() else col.is_null()


def _stack(frames: list[pl.DataFrame], suite: SuiteSpec) -> pl.DataFrame | None:
    """The batches' suite columns one under the other with BATCH_COLUMN (0, 1, ...), or None when
    GX would not see each batch's values as it sees them alone: a column typed differently in two
    batches (an all-null one aside), a scoped column that is not text, an integer column with
    missing values in some batches only (pandas makes it float there: 7 becomes 7.0), or a missing
    key (pandas shows it as None or nan by what else its batch holds)."""
    plain = [_plain(f, suite.columns) for f in frames]
    schema: dict[str, pl.DataType] = {}
    for c in suite.columns:
        types = {f.schema[c] for f in plain if f.schema[c] != pl.Null}
        if len(types) > 1:
            return None
        schema[c] = types.pop() if types else pl.String
    scoped = {e.kwargs["column"] for e in suite.expectations if e.type == "ExpectColumnValuesToBeUnique"}
    if any(schema[c] != pl.String for c in scoped):
        return None
    stacked = pl.concat([f.cast(schema).with_columns(pl.lit(i, pl.Int64).alias(BATCH_COLUMN))
                         for i, f in enumerate(plain)])
    ints = [c for c, t in schema.items() if t.is_integer()]
    if ints:
        gaps = stacked.group_by(BATCH_COLUMN).agg(pl.col(c).is_null().any() for c in ints)
        if any(gaps[c].n_unique() > 1 for c in ints):
            return None
    if stacked[suite.key_column].null_count():
        return None
    return stacked


def _scoped(stacked: pl.DataFrame, suite: SuiteSpec) -> pl.DataFrame:
    """Values that must be unique within their batch, prefixed with the batch's index and SCOPE
    (missing ones stay missing): GX judges uniqueness over the whole set it is handed."""
    cols = sorted({e.kwargs["column"] for e in suite.expectations if e.type == "ExpectColumnValuesToBeUnique"})
    return stacked.with_columns(
        pl.when(pl.col(c).is_not_null()).then(pl.concat_str(pl.col(BATCH_COLUMN).cast(pl.String), pl.lit(SCOPE),
                                                             pl.col(c))).alias(c) for c in cols)


def _split_settings(spec: ExpectationSpec, gx_expectation: object) -> tuple[str, float, str | None] | None:
    """(rows GX counts: SPLITTABLE's kind, `mostly`, `ignore_row_if` of a pair) of one
    expectation as GX holds it (defaults included); None if one is a suite parameter."""
    if gx_expectation is None:
        return None
    kind = SPLITTABLE[spec.type]
    mostly = getattr(gx_expectation, "mostly", 1.0)
    ignore = getattr(gx_expectation, "ignore_row_if", None) if kind == "pair" else None
    if not isinstance(mostly, (int, float)) or (kind == "pair" and ignore not in (
            "both_values_are_missing", "either_value_is_missing", "neither")):
        return None
    return kind, float(mostly), ignore


def _considered(stacked: pl.DataFrame, suite: SuiteSpec, settings: dict, batches: int) -> pl.DataFrame:
    """Per batch (every index, an empty batch too): its rows (`element_count`) and, per
    expectation id, the rows GX's pass rate counts (settings' kind)."""
    schema = stacked.schema
    exprs = []
    for spec in suite.expectations:
        kind, _, ignore = settings[spec.id]
        if kind == "rows" or (kind == "pair" and ignore == "neither"):
            n = pl.len()
        elif kind == "values":
            n = (~_missing(spec.kwargs["column"], schema[spec.kwargs["column"]])).sum()
        else:
            a = _missing(spec.kwargs["column_A"], schema[spec.kwargs["column_A"]])
            b = _missing(spec.kwargs["column_B"], schema[spec.kwargs["column_B"]])
            n = (~(a | b) if ignore == "either_value_is_missing" else ~(a & b)).sum()
        exprs.append(n.cast(pl.Int64).alias(spec.id))
    per = stacked.group_by(BATCH_COLUMN).agg(pl.len().cast(pl.Int64).alias("element_count"), *exprs)
    every = pl.DataFrame({BATCH_COLUMN: pl.int_range(0, batches, eager=True, dtype=pl.Int64)})
    return every.join(per, on=BATCH_COLUMN, how="left").fill_null(0).sort(BATCH_COLUMN)


def _failing_rows(spec: ExpectationSpec | None, res: dict, key: str, *, scoped: bool = False) -> pl.DataFrame:
    """GX's failing rows of one expectation over a set: batch, and expectation_id, key, value as
    `validate` lists them (a scoped value without its scope), in GX's order."""
    listed = [i for i in (res.get("unexpected_index_list") or []) if isinstance(i, dict)]
    frame = pl.DataFrame({
        "batch": [int(i[BATCH_COLUMN]) for i in listed],
        "expectation_id": [spec.id] * len(listed) if spec is not None else [],
        "key": [str(i.get(key)) for i in listed],
        "value": [_show(spec, i) for i in listed] if spec is not None else [],
    }, schema={"batch": pl.Int64, **FAILURE_SCHEMA})
    if scoped:
        frame = frame.with_columns(pl.col("value").str.splitn(SCOPE, 2).struct.field("field_1").alias("value"))
    return frame


def _split_counts(counts: pl.DataFrame, failing: pl.DataFrame, spec: ExpectationSpec) -> pl.DataFrame:
    """batch, element_count, considered, unexpected_count of one expectation, for every batch."""
    unexpected = failing.group_by("batch").agg(pl.len().cast(pl.Int64).alias("unexpected_count"))
    return counts.select(pl.col(BATCH_COLUMN).alias("batch"), "element_count",
                         pl.col(spec.id).alias("considered")).join(
        unexpected, on="batch", how="left").with_columns(pl.col("unexpected_count").fill_null(0)).sort("batch")


def _adds_up(split: pl.DataFrame, res: dict, kind: str) -> bool:
    """Whether the batches' counts sum to GX's over the set: every failing row attributed, every
    row counted where GX counted it."""
    total = split.select(pl.col("element_count", "considered", "unexpected_count").sum()).row(0, named=True)
    if total["element_count"] != res.get("element_count") or total["unexpected_count"] != res.get("unexpected_count"):
        return False
    if kind == "rows":
        return "missing_count" not in res
    return total["considered"] == res.get("element_count", 0) - (res.get("missing_count") or 0)


def _split_result(setting: tuple, element: int, considered: int, unexpected: int) -> tuple[dict, bool]:
    """What GX returns for one batch alone (its `result` and success), from the batch's counts:
    GX's _format_map_output and the map expectations' _validate, per kind. "rows" (not null):
    every row counts; otherwise the rows with a value (the pair's rows kept), and none is
    vacuously met."""
    kind, mostly, _ = setting
    base = element if kind == "rows" else considered
    percent = None
    if element > 0 and base > 0:
        percent = unexpected / base * 100
    success = True if element == 0 or base == 0 else (float(base) - float(unexpected)) / float(base) >= mostly
    return {"element_count": element, "unexpected_count": unexpected, "unexpected_percent": percent}, success


def _samples(failing: pl.DataFrame, samples: int) -> dict[int, list[tuple[str, str | None]]]:
    """batch -> its first `samples` failing rows (key, value), for batches with any."""
    if failing.height == 0:
        return {}
    head = failing.group_by("batch", maintain_order=True).head(samples)
    out: dict[int, list] = {b: [] for b in failing["batch"].unique().to_list()}
    for b, k, v in head.select("batch", "key", "value").iter_rows():
        out[b].append((k, v))
    return out


def _shares(started: dt.datetime, finished: dt.datetime, rows: list[int]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Each batch's (start, finish) within the set's run: its share by rows, in order, each start
    at least a microsecond after the one before (runs are ordered by start)."""
    total = sum(rows) or 1
    span = finished - started
    out, done, last = [], 0, None
    for n in rows:
        start = started + span * (done / total)
        if last is not None and start <= last:
            start = last + dt.timedelta(microseconds=1)
        done += n
        out.append((start, max(start, started + span * (done / total))))
        last = start
    return out


def _pass_rate(res: dict) -> float | None:
    """The share of the rows an expectation considered that met it (GX's `mostly` compares this):
    missing values are left out where the expectation leaves them out. None for an aggregate."""
    if "unexpected_count" not in res:
        return None
    percent = res.get("unexpected_percent")
    if percent is None:  # no row considered: vacuously met
        return 1.0
    return max(0.0, min(1.0, 1.0 - float(percent) / 100.0))


def _plain(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The suite's columns; dates stay `datetime.date` objects, which GX compares with its date
    parameters (ISO text in the suite is parsed to dates; pandas timestamps would not compare)."""
    exprs = []
    for c in columns:
        if c not in frame.columns:
            exprs.append(pl.lit(None, pl.String).alias(c))
        else:
            exprs.append(pl.col(c))
    return frame.select(exprs)


def _show(spec: ExpectationSpec, row: dict) -> str | None:
    """The failing value(s) of a row as one string: `a` or `a ≠ b` for a pair."""
    values = [row.get(c) for c in spec.value_columns]
    values = [_text(v) for v in values]
    if len(values) == 2:
        return f"{values[0]} ≠ {values[1]}"
    return values[0] if values else None


def _text(value: object) -> str | None:
    """A pandas cell as the station wrote it: missing is None, a midnight timestamp is its date."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    try:
        import pandas as pd

        if value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def _error(info: object) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))[:500]
    for inner in info.values():
        if isinstance(inner, dict) and inner.get("raised_exception"):
            return str(inner.get("exception_message"))[:500]
    return None
