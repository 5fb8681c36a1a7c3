"""Shared fixtures: real database servers, skipped with a reason locally, required in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

PG_ADMIN_URL = os.environ.get(
    "ENTERONCE_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get(
    "ENTERONCE_TEST_MARIADB_URL", "mysql+pymysql://root:@127.0.0.1:3306/test?charset=utf8mb4"
)


@pytest.fixture(autouse=True, scope="session")
def _own_dagster_instance() -> Iterator[None]:
    """A DAGSTER_HOME in the user's shell names their own instance; the tests' runs go to each test
    project's own instance (under its data folder) instead."""
    before = os.environ.pop("DAGSTER_HOME", None)
    yield
    if before is not None:
        os.environ["DAGSTER_HOME"] = before


@pytest.fixture(autouse=True, scope="session")
def _one_gx_process_per_test_process() -> Iterator[None]:
    """The pipeline validates in a Great Expectations process of its own, ended between phases
    (quality.gx_worker); across the many small pipelines of a test session it is kept instead, so
    GX is imported once per test process rather than once per run (tests/test_gx_worker.py checks
    the default lifecycle)."""
    from quality import gx_worker

    before = os.environ.get(gx_worker.MODE_ENV)
    os.environ[gx_worker.MODE_ENV] = "process"
    yield
    gx_worker.close(force=True)
    if before is None:
        os.environ.pop(gx_worker.MODE_ENV, None)
    else:
        os.environ[gx_worker.MODE_ENV] = before


def _server_or_skip(admin_url: str, what: str) -> sa.Engine:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "server absent"
        engine.dispose()
        reason = f"{what} not reachable at {engine.url.render_as_string(hide_password=True)}: {exc.__class__.__name__}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)")
        pytest.skip(reason)
    return engine


@pytest.fixture(scope="session")
def pg_server() -> Iterator[sa.Engine]:
    engine = _server_or_skip(PG_ADMIN_URL, "PostgreSQL")
    yield engine
    engine.dispose()


@contextmanager
def fresh_pg_database(pg_server: sa.Engine) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped on leaving (for module fixtures too)."""
    name = f"enteronce_t_{uuid.uuid4().hex[:12]}"
    with pg_server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg_server.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture()
def pg_url(pg_server: sa.Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[sa.Engine]:
    engine = _server_or_skip(MARIADB_ADMIN_URL, "MariaDB")
    yield engine
    engine.dispose()


@pytest.fixture()
def mariadb_url(mariadb_server: sa.Engine) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (a station's own system), dropped afterwards."""
    name = f"enteronce_t_{uuid.uuid4().hex[:12]}"
    with mariadb_server.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = mariadb_server.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with mariadb_server.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Each warehouse test runs on the embedded default and on the production database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_warehouse_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A warehouse for a whole module's tests (an expensive resolved network), on the embedded
    default and on the production database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.sqlite'}"
    else:
        with fresh_pg_database(request.getfixturevalue("pg_server")) as url:
            yield url
