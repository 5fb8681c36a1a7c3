"""Secrets never reach Dagster's storage, logs or the hub's files: a warehouse password given to
`enteronce run` appears nowhere under the data folder (the Dagster instance's settings, compute logs,
outbox, report, caches) nor in Dagster's own database after a whole run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.simulate import simulate_network

PASSWORD = "s3cret-Pw-7f2c9"  # PostgreSQL here trusts local connections, so any password works


@pytest.fixture()
def instance_db(pg_server: sa.Engine) -> str:
    name = f"enteronce_dagster_{uuid.uuid4().hex[:10]}"
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield pg_server.url.set(database=name, password=PASSWORD).render_as_string(hide_password=False)
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.slow
def test_passwords_are_stored_nowhere(tmp_path: Path, pg_url: str, instance_db: str) -> None:
    """The production profile: warehouse and Dagster instance on PostgreSQL, both with passwords."""
    root = simulate_network(tmp_path / "net", stations=2, persons=200, seed=3).out
    url = sa.make_url(pg_url).set(password=PASSWORD).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_HOME", "ENTERONCE_WAREHOUSE_URL", "ENTERONCE_INSTANCE_DB_PASSWORD")}
    env["ENTERONCE_INSTANCE_DB"] = instance_db
    done = subprocess.run([str(Path(sys.executable).parent / "enteronce"), "run", "--config", str(root),
                           "--warehouse", url], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a batch held, still a whole run
    assert PASSWORD not in done.stdout + done.stderr

    leaks = [p for p in (root / "data").rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaks == []  # the Dagster instance's settings included
    # nor in what Dagster keeps in its own database: runs (their config), event logs, sensor state
    engine = sa.create_engine(sa.make_url(instance_db).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        tables = conn.execute(sa.text("select table_name from information_schema.tables "
                                      "where table_schema = 'public'")).scalars().all()
        assert {"runs", "event_logs"} <= set(tables)
        for table in tables:
            hits = conn.execute(sa.text(f'select count(*) from "{table}" t where t::text like :p'),
                                {"p": f"%{PASSWORD}%"}).scalar()
            assert hits == 0, table
    engine.dispose()
