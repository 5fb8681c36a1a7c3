"""The scale curve: the whole-pipeline benchmark at several sizes, and each phase's fitted growth.

    python benchmarks/scale_curve.py [--records 250000,500000,1000000] [--stations 40]
                                     [--warehouse postgresql|sqlite] [--out scale.json] [--json]

Each size is one `benchmarks/pipeline.py` run (from empty, then a 10k drop) in its own process,
so one size's memory cannot inflate the next. Per phase of the run from empty, the time and the
peak memory are fitted as `a * n^k` by least squares on log-log (k: the growth exponent; 1 is
linear), and extrapolated to --target records. Between 1M and 8M, n log n is an exponent of
about 1.07, so a phase whose time exponent is at most 1.1, and whose memory exponent is at most
1.05, grows as the issue allows; the table marks the others.

The extrapolation is arithmetic on this machine's figures, not a measurement: it assumes the
phase keeps the growth it showed over the measured sizes (a phase that starts to spill or swap
past them will not), and the README says so beside the sizing table built from it.
--resume reads what an earlier, interrupted run wrote to --out and measures only the sizes
missing from it (a 4M run takes most of an hour here).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NLOGN_TIME = 1.1  # n log n between 1M and 8M is n^1.07; a little slack for a noisy machine
LINEAR_MEMORY = 1.05


def fit(sizes: list[float], values: list[float]) -> tuple[float, float] | None:
    """(a, k) of values = a * sizes^k, least squares on logs; None with fewer than two points."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if n > 0 and v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    k = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return math.exp(my - k * mx), k


def curve(runs: list[dict], target: int) -> list[dict]:
    """Per phase (in the order of the largest run): the measured seconds and peak MiB at each
    size, the fitted exponents and the extrapolation to `target` records."""
    runs = sorted(runs, key=lambda r: r["records_about"])
    sizes = [r["records_about"] for r in runs]
    names = [p["phase"] for p in runs[-1]["from_empty"]["phases"]] + ["total"]
    rows = []
    for name in names:
        secs, peaks = [], []
        for r in runs:
            first = r["from_empty"]
            if name == "total":
                secs.append(first["seconds"])
                peaks.append(first["peak_mib"])
                continue
            p = next((p for p in first["phases"] if p["phase"] == name), None)
            secs.append(p["seconds"] if p else 0.0)
            peaks.append(p["peak_mib"] if p else 0)
        t, m = fit(sizes, secs), fit(sizes, peaks)
        rows.append({
            "phase": name, "seconds": secs, "peak_mib": peaks,
            "time_exponent": round(t[1], 2) if t else None,
            "memory_exponent": round(m[1], 2) if m else None,
            "seconds_at_target": round(t[0] * target ** t[1]) if t else None,
            "peak_mib_at_target": round(m[0] * target ** m[1]) if m else None,
            "within": None if t is None and m is None else
                      (t is None or t[1] <= NLOGN_TIME) and (m is None or m[1] <= LINEAR_MEMORY),
        })
    return rows


def step_curve(runs: list[dict], top: int = 12) -> list[dict]:
    """The slowest Dagster steps of the largest run (summed over their runs), with their seconds
    and peak at each size and the fitted time exponent: which asset makes a phase grow."""
    runs = sorted(runs, key=lambda r: r["records_about"])
    sizes = [r["records_about"] for r in runs]
    rows = []
    for step in list(runs[-1]["from_empty"]["steps"])[:top]:
        secs = [r["from_empty"]["steps"].get(step, 0.0) for r in runs]
        peaks = [r["from_empty"]["step_peaks_mib"].get(step, 0) for r in runs]
        t, m = fit(sizes, secs), fit(sizes, peaks)
        rows.append({"step": step, "seconds": secs, "peak_mib": peaks,
                     "time_exponent": round(t[1], 2) if t else None,
                     "memory_exponent": round(m[1], 2) if m else None})
    return rows


