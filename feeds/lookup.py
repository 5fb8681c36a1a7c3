"""Current records by id, for a subscriber: what a station fetches when an entity enters its scope.

Events carry what changed; an update that moves a resident into a station's area therefore tells
the station *that* they arrived, and this lookup gives it the whole record, masked and scoped
exactly like a snapshot (same builder), and audited like one. An id that is not active, not of the
subscriber's entity types or not in its scope is simply absent from the answer: deny by default,
and no hint about what exists elsewhere.
"""

from __future__ import annotations

import polars as pl

from feeds.build import audit_fields, build_snapshot
from feeds.service import FeedService, delivery_row
from warehouse.feed_records import active_golden_by_id

MAX_IDS = 200


def in_scope(golden: pl.DataFrame, members: pl.DataFrame, *, area_prefixes: tuple[str, ...],
             own_station: str | None) -> pl.DataFrame:
    """The golden rows in scope: area code under a prefix, or holding one of the station's records."""
    conds = [pl.col("area_code").str.starts_with(p).fill_null(False) for p in area_prefixes]
    if own_station:
        own = members.filter(pl.col("record_key").str.starts_with(f"{own_station}:"))["entity_id"].unique()
        conds.append(pl.col("entity_id").is_in(own.implode()))
    if not conds:
        return golden.clear()
    return golden.filter(pl.any_horizontal(conds))


def current_records(service: FeedService, subscriber_id: str, entity_ids: list[str], *, channel: str,
                    token_id: str | None = None) -> list[str]:
    """The subscriber's view of the requested entities now, as JSON lines (snapshot format)."""
    sub = service.subscriber(subscriber_id)
    ids = list(dict.fromkeys(entity_ids))[:MAX_IDS]
    golden = active_golden_by_id(service.warehouse, ids, sub.entity_types)
    own = sub.station_id if sub.scope.own_records else None
    members = service.store.memberships(golden["entity_id"].to_list()) if own and golden.height else None
    if members is None:
        members = pl.DataFrame(schema={"entity_id": pl.String, "record_key": pl.String})
    visible = in_scope(golden, members, area_prefixes=tuple(sub.scope.area_codes), own_station=own)
    levels = service.subscriptions.levels(sub)
    built = build_snapshot(visible, levels, service.subscriptions)
    if built.height:
        service.record_deliveries([delivery_row(
            sub.id, channel=channel, kind="snapshot", token_id=token_id, seq_from=None,
            seq_to=service.store.high_water(), event_count=0, entity_ids=built["entity_id"].to_list(),
            fields=audit_fields(built["fields"], levels))])
    return built["line"].to_list()
