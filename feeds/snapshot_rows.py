"""`build_snapshot` for a handful of records, in plain Python.

The front desk and record lookups deliver one to a few dozen golden records per call. Polars
builds them in about twenty-five small queries, some 5 ms whatever the row count: most of a
single search's time. This twin builds the same rows (the same JSON lines, byte for byte, the
same field lists) in microseconds; `tests/test_snapshot_rows.py` holds it to the Polars builder
on generated records. It declines (None) what it cannot promise to read as Polars would: a value
that is not text, JSON that does not parse, a mask character that Polars' replacement syntax
would read as a group reference.
"""

from __future__ import annotations

import json
import re

import polars as pl

from core.provenance import source_fields
from feeds.config import Level, PartialRule, Subscriptions
from feeds.masking import CONTEXT_FIELDS, project_value

MAX_ROWS = 64  # the front desk's few records; snapshot pages (up to thousands) stay with Polars


_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')  # text JSON writes as it is, between quotes


def _json(value: object) -> str:
    # Polars' encoder (serde_json): no ASCII escaping, control characters as \n or \u00XX
    if value is None:
        return "null"
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: object) -> bool:
    """A value of a stored source as Polars reads it to text: null, text, or a list of texts."""
    return value is None or isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value))


def _keys_pattern(field: str) -> re.Pattern:
    return re.compile(f'[{{,]"{field}":')  # feeds.build.has_key on the record's text


def snapshot_rows(golden: pl.DataFrame, levels: dict[str, Level], subs: Subscriptions) -> pl.DataFrame | None:
    """The rows of `build_snapshot(golden, levels, subs)` (SNAPSHOT_SCHEMA columns), or None."""
    from feeds.build import SNAPSHOT_SCHEMA

    if any(isinstance(subs.rule(f), PartialRule) and subs.rule(f).mask_char in "$\\"
           for f, lv in levels.items() if lv != "full"):
        return None
    visible = list(levels)
    wanted = set(visible) | set(CONTEXT_FIELDS)
    present_in = {f: _keys_pattern(f) for f in visible}
    out = {k: [] for k in SNAPSHOT_SCHEMA}
    for entity_id, entity_type, version, raw, prov in golden.select(
            "entity_id", "entity_type", "version", "record", "provenance").iter_rows():
        try:
            decoded = json.loads(raw) if raw is not None else {}
            sources = json.loads(prov) if prov is not None else []
        except ValueError:
            return None
        if not isinstance(decoded, dict) or not isinstance(sources, list):
            return None
        record = {f: decoded.get(f) for f in wanted}
        if any(v is not None and not isinstance(v, str) for v in record.values()):
            return None
        present = [f for f in visible if raw is not None and present_in[f].search(raw)]
        body = ",".join(f"{_json(f)}:{_json(project_value(f, levels[f], subs, record))}" for f in present)
        frags = []
        for s in sources:
            if not isinstance(s, dict) or not all(_text(v) for v in s.values()):
                return None
            place = _json({"station_id": s.get("station_id"), "record_key": s.get("record_key")})
            frags.extend(f"{_json(f)}:{place}" for f in source_fields(s) if f in levels)
        provenance = "{" + ",".join(sorted(frags)) + "}"
        record_json = "{" + body + "}"
        head = _json({"entity_id": entity_id, "entity_type": entity_type, "version": version})[:-1]
        out["entity_id"].append(entity_id)
        out["entity_type"].append(entity_type)
        out["version"].append(version)
        out["record"].append(record_json)
        out["provenance"].append(provenance)
        out["line"].append(f'{head},"record":{record_json},"provenance":{provenance}}}')
        out["fields"].append(present)
        out["about"].append(None)
    return pl.DataFrame(out, schema=SNAPSHOT_SCHEMA)
