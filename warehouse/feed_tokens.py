"""The feed API's bearer tokens as rows: only hashes are stored, never a token itself.

Plain values in and out; the rules (format, hashing, constant-time checks) are in feeds/tokens.py.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from warehouse import schema as s
from core.time import utcnow
from warehouse.store import Warehouse
from warehouse.unchanged import Reader

COLUMNS = ("token_id", "subscriber_id", "token_hash", "label", "issued_at", "revoked_at")


def insert_token(store: Warehouse, *, token_id: str, subscriber_id: str, token_hash: str,
                 label: str | None, issued_at: dt.datetime | None = None) -> dict:
    row = {"token_id": token_id, "subscriber_id": subscriber_id, "token_hash": token_hash, "label": label,
           "issued_at": issued_at or utcnow(), "revoked_at": None}
    with store.transaction() as conn:
        conn.execute(s.feed_tokens.insert(), [row])
    return row


# every API request reads its token's row: the statement is built once
_TOKEN_ROW = sa.select(*(s.feed_tokens.c[c] for c in COLUMNS)).where(s.feed_tokens.c.token_id == sa.bindparam("tid"))


def token_row(store: Warehouse, token_id: str) -> dict | None:
    """The row of one token id (revoked or not), or None."""
    return token_rows(store, [token_id]).get(token_id)


def token_rows(store: Warehouse, token_ids: list[str]) -> dict[str, dict]:
    """The rows of several token ids (revoked or not) in one read, by token id. Every API request
    checks its token: the rows are kept while nothing is committed (warehouse.unchanged), so a
    revocation counts from its commit on, as when they were read each time."""
    t = s.feed_tokens
    wanted = sorted(set(token_ids))
    if not wanted:
        return {}
    with Reader(store.engine) as reader:
        kept, trusted = reader.kept("token")
        if trusted and all(i in kept for i in wanted):
            return {i: dict(kept[i]) for i in wanted if kept[i] is not None}
        conn = reader.conn()
        if len(wanted) == 1:
            found = conn.execute(_TOKEN_ROW, {"tid": wanted[0]})
        else:
            found = conn.execute(sa.select(*(t.c[c] for c in COLUMNS)).where(t.c.token_id.in_(wanted)))
        got = {r.token_id: dict(r._mapping) for r in found}
        if kept is not None:
            kept.update({i: got.get(i) for i in wanted})
    return {i: dict(r) for i, r in got.items()}


def revoke_token(store: Warehouse, token_id: str, at: dt.datetime | None = None) -> bool:
    """Mark a token revoked; False when there is no such token or it was revoked already."""
    t = s.feed_tokens
    with store.transaction() as conn:
        done = conn.execute(t.update().where(t.c.token_id == token_id, t.c.revoked_at.is_(None))
                            .values(revoked_at=at or utcnow()))
    return done.rowcount == 1


def list_tokens(store: Warehouse, subscriber_id: str | None = None) -> list[dict]:
    """Every token row, oldest first (hashes included: the caller decides what to show)."""
    t = s.feed_tokens
    stmt = sa.select(*(t.c[c] for c in COLUMNS)).order_by(t.c.issued_at, t.c.token_id)
    if subscriber_id is not None:
        stmt = stmt.where(t.c.subscriber_id == subscriber_id)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
