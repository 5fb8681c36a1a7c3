"""Propagation benchmark: with 1M person records already resolved and published, a drop of 10k
changed or new records from a few stations, timed from the drop to committed change events.

    python benchmarks/propagation.py [--rows 1000000] [--drop 10000] [--warehouse sqlite|postgresql] [--cold]

The setup (ingest, full resolution and first publication of the 1M records) runs once in its own
process and is reported but not the figure of interest; the drop runs in a fresh process, so its
peak memory is its own. Before it, the SQLite file is read once so that it is in the page cache
as a running hub has it (`--cold` skips that). Target: drop to committed events in <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from simcache import CACHE, ROOT, cached  # this script's folder is on sys.path
DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
DROP_STATIONS = ("d001", "d002", "d003")


def _stations(workdir: Path, rows: int, seed: int) -> list:
    from connectors.config import SourceConfig, StationConfig
    from connectors.simulate.export import EXPORT_COLUMNS

    base = SourceConfig(name="residents", entity="person", kind="csv",
                        path=str(cached("persons", rows, seed, "csv")), columns=EXPORT_COLUMNS)
    stations = [StationConfig(id="bench", name="bench", jurisdiction=("50",), sources=(base,))]
    for sid in DROP_STATIONS:
        src = SourceConfig(name="residents", entity="person", kind="csv", path=str(workdir / f"{sid}.csv"),
                           columns=EXPORT_COLUMNS)
        stations.append(StationConfig(id=sid, name=sid, jurisdiction=("50",), sources=(src,)))
    return stations


def _pipeline(store, stations, workdir: Path) -> dict:
    """Ingest new drops, resolve, publish: what the sensor and automation do after a drop."""
    from connectors.ingest import ingest_station
    from entity_resolution.config import load_resolution
    from entity_resolution.propagation import run_golden
    from entity_resolution.service import run_resolution
    from entity_resolution.survivorship import parse_survivorship

    settings = load_resolution(None).entities["person"]
    clock = {}
    t = time.perf_counter()
    for st in stations:
        ingest_station(store, st, base_dir=workdir, data_dir=workdir / "data")
    clock["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = run_resolution(store.resolution_store("person", "person_records"), settings,
                             entity_type="person", prefix="P")
    clock["resolve"] = time.perf_counter() - t
    t = time.perf_counter()
    golden = run_golden(store.golden_store("person", "person_records"),
                        parse_survivorship(settings.survivorship, source="defaults"), entity_type="person")
    clock["publish"] = time.perf_counter() - t
    clock["resolve_phases"] = summary.timings
    return {"clock": clock, "mode": summary.mode, "dirty": summary.dirty, "events": golden.events,
            "ops": golden.ops, "seq_range": golden.seq_range}


def setup(url: str, workdir: Path, rows: int, seed: int) -> dict:
    from warehouse import Warehouse

    stations = _stations(workdir, rows, seed)
    for sid in DROP_STATIONS:  # the drop stations exist but have exported nothing yet
        (workdir / f"{sid}.csv").write_text(",".join(stations[0].sources[0].columns) + "\n", encoding="utf-8")
    store = Warehouse(url, cache_dir=workdir / "cache").migrate()
    store.sync_stations({"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)} for s in stations)
    start = time.perf_counter()
    out = _pipeline(store, stations, workdir)
    out["seconds"] = time.perf_counter() - start
    if store.dialect == "sqlite":  # a steady state: the setup's write-ahead log folded into the file
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return out


def write_drop(workdir: Path, rows: int, seed: int, drop: int) -> None:
    """Half the drop: residents already known, re-entered at a new station with a new phone and
    address (their golden record changes); half: people never seen before."""
    import polars as pl

    from connectors.simulate.export import EXPORT_COLUMNS, simulate_person_records

    known = pl.read_csv(cached("persons", rows, seed, "csv"), infer_schema=False, n_rows=200_000)
    known = known.filter(pl.col("公民身份号码").str.len_chars() == 18).sample(drop // 2, seed=seed)
    changed = known.with_columns(
        pl.format("M{}", pl.int_range(pl.len())).alias("人员编号"),
        pl.format("139{}", (pl.int_range(pl.len()) + 10_000_000).cast(pl.String)).alias("联系电话"),
        pl.lit("重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室").alias("现住址"),
        pl.lit("2026-11-26 09:00:00").alias("更新时间"),
    )
    fresh, _ = simulate_person_records(rows=drop - changed.height, seed=seed + 1, stations=20)
    fresh = fresh.select(list(EXPORT_COLUMNS.values())).with_columns(
        pl.format("N{}", pl.int_range(pl.len())).alias("local_id")).rename({v: k for k, v in EXPORT_COLUMNS.items()})
    both = pl.concat([changed.select(fresh.columns), fresh])
    both = both.with_columns((pl.int_range(pl.len()) % len(DROP_STATIONS)).alias("_part"))
    for i, sid in enumerate(DROP_STATIONS):
        both.filter(pl.col("_part") == i).drop("_part").write_csv(workdir / f"{sid}.csv")


def run_drop(url: str, workdir: Path, rows: int, seed: int) -> dict:
    from warehouse import Warehouse

    stations = _stations(workdir, rows, seed)
    store = Warehouse(url, cache_dir=workdir / "cache")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    out = _pipeline(store, stations, workdir)
    out["seconds"] = time.perf_counter() - start
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["base_mb"] = base
    return out


def _warm(workdir: Path) -> None:
    """Read the warehouse file once, as a running hub has it in the page cache: the setup's own
    ten gigabytes of memory push it out, and the figure should measure the pipeline, not a cold
    disk (`--cold` measures that instead)."""
    with open(workdir / "warehouse.sqlite", "rb") as f:
        while f.read(1 << 24):
            pass


def _child(step: str, url: str, workdir: Path, args) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--step", step, "--url", url, "--workdir", str(workdir),
                           "--rows", str(args.rows), "--seed", str(args.seed), "--drop", str(args.drop)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--drop", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--warehouse", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--cold", action="store_true", help="do not read the SQLite file into the page cache first")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.step == "setup":
        print(json.dumps(setup(args.url, args.workdir, args.rows, args.seed), default=str))
        return
    if args.step == "drop":
        write_drop(args.workdir, args.rows, args.seed, args.drop)
        print(json.dumps(run_drop(args.url, args.workdir, args.rows, args.seed), default=str))
        return

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import make_csv
    from scratch import scratch_database

    make_csv(args.rows, args.seed)
    workdir = CACHE / f"propagation-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    try:
        with ExitStack() as stack:
            if args.warehouse == "sqlite":
                url = f"sqlite:///{workdir / 'warehouse.sqlite'}"
            else:
                url = stack.enter_context(scratch_database(args.pg_url, "enteronce_prop"))
            print(f"setup: {args.rows:,} records ingested, resolved and published ...", flush=True)
            base = _child("setup", url, workdir, args)
            os.sync()  # the setup's gigabytes reach the disk now, not during the timed drop
            if args.warehouse == "sqlite" and not args.cold:
                _warm(workdir)
            print(f"drop: {args.drop:,} changed or new records from {len(DROP_STATIONS)} stations ...", flush=True)
            drop = _child("drop", url, workdir, args)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    table = Table(title=f"Propagation on {args.warehouse}: {args.rows:,} records resolved, then a {args.drop:,}-record drop")
    for col in ("phase", "seconds", "ingest", "resolve", "publish", "mode", "records re-resolved", "events", "peak MB", "target"):
        table.add_column(col, justify="right")
    for phase, r in (("setup (once)", base), ("drop -> events", drop)):
        c = r["clock"]
        target = ("met" if r["seconds"] <= 10 else "MISSED") if phase.startswith("drop") else ""
        table.add_row(phase, f"{r['seconds']:.1f}", f"{c['ingest']:.1f}", f"{c['resolve']:.1f}", f"{c['publish']:.1f}",
                      r["mode"], f"{r['dirty']:,}", f"{r['events']:,} {r['ops']}", f"{r.get('peak_mb', 0):.0f}", target)
    console = Console(width=160)
    console.print(table)
    phases = drop["clock"].get("resolve_phases", {})
    console.print("resolution phases of the drop (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
