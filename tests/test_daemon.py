"""The hub as a service: with `enteronce hub` running (Dagster daemon, UI, feed API) and no CLI
command typed, a drop at one station reaches another station's feed.

The real thing, in subprocesses: the daemon's sensors and automation launch the runs, a station
whose first ingest fails is shown as failed and holds nobody back, drops at two neighbouring
stations go in one range run that the daemon launches and executes, and the CLI's earlier runs
are in the same instance (the drop sensor does not ingest them again). On SQLite (instance and
warehouse, the embedded default) and on PostgreSQL (both, the production profile).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
import yaml

from pipelines.instance import instance_home
from pipelines.project import Project
from live_processes import processes_mentioning
from scenario_network import add_csv_station, an_id_number, network_with_csv_station, write_drop

A, A_AREA = "s9001", "500106001"  # a station whose CSV export the test writes
A2, A2_AREA = "s9003", "500106002"  # its neighbour in partition order, a CSV station too
BROKEN = "s9002"  # a station whose source table does not exist: its first ingest fails
WAIT_SECONDS = 300  # drop to feed file, bounded (about 30-60 s on 2 cores)
ENTERONCE = str(Path(sys.executable).parent / "enteronce")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("daemon"), stations=3, persons=300, seed=7,
                                    station_id=A, jurisdiction=A_AREA)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def profile(request: pytest.FixtureRequest) -> dict[str, str]:
    """Warehouse and Dagster instance storage: both embedded, or both on PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    pg_server = request.getfixturevalue("pg_server")
    warehouse = request.getfixturevalue("pg_url")
    name = f"enteronce_dagster_{uuid.uuid4().hex[:10]}"
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield {"ENTERONCE_WAREHOUSE_URL": warehouse,
           "ENTERONCE_INSTANCE_DB": pg_server.url.set(database=name).render_as_string(hide_password=False)}
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([ENTERONCE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def resident(**changes) -> dict:
    return {"local_id": "M1", "name": "欧阳青云", "sex": "男", "birth_date": "1990-03-07",
            "id_number": an_id_number(), "phone": "13912345678",
            "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室",
            "area_code": f"{A_AREA}001", "source_updated_at": "2026-11-01 09:00:00", **changes}


def neighbour(**changes) -> dict:
    """A resident of A2."""
    return {"local_id": "N1", "name": "司马长风", "sex": "男", "birth_date": "1985-06-12",
            "id_number": an_id_number("19850612"), "phone": "13812345678",
            "address": "重庆市沙坪坝区石井坡街道中心湾社区中心湾路12号1栋3单元301室",
            "area_code": f"{A2_AREA}001", "source_updated_at": "2026-11-01 09:00:00", **changes}


def add_broken_station(root: Path) -> None:
    config = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    config["stations"].append({
        "id": BROKEN, "name": "故障派出所", "jurisdiction": ["500199001"],
        "sources": [{"name": "residents", "entity": "person", "kind": "sql", "url": "sqlite:///broken.sqlite",
                     "table": "no_such_table", "watermark": "gxsj", "columns": {"rybh": "local_id"}}]})
    (root / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    sa.create_engine(f"sqlite:///{root / 'broken.sqlite'}").connect().close()


def wait_for(predicate, timeout: float, what: str, hub: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        assert hub.poll() is None, f"the hub stopped (exit {hub.returncode}) while waiting for {what}"
        time.sleep(1)
    raise AssertionError(f"no {what} within {timeout} s")


def test_a_drop_reaches_another_stations_feed_with_only_the_daemon(base_network: Path, tmp_path: Path,
                                                                   profile: dict[str, str]) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    add_csv_station(root, A2, "石井坡派出所", A2_AREA)
    env = {**os.environ, "ENTERONCE_CONFIG": str(root), **profile}
    env.pop("DAGSTER_HOME", None)
    project = Project.load(root, profile.get("ENTERONCE_WAREHOUSE_URL"))
    b = project.stations.stations[1]  # a simulated station with its own subscription
    b_area = f"{b.jurisdiction[0]}001"[:12]

    # before the hub runs: the resident entered at A only, loaded by the CLI into the same instance
    write_drop(root, A, [resident()])
    write_drop(root, A2, [neighbour()])
    done = cli(env, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    token = cli(env, "token", "issue", "--subscriber", b.id).stdout.strip().splitlines()[-1]
    add_broken_station(root)

    ports = {"ui": free_port(), "api": free_port()}
    hub = subprocess.Popen([ENTERONCE, "hub", "--port", str(ports["ui"]), "--api-port", str(ports["api"])],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        outbox = project.data_dir / "outbox" / b.id
        new_home = f"重庆市{b.name}辖区幸福路9号3栋2单元502室"
        # a station's run is started by the sensor once the daemon is up; the broken one fails
        instance = dg.DagsterInstance.from_config(str(instance_home(project)))
        wait_for(lambda: instance.get_runs(dg.RunsFilter(tags={"dagster/partition": BROKEN},
                                                         statuses=[dg.DagsterRunStatus.FAILURE])),
                 WAIT_SECONDS, f"failed ingest run of {BROKEN}", hub)

        # the resident moves into B's area; station A's next export says so, and A2 registers a
        # newborn at the same moment (one sensor tick sees both: one range run); nobody types anything
        started = time.monotonic()
        write_drop(root, A2, [neighbour(), neighbour(local_id="N2", name="司马小雨", sex="女", birth_date="2026-10-02",
                                                     id_number=an_id_number("20261002"))])
        write_drop(root, A, [resident(address=new_home, area_code=b_area, source_updated_at="2026-11-20 09:00:00")])

        def delivered() -> list[dict]:
            for path in sorted(outbox.glob("events_*.jsonl")):
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
                hits = [r for r in rows if (r.get("after") or {}).get("address") == new_home]
                if hits:
                    return hits
            return []

        events = wait_for(delivered, WAIT_SECONDS, f"event with the new address in {outbox}", hub)
        elapsed = time.monotonic() - started
        assert events[0]["scope"] == "entered" and events[0]["after"]["area_code"] == b_area
        assert events[0]["after"]["phone"] == "139****5678"  # masked per B's role
        print(f"drop at {A} to {b.id}'s feed file under the daemon: {elapsed:.1f} s")

        # the same update through the feed API, which the hub serves meanwhile
        page = httpx.get(f"http://127.0.0.1:{ports['api']}/v1/feeds/{b.id}/events", params={"after": 0},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        assert any((e.get("after") or {}).get("address") == new_home for e in page["events"])

        # the CLI's runs are in the hub's instance: the sensor ingested only what was new
        ingests = instance.get_runs(dg.RunsFilter(tags={"enteronce/stage": "ingest"}))
        order = instance.get_dynamic_partitions("stations")
        by_station: dict[str, list[str]] = {}
        for run in ingests:  # a run's station, or its range of stations
            first = run.tags.get("dagster/partition") or run.tags["dagster/asset_partition_range_start"]
            last = run.tags.get("dagster/partition") or run.tags["dagster/asset_partition_range_end"]
            for station in order[order.index(first):order.index(last) + 1]:
                by_station.setdefault(station, []).append(run.tags.get("dagster/sensor_name", "cli"))
        assert {s: sorted(v) for s, v in by_station.items() if "station_drops_sensor" in v} == {
            A: ["cli", "station_drops_sensor"], A2: ["cli", "station_drops_sensor"], BROKEN: ["station_drops_sensor"]}
        assert len(by_station) == len(project.station_ids) + 1  # every station once by the CLI, plus BROKEN
        assert sum(1 for run in ingests if "dagster/sensor_name" not in run.tags) == 1  # the CLI's: one range run
        # the daemon launched A and A2 as one range run, which executed both stations' drops
        ranged = [run for run in ingests if "dagster/sensor_name" in run.tags
                  and run.tags.get("dagster/asset_partition_range_start") == A]
        assert [(r.tags["dagster/asset_partition_range_end"], r.status) for r in ranged] == [
            (A2, dg.DagsterRunStatus.SUCCESS)]
        store = project.open_warehouse()
        try:
            with store.engine.connect() as conn:
                loaded = conn.execute(sa.text("SELECT station_id, rows_read, rows_loaded, rows_unchanged FROM batches "
                                              "WHERE status = 'loaded' AND station_id IN (:a, :a2) ORDER BY started_at"),
                                      {"a": A, "a2": A2}).all()
        finally:
            store.dispose()
        # A2's second export repeats its first resident unchanged: counted, the newborn loaded
        assert sorted(loaded) == [(A, 1, 1, 0), (A, 1, 1, 0), (A2, 1, 1, 0), (A2, 2, 1, 1)]
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        out, _ = hub.communicate(timeout=60)
    assert hub.returncode == 0, out
    assert "hub stopped" in out
    # nothing the hub started outlives it (a code server started while the hub stopped once did)
    assert processes_mentioning(str(root)) == []
