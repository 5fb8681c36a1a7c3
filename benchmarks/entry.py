"""Record entry benchmark: POST /v1/records latency, and entry-to-feed time with the hub running.

    .venv/bin/python benchmarks/entry.py [--persons 2000] [--entries 200] [--clients 4] [--daemon] [--json]

Setup: a simulated network (3 stations + station s9001, `persons` residents) run once by
`enteronce run` into a fresh SQLite warehouse in a temporary folder; s9001 gets a subscriber with
the entry grant.

- latency: the API in this process (feeds.api.BackgroundServer, as the tests serve it, one
  uvicorn worker); `clients` threads enter `entries` distinct new residents (valid IDs) over
  loopback: p50/p99 per entry and entries/s (each entry is one batch in its own transaction);
- `--daemon`: `enteronce hub` (daemon, UI, feed API) on that folder; one warm-up entry, then
  `--rounds` corrections of it (a new phone each), each timed from the API's answer to the update
  event in another station's outbox file (events_*.jsonl): the issue's "reaches the change
  events of another station's feed within 10 s with the daemon running".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import yaml  # noqa: E402

A, A_AREA = "s9001", "500106001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def valid_ids(n: int) -> list[str]:
    from connectors.simulate.codes import id_check_char

    out = []
    for i in range(n):
        body = f"500106{1960 + i % 40:04d}{1 + i % 12:02d}{1 + i % 28:02d}{101 + i % 898:03d}"
        out.append(body + id_check_char(body))
    return out


def record(i: int, number: str, **changes) -> dict:
    sex = "男" if int(number[16]) % 2 else "女"
    return {"local_id": f"B-{i}", "name": f"测试{chr(0x4E00 + i % 2000)}{chr(0x4E00 + (i * 7) % 2000)}", "sex": sex,
            "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}", "id_number": number,
            "phone": f"139{i:08d}", "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号", "area_code": A_AREA,
            **changes}


def setup(persons: int) -> tuple[Path, object]:
    from pipelines.project import Project
    from pipelines.runner import materialize_project
    from scenario_network import network_with_csv_station

    root = network_with_csv_station(Path(tempfile.mkdtemp(prefix="entry-bench-")), stations=3, persons=persons,
                                    seed=7, station_id=A, jurisdiction=A_AREA)
    path = root / "subscriptions.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    template = next(s for s in doc["subscribers"] if s["kind"] == "station")
    doc["subscribers"].append({**template, "id": A, "station_id": A, "entity_types": ["person"],
                               "scope": {"area_codes": [A_AREA], "own_records": True},
                               "query": {"scope": {"own_records": True}, "entry": True, "per_minute": 6000}})
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    project = Project.load(root)
    materialize_project(project, project.station_ids)
    return root, project


def latency(project, entries: int, clients: int) -> dict:
    from feeds.api import BackgroundServer, create_app
    from feeds.tokens import issue_token
    from pipelines.entry import project_entry

    store = project.open_warehouse()
    app = create_app(project.warehouse_url, project.config_dir, audit_key=b"bench", store=store,
                     entry=project_entry(project, store))
    token = issue_token(store, A).token
    ids = valid_ids(entries)
    times: list[float] = []
    with BackgroundServer(app) as base:
        def one(i: int) -> float:
            with httpx.Client(base_url=base, timeout=60) as http:
                t = time.perf_counter()
                r = http.post("/v1/records", json={"entity_type": "person", "record": record(i, ids[i])},
                              headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201, r.text
                return time.perf_counter() - t

        one(0)  # warm-up (imports, first standardisation)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            times = list(pool.map(one, range(1, entries)))
        wall = time.perf_counter() - started
    store.dispose()
    times.sort()
    return {"entries": len(times), "clients": clients, "p50_ms": round(1000 * times[len(times) // 2], 1),
            "p99_ms": round(1000 * times[min(len(times) - 1, int(len(times) * 0.99))], 1),
            "entries_per_s": round(len(times) / wall, 1)}


def daemon(root: Path, project, rounds: int) -> dict:
    env = {**os.environ, "ENTERONCE_CONFIG": str(root)}
    env.pop("DAGSTER_HOME", None)
    env.pop("ENTERONCE_WAREHOUSE_URL", None)
    enteronce = str(Path(sys.executable).parent / "enteronce")
    token = subprocess.run([enteronce, "token", "issue", "--subscriber", A], env=env, capture_output=True,
                           text=True, check=True).stdout.strip().splitlines()[-1]
    b = project.stations.stations[1]
    b_area = f"{b.jurisdiction[0]}001"[:12]
    outbox = project.data_dir / "outbox" / b.id
    ports = {"ui": free_port(), "api": free_port()}
    hub = subprocess.Popen([enteronce, "hub", "--port", str(ports["ui"]), "--api-port", str(ports["api"])], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{ports['api']}"
    from connectors.simulate.codes import id_check_char

    body = "50010619851115321"  # born 1985: no resident of the latency part shares it (they would merge)
    number = body + id_check_char(body)
    base = record(0, number, local_id="D-1", area_code=b_area, address=f"重庆市{b.name}辖区幸福路9号")

    def wait(phone: str, limit: float = 600) -> float:
        t = time.monotonic()
        while time.monotonic() - t < limit:
            for path in outbox.glob("events_*.jsonl"):
                text = path.read_text(encoding="utf-8")
                if f'"{phone[:3]}****{phone[-4:]}"' in text or f'"{phone}"' in text:  # masked or not by B's role
                    return time.monotonic()
            time.sleep(0.2)
        raise SystemExit(f"no event with phone {phone} in {outbox} within {limit} s")

    def enter(rec: dict) -> float:
        r = httpx.post(f"{api}/v1/records", json={"entity_type": "person", "record": rec},
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert r.status_code in (200, 201), r.text
        return time.monotonic()

    try:
        while True:
            try:
                if httpx.get(f"{api}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        enter(base)
        wait(base["phone"])
        seconds = []
        for k in range(rounds):
            phone = f"1370000{k:04d}"
            sent = enter({**base, "phone": phone})
            seconds.append(round(wait(phone) - sent, 1))
        return {"rounds": rounds, "entry_to_feed_s": seconds, "max_s": max(seconds)}
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--entries", type=int, default=200)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root, project = setup(args.persons)
    try:
        out = {"latency": latency(project, args.entries, args.clients)}
        if args.daemon:
            out["daemon"] = daemon(root, project, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return
    lat = out["latency"]
    print("| measure | value |\n|---|---|")
    print(f"| POST /v1/records p50 / p99 ({lat['clients']} clients, {lat['entries']} entries) | "
          f"{lat['p50_ms']} ms / {lat['p99_ms']} ms |")
    print(f"| entries/s | {lat['entries_per_s']} |")
    if "daemon" in out:
        print(f"| entry to another station's feed file, daemon running (s) | {out['daemon']['entry_to_feed_s']} |")


if __name__ == "__main__":
    main()
