"""The warehouse side of the front desk (match and search): the resolved state the match index is
built from, the cheap "has a new run finished?" query that tells the server to rebuild it, and the
append-only audit log of every match and search.

The audit row is written in its own transaction *before* the answer leaves the server: when the
write fails, the caller gets an error instead of data nobody recorded (no answer without its row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl
import sqlalchemy as sa

from core.time import utcnow
from warehouse import schema as s
from warehouse.bulk import READ_CHUNK_ROWS, not_journalled, polars_type, read_bulk
from warehouse.feed_records import GOLDEN_SCHEMA
from warehouse.feeds import read_access_rows
from warehouse.resolution import latest_resolution_seq
from warehouse.store import Warehouse, not_held

AUDIT_SCHEMA = {"audit_id": pl.Int64, "subscriber_id": pl.String, "token_id": pl.String, "channel": pl.String,
                "kind": pl.String, "entity_type": pl.String, "key_hashes": pl.String, "entity_ids": pl.String,
                "fields": pl.String, "outcome": pl.String, "at": pl.Datetime("us", "UTC"), "batch_id": pl.String}


CHUNK_ROWS = READ_CHUNK_ROWS  # the index's reads (tests make it small to read in several chunks)


def resolved_state(store: Warehouse, entity_type: str, record_table: str, columns: Iterable[str]
                   ) -> tuple[pl.DataFrame, pl.DataFrame, str | None, pl.DataFrame, int]:
    """(records, membership, model JSON or None, judgements, seq) of one entity type, as the last
    resolution run left them.

    Records and membership come from the resolution store's Parquet caches when the warehouse has a
    current one (a reload after an incremental run then reads only the new batches); otherwise
    streamed from the tables CHUNK_ROWS at a time (`read_bulk`: one query, one snapshot), so that
    a million rows never exist as Python tuples at once. The server rebuilds its index after every
    run while the old one serves: a read of a million memberships at once (five columns, as
    `membership()` reads them) took 370 MB for a 33 MB frame, on top of the index in service."""
    seq = latest_resolution_seq(store, entity_type)
    rs = store.resolution_store(entity_type, record_table)
    cached = store.cache_dir is not None and (store.cache_dir / f"{entity_type}-records").is_dir()
    records = rs.records(list(columns)) if cached else _records_streamed(rs, list(columns))
    membership = rs.membership().select("record_key", "entity_id") if cached else _membership_streamed(rs)
    model = rs.model()
    judgements = rs.judgements().select("left_id", "right_id", "verdict")
    return records, membership, (model[1] if model else None), judgements, seq


def _records_streamed(rs, columns: list[str]) -> pl.DataFrame:
    """The records resolution reads (held batches left out), by record key."""
    t = rs.record_table
    wanted = list(dict.fromkeys(["record_key", *columns]))
    cols = [t.c[c] for c in wanted if c in t.c]
    stmt = sa.select(*cols).where(not_held(t.c.batch_id)).order_by(t.c.record_key)
    return _streamed(rs, stmt, {c.name: polars_type(c) for c in cols})


def _membership_streamed(rs) -> pl.DataFrame:
    """record_key -> entity_id of the type, as `membership()` has them (its join included)."""
    m, e = s.entity_membership, s.entities
    stmt = (sa.select(m.c.record_key, m.c.entity_id).join(e, e.c.entity_id == m.c.entity_id)
            .where(m.c.entity_type == rs.entity_type))
    return _streamed(rs, stmt, {"record_key": pl.String, "entity_id": pl.String})


def _streamed(rs, stmt: sa.Select, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    with rs.engine.connect() as conn:
        return read_bulk(conn, stmt, schema, rows=CHUNK_ROWS).rechunk()  # one chunk: the index gathers rows


def active_golden(store: Warehouse, entity_ids: Iterable[str], entity_type: str) -> pl.DataFrame:
    """The active golden records of the type among a few entity ids, by primary key (the feeds'
    lookup also filters on the type in SQL, which SQLite answers from the (entity_type, area_code)
    index: a scan of the type's rows, tens of milliseconds at a million, where this is a few seeks)."""
    g = s.golden_records
    ids = list(dict.fromkeys(entity_ids))
    if not ids:
        return pl.DataFrame(schema=GOLDEN_SCHEMA)
    stmt = sa.select(*(g.c[c] for c in GOLDEN_SCHEMA), g.c.status).where(g.c.entity_id.in_(ids))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).fetchall()
    # a few dozen rows: kept and ordered in Python, one frame built (three Polars calls cost more)
    kept = sorted((r[:-1] for r in rows if r.status == "active" and r.entity_type == entity_type),
                  key=lambda r: r[0])
    return pl.DataFrame(kept, schema=GOLDEN_SCHEMA, orient="row")


def record_access(store: Warehouse, row: dict) -> int:
    """Append one audit row (subscriber_id, token_id, channel, kind, entity_type, key_hashes,
    entity_ids, fields, outcome); returns its id. Raises when it cannot be written."""
    return record_accesses(store, [row])[0]


def record_accesses(store: Warehouse, rows: list[dict], *, replay: bool = False) -> list[int]:
    """Append several audit rows in one transaction (the front desk answers concurrent requests
    together: one commit for all, rather than one per request); the ids of the rows written, in
    order. All or none are written: when it raises, none of the requests may be answered. A row
    may bring its own `at` and `journal_key` (feeds/journal.py); with `replay`, rows whose key is
    already in the log are skipped, so a journal replayed after a crash writes each access once."""
    a = s.front_desk_audit
    at = utcnow()
    columns = [c.name for c in a.c if c.name != "audit_id"]
    with store.transaction() as conn:
        params = [{c: row.get(c) for c in columns} | {"at": row.get("at") or at}
                  for row in (not_journalled(conn, a, rows) if replay else rows)]
        if not params:
            return []
        result = conn.execute(a.insert().returning(a.c.audit_id, sort_by_parameter_order=True), params)
        return [int(r[0]) for r in result]


def access_log(store: Warehouse, *, subscriber_id: str | None = None, since: dt.datetime | None = None,
               limit: int | None = None) -> pl.DataFrame:
    """Audit rows in the order written (AUDIT_SCHEMA; JSON columns as text)."""
    a = s.front_desk_audit
    stmt = sa.select(
        a.c.audit_id, a.c.subscriber_id, a.c.token_id, a.c.channel, a.c.kind, a.c.entity_type,
        sa.cast(a.c.key_hashes, sa.Text).label("key_hashes"), sa.cast(a.c.entity_ids, sa.Text).label("entity_ids"),
        sa.cast(a.c.fields, sa.Text).label("fields"), a.c.outcome, a.c.at, a.c.batch_id,
    ).order_by(a.c.audit_id)
    return read_access_rows(store.engine, stmt, subscriber=a.c.subscriber_id, at=a.c.at, subscriber_id=subscriber_id,
                            since=since, limit=limit, schema=AUDIT_SCHEMA)
