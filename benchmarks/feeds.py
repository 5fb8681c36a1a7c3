"""Feeds benchmark: events/s to build the feeds of all 943 stations (and a few departments) from
100k change events, and peak memory; with benchmarks/feeds_api.py present, also the API's p50/p99
for a page of 1,000 events under 20 concurrent clients.

    .venv/bin/python benchmarks/feeds.py [--events 100000] [--stations 943] [--warehouse sqlite|postgresql|URL]

The outbox is synthetic (tests/fixtures/feed_outbox.py, bulk_outbox: creates, then phone changes and moves between
townships, over the simulated network's jurisdictions), bulk-loaded straight into the warehouse.
Every subscriber predates the events (file cursor 0), so the build is the incremental path. Each
stage runs in its own process so that its peak memory is its own:

- `build (in memory)`: read the outbox once, scope, project and mask for every subscriber;
- `build + files`: the same, plus JSON Lines, CSV and Parquet and a manifest per subscriber,
  cursors and audit rows, and the API's pages prepared from seq 0 (what `enteronce feed build`
  does; the API row below then reads those pages).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic outbox: tests/fixtures/

from scratch import scratch_database  # noqa: E402 - beside this file

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _subscriptions(jurisdictions: dict[str, list[str]], districts: list[str]) -> dict:
    officer = {"fields": {"name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked",
                          "phone": "masked", "address": "full", "addr_district": "full", "addr_street": "full",
                          "addr_community": "full", "area_code": "full"}}
    analyst = {"fields": {"name_norm": "masked", "sex": "full", "birth_date": "masked", "address": "masked",
                          "area_code": "full"}}
    fields = list(officer["fields"])
    return {
        "version": 1,
        "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4},
                    "name_norm": {"keep_first": 1}, "address": {"kind": "address", "level": "community"},
                    "birth_date": {"kind": "date", "keep": "year"}},
        "roles": {"station_officer": officer, "department_analyst": analyst},
        "subscribers": [
            *({"id": sid, "kind": "station", "station_id": sid, "entity_types": ["person"],
               "scope": {"area_codes": towns, "own_records": True}, "fields": fields, "role": "station_officer"}
              for sid, towns in jurisdictions.items()),
            {"id": "city", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["50"]},
             "fields": fields, "role": "department_analyst"},
            *({"id": f"district_{d}", "kind": "department", "entity_types": ["person"],
               "scope": {"area_codes": [d]}, "fields": fields, "role": "department_analyst"} for d in districts[:3]),
        ],
    }


def setup(url: str, config_dir: Path, *, events: int, stations: int) -> dict:
    import yaml

    from connectors.simulate.network import build_network
    from fixtures.feed_outbox import bulk_outbox
    from warehouse import Warehouse
    from warehouse.feeds import FeedStore

    net = build_network(stations, 20261126)
    jurisdictions = {st.id: list(st.jurisdiction) for st in net.stations}
    districts = sorted({st.district_code for st in net.stations})
    t = time.perf_counter()
    frames = bulk_outbox(jurisdictions, events=events)
    gen = time.perf_counter() - t
    store = Warehouse(url).migrate()
    t = time.perf_counter()
    FeedStore(store).load_frames(frames)
    load = time.perf_counter() - t
    doc = _subscriptions(jurisdictions, districts)
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "subscriptions.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                                                   encoding="utf-8")
    ids = [s["id"] for s in doc["subscribers"]]
    FeedStore(store).commit_file_run([], acked={i: 0 for i in ids}, snapshots={i: 0 for i in ids})
    store.dispose()
    return {"generate_s": gen, "load_s": load, "subscribers": len(ids), "events": events}


def stage(name: str, url: str, config_dir: Path) -> dict:
    from feeds.build import build_events
    from feeds.config import load_subscriptions
    from feeds.files import build_all
    from feeds.service import load_inputs
    from warehouse import Warehouse
    from warehouse.feeds import FeedStore

    store = Warehouse(url).migrate()
    subs = load_subscriptions(config_dir)
    t = time.perf_counter()
    if name == "memory":
        fs = FeedStore(store)
        events = fs.events(0)
        built = build_events(events, load_inputs(fs, events), subs, list(subs.subscribers),
                             {s.id: 0 for s in subs.subscribers})
        out = {"events": events.height, "deliveries": built.height,
               "subscribers_with_events": built["subscriber_id"].n_unique()}
    else:
        results = build_all(store, subs, config_dir=config_dir, data_dir=config_dir / "data")
        out = {"events": store.max_event_seq(), "deliveries": sum(r.events for r in results),
               "subscribers_with_events": sum(1 for r in results if r.events),
               "files": sum(len(r.files) for r in results)}
    out["seconds"] = time.perf_counter() - t
    out["peak_mb"] = _peak_mb()
    store.dispose()
    return out


def _in_process(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"stage {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def _warehouse(choice: str, workdir: Path) -> Iterator[str]:
    if choice == "sqlite":
        yield f"sqlite:///{workdir / 'warehouse.sqlite'}"
        return
    with scratch_database(DEFAULT_PG if choice == "postgresql" else choice, "enteronce_bench_feeds") as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=943)
    parser.add_argument("--warehouse", default="sqlite", help="sqlite | postgresql | an admin SQLAlchemy URL")
    parser.add_argument("--no-api", action="store_true", help="skip the API latency row")
    parser.add_argument("--stage", choices=["memory", "files"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.url, Path(args.config))))
        return

    from rich.table import Table

    from pipelines.cli_common import console  # the CLI's: whole lines and tables when piped
    with tempfile.TemporaryDirectory(prefix="enteronce-bench-feeds-") as tmp:
        workdir = Path(tmp)
        with _warehouse(args.warehouse, workdir) as url:
            console.print(f"staging {args.events:,} change events over {args.stations} stations' jurisdictions ...")
            info = setup(url, workdir, events=args.events, stations=args.stations)
            memory = _in_process(["--stage", "memory", "--url", url, "--config", str(workdir)])
            files = _in_process(["--stage", "files", "--url", url, "--config", str(workdir)])
            api = None
            if not args.no_api and (ROOT / "benchmarks" / "feeds_api.py").exists():
                sys.path.insert(0, str(ROOT / "benchmarks"))
                from feeds_api import measure

                console.print("measuring the feed API (20 clients, pages of 1,000) ...")
                api = measure(url, workdir, "city", clients=20, page=1000)
    table = Table(title=f"Feeds: {info['events']:,} change events, {info['subscribers']} subscribers "
                        f"({args.stations} stations + departments), warehouse {args.warehouse}",
                  title_justify="left")
    for col in ("stage", "time", "events/s", "deliveries", "peak RSS", "notes"):
        table.add_column(col, justify="left" if col in ("stage", "notes") else "right")
    table.add_row("stage outbox (generate + bulk load)", f"{info['generate_s'] + info['load_s']:.1f} s", "-", "-",
                  "-", f"generate {info['generate_s']:.1f} s, load {info['load_s']:.1f} s")
    for label, r in (("build (in memory)", memory), ("build + files (enteronce feed build)", files)):
        notes = f"{r['subscribers_with_events']} subscribers got events"
        if "files" in r:
            notes += f", {r['files']:,} files"
        table.add_row(label, f"{r['seconds']:.2f} s", f"{r['events'] / r['seconds']:,.0f}", f"{r['deliveries']:,}",
                      f"{r['peak_mb']:,.0f} MB", notes)
    if api is not None:
        table.add_row(f"API page of {api['page']:,} ({api['clients']} clients, {api['subscriber']})",
                      f"p50 {api['p50_ms']:.0f} ms / p99 {api['p99_ms']:.0f} ms",
                      f"{api.get('events_per_s', 0):,.0f}", f"{api['requests']:,} requests",
                      "-", f"{api['rps']:.1f} requests/s, mean {api.get('mean_events', 0):,.0f} events/page")
    console.print(table)


if __name__ == "__main__":
    main()
