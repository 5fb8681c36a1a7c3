"""The whole pipeline benchmark: `enteronce run` from empty on a simulated network, then a drop.

    python benchmarks/pipeline.py [--records 1000000] [--stations 40] [--drop 10000]
                                  [--warehouse sqlite|postgresql] [--json]

The network (`enteronce simulate`, persons sized so that about --records person records come
out) is cached under benchmarks/.cache, keyed by size, seed and the simulator's source digest
(simcache.py). Each measured run is a fresh copy of the project with a fresh data folder
(ENTERONCE_DATA_DIR) and a fresh warehouse (a scratch PostgreSQL database for --warehouse
postgresql), so "from empty" means it: no Dagster instance, no frame cache, no warehouse.

Two runs, each `materialize_project` (what `enteronce run` calls) in a child process:
1. from empty: every station ingested, resolved, published, validated, feeds and report;
2. a drop of --drop person records into a few stations' CSV exports (half re-entered residents
   with a new local id and phone, as a station registers a mover; new lines appended to the
   file), then `enteronce run` again.

Per phase (the runner's phases: pipelines/phases.py) the table shows wall time from the
runner's own step callback and the peak resident memory of the child's process tree over that
phase, sampled from /proc every 0.1 s (psutil is not a dependency). Within each phase the
Dagster steps' own durations (from the run's step events) are listed too, so a slow phase
names its slow asset, and each step's peak (the highest sample while it ran), so a heavy phase
names its heavy asset. "changes in the feed files" is the time from the run's start to the end
of its first `subscriber_feeds` step: when a drop's changes are in the subscribers' files, though
the run goes on (the quality pass, a second feed build with its correction tasks, the report).
The machine's load average is printed beside the figures: on a shared 2-core machine, other work
inflates them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from simcache import CACHE, ROOT, simulator_digest  # this script's folder is on sys.path

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
RECORDS_PER_PERSON = 1.12  # person records per simulated person (movers, duplicates), measured
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- the network

def network(records: int, stations: int, seed: int) -> Path:
    """The cached simulated network (a project folder with stations.yaml), written once."""
    persons = max(1, round(records / RECORDS_PER_PERSON))
    folder = CACHE / f"network_{persons}p_{stations}s_{seed}_{simulator_digest()}"
    if (folder / "stations.yaml").exists() and (folder / ".complete").exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    print(f"simulating {persons:,} persons over {stations} stations into {folder} ...", flush=True)
    proc = subprocess.run([str(Path(sys.executable).parent / "enteronce"), "simulate", "--out", str(folder),
                           "--stations", str(stations), "--persons", str(persons), "--seed", str(seed)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed:\n{proc.stderr[-4000:]}")
    (folder / ".complete").write_text("ok\n")
    return folder


def copy_project(src: Path, dst: Path) -> Path:
    """A private copy of the network (the drop edits its exports)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("data", ".complete", "truth.csv"))
    return dst


