"""The warehouse side of record entry (POST /v1/records): what a drop sensor needs to tell that a
station has new front-desk batches, and the quarantine rows an entry answer names.

Entries are ordinary batches (connectors/entry.py writes them with the ingest functions) under
the source name ENTRY_SOURCE; nothing here writes.
"""

from __future__ import annotations

import sqlalchemy as sa

from warehouse import schema as s
from warehouse.store import Warehouse

ENTRY_SOURCE = "front_desk"  # the source name of every entered batch; stations.yaml may not use it


def entry_marks(store: Warehouse, station_id: str | None = None) -> dict[str, str]:
    """Station id -> a mark that changes whenever the station enters a record (the number of its
    front-desk batches): one grouped count over the batches table, for a sensor tick. Stations
    without entries are absent, so their drop versions stay what they were."""
    b = s.batches
    stmt = sa.select(b.c.station_id, sa.func.count()).where(b.c.source_name == ENTRY_SOURCE).group_by(b.c.station_id)
    if station_id is not None:
        stmt = stmt.where(b.c.station_id == station_id)
    with store.engine.connect() as conn:
        return {sid: f"entries={n}" for sid, n in conn.execute(stmt)}


def entry_batch(store: Warehouse, batch_id: str) -> dict | None:
    """The batch row of an entry (status and counts) with its quarantine rows (quarantine_id,
    field, reason), or None when there is no such batch."""
    b, q = s.batches, s.quarantine
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(b.c.batch_id, b.c.station_id, b.c.status, b.c.rows_loaded, b.c.rows_quarantined)
                           .where(b.c.batch_id == batch_id)).mappings().first()
        if row is None:
            return None
        quarantined = conn.execute(sa.select(q.c.quarantine_id, q.c.field, q.c.reason)
                                   .where(q.c.batch_id == batch_id).order_by(q.c.quarantine_id)).mappings().all()
    return {**dict(row), "quarantine": [dict(r) for r in quarantined]}
