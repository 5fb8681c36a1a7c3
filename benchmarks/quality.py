"""Data-quality benchmark: what Great Expectations costs per station batch and over golden records.

    python benchmarks/quality.py [--batches 20] [--batch-rows 1000] [--golden 100000]
                                 [--set-batches 40] [--set-rows 1000 25000]

Frames are synthetic person records with realistic defect rates (a few % invalid IDs, mismatched
birth dates, malformed phones); they go through the real suites (quality/suites.py) and the real
GX project code (quality/validate.py), with Data Docs rendered incrementally as in a pass.
Reports: the one-off GX import, the mean time per batch validation (the per-station cost of
`enteronce run`), the golden suite over N active golden records, incremental Data Docs, and
N station batches validated one by one (`validate` per batch, as before) against set-wise
(`validate_many` over sets of up to quality.service.SET_ROWS rows, as `validate_stations` does),
checking that both give every batch the same results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TODAY = dt.date(2026, 11, 26)


def persons(n: int, seed: int) -> pl.DataFrame:
    """n standardised person records, about 3% invalid IDs, 1% other defects each."""
    from entity_resolution.standardise.id_numbers import id_check_char

    rng = pl.int_range(0, n, eager=True).shuffle(seed=seed)
    days = (rng * 7919 % 20000).cast(pl.Int32)
    frame = pl.DataFrame({"i": pl.int_range(0, n, eager=True), "r": rng, "days": days}).with_columns(
        birth_date=(pl.lit(dt.date(1950, 1, 1)) + pl.duration(days=pl.col("days"))).cast(pl.Date))
    body = pl.concat_str(pl.lit("500106"), pl.col("birth_date").dt.strftime("%Y%m%d"),
                         (pl.col("i") % 1000).cast(pl.String).str.zfill(3))
    frame = frame.with_columns(body=body).with_columns(id_number=pl.concat_str("body", id_check_char(pl.col("body"))))
    bad = pl.col("r") % 100
    return frame.select(
        pl.concat_str(pl.lit("s1:"), pl.col("i").cast(pl.String)).alias("record_key"),
        pl.col("i").cast(pl.String).alias("local_id"),
        pl.lit("张伟").alias("name"), pl.lit("M").alias("sex"),
        pl.when(bad == 7).then(pl.col("birth_date") + pl.duration(days=1)).otherwise(pl.col("birth_date")).alias("birth_date"),
        "id_number", (bad >= 3).alias("id_valid"), pl.col("birth_date").alias("id_birth_date"), pl.lit("M").alias("id_sex"),
        pl.when(bad == 11).then(pl.lit("6812345")).otherwise(pl.lit("13812345678")).alias("phone"),
        pl.lit("500106001001").alias("area_code"), pl.lit(None, pl.String).alias("id_issue"),
    )


def station_batches(n: int, rows: int) -> list[tuple[str, pl.DataFrame]]:
    """`n` batches of `rows` person records, one per station (their local ids repeat across batches)."""
    return [(f"s{b}/residents/bench", persons(rows, seed=b).with_columns(
        pl.col("record_key").str.replace("^s1:", f"s{b}:"))) for b in range(n)]


def one_by_one_vs_set_wise(gx, suite, batches: list[tuple[str, pl.DataFrame]],
                            params: dict) -> tuple[float, float, int]:
    """Seconds to validate the batches one by one and set-wise, and the GX runs set-wise took;
    fails if a batch's results differ."""
    from polars.testing import assert_frame_equal

    from quality.config import QualityConfig
    from quality.service import SET_ROWS, sets_of_rows

    config = QualityConfig()
    kw = {"parameters": params, "samples": config.sample_rows, "thresholds": config.thresholds_of(suite),
          "min_failing_rows": config.min_failing_rows}
    t = time.perf_counter()
    alone = [gx.validate(frame, suite, label=label, **kw) for label, frame in batches]
    one_by_one = time.perf_counter() - t
    sets = list(sets_of_rows(batches, lambda batch: batch[1].height, SET_ROWS))
    t = time.perf_counter()
    together = [v for batch_set in sets for v in gx.validate_many(batch_set, suite, **kw)]
    set_wise = time.perf_counter() - t
    for a, b in zip(alone, together, strict=True):
        assert_frame_equal(a.results, b.results)
        assert_frame_equal(a.failures, b.failures)
    return one_by_one, set_wise, len(sets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--golden", type=int, default=100_000)
    parser.add_argument("--set-batches", type=int, default=40, help="station batches, one by one vs set-wise")
    parser.add_argument("--set-rows", type=int, nargs="*", default=[1000, 25_000], help="rows per batch of those")
    args = parser.parse_args()
    from pipelines.cli_common import console  # the CLI's: whole lines and tables when piped

    from quality.config import QualityConfig
    from quality.service import parameters
    from entity_resolution.entity_types import load_registry
    from quality.suites import type_quality
    from quality.validate import GxProject

    person = type_quality(load_registry()["person"])  # quality/defaults/suites.yaml
    PERSONS, GOLDEN_PERSONS = person.standardised, person.golden

    params = parameters(QualityConfig(), TODAY)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gx = GxProject(Path(tmp))
        t = time.perf_counter()
        gx.definition(PERSONS)
        rows.append(("import GX + project setup (once per process)", "-", time.perf_counter() - t))

        batch = persons(args.batch_rows, seed=1)
        times = []
        for b in range(args.batches):
            t = time.perf_counter()
            v = gx.validate(batch, PERSONS, label=f"bench_batch_{b}", parameters=params)
            times.append(time.perf_counter() - t)
        rows.append((f"person batch suite ({len(PERSONS.expectations)} expectations), mean of {args.batches}",
                     f"{args.batch_rows:,}", sum(times) / len(times)))
        failing = int(v.failures.height)

        t = time.perf_counter()
        gx.build_docs()
        rows.append((f"Data Docs, first build ({args.batches} results)", "-", time.perf_counter() - t))
        gx.validate(batch, PERSONS, label="bench_batch_extra", parameters=params)
        t = time.perf_counter()
        gx.build_docs()
        rows.append(("Data Docs, incremental (1 new result)", "-", time.perf_counter() - t))

        golden = persons(args.golden, seed=2).rename({"name": "name_norm"}).with_columns(
            valid_id_number=pl.when(pl.col("id_valid")).then(pl.col("id_number")), entity_id=pl.col("record_key"))
        t = time.perf_counter()
        gx.validate(golden, GOLDEN_PERSONS, label="bench_golden", parameters=params, complete=False)
        rows.append((f"golden person suite ({len(GOLDEN_PERSONS.expectations)} expectations)", f"{args.golden:,}",
                     time.perf_counter() - t))

        set_rows = []
        for n_rows in args.set_rows:
            batches = station_batches(args.set_batches, n_rows)
            one, together, runs = one_by_one_vs_set_wise(gx, PERSONS, batches, params)
            total = f"{args.set_batches * n_rows:,}"
            rows.append((f"{args.set_batches} person batches of {n_rows:,}, one by one ({args.set_batches} GX runs)",
                         total, one))
            rows.append((f"{args.set_batches} person batches of {n_rows:,}, set-wise ({runs} GX run"
                         f"{'s' if runs > 1 else ''})", total, together))
            set_rows.append((n_rows, one, together))

    table = Table(title="Data quality (Great Expectations 1.x, pandas engine)", title_justify="left")
    for col in ("step", "rows", "seconds", "rows/s"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for step, n, secs in rows:
        rate = f"{int(n.replace(',', '')) / secs:,.0f}" if n != "-" else "-"
        table.add_row(step, n, f"{secs:.2f}", rate)
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"failing rows found per batch: {failing:,}; peak memory {peak:,.0f} MB")
    per_batch = rows[1][2]
    for n_rows, one, together in set_rows:
        console.print(f"{args.set_batches} batches of {n_rows:,} rows: one by one {one:.2f} s, set-wise "
                      f"{together:.2f} s ({one / together:.1f}x); each batch's results identical")
    console.print(f"initial load of 943 stations (raw + standardised suite on one {args.batch_rows:,}-row resident "
                  f"batch each), serial: about {943 * 2 * per_batch / 60:.1f} min of validation; station partitions "
                  f"run in parallel in production")


if __name__ == "__main__":
    main()