def write_drop(project: Path, drop: int, seed: int) -> dict:
    """Append `drop` person records to the utf-8 CSV residents exports of a few stations: rows
    of the same file re-entered under a new local id with a new phone and update time (a
    station re-registering a resident), so the drop exercises matching, golden-record changes
    and events; a later drop into the same folder gets other local ids. Returns {station: rows
    appended}."""
    import random

    import yaml

    conf = yaml.safe_load((project / "stations.yaml").read_text(encoding="utf-8"))
    targets = []
    for st in conf["stations"]:
        for src in st.get("sources", []):
            if src.get("entity") == "person" and src.get("kind") == "csv":
                path = project / src["path"]
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                targets.append((st["id"], path, src["columns"], text))
        if len(targets) == 3:
            break
    if not targets:
        raise SystemExit("no utf-8 CSV residents export to drop into")
    rng = random.Random(seed)
    out = {}
    share = -(-drop // len(targets))
    for n, (sid, path, columns, text) in enumerate(targets):
        want = min(share, drop - sum(out.values()))
        lines = text.splitlines()
        header_at = next(i for i, line in enumerate(lines) if all(c in line for c in list(columns)[:3]))
        rows = list(csv.reader(lines[header_at:]))
        header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
        role = {v: header.index(k) for k, v in columns.items() if k in header}
        picked = [list(rng.choice(body)) for _ in range(want)]
        for i, row in enumerate(picked):
            row[role["local_id"]] = f"DROP{n}-{len(body)}-{i:07d}"  # the file's size now: each drop new ids
            if "phone" in role:
                row[role["phone"]] = f"139{rng.randrange(10**8):08d}"
            if "source_updated_at" in role:
                row[role["source_updated_at"]] = "2026-11-30 09:00:00"
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(picked)
        with open(path, "a", encoding="utf-8") as f:
            if not text.endswith("\n"):
                f.write("\n")
            f.write(buf.getvalue())
        out[sid] = want
    return out


# ---------------------------------------------------------------- the child: one `enteronce run`

def child(config: Path, url: str) -> None:
    """`enteronce run`'s materialisation, printing a JSON line at every step the runner starts
    and, at the end, every Dagster step's duration (summed over the station runs)."""
    sys.path.insert(0, str(ROOT))
    from pipelines.project import Project
    from pipelines.runner import materialize_project, stations_with_work

    def emit(**kw) -> None:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    emit(event="start", t=time.time())
    project = Project.load(config, url)
    stations = stations_with_work(project, project.station_ids)  # as `enteronce run` chooses them
    emit(event="loaded", t=time.time(), stations=len(stations))
    results = materialize_project(project, stations, on_station=lambda name: emit(event="step", name=name,
                                                                                 t=time.time()))
    end = time.time()
    from pipelines.instance import open_instance

    instance = open_instance(project)
    steps: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        for stat in instance.get_run_step_stats(result.run_id):
            if stat.start_time and stat.end_time:
                steps[stat.step_key] = steps.get(stat.step_key, 0.0) + stat.end_time - stat.start_time
                spans.setdefault(stat.step_key, []).append((stat.start_time, stat.end_time))
    emit(event="end", t=end, steps=steps, spans=spans, runs=len(results),
         failed=sum(1 for r in results if not r.success))


# ---------------------------------------------------------------- the parent: sampling

def _tree_rss(pid: int) -> tuple[int, list[tuple[str, int]]]:
    """Resident bytes of `pid` and all its descendants, from /proc, and each process's share
    (name, bytes): a phase's peak says whether it was one process or, say, a fork counted twice."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    parts, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm", "rb") as f:
                rss = int(f.read().split()[1]) * PAGE
            with open(f"/proc/{p}/comm", encoding="utf-8", errors="replace") as f:
                parts.append((f"{f.read().strip()}[{p}]", rss))
        except (OSError, IndexError, ValueError):
            pass
        todo.extend(children.get(p, ()))
    return sum(r for _, r in parts), parts


def measured_run(config: Path, url: str, data_dir: Path, station_ids: set[str]) -> dict:
    """One `enteronce run` in a child process: wall time and peak tree RSS per phase."""
    env = {**os.environ, "ENTERONCE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("ENTERONCE_WAREHOUSE_URL", None)
    start = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--child", "--config", str(config), "--url", url],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    current = {"phase": "startup"}
    phases: dict[str, dict] = {"startup": {"start": start, "peak": 0}}
    samples: list[tuple[float, int]] = []  # (time, tree RSS): which step held the peak
    order = ["startup"]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, parts = _tree_rss(proc.pid)
            samples.append((time.time(), rss))
            ph = phases[current["phase"]]
            if rss > ph["peak"]:
                ph["peak"], ph["peak_processes"] = rss, parts
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr_chunks: list[str] = []
    err_reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    err_reader.start()
    end_event, stations_run = None, None
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("event") == "loaded":
            stations_run = msg["stations"]
        elif msg.get("event") == "step":
            name = "ingest" if msg["name"] in station_ids else msg["name"]
            if name != current["phase"]:
                phases[current["phase"]]["end"] = msg["t"]
                if name not in phases:
                    phases[name] = {"start": msg["t"], "peak": 0}
                    order.append(name)
                current["phase"] = name
        elif msg.get("event") == "end":
            end_event = msg
            phases[current["phase"]]["end"] = msg["t"]
            current["phase"] = "shutdown"
            phases["shutdown"] = {"start": msg["t"], "peak": 0}
            order.append("shutdown")
    proc.wait()
    done.set()
    sampler.join()
    err_reader.join()
    finish = time.time()
    if proc.returncode != 0 or end_event is None:
        raise SystemExit(f"`enteronce run` failed (exit {proc.returncode}):\n{''.join(stderr_chunks)[-4000:]}")
    phases["shutdown"]["end"] = finish
    rows = [{"phase": p, "seconds": round(phases[p]["end"] - phases[p]["start"], 2),
             "peak_mib": round(phases[p]["peak"] / 2**20),
             "peak_processes": {name: round(r / 2**20) for name, r in phases[p].get("peak_processes", [])}}
            for p in order]
    return {"seconds": round(finish - start, 2), "peak_mib": max(r["peak_mib"] for r in rows), "phases": rows,
            "steps": {k: round(v, 2) for k, v in sorted(end_event["steps"].items(), key=lambda kv: -kv[1])},
            "step_peaks_mib": _step_peaks(samples, end_event["spans"]),
            "runs": end_event["runs"], "failed_runs": end_event["failed"], "stations_run": stations_run,
            "feeds_written_s": _feeds_written(start, end_event["spans"], first=True),
            "all_feeds_written_s": _feeds_written(start, end_event["spans"], first=False)}


def _feeds_written(start: float, spans: dict[str, list], *, first: bool) -> float | None:
    """Seconds from the run's start to the end of its first feed build (`first`): when a drop's
    changes are in the subscribers' files, though the run goes on (the quality pass, the report);
    or of its last, which also delivers the quality pass's correction tasks."""
    ends = [b for key, intervals in spans.items() if key.startswith("subscriber_feeds") for _, b in intervals]
    return round((min(ends) if first else max(ends)) - start, 2) if ends else None


def _step_peaks(samples: list[tuple[float, int]], spans: dict[str, list]) -> dict[str, int]:
    """Per Dagster step, the highest tree RSS sampled while it ran (any of its runs), heaviest first."""
    peaks = {}
    for key, intervals in spans.items():
        inside = [rss for t, rss in samples if any(a <= t <= b for a, b in intervals)]
        if inside:
            peaks[key] = round(max(inside) / 2**20)
    return dict(sorted(peaks.items(), key=lambda kv: -kv[1]))


def _save(path: Path | None, out: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


def _warehouse_size(url: str, data_dir: Path) -> int | None:
    """Bytes the warehouse takes: the SQLite files, or the PostgreSQL database (tables, indexes, TOAST)."""
    db = data_dir / "warehouse.sqlite"
    if db.exists():
        return sum(p.stat().st_size for p in data_dir.glob("warehouse.sqlite*"))
    if url.startswith("postgresql"):
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
        finally:
            engine.dispose()
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="person records, about")
    ap.add_argument("--stations", type=int, default=40)
    ap.add_argument("--drop", type=int, default=10_000, help="records dropped after the first run (0: none)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--warehouse", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--keep", action="store_true", help="keep the work folder and the PostgreSQL database (for a "
                                                        "profiler run; their names are in the JSON)")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here, after each run (a long run "
                                             "interrupted keeps what it measured)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.config, args.url)
        return

    source = network(args.records, args.stations, args.seed)
    import yaml

    station_ids = {s["id"] for s in yaml.safe_load((source / "stations.yaml").read_text(encoding="utf-8"))["stations"]}
    workdir = CACHE / f"pipeline-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    out = {"records_about": args.records, "stations": args.stations, "warehouse": args.warehouse,
           "network": source.name, "load_before": os.getloadavg()}
    try:
        with ExitStack() as stack:
            config = copy_project(source, workdir / "project")
            data_dir = workdir / "data"
            if args.warehouse == "sqlite":
                url = f"sqlite:///{data_dir / 'warehouse.sqlite'}"
            else:
                sys.path.insert(0, str(ROOT / "benchmarks"))
                from scratch import scratch_database

                url = stack.enter_context(scratch_database(args.pg_url, "enteronce_pipe", keep=args.keep))
                out["warehouse_url"] = url
            if not args.json:
                print(f"enteronce run from empty: {source.name} on {args.warehouse} ...", flush=True)
            out["from_empty"] = measured_run(config, url, data_dir, station_ids)
            out["from_empty"]["warehouse_bytes"] = _warehouse_size(url, data_dir)
            out["load_after_first"] = os.getloadavg()
            _save(args.out, out)
            if args.drop:
                out["drop_rows"] = write_drop(config, args.drop, args.seed)
                if not args.json:
                    print(f"drop of {args.drop:,} records into {sorted(out['drop_rows'])}, enteronce run ...", flush=True)
                out["drop"] = measured_run(config, url, data_dir, station_ids)
            out["load_after"] = os.getloadavg()
            _save(args.out, out)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            out["workdir"] = str(workdir)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    _print(out)


def _print(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    runs = [("from empty", out["from_empty"])] + ([("drop", out["drop"])] if "drop" in out else [])
    names = [p["phase"] for p in out["from_empty"]["phases"]]
    table = Table(title=f"enteronce run on {out['warehouse']}: ~{out['records_about']:,} records, "
                        f"{out['stations']} stations ({out['network']})")
    table.add_column("phase")
    for label, _ in runs:
        table.add_column(f"{label} s", justify="right")
        table.add_column(f"{label} peak MiB", justify="right")
    for name in names:
        cells = [name]
        for _, r in runs:
            p = next((p for p in r["phases"] if p["phase"] == name), None)
            cells += [f"{p['seconds']:.1f}", f"{p['peak_mib']:,}"] if p else ["-", "-"]
        table.add_row(*cells)
    total = ["total"]
    for _, r in runs:
        total += [f"{r['seconds']:.1f}", f"{r['peak_mib']:,}"]
    table.add_row(*total, style="bold")
    for label, key in (("changes in the feed files", "feeds_written_s"),
                       ("and the quality pass's tasks", "all_feeds_written_s")):
        written = [label]
        for _, r in runs:
            written += [f"{r[key]:.1f}" if r.get(key) is not None else "-", ""]
        table.add_row(*written)
    console.print(table)
    console.print("stations run (the others had nothing new): "
                  + ", ".join(f"{label} {r.get('stations_run')}" for label, r in runs))
    first = out["from_empty"]
    if out["records_about"] >= 1_000_000 and out["warehouse"] == "sqlite":
        target = "met" if first["seconds"] <= 180 and first["peak_mib"] <= 2048 else "MISSED"
        console.print(f"target (1M, SQLite): <= 180 s and <= 2048 MiB from empty: {target}")
    else:
        console.print("target (1M records on SQLite: <= 180 s, <= 2048 MiB from empty) not judged at this size")
    drop = out.get("drop")
    if drop and drop.get("feeds_written_s") is not None and out["records_about"] >= 1_000_000:
        target = "met" if drop["feeds_written_s"] <= 10 else "MISSED"
        console.print(f"target (a 10k drop into 1M, its changes in the feed files): <= 10 s: {target} "
                      f"({drop['feeds_written_s']:.1f} s)")
    if first.get("warehouse_bytes"):
        console.print(f"warehouse after the first run: {first['warehouse_bytes'] / 2**30:.2f} GiB")
    for label, r in runs:
        for p in r["phases"]:
            if sorted(p.get("peak_processes", {}).values())[-2:-1] >= [100]:  # a second process of 100 MiB+
                console.print(f"{label}, {p['phase']}: the peak was several processes (a fork counts its shared "
                              f"pages twice): " + ", ".join(f"{k} {v:,} MiB" for k, v in p["peak_processes"].items()))
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["steps"].items())[:8])
        console.print(f"slowest Dagster steps, {label} (s, summed over runs): {top}")
        heavy = ", ".join(f"{k} {v:,}" for k, v in list(r["step_peaks_mib"].items())[:8])
        console.print(f"heaviest Dagster steps, {label} (peak MiB of the process tree while each ran): {heavy}")
    console.print("load average before / after first run / after: "
                  + " / ".join(", ".join(f"{x:.2f}" for x in out[k]) for k in ("load_before", "load_after_first", "load_after")))


if __name__ == "__main__":
    main()
