"""Two `enteronce run` on one warehouse at once leave the state of one run, and the one that
waited says so: the warehouse's run lock (an advisory lock on PostgreSQL, a lock file beside an
SQLite warehouse), with each pipeline step holding the warehouse while it writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.simulate import simulate_network
from pipelines.project import Project

ENTERONCE = str(Path(sys.executable).parent / "enteronce")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_network(tmp_path_factory.mktemp("twice"), stations=4, persons=800, seed=11).out


@pytest.fixture()
def reference_url(warehouse_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second, empty warehouse of the same kind, for the one clean run to compare with."""
    if warehouse_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.sqlite'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"enteronce_ref_{uuid.uuid4().hex[:10]}"
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.url.set(database=name).render_as_string(hide_password=False)
    with server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def start_run(root: Path, url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.Popen([ENTERONCE, "run", "--config", str(root), "--warehouse", url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def state(url: str, root: Path) -> dict[str, list]:
    """What the pipeline leaves behind, minus times and surrogate keys, in a stable order."""
    queries = {
        "batches": "select batch_id, status, rows_read, rows_loaded, rows_quarantined from batches",
        "raw": "select count(*) from raw_records",
        "quarantine": "select batch_id, row_number, reason from quarantine",
        "members": "select record_key, entity_id from entity_membership",
        "golden": "select entity_id, version from golden_records",
        "events": "select seq, entity_type, entity_id, op, version from change_events",
        "deliveries": "select subscriber_id, channel, kind, seq_from, seq_to, event_count from feed_deliveries",
        "cursors": "select subscriber_id, channel, acked_seq, snapshot_seq from feed_cursors",
        "tasks": "select task_id, status from correction_tasks",
        "validated": "select suite, batch_id from validation_runs where batch_id is not null",
    }
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = {name: sorted(tuple(r) for r in conn.execute(sa.text(q))) for name, q in queries.items()}
    engine.dispose()
    outbox = Project.load(root, url).data_dir / "outbox"
    out["files"] = sorted(str(p.relative_to(outbox)) for p in outbox.rglob("*") if p.is_file())
    return out


def test_two_runs_at_once_leave_the_state_of_one(network: Path, tmp_path: Path, warehouse_url: str,
                                                 reference_url: str) -> None:
    root = tmp_path / "net"
    shutil.copytree(network, root)
    ref = tmp_path / "ref"
    shutil.copytree(network, ref)
    alone = start_run(ref, reference_url)
    out, err = alone.communicate(timeout=600)
    assert alone.returncode in (0, 1) and "Traceback" not in out + err, out + err  # 1: a batch is held

    first, second = start_run(root, warehouse_url), start_run(root, warehouse_url)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outs, strict=True):
        assert proc.returncode == alone.returncode, out + err
        assert "Traceback" not in out + err
    waited = [err for _, err in outs if "waiting" in err]
    assert len(waited) == 1, outs  # exactly one of them was told why it waited
    assert "another run holds the warehouse" in waited[0] and "enteronce run" in waited[0]

    twice, once = state(warehouse_url, root), state(reference_url, ref)
    assert twice["events"] and twice["deliveries"] and twice["files"]
    assert twice == once


def test_a_run_told_not_to_wait_says_who_holds_the_warehouse(network: Path, tmp_path: Path) -> None:
    root = tmp_path / "net"
    shutil.copytree(network, root)
    url = Project.load(root).open_warehouse().url
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, sqlalchemy as sa; from warehouse.locks import warehouse_lock\n"
         f"with warehouse_lock(sa.create_engine({url!r}), 'run', purpose=\"enteronce run (a colleague's)\"):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run([ENTERONCE, "run", "--config", str(root), "--no-wait"], capture_output=True,
                                text=True, timeout=120)
    finally:
        holder.communicate(input="", timeout=30)
    assert result.returncode == 3, result.stdout + result.stderr
    message = result.stderr
    assert "not started" in message and "a colleague's" in message and str(holder.pid) in message
    assert "Traceback" not in message
