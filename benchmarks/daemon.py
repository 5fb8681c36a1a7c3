"""The hub as a service: from a drop landing at a station to the feed file, with only the daemon.

    python benchmarks/daemon.py [--stations 12] [--persons 6000] [--repeat 5] [--postgres] [--parallel 4]

Simulates a network, starts `enteronce hub` (Dagster daemon + UI) on it and lets the daemon
load every station's first drops (timed: the initial load, and how many runs ran at once).
Then, `--repeat` times: a resident's phone changes in a JSON Lines station's next export, and
the clock runs until that station's outbox holds an events file with the new (masked) phone.
Each wait is split by the runs' own records: sensor tick and queue, ingest run, publication run
(resolve, publish, quality, report), feed run. `--postgres` puts the warehouse and the Dagster
instance on the local PostgreSQL server (the production profile) with `--parallel` ingests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import polars as pl  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import yaml  # noqa: E402

from connectors.simulate import simulate_network  # noqa: E402
from pipelines.instance import instance_home  # noqa: E402
from pipelines.project import Project  # noqa: E402

PG_ADMIN = os.environ.get("ENTERONCE_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres")
ENTERONCE = str(Path(sys.executable).parent / "enteronce")
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_databases(n: int) -> list[str]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    urls = []
    with admin.connect() as conn:
        for _ in range(n):
            name = f"enteronce_bench_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            urls.append(admin.url.set(database=name).render_as_string(hide_password=False))
    admin.dispose()
    return urls


def drop_pg_databases(urls: list[str]) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for url in urls:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def wait_idle(instance: dg.DagsterInstance, quiet: float = 20.0, timeout: float = 3600.0) -> float:
    """Until no run has been queued or running for `quiet` seconds; returns when the last one ended."""
    deadline = time.monotonic() + timeout
    calm_since = None
    while time.monotonic() < deadline:
        busy = instance.get_runs_count(dg.RunsFilter(statuses=IN_FLIGHT))
        if busy:
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet:
            return calm_since
        time.sleep(1)
    raise TimeoutError("the daemon did not become idle")


def max_parallel(records) -> int:
    edges = sorted([(r.start_time, 1) for r in records if r.start_time and r.end_time]
                   + [(r.end_time, -1) for r in records if r.start_time and r.end_time])
    best = now = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


def jsonl_station(project: Project):
    for st in project.stations.stations:
        for src in st.sources:
            if src.kind == "jsonl" and src.entity == "person" and "*" not in src.path:
                return st, src
    raise SystemExit("no JSON Lines station of persons in this network; try another --seed")


def change_phone(path: Path, src, phone: str) -> str:
    """The station's next export: its first resident has a new phone and update time."""
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    col = {v: k for k, v in src.columns.items()}
    row[col["phone"]] = phone
    if "source_updated_at" in col:
        row[col["source_updated_at"]] = time.strftime("%Y-%m-%d %H:%M:%S")
    lines[0] = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return row[col["local_id"]]


def delivered(outbox: Path, masked: str, seen: set[str]) -> Path | None:
    for path in sorted(outbox.glob("events_*.jsonl")):
        if path.name in seen:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if (json.loads(line).get("after") or {}).get("phone") == masked:
                return path
    return None


def breakdown(instance: dg.DagsterInstance, t0: float) -> dict[str, float]:
    """Seconds from the drop to each stage's start and end, from the runs' records."""
    runs = [r for r in instance.get_run_records(dg.RunsFilter(created_after=dt_from(t0)))]
    out = {}
    for stage in ("ingest", "publication", "feeds"):
        mine = sorted((r for r in runs if r.dagster_run.tags.get("enteronce/stage") == stage and r.start_time),
                      key=lambda r: r.start_time)
        if mine:
            out[f"{stage} start"] = mine[0].start_time - t0
            out[f"{stage} end"] = (mine[0].end_time or time.time()) - t0
    return out


def dt_from(ts: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=12)
    ap.add_argument("--persons", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--postgres", action="store_true", help="warehouse and Dagster instance on PostgreSQL")
    ap.add_argument("--parallel", type=int, default=4, help="station ingests at once (PostgreSQL only)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="enteronce-daemon-"))
    simulate_network(work, stations=args.stations, persons=args.persons, seed=args.seed)
    env = {**os.environ, "ENTERONCE_CONFIG": str(work)}
    env.pop("DAGSTER_HOME", None)
    databases = create_pg_databases(2) if args.postgres else []
    if databases:
        env |= {"ENTERONCE_WAREHOUSE_URL": databases[0], "ENTERONCE_INSTANCE_DB": databases[1]}
    project = Project.load(work, env.get("ENTERONCE_WAREHOUSE_URL"))
    station, src = jsonl_station(project)
    subs = yaml.safe_load((work / "subscriptions.yaml").read_text(encoding="utf-8"))["subscribers"]
    subscriber = next(s["id"] for s in subs if s.get("station_id") == station.id)
    outbox = project.data_dir / "outbox" / subscriber

    cmd = [ENTERONCE, "hub", "--port", str(free_port()), "--no-api"]
    if args.postgres:
        cmd += ["--parallel", str(args.parallel)]
    hub = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        started = time.monotonic()
        while not (instance_home(project) / "dagster.yaml").exists():
            time.sleep(0.5)
        time.sleep(3)
        instance = dg.DagsterInstance.from_config(str(instance_home(project)))
        ended = wait_idle(instance)
        records = instance.get_run_records()
        ingests = [r for r in records if r.dagster_run.tags.get("enteronce/stage") == "ingest"]
        print(f"network: {args.stations} stations, {args.persons:,} persons, "
              f"{'PostgreSQL' if args.postgres else 'SQLite'} warehouse and instance")
        print(f"initial load under the daemon: {ended - started:.0f} s until idle, {len(records)} runs "
              f"({len(ingests)} station ingests), at most {max_parallel(records)} runs at once, "
              f"{max_parallel(ingests)} ingests at once")

        rows = []
        seen = {p.name for p in outbox.glob("events_*.jsonl")}
        for i in range(args.repeat):
            last4 = f"{(7919 * (i + 1)) % 10000:04d}"
            phone = f"1390000{last4}"
            t0 = time.time()
            change_phone(work / src.path, src, phone)
            while (path := delivered(outbox, f"139****{last4}", seen)) is None:
                if hub.poll() is not None:
                    raise SystemExit(f"the hub stopped (exit {hub.returncode})")
                time.sleep(0.25)
            total = time.time() - t0
            seen.add(path.name)
            rows.append({"drop": i + 1, "to feed file s": round(total, 1),
                         **{k: round(v, 1) for k, v in breakdown(instance, t0).items()}})
            wait_idle(instance, quiet=12)
        frame = pl.DataFrame(rows)
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
            print(f"a changed phone at {station.id} to {subscriber}'s feed file (seconds after the drop):")
            print(frame)
        print(f"median drop -> feed file: {statistics.median(frame['to feed file s'].to_list()):.1f} s")
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(timeout=120)
        if databases:
            drop_pg_databases(databases)


if __name__ == "__main__":
    main()