def measure(records: int, args) -> dict:
    """One pipeline.py run at `records`, its figures as JSON (kept beside --out as it goes)."""
    part = args.out.with_suffix(f".{records}.json") if args.out else None
    cmd = [sys.executable, str(HERE / "pipeline.py"), "--records", str(records), "--stations", str(args.stations),
           "--warehouse", args.warehouse, "--json"]
    if part:
        cmd += ["--out", str(part)]
    print(f"measuring {records:,} records on {args.warehouse} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pipeline.py --records {records} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def _doc(args, runs: list[dict]) -> dict:
    return {"warehouse": args.warehouse, "stations": args.stations, "target": args.target, "runs": runs,
            "curve": curve(runs, args.target), "steps": step_curve(runs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="250000,500000,1000000", help="comma-separated sizes, person records")
    ap.add_argument("--stations", type=int, default=40)
    ap.add_argument("--warehouse", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--target", type=int, default=56_000_000, help="records to extrapolate to")
    ap.add_argument("--out", type=Path, help="write every run's figures and the curve here as JSON")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --out")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.records.split(","))
    runs: list[dict] = []
    if args.resume and args.out and args.out.exists():
        runs = [r for r in json.loads(args.out.read_text(encoding="utf-8"))["runs"]
                if r["warehouse"] == args.warehouse and r["records_about"] in sizes]
    for n in sizes:
        if any(r["records_about"] == n for r in runs):
            continue
        runs.append(measure(n, args))
        if args.out:  # after each size: an interrupted curve keeps what it measured (--resume)
            args.out.write_text(json.dumps(_doc(args, runs), indent=2, default=str), encoding="utf-8")
    out = _doc(args, runs)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    _print(out)


def _print(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    runs = sorted(out["runs"], key=lambda r: r["records_about"])
    table = Table(title=f"enteronce run from empty on {out['warehouse']}, {out['stations']} stations: "
                        f"time and peak per phase, fitted growth n^k, extrapolated to {out['target']:,}")
    table.add_column("phase")
    for r in runs:
        table.add_column(f"{r['records_about'] / 1e6:g}M s", justify="right")
    for r in runs:
        table.add_column(f"{r['records_about'] / 1e6:g}M MiB", justify="right")
    for col in ("k time", "k memory", "s at target", "MiB at target", "growth"):
        table.add_column(col, justify="right")
    for row in out["curve"]:
        fmt = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
        table.add_row(row["phase"], *[f"{s:.1f}" for s in row["seconds"]], *[f"{m:,}" for m in row["peak_mib"]],
                      fmt(row["time_exponent"]), fmt(row["memory_exponent"]), fmt(row["seconds_at_target"]),
                      fmt(row["peak_mib_at_target"]), "-" if row["within"] is None else "ok" if row["within"] else "too fast",
                      style="bold" if row["phase"] == "total" else None)
    console.print(table)
    steps = Table(title="the slowest Dagster steps of the largest run, at each size (s, summed over runs; peak MiB)")
    steps.add_column("step")
    for r in runs:
        steps.add_column(f"{r['records_about'] / 1e6:g}M s", justify="right")
    for r in runs:
        steps.add_column(f"{r['records_about'] / 1e6:g}M MiB", justify="right")
    steps.add_column("k time", justify="right")
    steps.add_column("k memory", justify="right")
    for row in out.get("steps", []):
        steps.add_row(row["step"], *[f"{s:.1f}" for s in row["seconds"]], *[f"{m:,}" for m in row["peak_mib"]],
                      "-" if row["time_exponent"] is None else f"{row['time_exponent']}",
                      "-" if row["memory_exponent"] is None else f"{row['memory_exponent']}")
    console.print(steps)
    console.print(f"allowed: time exponent <= {NLOGN_TIME} (n log n from 1M to 8M is n^1.07), memory exponent "
                  f"<= {LINEAR_MEMORY}; the extrapolation assumes each phase keeps its measured growth")
    for r in runs:
        size = r["from_empty"].get("warehouse_bytes")
        if size:
            console.print(f"{r['records_about']:,}: warehouse {size / 2**30:.2f} GiB after the first run, "
                          f"{size / r['records_about'] / 1024:.1f} KiB per person record")
        d = r.get("drop")
        if d:
            written = f" (feed files written at {d['feeds_written_s']:.1f} s)" if d.get("feeds_written_s") else ""
            console.print(f"{r['records_about']:,}: 10k drop {d['seconds']:.1f} s{written}, peak {d['peak_mib']:,} MiB; "
                          f"load before / after {r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}")


if __name__ == "__main__":
    main()
