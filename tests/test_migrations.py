"""The Alembic migrations produce exactly the schema that warehouse/schema.py declares.

An empty database is brought to head with the project's own entry point (Warehouse.migrate) and
compared with `warehouse.schema.metadata` by Alembic's autogenerate comparison, on SQLite and on
PostgreSQL. What is compared:

- tables (added / removed), columns (added / removed), nullability, column types
  (`compare_type=True`: Alembic's per-dialect comparison of the reflected type with the declared one,
  including String lengths), server defaults (`compare_server_default=True`: the declared
  `server_default` text against the reflected one), indexes (name, columns, uniqueness), unique
  constraints and foreign keys;
- in addition, what autogenerate does not look at: on PostgreSQL, that exactly the primary keys
  SQLAlchemy treats as autoincrementing are SERIAL/identity columns (and no others), and check
  constraints by name.

A last test drops an index from a migrated database to show the comparison does report drift.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from warehouse.schema import metadata
from warehouse.store import Warehouse


def _diff(engine: sa.Engine) -> list:
    """What the migrated database lacks or has beyond the schema; an index declared for another
    dialect only (`Index.ddl_if(dialect=...)`, which Alembic does not read) is not a difference."""
    other = {ix.name for table in metadata.tables.values() for ix in table.indexes
             if getattr(ix, "_ddl_if", None) is not None and ix._ddl_if.dialect not in (None, engine.dialect.name)}

    def elsewhere(diff) -> bool:  # Alembic compares copies of the indexes: by name
        return isinstance(diff, tuple) and diff[0] in ("add_index", "remove_index") and diff[1].name in other

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return [d for d in compare_metadata(ctx, metadata) if not elsewhere(d)]


def _migrated(url: str) -> Warehouse:
    return Warehouse(url).migrate()


def test_migrations_produce_exactly_schema(warehouse_url: str) -> None:
    wh = _migrated(warehouse_url)
    try:
        assert _diff(wh.engine) == []
        tables = set(sa.inspect(wh.engine).get_table_names())
        assert tables - {"alembic_version"} == set(metadata.tables)
    finally:
        wh.dispose()


def test_migrations_autoincrement_and_checks_match_schema(warehouse_url: str) -> None:
    wh = _migrated(warehouse_url)
    try:
        insp = sa.inspect(wh.engine)
        problems = []
        for table in metadata.sorted_tables:
            declared_checks = {
                ck.name for ck in table.constraints if isinstance(ck, sa.CheckConstraint)
            }
            reflected_checks = {ck["name"] for ck in insp.get_check_constraints(table.name)}
            if declared_checks != reflected_checks:
                problems.append((table.name, "check constraints", declared_checks, reflected_checks))
            if wh.dialect != "postgresql":
                continue  # SQLite: an INTEGER PRIMARY KEY is the rowid either way
            reflected = {c["name"]: c for c in insp.get_columns(table.name)}
            for col in table.primary_key.columns:
                info = reflected[col.name]
                serial = bool(info.get("identity")) or str(info.get("default") or "").startswith(
                    "nextval("
                )
                if serial != (col is table.autoincrement_column):
                    problems.append((table.name, col.name, "autoincrement", serial))
        assert problems == []
    finally:
        wh.dispose()


def test_comparison_reports_drift(warehouse_url: str) -> None:
    wh = _migrated(warehouse_url)
    try:
        index = next(ix for t in metadata.sorted_tables for ix in t.indexes if ix.name)
        with wh.engine.begin() as conn:
            conn.execute(sa.text(f'DROP INDEX "{index.name}"'))
        diff = _diff(wh.engine)
        assert [(d[0], d[1].name) for d in diff] == [("add_index", index.name)]
    finally:
        wh.dispose()
