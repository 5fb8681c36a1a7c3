"""Ingest + standardise benchmark: 1M simulated person rows from one CSV into each warehouse.

    python benchmarks/ingest.py [--rows 1000000] [--pg-url URL] [--skip-postgres]

Each measurement runs in a fresh process so its peak memory (ru_maxrss) is its own. Prints a
table: rows, seconds, rows/s and peak MB per warehouse. Target: 1M rows in <= 20 s, < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from simcache import CACHE, ROOT, cached  # this script's folder is on sys.path
DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def make_csv(rows: int, seed: int) -> Path:
    from connectors.simulate.export import simulate_person_export

    path = cached("persons", rows, seed, "csv")
    if not path.exists():
        print(f"simulating {rows:,} person rows into {path} ...", flush=True)
        simulate_person_export(path, rows=rows, seed=seed)
    return path


def worker(csv: Path, url: str) -> dict:
    """Runs in its own process: one drop, one station, timed from file to committed records."""
    from connectors.config import SourceConfig, StationConfig
    from connectors.ingest import ingest_station
    from connectors.simulate.export import EXPORT_COLUMNS
    from warehouse import Warehouse

    csv = csv.resolve()
    store = Warehouse(url).migrate()
    store.sync_stations([{"station_id": "bench", "name": "bench", "jurisdiction": ["50"]}])
    source = SourceConfig(name="residents", entity="person", kind="csv", path=str(csv), columns=EXPORT_COLUMNS)
    station = StationConfig(id="bench", name="bench", jurisdiction=("50",), sources=(source,))
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    [outcome] = ingest_station(store, station, base_dir=csv.parent, data_dir=csv.parent / "data")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert outcome.status == "loaded", outcome
    assert store.reconciliation(["bench"])["balanced"].all()
    return {
        "rows": outcome.rows_read, "loaded": outcome.rows_loaded, "quarantined": outcome.rows_quarantined,
        "records": store.count("person_records"), "seconds": seconds, "peak_mb": peak_mb,
        "import_mb": base_mb,
    }


def run_worker(csv: Path, url: str) -> dict:
    """One measurement in a fresh process, so its peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "--csv", str(csv), "--url", url],
        capture_output=True, text=True, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker failed for {url}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL; a scratch database is created and dropped")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per warehouse; the median is shown")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        print(json.dumps(worker(args.csv, args.url)))
        return

    from rich.console import Console
    from rich.table import Table

    csv = make_csv(args.rows, args.seed)
    results: list[tuple[str, dict]] = []
    for _ in range(args.repeat):
        scratch = CACHE / f"bench-{uuid.uuid4().hex[:8]}.sqlite"
        try:
            results.append(("SQLite", run_worker(csv, f"sqlite:///{scratch}")))
        finally:
            for p in CACHE.glob(scratch.name + "*"):  # the file, its journal and its lock folder
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    if not args.skip_postgres:
        from scratch import scratch_database

        for _ in range(args.repeat):
            with scratch_database(args.pg_url) as url:
                results.append(("PostgreSQL", run_worker(csv, url)))

    table = Table(title=f"Ingest + standardise, {args.rows:,} person rows from one CSV "
                        f"({csv.stat().st_size / 1e6:.0f} MB), median of {args.repeat}")
    for col in ("warehouse", "rows read", "loaded", "quarantined", "seconds (runs)", "rows/s", "peak MB", "target"):
        table.add_column(col, justify="right")
    for name in dict.fromkeys(n for n, _ in results):
        runs = sorted((r for n, r in results if n == name), key=lambda r: r["seconds"])
        r = runs[len(runs) // 2]
        ok = r["seconds"] <= 20 * args.rows / 1_000_000 and r["peak_mb"] < 2048
        table.add_row(
            name, f"{r['rows']:,}", f"{r['loaded']:,}", f"{r['quarantined']:,}",
            f"{r['seconds']:.1f} ({', '.join(format(x['seconds'], '.1f') for x in runs)})",
            f"{r['rows'] / r['seconds']:,.0f}", f"{max(x['peak_mb'] for x in runs):.0f}", "met" if ok else "MISSED",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
