"""The feed API's events pages prepared when feeds are built: what is stored, and when it holds.

The feed build (feeds.files.build_all) already scopes, projects and masks every subscriber's new
events; it also stores them as the API delivers them (warehouse.deliveries), so that an API page is
one indexed range read. The rows stand for one policy: a digest of everything that decides which
events a subscriber gets and how they read (its kind, station, entity types, scope, visible fields
with their levels and the masking rules of those fields, and the builder's format). A request
computes the digest under the subscriptions in force; rows prepared under another digest are not
used (the page is built on demand, as before) and the next build replaces them.
"""

from __future__ import annotations

import hashlib
import json

import polars as pl

from feeds.build import SCHEMA_VERSION
from feeds.config import Subscriber, Subscriptions
from warehouse.deliveries import PREPARED_SCHEMA, Mark, PreparedStore

FIELD_SEP = "\x1f"  # between the field names of a stored row (names are identifiers: never in one)
# Bump when the builder's output for the same inputs changes (a line's shape, a masking rule's
# code): every prepared row is then rebuilt rather than served in the old form.
BUILDER_VERSION = 1


def policy_digest(subs: Subscriptions, sub: Subscriber) -> str:
    """SHA-256 of what decides a subscriber's events and their content (see the module doc)."""
    levels = subs.levels(sub)
    doc = {
        "builder": [SCHEMA_VERSION, BUILDER_VERSION],
        "kind": sub.kind, "station_id": sub.station_id, "entity_types": list(sub.entity_types),
        "scope": sub.scope.model_dump(mode="json"), "levels": levels,
        "rules": {f: subs.rule(f).model_dump(mode="json") for f in levels if levels[f] != "full"},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def prepared_rows(built: pl.DataFrame) -> pl.DataFrame:
    """The builder's rows (feeds.build.LINE_SCHEMA) as stored for the API (PREPARED_SCHEMA)."""
    if built.height == 0:
        return pl.DataFrame(schema=PREPARED_SCHEMA)
    return built.select(
        "subscriber_id", "seq", "entity_id", "about",
        pl.col("fields").fill_null([]).list.join(FIELD_SEP).alias("fields"), "line",
    )


def plan(subs: Subscriptions, subscribers: list[Subscriber], marks: dict[str, Mark], floor: dict[str, int],
         high: int) -> tuple[dict[str, int], dict[str, tuple[str, int, int]], dict[str, int]]:
    """What a build prepares for each subscriber up to `high`, given its mark and `floor` (where
    its prepared stretch should start if it must start again: its API cursor).

    Returns (build_from, resets, extends): build_from the seq after which the subscriber's events
    are to be built; a reset (digest, from, high) where the mark is missing, under another policy,
    or does not reach `floor`; else an extension of the mark to `high`."""
    build_from: dict[str, int] = {}
    resets: dict[str, tuple[str, int, int]] = {}
    extends: dict[str, int] = {}
    for s in subscribers:
        digest = policy_digest(subs, s)
        mark = marks.get(s.id)
        start = min(floor.get(s.id, high), high)
        if mark is None or mark.digest != digest or mark.from_seq > start or mark.to_seq > high:
            resets[s.id] = (digest, start, high)
            build_from[s.id] = start
        else:
            extends[s.id] = high
            build_from[s.id] = mark.to_seq
    return build_from, resets, extends


def store_prepared(store: PreparedStore, built: pl.DataFrame, resets: dict[str, tuple[str, int, int]],
                   extends: dict[str, int]) -> dict[str, int]:
    """Store a build's rows for the API (see plan); returns how many rows each subscriber got."""
    return store.write(prepared_rows(built), resets=resets, extends=extends)
