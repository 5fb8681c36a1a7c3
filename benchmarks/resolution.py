"""Entity-resolution benchmark: enteronce's resolver against a standard Splink model, same data.

    python benchmarks/resolution.py [--sizes 100000,1000000] [--seed 20261126] [--skip-splink]
                                    [--skip-enteronce] [--repeat 1] [--timeout 3600]
                                    [--splink-u-pairs 1e6]

For each size N, simulated person records (`simulate_person_records`, stations = max(8, N // 1000))
are standardised once and cached as Parquet under benchmarks/.cache/ together with the truth
(record_key -> entity_id); both systems read that same Parquet, and standardisation is not part of
either system's time. Each measurement runs in a fresh process, so its peak memory
(ru_maxrss) is its own:

- enteronce: `resolve(records, load_resolution(None).entities["person"])`, default thresholds,
  nothing tuned on the truth; time = the resolve() call (blocking -> clusters);
- Splink: benchmarks/splink_baseline.py, a standard DuckDB configuration as Splink's docs write
  it; time = the whole Splink pipeline from the DataFrame to clusters (training included).

Then the same metrics for both: pairwise precision / recall / F1, B-cubed precision / recall / F1
and the number of clusters, with `entity_resolution.evaluation` when it can be imported (and
cross-checked against the group-by implementation below), else with that implementation alone.
Prints one table, plus the enteronce / Splink ratios of time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

from simcache import CACHE, cached  # this script's folder is on sys.path
from splink_baseline import U_MAX_PAIRS

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("enteronce", "Splink")


# --------------------------------------------------------------------------- data


def cache_paths(rows: int, seed: int) -> tuple[Path, Path]:
    return cached("persons_std", rows, seed, "parquet"), cached("persons_truth", rows, seed, "parquet")


def prepare(rows: int, seed: int) -> dict:
    """Simulate and standardise `rows` person records once; write the frame and truth as Parquet."""
    from connectors.simulate.export import simulate_person_records
    from entity_resolution.standardise import standardise_persons

    records_path, truth_path = cache_paths(rows, seed)
    start = time.perf_counter()
    raw, truth = simulate_person_records(rows=rows, seed=seed, stations=max(8, rows // 1000))
    simulated = time.perf_counter()
    records = standardise_persons(raw)
    standardised = time.perf_counter()
    assert records.height == truth.height == rows, (records.height, truth.height, rows)
    CACHE.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted run never leaves a half-written cache behind.
    for frame, path in ((truth, truth_path), (records, records_path)):
        tmp = path.with_suffix(".tmp")
        frame.write_parquet(tmp)
        tmp.replace(path)
    return {"simulate_s": simulated - start, "standardise_s": standardised - simulated,
            "entities": truth["entity_id"].n_unique(), "stations": max(8, rows // 1000),
            "bytes": records_path.stat().st_size}


def ensure_cache(rows: int, seed: int) -> None:
    records_path, truth_path = cache_paths(rows, seed)
    if records_path.exists() and truth_path.exists():
        return
    print(f"simulating and standardising {rows:,} person records into {records_path} ...", flush=True)
    info = run_subprocess(["--prepare", "--rows", str(rows), "--seed", str(seed)], timeout=None)
    if "error" in info:
        raise SystemExit(f"could not prepare {rows:,} records: {info['error']}")
    print(f"  simulated in {info['simulate_s']:.1f} s, standardised in {info['standardise_s']:.1f} s; "
          f"{info['entities']:,} true entities", flush=True)


# --------------------------------------------------------------------------- metrics


def own_metrics(clusters, truth) -> dict:
    """Pairwise and B-cubed precision / recall / F1 by group-by counts.

    A record of the truth that the clusters omit counts as a singleton cluster. Pairwise:
    tp = sum over (cluster, entity) cells of C(n, 2); precision = tp / sum over clusters of C(n, 2),
    recall = tp / sum over entities of C(n, 2) (None when the denominator is 0). B-cubed: per record,
    precision = |cell| / |cluster|, recall = |cell| / |entity|, averaged over records; F1 is the
    harmonic mean of the averages.
    """
    import polars as pl

    joined = truth.select("record_key", "entity_id").join(
        clusters.select("record_key", pl.col("cluster_key").cast(pl.String)), on="record_key", how="left"
    ).with_columns(
        pl.col("cluster_key").fill_null(pl.concat_str(pl.lit("\x00singleton:"), pl.col("record_key")))
    )
    n = joined.height
    cells = joined.group_by("cluster_key", "entity_id").len("n_ce")
    cells = cells.join(joined.group_by("cluster_key").len("n_c"), on="cluster_key").join(
        joined.group_by("entity_id").len("n_e"), on="entity_id"
    ).with_columns(pl.col("n_ce", "n_c", "n_e").cast(pl.Int64))

    tp = int(cells.select((pl.col("n_ce") * (pl.col("n_ce") - 1) // 2).sum()).item())
    pred = int(joined.group_by("cluster_key").len().select((pl.col("len").cast(pl.Int64) * (pl.col("len") - 1) // 2).sum()).item())
    true = int(joined.group_by("entity_id").len().select((pl.col("len").cast(pl.Int64) * (pl.col("len") - 1) // 2).sum()).item())
    p = tp / pred if pred else None
    r = tp / true if true else None

    b3 = cells.select(
        (pl.col("n_ce") ** 2 / pl.col("n_c")).sum().alias("p"),
        (pl.col("n_ce") ** 2 / pl.col("n_e")).sum().alias("r"),
    ).row(0)
    bp, br = b3[0] / n, b3[1] / n
    return {
        "pairwise": {"precision": p, "recall": r, "f1": _f1(p, r), "tp": tp, "predicted_pairs": pred, "true_pairs": true},
        "bcubed": {"precision": bp, "recall": br, "f1": _f1(bp, br)},
        "clusters": int(joined["cluster_key"].n_unique()),
        "entities": int(joined["entity_id"].n_unique()),
    }


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _f1(p: float | None, r: float | None) -> float | None:
    if p == 0 or r == 0:  # whatever the other one is, even undefined
        return 0.0
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r)


def _as_prf(value) -> dict:
    """precision / recall / f1 (None when undefined) out of what entity_resolution.evaluation
    returns, plus any counts it reports alongside."""
    missing = object()

    def pick(get, *names):
        for name in names:
            found = get(name, missing)
            if found is not missing:
                return None if found is None else float(found)
        raise TypeError(f"no {names[0]} in {value!r}")

    if isinstance(value, dict):
        get = value.get
        counts = {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}
    elif isinstance(value, (tuple, list)) and len(value) >= 3 and not hasattr(value, "precision"):
        return {"precision": float(value[0]), "recall": float(value[1]), "f1": float(value[2])}
    else:
        def get(name, default):
            return getattr(value, name, default)
        counts = {}
    return {**counts, "precision": pick(get, "precision", "p"), "recall": pick(get, "recall", "r"),
            "f1": pick(get, "f1", "f1_score", "f", "f_score")}


def evaluate(clusters, truth) -> dict:
    """Our evaluation functions when importable (checked against own_metrics), else own_metrics."""
    own = own_metrics(clusters, truth)
    try:
        from entity_resolution.evaluation import bcubed_metrics, pairwise_metrics
    except ImportError as exc:
        own["source"] = f"benchmark group-by (entity_resolution.evaluation not importable: {exc})"
        return own
    out = dict(own)
    out["pairwise"] = {**own["pairwise"], **_as_prf(pairwise_metrics(clusters, truth))}
    out["bcubed"] = _as_prf(bcubed_metrics(clusters, truth))
    out["source"] = "entity_resolution.evaluation"
    diffs = [f"{kind} {k}: evaluation {_fmt(out[kind][k], 6)} vs group-by {_fmt(own[kind][k], 6)}"
             for kind in ("pairwise", "bcubed") for k in ("precision", "recall", "f1")
             if (out[kind][k] is None) != (own[kind][k] is None)
             or (out[kind][k] is not None and abs(out[kind][k] - own[kind][k]) > 1e-6)]
    if diffs:
        out["disagreement"] = "; ".join(diffs)
    return out


# --------------------------------------------------------------------------- workers


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(system: str, rows: int, seed: int, splink_u_pairs: float) -> dict:
    """Runs in its own process: read the cached Parquet, resolve, measure, evaluate."""
    import polars as pl

    records_path, truth_path = cache_paths(rows, seed)
    records = pl.read_parquet(records_path)
    truth = pl.read_parquet(truth_path)

    if system == "enteronce":
        try:
            from entity_resolution.config import load_resolution
            from entity_resolution.resolve import resolve

            settings = load_resolution(None).entities["person"]
        except Exception as exc:  # noqa: BLE001 - any failure to set up is reported, not raised
            return {"error": f"enteronce resolver not available: {type(exc).__name__}: {exc}"}
        base = peak_mb()
        start = time.perf_counter()
        try:
            result = resolve(records, settings)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            return {"error": f"enteronce resolver failed: {type(exc).__name__}: {exc}"}
        seconds = time.perf_counter() - start
        clusters = result.clusters
        timings = dict(getattr(result, "timings", None) or {})
        extra = {}
    else:
        try:
            import splink
            from splink_baseline import run_splink
        except Exception as exc:  # noqa: BLE001
            return {"error": f"Splink not available: {type(exc).__name__}: {exc}"}
        base = peak_mb()
        start = time.perf_counter()
        try:
            result = run_splink(records, u_max_pairs=splink_u_pairs)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            return {"error": f"Splink failed: {type(exc).__name__}: {exc}"}
        seconds = time.perf_counter() - start
        clusters = result.clusters
        timings = result.timings
        extra = {"pairs_scored": result.pairs_scored, "splink_version": splink.__version__,
                 "u_max_pairs": splink_u_pairs}

    peak = peak_mb()
    metrics = evaluate(clusters, truth)
    return {"system": system, "rows": rows, "seconds": seconds, "peak_mb": peak, "base_mb": base,
            "timings": {k: float(v) for k, v in timings.items() if isinstance(v, (int, float))},
            **metrics, **extra}


def run_subprocess(args: list[str], timeout: float | None) -> dict:
    """Run this script with `args` in a fresh process; its last stdout line is a JSON object."""
    try:
        proc = subprocess.run([sys.executable, __file__, *args], check=False, capture_output=True, text=True,
                              cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    if proc.returncode < 0:
        why = f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else "")
    else:
        why = f"exit code {proc.returncode}"
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {"error": f"worker {why}:\n{tail}"}


def measure(system: str, rows: int, seed: int, repeat: int, timeout: float, splink_u_pairs: float) -> dict:
    """`repeat` fresh-process runs; the median run by time, with the highest peak of all runs."""
    runs = []
    for i in range(repeat):
        print(f"  {system} on {rows:,} records, run {i + 1}/{repeat} ...", flush=True)
        r = run_subprocess(["--worker", system, "--rows", str(rows), "--seed", str(seed),
                            "--splink-u-pairs", repr(splink_u_pairs)], timeout)
        if "error" in r:
            return r
        print(f"    {r['seconds']:.1f} s, peak {r['peak_mb']:,.0f} MB", flush=True)
        runs.append(r)
    runs.sort(key=lambda r: r["seconds"])
    out = dict(runs[len(runs) // 2])
    out["peak_mb"] = max(r["peak_mb"] for r in runs)
    out["all_seconds"] = [r["seconds"] for r in runs]
    return out


# --------------------------------------------------------------------------- report


def report(results: dict[int, dict[str, dict]], repeat: int, seed: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    title = (f"Person entity resolution, simulated records (seed {seed}); each run in a fresh process"
             + (f", median of {repeat}" if repeat > 1 else ""))
    table = Table(title=title, caption="peak MB: ru_maxrss of the run's own process; base MB: the same just "
                  "before the timed call")
    for col in ("rows", "system", "seconds", "peak MB", "base MB", "pair P", "pair R", "pair F1",
                "B³ P", "B³ R", "B³ F1", "clusters"):
        table.add_column(col, justify="left" if col == "system" else "right")
    notes: list[str] = []
    for rows, by_system in results.items():
        first = True
        entities = None
        for system, r in by_system.items():
            label = f"{rows:,}" if first else ""
            first = False
            if "error" in r:
                table.add_row(label, system, "[red]n/a[/red]", *[""] * 9)
                notes.append(f"{rows:,} {system}: {r['error']}")
                continue
            entities = r.get("entities", entities)
            pw, b3 = r["pairwise"], r["bcubed"]
            secs = f"{r['seconds']:.1f}"
            if len(r.get("all_seconds", [])) > 1:
                secs += " (" + ", ".join(f"{s:.1f}" for s in r["all_seconds"]) + ")"
            table.add_row(label, system, secs, f"{r['peak_mb']:,.0f}", f"{r['base_mb']:,.0f}",
                          _fmt(pw["precision"]), _fmt(pw["recall"]), _fmt(pw["f1"]),
                          _fmt(b3["precision"]), _fmt(b3["recall"]), _fmt(b3["f1"]),
                          f"{r['clusters']:,}")
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in r.get("timings", {}).items())
            detail = f"{rows:,} {system}: " + (stages or "no stage timings")
            if "pairs_scored" in r:
                detail += f"; Splink {r['splink_version']}, u from {r['u_max_pairs']:.0e} random pairs; " \
                          f"{r['pairs_scored']:,} pairs scored >= 0.9"
            if "predicted_pairs" in pw:
                detail += f"; {pw['predicted_pairs']:,} predicted pairs ({pw['tp']:,} true) of {pw['true_pairs']:,} true pairs"
            notes.append(detail)
            source = f"{rows:,} {system}: metrics from {r['source']}"
            ignored = {k: pw[k] for k in ("ignored_not_in_truth", "ignored_not_clustered") if pw.get(k)}
            if ignored:
                source += " (" + ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in ignored.items()) + ")"
            notes.append(source)
            if "disagreement" in r:
                notes.append(f"{rows:,} {system}: [yellow]evaluation disagrees with the group-by check: "
                             f"{r['disagreement']}[/yellow]")
        ours, theirs = by_system.get("enteronce"), by_system.get("Splink")
        if ours and theirs and "error" not in ours and "error" not in theirs:
            table.add_row("", "[bold]enteronce / Splink[/bold]",
                          f"[bold]{ours['seconds'] / theirs['seconds']:.2f}×[/bold]",
                          f"[bold]{ours['peak_mb'] / theirs['peak_mb']:.2f}×[/bold]", *[""] * 8)
        if entities is not None:
            table.add_row("", "[dim]truth[/dim]", *[""] * 9, f"[dim]{entities:,}[/dim]")
        table.add_section()
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--skip-splink", action="store_true")
    ap.add_argument("--skip-enteronce", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs per system and size; the median is shown")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one run")
    ap.add_argument("--splink-u-pairs", type=float, default=U_MAX_PAIRS,
                    help=f"Splink's estimate_u_using_random_sampling(max_pairs=...); default {U_MAX_PAIRS:.0e}, "
                         "Splink's own default (its 50k-person demo uses 1e7)")
    ap.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.prepare:
        print(json.dumps(prepare(args.rows, args.seed)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.seed, args.splink_u_pairs)))
        return

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    systems = [s for s in SYSTEMS
               if not (s == "Splink" and args.skip_splink) and not (s == "enteronce" and args.skip_enteronce)]
    results: dict[int, dict[str, dict]] = {}
    for rows in sizes:
        ensure_cache(rows, args.seed)
        results[rows] = {}
        for system in systems:
            r = measure(system, rows, args.seed, args.repeat, args.timeout, args.splink_u_pairs)
            if "error" in r:
                print(f"    {r['error']}", flush=True)
            results[rows][system] = r
    report(results, args.repeat, args.seed)


if __name__ == "__main__":
    main()
