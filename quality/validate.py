"""Running a suite through Great Expectations on a small Polars frame.

GX cannot validate Polars, and importing it costs seconds and hundreds of MB, so it is imported
here, inside the functions, only when something is validated - never when Dagster loads the code
location. Frames are one batch (or one station) at a time, small enough for `to_pandas`-style
hand-over. The GX project is a file context under `<data>/quality/gx`, so results accumulate into
Data Docs there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
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

            self.root.mkdir(parents=True, exist_ok=True)
            self._context = gx.get_context(mode="file", project_root_dir=str(self.root))
            variables = self._context.variables
            if variables.progress_bars is None or getattr(variables.progress_bars, "globally", True) is not False:
                from great_expectations.data_context.types.base import ProgressBarsConfig

                variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
                variables.save()
        return self._context

    @property
    def docs_index(self) -> Path:
        return self.root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

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
        import pandas as pd
        from great_expectations.core.run_identifier import RunIdentifier

        thresholds = thresholds or {}
        definition = self.definition(suite, thresholds)
        started = dt.datetime.now(dt.timezone.utc)
        pdf = pd.DataFrame(_plain(frame, suite.columns).to_dict(as_series=False))
        key = suite.key_column
        result = definition.run(
            batch_parameters={"dataframe": pdf},
            expectation_parameters=parameters,
            result_format={"result_format": "COMPLETE" if complete else "SUMMARY", "unexpected_index_column_names": [key],
                           "partial_unexpected_count": samples},
            run_id=RunIdentifier(run_name=label.replace("/", "_").replace("\\", "_"), run_time=started),
        )
        finished = dt.datetime.now(dt.timezone.utc)
        specs = {e.id: e for e in suite.expectations}
        rows, failures = [], []
        for r in result.results:
            spec = specs[r.expectation_config.meta["expectation_id"]]
            res = r.result or {}
            listed = res.get("unexpected_index_list") if complete else res.get("partial_unexpected_index_list")
            failing = [(spec.id, str(i.get(key)), _show(spec, i)) for i in (listed or []) if isinstance(i, dict)]
            failures += failing
            observed = res.get("observed_value")
            rate = _pass_rate(res)
            threshold = float(thresholds.get(spec.id, 1.0)) if rate is not None else None
            if observed is None and rate is not None:  # a row-level expectation: its rate against its threshold
                observed = {"pass_rate": round(rate, 6), "threshold": threshold,
                            "failing_rows": int(res.get("unexpected_count") or 0)}
            error = _error(r.exception_info)
            success = bool(r.success)
            if error is not None:  # an expectation that could not be evaluated says why
                observed = {"error": error}
            elif (not success and rate is not None and threshold is not None and threshold < 1.0
                  and int(res.get("unexpected_count") or 0) < min_failing_rows):  # 1.0: every row, as asked
                success = True
                observed = {**observed, "tolerated": f"fewer than min_failing_rows ({min_failing_rows}) failing rows"}
            rows.append({
                "expectation_id": spec.id, "expectation_type": r.expectation_config.type,
                "column_name": spec.column, "dimension": spec.dimension, "success": success,
                "element_count": res.get("element_count"), "unexpected_count": res.get("unexpected_count"),
                "unexpected_percent": res.get("unexpected_percent"),
                "observed_value": None if observed is None else json.dumps(observed, default=str, ensure_ascii=False),
                "sample_rows": json.dumps([{"record_key": k, "value": v} for _, k, v in failing[:samples]],
                                          ensure_ascii=False) if failing else None,
                "pass_rate": rate, "threshold": threshold,
            })
        return Validation(
            run_id=run_id_for(suite.name, label, started), suite=suite, success=all(r["success"] for r in rows),
            evaluated=len(rows), successful=sum(r["success"] for r in rows),
            started_at=started, finished_at=finished,
            results=pl.DataFrame(rows, schema=RESULT_SCHEMA),
            failures=pl.DataFrame(failures, schema=FAILURE_SCHEMA, orient="row"),
        )

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


def _expectation(spec: ExpectationSpec, mostly: float | None = None):
    import great_expectations.expectations as gxe

    cls = getattr(gxe, spec.type)
    # `mostly` exists on row-level (map) expectations; an aggregate one passes or fails as a whole.
    extra = {"mostly": mostly} if mostly is not None and mostly < 1.0 and "mostly" in getattr(cls, "__fields__", {}) else {}
    # GX renders a description as markup (it becomes the expectation's line in Data Docs):
    # "record key is <station>:<local id>" must be given as text.
    return cls(**spec.kwargs, **extra, meta={"expectation_id": spec.id, "dimension": spec.dimension},
               description=html.escape(spec.description, quote=False))


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
