"""Feed API latency: p50/p99 for a page of 1,000 events under 20 concurrent clients, on loopback.

`measure()` is what benchmarks/feeds.py calls on the warehouse it built. Run alone, this script
builds its own synthetic outbox (tests/fixtures/feed_outbox.py, bulk_outbox: 100k events over 943 stations'
jurisdictions, a subscriber per station and a city-wide department) and measures the department,
whose pages are full (with --station, also a station, whose events are sparse in the outbox):

    .venv/bin/python benchmarks/feeds_api.py [--events 100000] [--stations 943] [--workers 1] [--station]

The server is `uvicorn feeds.api:app_from_env` in a separate process (so the clients do not share
its interpreter); each client has its own connection pool and asks for pages at random positions
of the outbox, so every request builds a real page (scope, projection, masking, audit row).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic outbox: tests/fixtures/

from feeds.tokens import issue_token, revoke_token  # noqa: E402
from warehouse import Warehouse  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(warehouse_url: str, config_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "ENTERONCE_CONFIG": str(config_dir), "ENTERONCE_WAREHOUSE_URL": warehouse_url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "feeds.api:app_from_env", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError("the API server did not answer /healthz within 60 s")
        time.sleep(0.2)


def measure(warehouse_url: str, config_dir: Path, subscriber_id: str, clients: int = 20, page: int = 1000,
            requests: int = 400, *, workers: int = 1, seed: int = 1) -> dict:
    """Latency of `GET /v1/feeds/{subscriber}/events?after=…&limit=page` under `clients` concurrent
    clients, `requests` requests in all: p50_ms, p99_ms, rps, mean events per page."""
    store = Warehouse(warehouse_url).migrate()
    token = issue_token(store, subscriber_id, "benchmark")
    high = store.max_event_seq()
    proc, url = _start_server(warehouse_url, Path(config_dir), workers)
    per_client = max(1, requests // clients)

    def client(i: int) -> list[tuple[float, int]]:
        rng = random.Random(seed * 1000 + i)
        out = []
        with httpx.Client(base_url=url, timeout=120,
                          headers={"Authorization": f"Bearer {token.token}"}) as http:
            http.get(f"/v1/feeds/{subscriber_id}/events", params={"after": 0, "limit": 1})  # connect, warm up
            for _ in range(per_client):
                after = rng.randrange(0, max(1, high - page))
                t0 = time.perf_counter()
                r = http.get(f"/v1/feeds/{subscriber_id}/events", params={"after": after, "limit": page})
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                out.append((elapsed, len(r.json()["events"])))
        return out

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = [x for part in pool.map(client, range(clients)) for x in part]
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        revoke_token(store, token.token_id)
        store.dispose()
    latencies = np.array([r[0] for r in results]) * 1000
    return {"subscriber": subscriber_id, "requests": len(results), "clients": clients, "page": page,
            "mean_events": float(np.mean([r[1] for r in results])),
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "rps": len(results) / wall, "events_per_s": sum(r[1] for r in results) / wall}


def build(root: Path, *, events: int, stations: int) -> tuple[str, list[str]]:
    """A synthetic warehouse and subscriptions.yaml under `root`; returns (url, subscriber ids)."""
    import yaml

    from fixtures.feed_outbox import bulk_outbox
    from warehouse.feeds import FeedStore

    jurisdictions = {f"s{i:04d}": [f"5001{i // 100:02d}{i % 100:03d}"] for i in range(stations)}
    url = f"sqlite:///{root / 'warehouse.sqlite'}"
    store = Warehouse(url).migrate()
    FeedStore(store).load_frames(bulk_outbox(jurisdictions, events=events))
    role = {"fields": {"name_norm": "full", "id_number": "masked", "phone": "masked", "address": "full",
                       "area_code": "full", "birth_date": "full", "sex": "full"}}
    fields = list(role["fields"])
    subs = {"version": 1,
            "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
            "roles": {"station_officer": role},
            "subscribers": [
                *({"id": sid, "kind": "station", "station_id": sid, "entity_types": ["person"],
                   "scope": {"area_codes": towns, "own_records": True}, "fields": fields, "role": "station_officer"}
                  for sid, towns in jurisdictions.items()),
                {"id": "city", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["500"]},
                 "fields": fields, "role": "station_officer"},
            ]}
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subs, allow_unicode=True, sort_keys=False),
                                             encoding="utf-8")
    store.dispose()
    return url, ["city", "s0000"]


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--stations", type=int, default=943)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--station", action="store_true",
                        help="also a station subscriber (sparse: each page scans much of the outbox)")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        url, subscribers = build(root, events=args.events, stations=args.stations)
        console.print(f"built {args.events:,} events over {args.stations} stations in {time.perf_counter() - t0:.1f} s")
        table = Table(title=f"Feed API on loopback: {args.clients} clients, pages of {args.page:,} events, "
                            f"{args.workers} worker(s), SQLite", title_justify="left")
        for col in ("subscriber", "requests", "events/page", "p50 ms", "p99 ms", "req/s", "events/s"):
            table.add_column(col, justify="left" if col == "subscriber" else "right")
        runs = [(subscribers[0], args.requests)]
        if args.station:
            runs.append((subscribers[1], max(args.clients, args.requests // 10)))
        for sid, requests in runs:
            r = measure(url, root, sid, clients=args.clients, page=args.page, requests=requests,
                        workers=args.workers)
            table.add_row(sid, f"{r['requests']:,}", f"{r['mean_events']:,.0f}", f"{r['p50_ms']:,.1f}",
                          f"{r['p99_ms']:,.1f}", f"{r['rps']:,.1f}", f"{r['events_per_s']:,.0f}")
        console.print(table)


if __name__ == "__main__":
    main()
