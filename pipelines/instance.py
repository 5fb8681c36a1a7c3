"""The one Dagster instance of a warehouse, shared by the CLI, the daemon and the UI.

Runs that `enteronce run` makes are only worth something to a data engineer if the UI shows them
and the sensors' view moves with them, so every entry point opens the same instance folder: the
user's DAGSTER_HOME when set (their dagster.yaml is theirs), else `<state folder>/dagster_home`,
whose dagster.yaml `enteronce` writes from the repository's `dagster.yaml` (plus PostgreSQL
storage for the production profile). Nothing goes into the repository itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from core.errors import ConfigError
from pipelines.project import Project

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"
INSTANCE_DB_ENV = "ENTERONCE_INSTANCE_DB"
INSTANCE_PASSWORD_ENV = "ENTERONCE_INSTANCE_DB_PASSWORD"
INGEST_POOL, PUBLICATION_POOL = "ingest", "publication"


def instance_home(project: Project) -> Path:
    """Where the instance lives: DAGSTER_HOME if the user set one, else the warehouse's own."""
    own = os.environ.get("DAGSTER_HOME")
    return Path(own).resolve() if own else project.data_dir / "dagster_home"


def managed(project: Project) -> bool:
    return not os.environ.get("DAGSTER_HOME")


def _postgres_storage(url: str) -> dict:
    """dagster-postgres storage settings for a PostgreSQL URL, without its password.

    The password stays in the environment (INSTANCE_PASSWORD_ENV, which the hub passes to its
    services): Dagster's settings are a file under the data folder, and no secret is written
    there. The driver is named because dagster-postgres's statements are written for psycopg2
    (client-side parameters, e.g. in NOTIFY), while SQLAlchemy 2.1 reads postgresql:// as psycopg 3.
    """
    try:
        u = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"instance database {url!r}: {exc}") from None
    if u.get_backend_name() != "postgresql" or not u.database:
        raise ConfigError(f"instance database {u.render_as_string(hide_password=True)}: "
                          "Dagster's instance storage needs a PostgreSQL database (postgresql://user@host:port/db)")
    db = {"username": u.username or "postgres", "hostname": u.host or "localhost", "port": u.port or 5432,
          "db_name": u.database, "scheme": "postgresql+psycopg2", "params": dict(u.query)}
    if u.password:
        os.environ[INSTANCE_PASSWORD_ENV] = u.password
        db["password"] = {"env": INSTANCE_PASSWORD_ENV}
    return {"postgres": {"postgres_db": db}}


def render_config(instance_db: str | None, current: dict | None = None) -> dict:
    """The instance settings: the repository's template, with PostgreSQL storage when asked for
    (or kept from the folder's current file, so a CLI command does not undo the hub's choice)."""
    if not TEMPLATE.is_file():
        raise ConfigError(f"{TEMPLATE}: the instance template is missing; set DAGSTER_HOME to an instance of your own")
    config = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8")) or {}
    if instance_db:
        config["storage"] = _postgres_storage(instance_db)
    elif current and "storage" in current:
        config["storage"] = current["storage"]
    return config


def _needs_password(config: dict) -> bool:
    db = (config.get("storage") or {}).get("postgres", {}).get("postgres_db", {})
    return db.get("password") == {"env": INSTANCE_PASSWORD_ENV}


def prepare_home(project: Project, instance_db: str | None = None) -> Path:
    """Create the managed instance folder and its dagster.yaml; returns the folder.

    The file is rewritten only when its content changes (a running daemon reads it once).
    """
    home = instance_home(project)
    instance_db = instance_db or os.environ.get(INSTANCE_DB_ENV) or None
    if not managed(project):
        if instance_db:
            raise ConfigError(f"DAGSTER_HOME={home} is set: put the PostgreSQL storage into its dagster.yaml "
                              f"instead of passing --instance-db / {INSTANCE_DB_ENV}")
        return home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    current = yaml.safe_load(target.read_text(encoding="utf-8")) if target.is_file() else None
    config = render_config(instance_db, current)
    if _needs_password(config) and not os.environ.get(INSTANCE_PASSWORD_ENV):
        raise ConfigError(f"{target}: the Dagster instance's PostgreSQL database needs its password, which is "
                          f"never written to disk: set {INSTANCE_DB_ENV} (the whole URL) or {INSTANCE_PASSWORD_ENV}")
    text = ("# Written by enteronce from the repository's dagster.yaml; edits are overwritten.\n"
            + yaml.safe_dump(config, sort_keys=False))
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    return home


# Dagster captures an in-process run's output by pointing the whole process's stdout and stderr
# (dup2) at files that a `tail -F` child mirrors back. From a thread of a serving process (the
# entry publisher, pipelines/entry_publisher.py) that takes every other thread's output into the
# run's logs, and the tails inherit the process's signal dispositions: once a run in the main
# thread has left SIGTERM ignored (Dagster maps SIGTERM to SIGINT's handler, ignored in a process
# started in the background), each tail ignores its SIGTERM and every run waits out a 30-second
# timeout per captured stream (about a minute a run), leaving the tails behind. Such runs keep
# their event log; their output stays the process's own.
NO_OUTPUT_CAPTURE = {"compute_logs": {"module": "dagster.core.storage.noop_compute_log_manager",
                                      "class": "NoOpComputeLogManager"}}


def open_instance(project: Project, instance_db: str | None = None, *, capture_output: bool = True
                  ) -> dg.DagsterInstance:
    """The warehouse's instance, with its pools set up (see `ensure_pools`); without `capture_output`,
    runs made through it leave the process's stdout and stderr alone (NO_OUTPUT_CAPTURE)."""
    home = prepare_home(project, instance_db)
    if capture_output:
        instance = dg.DagsterInstance.from_config(str(home))
    else:
        from dagster._core.instance.ref import InstanceRef  # from_config takes no overrides

        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=NO_OUTPUT_CAPTURE))
    ensure_pools(instance, ingest_limit_for(project.warehouse_url))
    return instance


def ingest_limit_for(warehouse_url: str, wanted: int = 4) -> int:
    """SQLite takes one writer at a time: parallel station ingests would only queue on its lock."""
    return 1 if sa.make_url(warehouse_url).get_backend_name() == "sqlite" else wanted


def ensure_pools(instance: dg.DagsterInstance, ingest: int, *, force: bool = False) -> None:
    """Give the two pools their limits unless someone (the UI, `dagster instance concurrency`)
    already set them; `force` (the hub's --parallel) sets them anyway."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    limits = {p.name: p for p in storage.get_pool_limits()}
    for pool, limit in ((INGEST_POOL, ingest), (PUBLICATION_POOL, 1)):
        have = limits.get(pool)
        if force or have is None or have.from_default:
            storage.set_concurrency_slots(pool, limit)


def announce(project: Project, asset: str, *, partition: str | None = None, description: str,
             metadata: dict | None = None) -> None:
    """Record, in the warehouse's instance, that a CLI command changed an asset's data outside a
    run (a held batch released, a reviewer's judgement): the daemon's automation takes it from
    there, as it would after a run, so the change is published without anyone typing `run`."""
    instance = open_instance(project)
    try:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=asset, partition=partition, description=description, metadata=metadata or {}))
    finally:
        instance.dispose()
