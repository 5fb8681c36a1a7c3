"""Synthetic outboxes in the pipeline's own format, for feed tests and the feeds benchmark.

`Outbox` plays the golden step by hand (create, update, move, merge, split) and the quality pass
(correction tasks opened, closed, reopened) so that a test states exactly which entity went where;
`bulk_outbox` generates a large outbox with Polars expressions for the benchmark. Both write the
same tables the pipeline writes (golden_records, golden_versions, entity_membership,
change_events, correction_tasks), with the same JSON shapes (entity_resolution.propagation,
warehouse.quality.task_event), through `FeedStore.load_frames`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field

import polars as pl

from warehouse.feeds import FeedStore
from warehouse.quality import task_event

PERSON_FIELDS = ("name_norm", "sex", "birth_date", "id_number", "phone", "address", "addr_district", "addr_street",
                 "addr_community", "addr_road", "addr_number", "addr_building", "addr_unit", "addr_room", "area_code")
_NS = uuid.UUID("0f7d2c4e-9a51-4b8e-b1c3-5d6e7f8a9b0c")
UTC = dt.timezone.utc
_TS = pl.Datetime("us", "UTC")
_SCHEMAS = {
    "golden_records": {"entity_id": pl.String, "entity_type": pl.String, "version": pl.Int64, "status": pl.String,
                       "area_code": pl.String, "record": pl.String, "provenance": pl.String, "updated_at": _TS},
    "golden_versions": {"entity_id": pl.String, "version": pl.Int64, "entity_type": pl.String, "op": pl.String,
                        "record": pl.String, "provenance": pl.String, "changed_fields": pl.String,
                        "sources": pl.String, "valid_from": _TS, "valid_to": _TS},
    "entity_membership": {"entity_type": pl.String, "record_key": pl.String, "entity_id": pl.String,
                          "row_hash": pl.String, "since_seq": pl.Int64, "updated_seq": pl.Int64},
    "correction_tasks": {"task_id": pl.String, "station_id": pl.String, "record_key": pl.String,
                         "entity_type": pl.String, "entity_id": pl.String, "field": pl.String,
                         "station_value": pl.String, "expected_value": pl.String, "reason": pl.String,
                         "source": pl.String, "status": pl.String, "opened_at": _TS, "opened_batch": pl.String,
                         "closed_at": _TS, "closed_batch": pl.String},
    "change_events": {"seq": pl.Int64, "event_id": pl.String, "entity_type": pl.String, "entity_id": pl.String,
                      "op": pl.String, "version": pl.Int64, "changed_fields": pl.String, "before": pl.String,
                      "after": pl.String, "sources": pl.String, "occurred_at": _TS},
}


def _j(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Entity:
    entity_type: str
    record: dict
    members: list[str]
    version: int = 0
    status: str = "active"


@dataclass
class Outbox:
    """An outbox written step by step; `flush(store)` loads what is new since the last flush."""

    fields: tuple[str, ...] = PERSON_FIELDS
    seq: int = 0
    entities: dict[str, _Entity] = field(default_factory=dict)
    _pending: dict[str, list[dict]] = field(default_factory=lambda: {"golden_versions": [], "change_events": []})
    _touched: set[str] = field(default_factory=set)
    _members_touched: set[str] = field(default_factory=set)
    tasks: dict[str, dict] = field(default_factory=dict)  # task id -> its correction_tasks row now
    task_versions: dict[str, int] = field(default_factory=dict)
    task_areas: dict[str, str | None] = field(default_factory=dict)
    _task_rows: dict[str, dict] = field(default_factory=dict)

    # -- building ------------------------------------------------------------------------------
    def _full(self, values: dict) -> dict:
        return {f: values.get(f) for f in self.fields}

    def _provenance(self, e: _Entity) -> str:
        key = e.members[0] if e.members else "none:0"
        return _j([{"field": f, "station_id": key.split(":")[0], "batch_id": "b1", "record_key": key,
                    "source_updated_at": "2026-11-20 09:00:00.000000"} for f in sorted(self.fields)
                   if e.record.get(f) is not None])

    def _sources(self, e: _Entity) -> str:
        return _j([{"station_id": k.split(":")[0], "record_key": k, "batch_id": "b1"} for k in e.members])

    def _event(self, entity_id: str, op: str, changed: list[str], before: dict | None, after: dict | None,
               *, entity_type: str | None = None, sources: str | None = None, version: int | None = None) -> int:
        e = self.entities.get(entity_id)
        self.seq += 1
        version = version if version is not None else e.version
        self._pending["change_events"].append({
            "seq": self.seq, "event_id": str(uuid.uuid5(_NS, f"{entity_id}:{version}:{op}:{self.seq}")),
            "entity_type": entity_type or e.entity_type, "entity_id": entity_id, "op": op, "version": version,
            "changed_fields": _j(changed), "before": None if before is None else _j(before),
            "after": None if after is None else _j(after), "sources": sources or (self._sources(e) if e else "[]"),
            "occurred_at": dt.datetime(2026, 11, 26, 8, 0, tzinfo=UTC) + dt.timedelta(seconds=self.seq),
        })
        return self.seq

    def _version(self, entity_id: str, op: str, changed: list[str]) -> None:
        e = self.entities[entity_id]
        e.version += 1
        self._touched.add(entity_id)
        self._pending["golden_versions"].append({
            "entity_id": entity_id, "version": e.version, "entity_type": e.entity_type, "op": op,
            "record": _j(self._full(e.record)), "provenance": self._provenance(e), "changed_fields": _j(changed),
            "sources": self._sources(e), "valid_from": dt.datetime(2026, 11, 26, tzinfo=UTC), "valid_to": None,
        })

    def create(self, entity_id: str, record: dict, members: list[str], *, entity_type: str = "person") -> int:
        e = self.entities[entity_id] = _Entity(entity_type, self._full(record), list(members))
        self._members_touched.add(entity_id)
        self._version(entity_id, "create", [])
        present = sorted(f for f, v in e.record.items() if v is not None)
        return self._event(entity_id, "create", present, None, self._full(e.record))

    def update(self, entity_id: str, **changes) -> int:
        e = self.entities[entity_id]
        changed = sorted(f for f, v in changes.items() if e.record.get(f) != v)
        before = {f: e.record.get(f) for f in changed}
        e.record.update(changes)
        self._version(entity_id, "update", changed)
        return self._event(entity_id, "update", changed, before, {f: e.record.get(f) for f in changed})

    def add_member(self, entity_id: str, record_key: str) -> None:
        self.entities[entity_id].members.append(record_key)
        self._members_touched.add(entity_id)

    def merge(self, retired: str, into: str) -> int:
        r, s = self.entities[retired], self.entities[into]
        before = self._full(r.record)
        s.members.extend(r.members)
        r.members, r.status = [], "retired"
        self._members_touched |= {retired, into}
        self._version(retired, "merge", [])
        return self._event(retired, "merge", [], before, {"merged_into": into})

    def split(self, entity_id: str, part_id: str, part_record: dict, moved: list[str]) -> tuple[int, int]:
        e = self.entities[entity_id]
        before = self._full(e.record)
        e.members = [m for m in e.members if m not in moved]
        self._members_touched.add(entity_id)
        self._version(entity_id, "split", [])
        first = self._event(entity_id, "split", [], before, {"parts": [part_id]})
        return first, self.create(part_id, part_record, moved, entity_type=e.entity_type)

    def correction_task(self, task_id: str, station_id: str, record_key: str, field_name: str,
                        station_value: str | None, expected_value: str | None, *, op: str | None = None,
                        status: str = "open", record_entity_type: str = "person", entity_id: str | None = None,
                        area_code: str | None = None, reason: str | None = None,
                        source: str = "golden_disagreement") -> int:
        """A correction task opened, closed (`status="closed"`) or reopened, as the quality pass
        writes it (warehouse.quality.task_event: the task's row as `after`, its previous state as
        `before`, each with the `area_code` it is routed by), and its row in `correction_tasks`."""
        old = self.tasks.get(task_id)
        at = dt.datetime(2026, 11, 26, 8, tzinfo=UTC) + dt.timedelta(seconds=self.seq + 1)
        row = {**(old or {}), "task_id": task_id, "station_id": station_id, "record_key": record_key,
               "entity_type": record_entity_type, "entity_id": entity_id, "field": field_name,
               "station_value": station_value, "expected_value": expected_value,
               "reason": reason or f"{field_name} differs from the golden record's surviving value",
               "source": source, "status": status}
        if status == "open":
            row.update(opened_at=at if old is None or old["status"] != "open" else old["opened_at"],
                       opened_batch=f"{station_id}/b1", closed_at=None, closed_batch=None)
        else:
            row.update(opened_at=(old or {}).get("opened_at") or at, opened_batch=(old or {}).get("opened_batch")
                       or f"{station_id}/b1", closed_at=at, closed_batch=f"{station_id}/b2")
        version = self.task_versions.get(task_id, 0) + 1
        op = op or ("retire" if status == "closed" else "create" if version == 1 else "update")
        ev = task_event(row, old, op, version, row["opened_batch"] if status == "open" else row["closed_batch"],
                        area=area_code, area_before=self.task_areas.get(task_id))
        self.tasks[task_id], self.task_versions[task_id], self.task_areas[task_id] = row, version, area_code
        self._task_rows[task_id] = row
        return self._event(task_id, op, ev["changed_fields"], json.loads(ev["before"]) if ev["before"] else None,
                           json.loads(ev["after"]), entity_type="correction_task", version=version,
                           sources=_j(ev["sources"]))

    def event(self, seq: int) -> dict:
        """An event written since the last flush, by seq (as it goes into change_events)."""
        return next(e for e in self._pending["change_events"] if e["seq"] == seq)

    # -- writing -------------------------------------------------------------------------------
    def frames(self) -> dict[str, pl.DataFrame]:
        golden = [{
            "entity_id": i, "entity_type": e.entity_type, "version": e.version, "status": e.status,
            "area_code": e.record.get("area_code") if e.status == "active" else None,
            "record": _j(self._full(e.record)), "provenance": self._provenance(e),
            "updated_at": dt.datetime(2026, 11, 26, tzinfo=UTC),
        } for i, e in self.entities.items() if i in self._touched]
        members = [{"entity_type": e.entity_type, "record_key": k, "entity_id": i, "row_hash": "0" * 40,
                    "since_seq": 1, "updated_seq": 1}
                   for i, e in self.entities.items() if i in self._members_touched for k in e.members]
        return {
            "golden_records": pl.DataFrame(golden, schema=_SCHEMAS["golden_records"]),
            "golden_versions": pl.DataFrame(self._pending["golden_versions"], schema=_SCHEMAS["golden_versions"]),
            "entity_membership": pl.DataFrame(members, schema=_SCHEMAS["entity_membership"]),
            "change_events": pl.DataFrame(self._pending["change_events"], schema=_SCHEMAS["change_events"]),
            "correction_tasks": pl.DataFrame([{k: r.get(k) for k in _SCHEMAS["correction_tasks"]}
                                              for r in self._task_rows.values()], schema=_SCHEMAS["correction_tasks"]),
        }

    def flush(self, store: FeedStore) -> int:
        """Load what changed since the last flush; returns the outbox's high water."""
        store.load_frames(self.frames())
        self._pending = {"golden_versions": [], "change_events": []}
        self._touched, self._members_touched, self._task_rows = set(), set(), {}
        return self.seq


