"""First-publication benchmark: N person records ingested and resolved, then their first golden
records, versions and change events published, timed per sub-step.

    python benchmarks/publication.py [--rows 1000000] [--postgresql] [--repeat 1] [--profile OUT]

The setup (ingest and full resolution, no publication) runs once per size and simulator version
and is kept under benchmarks/.cache (a SQLite file; on PostgreSQL a template database), since it
takes minutes at a million records, together with resolution's record and membership caches (as
a pipeline's data folder holds them). Each measurement publishes a fresh copy of both in its own
process, so the peak memory (ru_maxrss, MB) is the publication's own; the peak column is the
process peak at the end of each sub-step. Target: 1M records first published in <= 30 s. On
SQLite the commit's WAL checkpoint follows in the background (warehouse/checkpoints.py); the
table's last row is how long after the commit it took.
`--profile OUT` runs the publication under py-spy and writes a speedscope profile to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from simcache import (  # this script's folder is on sys.path
    CACHE,
    ROOT,
    cached,
    simulator_digest,
)

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def _station(rows: int, seed: int):
    from connectors.config import SourceConfig, StationConfig
    from connectors.simulate.export import EXPORT_COLUMNS

    source = SourceConfig(name="residents", entity="person", kind="csv",
                          path=str(cached("persons", rows, seed, "csv")), columns=EXPORT_COLUMNS)
    return StationConfig(id="bench", name="bench", jurisdiction=("50",), sources=(source,))


def setup(url: str, workdir: Path, rows: int, seed: int) -> dict:
    """Ingest and resolve (what precedes the first publication), in its own process."""
    from connectors.ingest import ingest_station
    from entity_resolution.config import load_resolution
    from entity_resolution.service import run_resolution
    from warehouse import Warehouse

    station = _station(rows, seed)
    store = Warehouse(url, cache_dir=workdir / "cache").migrate()
    store.sync_stations([{"station_id": station.id, "name": station.name, "jurisdiction": list(station.jurisdiction)}])
    start = time.perf_counter()
    ingest_station(store, station, base_dir=workdir, data_dir=workdir / "data")
    summary = run_resolution(store.resolution_store("person", "person_records"),
                             load_resolution(None).entities["person"], entity_type="person", prefix="P")
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.engine.dispose()
    return {"seconds": time.perf_counter() - start, "mode": summary.mode}


def publish(url: str, cache_dir: Path) -> dict:
    """The first publication, as the `publish_persons` asset runs it (carried relation fields
    included, resolution's record and membership caches beside the warehouse as a pipeline has
    them), with the clock and the peak memory after each sub-step."""
    from entity_resolution.config import load_resolution
    from entity_resolution.entity_types import load_registry
    from entity_resolution.propagation import run_golden
    from entity_resolution.survivorship import parse_survivorship
    from warehouse import Warehouse, checkpoints

    settings = parse_survivorship(load_resolution(None).entities["person"].survivorship, source="defaults")
    carried = load_registry().relation_fields("person")
    store = Warehouse(url, cache_dir=cache_dir).migrate()
    base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    summary = run_golden(store.golden_store("person", "person_records"), settings, entity_type="person",
                         carried=carried)
    seconds = time.perf_counter() - start
    checkpoints.wait(store.engine)  # SQLite: the commit's WAL checkpoint, which follows it in the background
    checkpoint = time.perf_counter() - start - seconds
    with store.engine.connect() as conn:
        counts = {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar()
                  for t in ("golden_records", "golden_versions", "change_events")}
    return {"seconds": seconds, "base_mb": base_mb, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": getattr(summary, "timings", {}), "events": summary.events, "ops": summary.ops, "counts": counts,
            "checkpoint_s": checkpoint}


def _child(args: list[str], profile: str | None = None) -> dict:
    cmd = [sys.executable, __file__, *args]
    if profile:
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "-o", profile, "--format", "speedscope",
               "--rate", "50", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args[:2]} failed:\n{proc.stderr[-4000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def _sqlite_cache(rows: int, seed: int) -> Path:
    """The resolved warehouse of `rows` records, built once."""
    folder = CACHE / f"publication_{rows}_{seed}_{simulator_digest()}"
    if not (folder / "done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"setup: {rows:,} records ingested and resolved into {folder} (once) ...", flush=True)
        r = _child(["--step", "setup", "--url", f"sqlite:///{folder / 'warehouse.sqlite'}", "--workdir", str(folder),
                    "--rows", str(rows), "--seed", str(seed)])
        print(f"setup took {r['seconds']:.0f} s", flush=True)
        (folder / "done").write_text(json.dumps(r))
    return folder / "warehouse.sqlite"


def _pg_cache(admin_url: str, rows: int, seed: int) -> str:
    """The name of a template database holding the resolved warehouse, built once."""
    import sqlalchemy as sa

    name = f"enteronce_pubcache_{rows}_{simulator_digest()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT datistemplate FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists or not (_pg_workdir(name) / "done").exists():  # (a template from before the caches were kept)
            if exists:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            print(f"setup: {rows:,} records ingested and resolved into database {name} (once) ...", flush=True)
            workdir = _pg_workdir(name)
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            r = _child(["--step", "setup", "--url", admin.url.set(database=name).render_as_string(False),
                        "--workdir", str(workdir), "--rows", str(rows), "--seed", str(seed)])
            print(f"setup took {r['seconds']:.0f} s", flush=True)
            conn.execute(sa.text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true'))
            (workdir / "done").write_text(json.dumps(r))
    admin.dispose()
    return name


def _pg_workdir(template: str) -> Path:
    """Where the setup of a PostgreSQL template keeps resolution's caches."""
    return CACHE / f"{template}_work"


