"""Record entry with the hub running (`enteronce hub`: daemon, UI, feed API), no CLI command typed:
a record entered with POST /v1/records at station A reaches station B's feed (its outbox files and
its API events). The hub's API publishes it itself (pipelines/entry_publisher.py: the station's
run with its quality checks, publication and feeds in runs tagged "front desk entry", in the hub's
Dagster instance), and the daemon's drop sensor launches no station run for it. Embedded profile (SQLite warehouse and
instance); tests/test_daemon.py runs the daemon's own machinery on PostgreSQL too.
The time from the entry's answer to B's event is printed (not asserted: speed is for benchmarks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from pipelines.instance import open_instance
from pipelines.project import Project
from test_daemon import A, A_AREA, ENTERONCE, WAIT_SECONDS, base_network, cli, free_port, resident, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


def grant_entry(root: Path) -> None:
    """Give station A's officer a subscriber of its own with the entry grant."""
    path = root / "subscriptions.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    template = next(s for s in doc["subscribers"] if s["kind"] == "station")
    doc["subscribers"].append({**template, "id": A, "name": "小龙坎派出所", "station_id": A, "entity_types": ["person"],
                               "scope": {"area_codes": [A_AREA], "own_records": True},
                               "query": {"scope": {"own_records": True}, "entry": True}})
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_an_entered_record_reaches_another_stations_feed_with_only_the_daemon(base_network: Path,  # noqa: F811
                                                                               tmp_path: Path) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    grant_entry(root)
    env = {**os.environ, "ENTERONCE_CONFIG": str(root)}
    env.pop("DAGSTER_HOME", None)
    env.pop("ENTERONCE_WAREHOUSE_URL", None)
    project = Project.load(root)
    b = project.stations.stations[1]
    b_area = f"{b.jurisdiction[0]}001"[:12]
    done = cli(env, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    tokens = {sid: cli(env, "token", "issue", "--subscriber", sid).stdout.strip().splitlines()[-1] for sid in (A, b.id)}

    ports = {"ui": free_port(), "api": free_port()}
    hub = subprocess.Popen([ENTERONCE, "hub", "--port", str(ports["ui"]), "--api-port", str(ports["api"])],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    api = f"http://127.0.0.1:{ports['api']}"
    outbox = project.data_dir / "outbox" / b.id
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{api}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, WAIT_SECONDS, "the hub's API", hub)

        def enter(record: dict) -> dict:
            r = httpx.post(f"{api}/v1/records", json={"entity_type": "person", "record": record},
                           headers={"Authorization": f"Bearer {tokens[A]}"}, timeout=60)
            assert r.status_code == 201, r.text
            return r.json()

        def delivered(op: str, phone: str, entity: str | None = None):
            """Events of B's outbox files with `op` and this phone in `after` (an update carries
            only the changed fields), of `entity` when given, else of the entered resident."""
            def find() -> list[dict]:
                hits = []
                for path in sorted(outbox.glob("events_*.jsonl")):
                    for line in path.read_text(encoding="utf-8").splitlines():
                        e = json.loads(line)
                        after = e.get("after") or {}
                        if e.get("op") != op or not str(after.get("phone", "")).endswith(phone[-4:]):
                            continue
                        if (entity and e.get("entity_id") == entity) or (not entity and after.get("name_norm") == "欧阳青云"):
                            hits.append(e)
                return hits
            return find

        home = f"重庆市{b.name}辖区幸福路9号3栋2单元502室"
        first = resident(local_id="FD-1", address=home, area_code=b_area, source_updated_at=None)
        first["sex"] = "男" if int(first["id_number"][16]) % 2 else "女"  # as the ID says: else quarantined
        enter(first)  # the first one also waits for the daemon to start its loops
        [created] = wait_for(delivered("create", first["phone"]), WAIT_SECONDS, f"create event of the entered record in {outbox}", hub)

        started = time.monotonic()
        answer = enter({**first, "phone": "13911112222"})  # a correction of the station's own record
        events = wait_for(delivered("update", "13911112222", created["entity_id"]), WAIT_SECONDS, "update event of the correction", hub)
        elapsed = time.monotonic() - started
        assert events[0]["after"]["phone"] == "139****2222"  # masked per B's role
        print(f"entry ({answer['batch_id']}) to {b.id}'s feed file under the daemon: {elapsed:.1f} s")

        page = httpx.get(f"{api}/v1/feeds/{b.id}/events", params={"after": 0, "limit": 1000},
                         headers={"Authorization": f"Bearer {tokens[b.id]}"}, timeout=30).json()
        assert any((e.get("after") or {}).get("phone") == "139****2222" for e in page["events"])

        # who published: the API's runs, in the instance the UI shows; no station run for A's entries.
        # The feed files are written before their run is marked finished: wait for every entry run
        # to end, then each must have succeeded.
        def finished() -> list | None:
            records = [r.dagster_run for r in open_instance(project).get_run_records()]
            mine = [r for r in records if r.tags.get("enteronce/launched_by") == "front desk entry"]
            return records if mine and all(r.is_finished for r in mine) else None

        runs = wait_for(finished, WAIT_SECONDS, "the end of the entries' runs", hub)
        by_entry = [r for r in runs if r.tags.get("enteronce/launched_by") == "front desk entry"]
        assert {r.tags.get("enteronce/stage") for r in by_entry} == {"ingest", "publication", "feeds"}
        assert all(r.status.value == "SUCCESS" for r in by_entry), [
            (r.tags.get("enteronce/stage"), r.status.value) for r in by_entry]
        assert not [r for r in runs if r.tags.get("dagster/sensor_name") == "station_drops_sensor"
                    and r.tags.get("dagster/partition") == A]
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        try:
            hub.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