def person(name: str, area_code: str, *, id_number: str = "500101199001011234", phone: str = "13812345678",
           district: str = "渝中区", street: str = "解放碑街道", community: str = "较场口社区",
           road: str = "民权路", number: str = "12号", birth_date: str = "1990-01-01", sex: str = "M") -> dict:
    """A golden person record with a parsed address."""
    return {"name_norm": name, "sex": sex, "birth_date": birth_date, "id_number": id_number, "phone": phone,
            "address": f"重庆市{district}{street}{community}{road}{number}", "addr_district": district,
            "addr_street": street, "addr_community": community, "addr_road": road, "addr_number": number,
            "area_code": area_code}


# -- bulk, for the benchmark ------------------------------------------------------------------------------
def bulk_outbox(jurisdictions: dict[str, list[str]], *, events: int, seed: int = 7,
                update_share: float = 0.35) -> dict[str, pl.DataFrame]:
    """`events` change events over the stations' jurisdictions (station -> 9-digit township
    prefixes): creates first, then updates (phone changes and moves between townships), in the
    tables' own shapes. Vectorised: a million rows take seconds."""
    stations = sorted(jurisdictions)
    towns = pl.DataFrame([(s, t) for s in stations for t in jurisdictions[s]], schema=["station_id", "town"],
                         orient="row")
    n_upd = int(events * update_share)
    n_new = events - n_upd
    t = towns.height
    ents = pl.DataFrame({"i": pl.int_range(0, n_new, eager=True)}).with_columns(
        entity_id=pl.format("P{}", pl.col("i").cast(pl.String).str.zfill(10)),
        t=(pl.col("i").hash(seed) % t).cast(pl.Int64),
    ).join(towns.with_row_index("t").with_columns(pl.col("t").cast(pl.Int64)), on="t").with_columns(
        area_code=pl.concat_str(pl.col("town"), (pl.col("i") % 50 + 1).cast(pl.String).str.zfill(3)),
        phone=pl.concat_str(pl.lit("13"), (pl.col("i").hash(seed + 1) % 1_000_000_000).cast(pl.String).str.zfill(9)),
        id_number=pl.concat_str(pl.lit("500101"), (pl.col("i") % 10_000_000_000).cast(pl.String).str.zfill(10),
                                pl.lit("12")),
        name_norm=pl.concat_str(pl.lit("张"), (pl.col("i") % 97).cast(pl.String)),
        record_key=pl.concat_str("station_id", pl.lit(":"), pl.col("i").cast(pl.String)),
    ).sort("i")
    rec = pl.struct(
        pl.col("name_norm"), pl.lit("M").alias("sex"), pl.lit("1990-01-01").alias("birth_date"), "id_number", "phone",
        pl.concat_str(pl.lit("重庆市渝中区解放碑街道"), pl.col("area_code")).alias("address"),
        pl.lit("渝中区").alias("addr_district"), pl.lit("解放碑街道").alias("addr_street"),
        pl.lit(None, pl.String).alias("addr_community"), "area_code",
    ).struct.json_encode()
    now = dt.datetime(2026, 11, 26, tzinfo=UTC)
    src = pl.concat_str(pl.lit('[{"station_id":"'), "station_id", pl.lit('","record_key":"'), "record_key",
                        pl.lit('","batch_id":"b1"}]'))
    creates = ents.select(
        pl.col("i").alias("seq") + 1, "entity_id", pl.lit("create").alias("op"), pl.lit(1).alias("version"),
        pl.lit('["area_code","id_number","name_norm","phone"]').alias("changed_fields"),
        pl.lit(None, pl.String).alias("before"), rec.alias("after"), src.alias("sources"), rec.alias("record"),
        "area_code", "station_id", "record_key",
    )
    # updates: every k-th entity changes phone, every other one moves to another township
    up = ents.head(n_upd).with_columns(
        seq=pl.int_range(n_new + 1, n_new + n_upd + 1, eager=True),
        moves=(pl.col("i") % 2 == 0),
        t2=((pl.col("t") + 1) % t),
    ).join(towns.with_row_index("t2").with_columns(pl.col("t2").cast(pl.Int64)).rename({"town": "town2",
                                                                                    "station_id": "st2"}), on="t2")
    up = up.with_columns(
        new_area=pl.when("moves").then(pl.concat_str("town2", pl.lit("001"))).otherwise("area_code"),
        new_phone=pl.when("moves").then("phone").otherwise(pl.concat_str(pl.lit("139"), pl.col("phone").str.tail(8))),
    )
    updates = up.select(
        "seq", "entity_id", pl.lit("update").alias("op"), pl.lit(2).alias("version"),
        pl.when("moves").then(pl.lit('["address","area_code"]')).otherwise(pl.lit('["phone"]')).alias("changed_fields"),
        pl.when("moves").then(pl.struct(pl.concat_str(pl.lit("重庆市渝中区解放碑街道"), "area_code").alias("address"),
                                        "area_code").struct.json_encode())
        .otherwise(pl.struct("phone").struct.json_encode()).alias("before"),
        pl.when("moves").then(pl.struct(pl.concat_str(pl.lit("重庆市渝中区解放碑街道"), "new_area").alias("address"),
                                        pl.col("new_area").alias("area_code")).struct.json_encode())
        .otherwise(pl.struct(pl.col("new_phone").alias("phone")).struct.json_encode()).alias("after"),
        src.alias("sources"),
        pl.struct(
            "name_norm", pl.lit("M").alias("sex"), pl.lit("1990-01-01").alias("birth_date"), "id_number",
            pl.col("new_phone").alias("phone"),
            pl.concat_str(pl.lit("重庆市渝中区解放碑街道"), "new_area").alias("address"),
            pl.lit("渝中区").alias("addr_district"), pl.lit("解放碑街道").alias("addr_street"),
            pl.lit(None, pl.String).alias("addr_community"), pl.col("new_area").alias("area_code"),
        ).struct.json_encode().alias("record"),
        pl.col("new_area").alias("area_code"),
    )
    events_f = pl.concat([creates.drop("station_id", "record_key"), updates], how="vertical_relaxed").with_columns(
        event_id=pl.format("00000000-0000-5000-8000-{}", pl.col("seq").cast(pl.String).str.zfill(12)),
        entity_type=pl.lit("person"), occurred_at=pl.lit(now))
    prov = pl.lit("[]")
    versions = events_f.select("entity_id", "version", "entity_type", "op", "record", prov.alias("provenance"),
                               "changed_fields", "sources", pl.lit(now).alias("valid_from"),
                               pl.lit(None, pl.Datetime("us", "UTC")).alias("valid_to"))
    golden = events_f.sort("seq").group_by("entity_id").agg(pl.all().last()).select(
        "entity_id", "entity_type", "version", pl.lit("active").alias("status"), "area_code", "record",
        prov.alias("provenance"), pl.lit(now).alias("updated_at"))
    members = ents.select(pl.lit("person").alias("entity_type"), "record_key", "entity_id",
                          pl.lit("0" * 40).alias("row_hash"), pl.lit(1).alias("since_seq"), pl.lit(1).alias("updated_seq"))
    return {"golden_records": golden, "golden_versions": versions, "entity_membership": members,
            "change_events": events_f.select("seq", "event_id", "entity_type", "entity_id", "op", "version",
                                             "changed_fields", "before", "after", "sources", "occurred_at")}


