"""Record entry at the front desk (POST /v1/records): the gate, the answer and the audit.

The storing itself is ingest's (connectors/entry.py: a batch of one through the ingest functions),
which this layer may not import: it is handed in as an `Enter` function (pipelines/entry.py binds
it to the project's warehouse and entity types). Decided here, with the front desk's own pieces:

- the grant: `query.entry: true` in subscriptions.yaml, for `kind: station` subscribers only
  (feeds.config validates that), and the entity type among the query grant's types; the record is
  stored under the subscriber's own station_id, whatever the body says: there is no station field;
- the limits: the same per-token rate as match and search (one budget per token);
- the audit: one front_desk_audit row per entry (kind `entry`), refused and limited ones too, with
  the record's standardised values only as keyed hashes (as for match), written before the answer
  leaves; its outcome says what became of the record: ok | duplicate | quarantined | refused | limited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from feeds.frontdesk import Caller, FrontDesk, FrontDeskError, clean_record


class Enter(Protocol):
    """Store one record of a station as a batch of one (pipelines/entry.py provides it).

    Returns {"batch_id", "record_key", "status": loaded | quarantined, "duplicate", "errors":
    [{field, message}], "quarantine_id", "keys": {field: standardised value}}. A body that is no
    record of the type (unknown fields) raises ValueError with `.errors` (nothing is stored); an
    unknown station raises LookupError."""

    def __call__(self, station_id: str, entity_type: str, record: Mapping[str, str], *, ref: str) -> dict: ...


def enter(desk: FrontDesk, enter_fn: Enter | None, caller: Caller, entity_type: str, record: object
          ) -> tuple[int, dict[str, Any]]:
    """(HTTP status, answer): 201 a new batch, 200 the same record entered before (its batch),
    422 quarantined (the errors field by field and the quarantine id) or not a record of the type.
    Refusals raise FrontDeskError (403 no entry grant, 429 over the rate, 503 no entry here)."""
    sub = desk.subscriptions.subscriber(caller.subscriber_id)
    if sub is None:
        raise FrontDeskError(403, f"no subscription for {caller.subscriber_id!r}")

    def refuse(status: int, detail: str, outcome: str = "refused", **kw) -> FrontDeskError:
        desk._audit(caller, "entry", entity_type, {}, [], {}, outcome)
        return FrontDeskError(status, detail, **kw)

    if sub.query is None or not sub.query.entry or sub.kind != "station" or not sub.station_id:
        raise refuse(403, f"{sub.id} may not enter records (subscriptions.yaml: query.entry: true, "
                          "station subscribers only)")
    if entity_type not in sub.query_types:
        raise refuse(403, f"{sub.id} may not enter records of entity type {entity_type!r}")
    wait = desk.limiter.check(caller.token_id or f"{caller.channel}:{sub.id}", sub.query.per_minute)
    if wait is not None:
        raise refuse(429, f"rate limit: {sub.query.per_minute} requests per minute", "limited", retry_after=wait)
    if enter_fn is None:
        raise FrontDeskError(503, "record entry is not available on this server")
    try:
        fields = clean_record(record)
    except FrontDeskError:
        desk._audit(caller, "entry", entity_type, {}, [], {}, "refused")
        raise
    try:
        got = enter_fn(sub.station_id, entity_type, fields, ref=f"front desk: {sub.id} token {caller.token_id or '-'}"
                       f" ({caller.channel})")
    except LookupError as exc:
        raise refuse(403, f"{sub.id}: {exc}") from None
    except ValueError as exc:
        desk._audit(caller, "entry", entity_type, {}, [], {}, "refused")
        errors = getattr(exc, "errors", None) or [{"field": None, "message": str(exc)}]
        return 422, {"status": "refused", "batch_id": None, "errors": errors, "quarantine_id": None}
    outcome = "quarantined" if got["status"] == "quarantined" else "duplicate" if got["duplicate"] else "ok"
    desk._audit(caller, "entry", entity_type, got.get("keys", {}), [], {}, outcome, batch_id=got["batch_id"])
    answer = {"status": got["status"], "batch_id": got["batch_id"], "record_key": got["record_key"],
              "duplicate": got["duplicate"], "errors": got["errors"], "quarantine_id": got["quarantine_id"]}
    status = 422 if got["status"] == "quarantined" else 200 if got["duplicate"] else 201
    return status, answer
