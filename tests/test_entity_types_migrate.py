"""A project type's record table follows its declaration: migrate creates it, adds the columns a
new field brings (rows kept), and refuses - naming the type, the field and what to do - a field
whose type changed or that was removed, since either would lose stored data. SQLite and
PostgreSQL (ALTER TABLE through Alembic's operations)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.errors import ConfigError
from entity_resolution.entity_types import load_registry
from pipelines.project import project_record_tables
from warehouse import Warehouse

BASE = """\
version: 1
types:
  parcel:
    description: Parcels at a depot
    fields:
      local_id: {type: text, required: true}
      sender: {type: text, required: true}
      weight: {type: number}
{extra}    id_prefix: Q
"""


def _store(tmp_path: Path, url: str, version: str, extra: str = "") -> Warehouse:
    """The warehouse as a project declaring `parcel` (+ `extra` field lines) opens it: migrated."""
    folder = tmp_path / version
    folder.mkdir()
    (folder / "entity_types.yaml").write_text(BASE.replace("{extra}", extra), encoding="utf-8")
    return Warehouse(url, record_tables=project_record_tables(load_registry(folder))).migrate()


def _columns(store: Warehouse, table: str) -> dict[str, str]:
    return {c["name"]: type(c["type"]).__name__ for c in sa.inspect(store.engine).get_columns(table)}


def test_migrate_adds_a_new_field_and_keeps_the_rows(tmp_path: Path, warehouse_url: str) -> None:
    first = _store(tmp_path, warehouse_url, "v1")
    assert {"sender", "weight"} <= set(_columns(first, "parcel_records")) and "sent_on" not in _columns(
        first, "parcel_records")
    t = first.record_table("parcel")
    with first.transaction() as conn:
        conn.execute(t.insert().values(record_key="d1:1", station_id="d1", local_id="1", batch_id="b1",
                                       row_number=1, row_hash="h", sender="Ann", weight=2.5))
    first.dispose()

    second = _store(tmp_path, warehouse_url, "v2", "      sent_on: {type: date}\n      fragile: {type: boolean}\n")
    cols = _columns(second, "parcel_records")
    # the new fields with the columns their standardisers write (date and boolean: a validity flag)
    assert {"sent_on", "sent_on_valid", "fragile", "fragile_valid"} <= set(cols)
    t = second.record_table("parcel")
    with second.transaction() as conn:
        conn.execute(t.insert().values(record_key="d1:2", station_id="d1", local_id="2", batch_id="b2",
                                       row_number=1, row_hash="h2", sender="Bo", sent_on=dt.date(2026, 1, 2),
                                       sent_on_valid=True, fragile=True))
    with second.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.local_id, t.c.sender, t.c.weight, t.c.sent_on, t.c.fragile)
                            .order_by(t.c.local_id)).all()
    assert [tuple(r) for r in rows] == [("1", "Ann", 2.5, None, None), ("2", "Bo", None, dt.date(2026, 1, 2), True)]
    second.dispose()
    # migrating again with the same declaration changes nothing
    again = _store(tmp_path, warehouse_url, "v2b", "      sent_on: {type: date}\n      fragile: {type: boolean}\n")
    assert _columns(again, "parcel_records") == cols
    again.dispose()


def test_migrate_refuses_a_changed_type_naming_the_type_and_field(tmp_path: Path, warehouse_url: str) -> None:
    _store(tmp_path, warehouse_url, "v1").dispose()
    changed = BASE.replace("weight: {type: number}", "weight: {type: date}")
    folder = tmp_path / "v2"
    folder.mkdir()
    (folder / "entity_types.yaml").write_text(changed.replace("{extra}", ""), encoding="utf-8")
    store = Warehouse(warehouse_url, record_tables=project_record_tables(load_registry(folder)))
    with pytest.raises(ConfigError) as err:
        store.migrate()
    text = str(err.value)
    assert "entity type 'parcel'" in text and "parcel_records" in text
    assert "field 'weight'" in text and "number" in text and "date" in text
    assert "new field name" in text and "ALTER TABLE parcel_records ALTER COLUMN weight" in text
    # nothing was changed: the column is still a number
    assert _columns(store, "parcel_records")["weight"] in {"FLOAT", "DOUBLE_PRECISION", "REAL"}
    store.dispose()


def test_migrate_refuses_a_removed_field(tmp_path: Path, warehouse_url: str) -> None:
    _store(tmp_path, warehouse_url, "v1", "      sent_on: {type: date}\n").dispose()
    store = Warehouse(warehouse_url, record_tables=project_record_tables(load_registry(_folder(tmp_path, "v2"))))
    with pytest.raises(ConfigError) as err:
        store.migrate()
    text = str(err.value)
    assert "entity type 'parcel'" in text and "field 'sent_on'" in text and "field 'sent_on_valid'" in text
    assert "declare it again" in text and "DROP COLUMN sent_on" in text
    assert {"sent_on", "sent_on_valid"} <= set(_columns(store, "parcel_records"))  # no data dropped
    store.dispose()


def _folder(tmp_path: Path, version: str) -> Path:
    folder = tmp_path / version
    folder.mkdir()
    (folder / "entity_types.yaml").write_text(BASE.replace("{extra}", ""), encoding="utf-8")
    return folder