def bulk_tasks(frames: dict[str, pl.DataFrame], *, tasks: int, seed: int = 11,
               close_share: float = 0.3) -> dict[str, pl.DataFrame]:
    """`tasks` correction tasks on records of a bulk outbox (`bulk_outbox`'s frames), appended to
    its outbox after its last event as the quality pass writes them (warehouse.quality.task_event's
    JSON shape): each opens on a member record's phone (the station's value differs from the
    golden one), a share of them closes again; with their `correction_tasks` rows. Vectorised."""
    events = frames["change_events"]
    start = int(events["seq"].max() or 0)
    golden = frames["golden_records"].select("entity_id", "area_code",
                                             pl.col("record").str.json_path_match("$.phone").alias("phone"))
    picks = (frames["entity_membership"].select("entity_id", "record_key")
             .join(golden, on="entity_id").sort("record_key")
             .with_columns(pl.col("record_key").hash(seed).alias("_h")).sort("_h").head(tasks)
             .with_row_index("i")
             .with_columns(
                 task_id=pl.format("{}", pl.col("record_key").hash(seed + 1).cast(pl.String).str.zfill(20)),
                 station_id=pl.col("record_key").str.extract(r"^([^:]+):", 1),
                 station_value=pl.concat_str(pl.col("phone").str.head(10), pl.lit("0")),
                 closed=(pl.col("i").hash(seed + 2) % 1000) < int(close_share * 1000)))
    now = dt.datetime(2026, 11, 26, 9, tzinfo=UTC)

    def payload(status: str, closed_at: pl.Expr) -> pl.Expr:
        return pl.struct(
            "area_code", closed_at.alias("closed_at"), "entity_id", pl.col("phone").alias("expected_value"),
            pl.lit("phone").alias("field"), pl.lit(now.isoformat()).alias("opened_at"),
            pl.lit("phone differs from the golden record's surviving value").alias("reason"),
            pl.lit("person").alias("record_entity_type"), "record_key", pl.lit("golden_disagreement").alias("source"),
            "station_id", "station_value", pl.lit(status).alias("status"), "task_id",
        ).struct.json_encode()

    src = pl.concat_str(pl.lit('[{"station_id":"'), "station_id", pl.lit('","record_key":"'), "record_key",
                        pl.lit('","batch_id":"b1"}]'))
    opened = picks.select(
        "task_id", pl.lit("create").alias("op"), pl.lit(1).alias("version"),
        pl.lit('["area_code","entity_id","expected_value","field","opened_at","reason","record_entity_type",'
               '"record_key","source","station_id","station_value","status","task_id"]').alias("changed_fields"),
        pl.lit(None, pl.String).alias("before"), payload("open", pl.lit(None, pl.String)).alias("after"),
        src.alias("sources"))
    closing = picks.filter("closed")
    closed = closing.select(
        "task_id", pl.lit("retire").alias("op"), pl.lit(2).alias("version"),
        pl.lit('["status","closed_at"]').alias("changed_fields"), payload("open", pl.lit(None, pl.String)).alias("before"),
        payload("closed", pl.lit(now.isoformat())).alias("after"), src.alias("sources"))
    task_events = pl.concat([opened, closed]).with_row_index("_n").with_columns(
        seq=pl.col("_n").cast(pl.Int64) + start + 1).with_columns(
        event_id=pl.format("00000000-0000-5000-9000-{}", pl.col("seq").cast(pl.String).str.zfill(12)),
        entity_type=pl.lit("correction_task"), entity_id=pl.col("task_id"), occurred_at=pl.lit(now))
    rows = picks.select(
        "task_id", "station_id", "record_key", pl.lit("person").alias("entity_type"), "entity_id",
        pl.lit("phone").alias("field"), "station_value", pl.col("phone").alias("expected_value"),
        pl.lit("phone differs from the golden record's surviving value").alias("reason"),
        pl.lit("golden_disagreement").alias("source"),
        pl.when("closed").then(pl.lit("closed")).otherwise(pl.lit("open")).alias("status"),
        pl.lit(now).alias("opened_at"), pl.lit("b1").alias("opened_batch"),
        pl.when("closed").then(pl.lit(now)).alias("closed_at"),
        pl.when("closed").then(pl.lit("b2")).alias("closed_batch"))
    return {**frames, "change_events": pl.concat([events, task_events.select(events.columns)], how="vertical_relaxed"),
            "correction_tasks": rows.cast({k: v for k, v in _SCHEMAS["correction_tasks"].items()})}
