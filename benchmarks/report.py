"""Report benchmark: the auditors' site for 943 stations, on SQLite and PostgreSQL.

    python benchmarks/report.py [--stations 943] [--batches 4] [--records 200] [--warehouse sqlite|postgresql|both]

Fills a fresh warehouse with synthetic validation runs and results, scores, correction tasks,
holds, entities and deliveries (tests/fixtures/report_warehouse.py: every station has its own quality, so
rankings and trends are not flat), then times reading the report's frames (warehouse.reports, one
SQL statement per frame) and writing the site (quality.report: index, one page per station,
linkage, access, Data Docs). Target: seconds, not minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic warehouse state: tests/fixtures/

from scratch import scratch_database  # noqa: E402 - beside this file
DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def bench(url: str, out: Path, stations: int, batches: int, records: int) -> dict:
    from fixtures.report_warehouse import synthetic_network
    from quality.report import build_report
    from warehouse import Warehouse
    from warehouse import schema as s
    from warehouse.bulk import insert_frame
    from warehouse.reports import read_report_frames

    store = Warehouse(url).migrate()
    t0 = time.perf_counter()
    rows = synthetic_network(stations, batches, records_per_station=records, seed=943)
    with store.transaction() as conn:
        for name, frame in rows.items():
            insert_frame(conn, s.metadata.tables[name], frame)
    t1 = time.perf_counter()
    frames = read_report_frames(store)
    t2 = time.perf_counter()
    summary = build_report(out, **frames)
    t3 = time.perf_counter()
    store.dispose()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"fill": t1 - t0, "read": t2 - t1, "build": t3 - t2, "total": t3 - t1, "pages": summary.pages,
            "results": rows["validation_results"].height, "scores": rows["station_scores"].height,
            "tasks": rows["correction_tasks"].height, "records": rows["entity_membership"].height,
            "size_mb": size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stations", type=int, default=943)
    ap.add_argument("--batches", type=int, default=4, help="validated batches per station")
    ap.add_argument("--records", type=int, default=200, help="resolved records per station (linkage page)")
    ap.add_argument("--warehouse", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL; a scratch database is created and dropped")
    args = ap.parse_args()

    from rich.table import Table

    from pipelines.cli_common import console  # the CLI's: whole lines and tables when piped
    kinds = ["sqlite", "postgresql"] if args.warehouse == "both" else [args.warehouse]
    table = Table(title=f"Audit report for {args.stations:,} stations × {args.batches} batches")
    for col in ("warehouse", "results", "scores", "tasks", "records", "read s", "write s", "total s", "pages",
                "MB"):
        table.add_column(col, justify="right" if col != "warehouse" else "left")
    with tempfile.TemporaryDirectory(prefix="enteronce-bench-report-") as tmp:
        for kind in kinds:
            with ExitStack() as stack:
                if kind == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'warehouse.sqlite'}"
                else:
                    try:
                        url = stack.enter_context(scratch_database(args.pg_url, "enteronce_bench_report"))
                    except Exception as exc:  # noqa: BLE001 - report and go on with the other warehouse
                        console.print(f"[yellow]skipping PostgreSQL[/]: {exc.__class__.__name__}: {exc}")
                        continue
                with console.status(f"{kind}: filling and building"):
                    r = bench(url, Path(tmp) / f"site-{kind}", args.stations, args.batches, args.records)
            table.add_row(kind, f"{r['results']:,}", f"{r['scores']:,}", f"{r['tasks']:,}", f"{r['records']:,}",
                          f"{r['read']:.2f}", f"{r['build']:.2f}", f"{r['total']:.2f}", f"{r['pages']:,}",
                          f"{r['size_mb']:.1f}")
    console.print(table)
    console.print("results / scores / tasks / records: rows in the warehouse; read s: the report's queries; "
                  "write s: every page and chart; total s = read + write (filling the warehouse not counted).")


if __name__ == "__main__":
    main()
