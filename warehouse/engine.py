"""Connecting to the warehouse and bringing its schema to head with Alembic."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

MIGRATIONS = Path(__file__).with_name("migrations")


# A connection's page cache (KiB). Reads go through the system's file cache anyway; a pooled
# connection keeps its cache for as long as the process lives, and several of them are pooled.
# A large write transaction raises it for its own duration (warehouse.sqlite_memory).
CACHE_KIB = 64_000
# A new database file's page size. A golden row and its version each carry a record and its
# provenance (1-2 KB): 4 KB pages hold two or three of them, and a large write spends much of its
# time per page (README, "Measured: the whole `enteronce run`").
PAGE_SIZE = 16_384


def create_engine(url: str) -> sa.Engine:
    """An engine tuned per dialect: SQLite gets WAL and foreign keys, as it is the embedded default."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(sa_url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file's; an existing one keeps its own
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            cur.close()

        return engine
    return sa.create_engine(sa_url, pool_pre_ping=True)


def alembic_config(engine: sa.Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Upgrade to head; safe to call on every start (a no-op when already current)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