def _scratch_caches(source: Path) -> Path:
    """A copy of resolution's caches for one measurement (the publication may widen them)."""
    scratch = CACHE / f"publication-caches-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source, scratch)
    return scratch


def _measure(args) -> dict:
    import sqlalchemy as sa

    if not args.postgresql:
        cached_db = _sqlite_cache(args.rows, args.seed)
        scratch = CACHE / f"publication-{uuid.uuid4().hex[:8]}.sqlite"
        shutil.copyfile(cached_db, scratch)
        caches = _scratch_caches(cached_db.parent / "cache")
        try:
            return _child(["--step", "publish", "--url", f"sqlite:///{scratch}", "--workdir", str(caches)],
                          args.profile)
        finally:
            shutil.rmtree(caches, ignore_errors=True)
            for p in CACHE.glob(scratch.name + "*"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    template = _pg_cache(args.pg_url, args.rows, args.seed)
    admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    name = f"enteronce_pub_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    caches = _scratch_caches(_pg_workdir(template) / "cache")
    try:
        return _child(["--step", "publish", "--url", admin.url.set(database=name).render_as_string(False),
                       "--workdir", str(caches)], args.profile)
    finally:
        shutil.rmtree(caches, ignore_errors=True)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--postgresql", action="store_true", help="publish on PostgreSQL instead of SQLite")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="admin URL; scratch databases are created and dropped")
    ap.add_argument("--repeat", type=int, default=1, help="measurements; the fastest is tabled")
    ap.add_argument("--profile", help="py-spy speedscope output file for the (last) measurement")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.step == "setup":
        print(json.dumps(setup(args.url, args.workdir, args.rows, args.seed), default=str))
        return
    if args.step == "publish":
        print(json.dumps(publish(args.url, args.workdir), default=str))
        return

    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import make_csv

    make_csv(args.rows, args.seed)
    runs = [_measure(args) for _ in range(args.repeat)]
    r = min(runs, key=lambda x: x["seconds"])
    where = "PostgreSQL" if args.postgresql else "SQLite"
    load = os.getloadavg()
    table = Table(title=f"First publication on {where}: {args.rows:,} resolved person records -> "
                        f"{r['counts']['golden_records']:,} golden records, {r['events']:,} events "
                        f"(load {load[0]:.1f} {load[1]:.1f})")
    for col in ("sub-step", "seconds", "peak MB so far"):
        table.add_column(col, justify="right")
    for step, (sec, mb) in r["steps"].items():
        table.add_row(step, f"{sec:.2f}", f"{mb:.0f}")
    ok = r["seconds"] <= 30 * args.rows / 1_000_000
    table.add_row("total", f"{r['seconds']:.1f} ({', '.join(format(x['seconds'], '.1f') for x in runs)})",
                  f"{max(x['peak_mb'] for x in runs):.0f}", end_section=True)
    table.add_row("target", "met" if ok else "MISSED", f"(imports {r['base_mb']:.0f})", end_section=True)
    table.add_row("then, in the background: the WAL checkpoint", f"{r['checkpoint_s']:.1f}", "")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
