"""Golden records by id, for the feed API's record lookup (feeds/lookup.py).

The snapshot pages through a subscriber's whole scope (warehouse/feeds.py); a station that just
learnt of an entity (it moved into its area) needs that one record now, so this reads by id.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import sqlalchemy as sa

from warehouse import schema as s
from warehouse.bulk import in_keys, read_frame
from warehouse.store import Warehouse

GOLDEN_SCHEMA = {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "area_code": pl.String,
                 "record": pl.String, "provenance": pl.String}


def active_golden_by_id(store: Warehouse, entity_ids: Iterable[str], entity_types: Iterable[str]) -> pl.DataFrame:
    """The active golden records among `entity_ids` of the given types, ordered by entity id."""
    g = s.golden_records
    base = sa.select(g.c.entity_id, g.c.entity_type, g.c.version, g.c.area_code, g.c.record, g.c.provenance).where(
        g.c.status == "active", g.c.entity_type.in_(list(entity_types)))
    with store.engine.connect() as conn:
        frame = read_frame(conn, base.where(in_keys(conn, g.c.entity_id, entity_ids)), schema=GOLDEN_SCHEMA)
    return frame.sort("entity_id")
