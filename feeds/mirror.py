"""The station side of a feed: pull it over HTTP into a local SQLite mirror of the station's view.

`pull()` takes the snapshot when the mirror is new, then pages through the events after the
mirror's own cursor, applies each page in one transaction and only then acknowledges it to the
hub. Delivery is at least once, so applying is idempotent: an event id already applied is
skipped, and an event older than the version held changes nothing. Pulling again therefore
changes nothing. Merged and retired ids (and entities that left the station's scope) leave the
records table and are kept in `redirects`, pointing to the survivor where there is one, so the
station can repoint its own references. Correction tasks (`entity_type: correction_task`, from the
snapshot and from events) go to their own table, `tasks`, one row per task id with its latest
status and values, never into `records`: a closed task updates its row.

The mirror keeps what the hub delivered, masked as delivered: it never sees more than the
station's role allows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.errors import EnteronceError
from warehouse.mirror import MirrorStore

TOKEN_ENV = "ENTERONCE_FEED_TOKEN"
TASK_TYPE = "correction_task"
PAGE = 1000


class MirrorError(EnteronceError):
    """The hub refused or could not be reached, or the mirror belongs to another subscriber."""


@dataclass
class PullSummary:
    subscriber: str
    mirror: Path
    snapshot_records: int = 0  # records taken from a snapshot (first pull only)
    snapshot_tasks: int = 0  # open correction tasks taken from the snapshot
    events_received: int = 0
    events_applied: int = 0
    duplicates: int = 0  # event ids already applied (at-least-once delivery)
    older: int = 0  # events older than the version held
    cursor: int = 0
    records: int = 0
    tasks: int = 0  # correction tasks held (open and closed)
    tasks_changed: int = 0  # tasks opened, closed or reopened by this pull's events
    pages: int = 0
    changed_entities: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What one page of events does to the mirror (computed before anything is written)."""

    upserts: list[dict]
    deletes: list[str]
    redirects: list[dict]
    applied: list[dict]
    duplicates: int
    older: int
    incomplete: list[str] = field(default_factory=list)  # upserted from a partial update: fetch whole
    tasks: list[dict] = field(default_factory=list)  # correction tasks to upsert: task_id, version, task, seq


def _json(value) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        return json.loads(value) if value else None
    raise MirrorError(f"unexpected event payload {type(value).__name__}: expected a JSON object")


def _leaves_scope(event: dict) -> bool:
    """The hub marks an update that moves the entity out of the subscriber's scope `scope: left`
    (it carries only what changed; the station keeps nothing more about that entity)."""
    return event.get("scope") == "left"


def _source(event: dict) -> dict | list | None:
    """Where the event's values came from, in the snapshot's per-field shape: the station and
    record key (a list when several records supplied the change together)."""
    sources = [{"station_id": x.get("station_id"), "record_key": x.get("record_key")}
               for x in (event.get("sources") or []) if isinstance(x, dict)]
    return sources[0] if len(sources) == 1 else (sources or None)


def is_task(item: dict) -> bool:
    return item.get("entity_type") == TASK_TYPE


def plan_page(events: Iterable[dict], held: dict[str, dict], seen: set[str],
              held_tasks: dict[str, int] | None = None) -> Plan:
    """Fold a page of events (in seq order) over the records held: the final state per entity,
    and per correction task.

    Pure: `held` is entity_id -> {version, record, entity_type, provenance} for the entities the
    page touches, `held_tasks` task_id -> version for its tasks, `seen` the event ids
    already applied.
    """
    fold = _PageFold(held, seen, held_tasks or {})
    for ev in sorted(events, key=lambda e: int(e["seq"])):
        fold.apply(ev)
    return fold.plan()


class _PageFold:
    """The state of plan_page's fold: each entity's and task's state after the events so far."""

    def __init__(self, held: dict[str, dict], seen: set[str], held_tasks: dict[str, int]):
        self.held = held
        self.tasks_held = dict(held_tasks)  # task id -> the newest version held or applied
        self.task_state: dict[str, dict] = {}
        self.state: dict[str, dict | None] = {k: dict(v) for k, v in held.items()}  # None: leaves the mirror
        self.redirect: dict[str, dict] = {}
        self.applied: list[dict] = []
        self.done: set[str] = set(seen)
        self.touched: list[str] = []
        self.partial: set[str] = set()  # updated without being held: to be fetched whole
        self.duplicates = 0
        self.older = 0

    def apply(self, ev: dict) -> None:
        """One event: skipped when already applied (at-least-once delivery), else a task's or an
        entity's."""
        if ev["event_id"] in self.done:
            self.duplicates += 1
            return
        self.done.add(ev["event_id"])
        version = int(ev["version"])
        base = {"event_id": ev["event_id"], "seq": int(ev["seq"]), "entity_id": ev["entity_id"], "op": ev["op"],
                "version": version}
        if is_task(ev):  # a task: its own row, its latest version wins; never a record
            self._apply_task(ev, base)
            return
        current = self.state.get(ev["entity_id"])
        if current is not None and version < int(current["version"]):
            self._skip_older(base)
            return
        self._apply_entity(ev, current)
        self.applied.append({**base, "outcome": "applied"})
        self.touched.append(ev["entity_id"])

    def _skip_older(self, base: dict) -> None:
        self.older += 1
        self.applied.append({**base, "outcome": "older"})

    def _apply_task(self, ev: dict, base: dict) -> None:
        task, version = ev["entity_id"], base["version"]
        if version < self.tasks_held.get(task, 0):
            self._skip_older(base)
            return
        self.tasks_held[task] = version
        self.task_state[task] = {"task_id": task, "version": version, "task": _json(ev.get("after")) or {},
                                 "seq": base["seq"]}
        self.applied.append({**base, "outcome": "applied"})

    def _apply_entity(self, ev: dict, current: dict | None) -> None:
        """A merge or retire (or leaving the scope) takes the entity out, with a redirect; any
        other op sets the record as the subscriber may see it after the change."""
        entity, op, seq = ev["entity_id"], ev["op"], int(ev["seq"])
        after = _json(ev.get("after")) or {}
        if op == "merge":
            self.state[entity] = None
            self.redirect[entity] = {"entity_id": entity, "survivor_id": after.get("merged_into"), "reason": "merge",
                                     "seq": seq}
        elif op == "retire" or _leaves_scope(ev):
            self.state[entity] = None
            self.redirect[entity] = {"entity_id": entity, "survivor_id": None,
                                     "reason": "retire" if op == "retire" else "left", "seq": seq}
        else:  # create, update, split
            record, provenance = self._record_after(ev, current, after)
            self.state[entity] = {"entity_type": ev["entity_type"], "version": int(ev["version"]), "record": record,
                                  "provenance": provenance, "seq": seq}
            self.redirect.pop(entity, None)

    def _record_after(self, ev: dict, current: dict | None, after: dict) -> tuple[dict, dict]:
        """The record and its per-field provenance after a create, update or split."""
        entity, op = ev["entity_id"], ev["op"]
        if op == "create" or ev.get("scope") == "entered":
            # a create, and an update that brings the entity into the scope, carry the whole
            # visible record
            record, provenance = {}, {}
            self.partial.discard(entity)
        else:
            # an update carries only what changed: an entity this mirror does not hold is
            # incomplete until its whole record is fetched
            if current is None:
                self.partial.add(entity)
            record = dict(current["record"]) if current is not None else {}
            provenance = dict((current or {}).get("provenance") or {})
        if op != "split":  # a split's `after` lists the parts, not field values
            record.update(after)
            # an update's sources supplied its changed fields; a create's, every field
            named = after if op == "create" else set(ev.get("changed_fields") or ()) & set(after)
            provenance.update({f: _source(ev) for f in named})
        return record, provenance

    def plan(self) -> Plan:
        """What to write: entities whose state differs from what is held (upserts), held ones that
        left (deletes), redirects of those that are gone at the end of the page."""
        upserts, deletes = [], []
        touched = list(dict.fromkeys(self.touched))
        for entity in touched:
            now = self.state.get(entity)
            if now is None:
                if entity in self.held:
                    deletes.append(entity)
            elif self.held.get(entity) != now:
                upserts.append({"entity_id": entity, **now})
        return Plan(upserts, deletes, [r for e, r in self.redirect.items() if self.state.get(e) is None],
                    self.applied, self.duplicates, self.older,
                    [e for e in touched if e in self.partial and self.state.get(e) is not None],
                    list(self.task_state.values()))


class FeedClient:
    """The hub's feed API for one subscriber, over one HTTP connection pool."""

    def __init__(self, url: str, subscriber: str, token: str, *, client: httpx.Client | None = None,
                 timeout: float = 60.0):
        self.base = url.rstrip("/")
        self.subscriber = subscriber
        self.client = client or httpx.Client(timeout=timeout)
        self.client.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, **kwargs) -> dict:
        url = f"{self.base}/v1/feeds/{self.subscriber}/{path}"
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise MirrorError(f"{url}: cannot reach the hub ({exc.__class__.__name__}: {exc})") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            hint = {401: " (check the token: --token or ENTERONCE_FEED_TOKEN)",
                    403: " (the token is for another subscriber, or there is no subscription)"}.get(
                response.status_code, "")
            raise MirrorError(f"{method} {url}: HTTP {response.status_code}: {detail}{hint}")
        return response.json()

    def snapshot(self, after_entity: str | None, limit: int) -> dict:
        params = {"limit": limit, **({"after_entity": after_entity} if after_entity else {})}
        return self._call("GET", "snapshot", params=params)

    def events(self, after: int, limit: int) -> dict:
        return self._call("GET", "events", params={"after": after, "limit": limit})

    def records(self, entity_ids: list[str]) -> list[dict]:
        """Whole current records (in scope now) by id, 200 at a time."""
        out: list[dict] = []
        for i in range(0, len(entity_ids), 200):
            got = self._call("GET", "records", params=[("entity_id", e) for e in entity_ids[i:i + 200]])
            out += got["records"]
        return out

    def ack(self, seq: int) -> dict:
        return self._call("POST", "ack", json={"seq": seq})


def _complete(plan: Plan, api: FeedClient) -> None:
    """Replace partial records (entities that just entered the scope) by the whole records the hub
    holds now, masked for this subscriber. The fetched version is the current one, so later
    events up to it are recognised as older and change nothing."""
    if not plan.incomplete:
        return
    fetched = {r["entity_id"]: r for r in api.records(plan.incomplete)}
    for upsert in plan.upserts:
        got = fetched.get(upsert["entity_id"])
        if got is not None and int(got["version"]) >= int(upsert["version"]):
            upsert.update(version=int(got["version"]), record=_json(got.get("record")) or {},
                          provenance=got.get("provenance"))


def _take_snapshot(mirror: MirrorStore, api: FeedClient, page: int, summary: PullSummary) -> int:
    """Every in-scope record, written in one transaction; returns the seq to continue from."""
    rows: list[dict] = []
    task_rows: list[dict] = []
    after_entity, as_of = None, None
    while True:
        got = api.snapshot(after_entity, page)
        summary.pages += 1
        # pages may be built at different moments: continue from the earliest, versions sort it out
        as_of = int(got["as_of_seq"]) if as_of is None else min(as_of, int(got["as_of_seq"]))
        for r in got["records"]:
            if is_task(r):
                task_rows.append({"task_id": r["entity_id"], "version": int(r["version"]),
                                  "task": _json(r.get("record")) or {}, "seq": as_of})
                continue
            rows.append({"entity_id": r["entity_id"], "entity_type": r["entity_type"], "version": int(r["version"]),
                         "record": _json(r.get("record")) or {}, "provenance": r.get("provenance"), "seq": as_of})
        after_entity = got.get("next_after_entity")
        if not got["has_more"] or not after_entity:
            break
    as_of = as_of or 0
    for t in task_rows:
        t["seq"] = as_of
    mirror.write(upserts=rows, deletes=[], redirect_rows=[], applied=[], replace_all=True, task_upserts=task_rows,
                 meta={"snapshot_as_of": str(as_of), "cursor": str(as_of)})
    summary.snapshot_records = len(rows)
    summary.snapshot_tasks = len(task_rows)
    if as_of:
        api.ack(as_of)
    return as_of


def pull(mirror_path: Path | str, url: str, subscriber: str, token: str | None = None, *, page: int = PAGE,
         client: httpx.Client | None = None) -> PullSummary:
    """Bring the mirror up to date with the hub: snapshot if new, then every event page."""
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise MirrorError(f"no token: pass --token or set {TOKEN_ENV} (issued with `enteronce token issue`)")
    mirror = MirrorStore(mirror_path)
    api = FeedClient(url, subscriber, token, client=client)
    summary = PullSummary(subscriber=subscriber, mirror=Path(mirror_path))
    try:
        meta = mirror.meta()
        owner = meta.get("subscriber")
        if owner and owner != subscriber:
            raise MirrorError(f"{mirror_path}: this mirror belongs to subscriber {owner!r}, not {subscriber!r}")
        if not owner:
            mirror.set_meta({"subscriber": subscriber, "url": url})
        if "snapshot_as_of" in meta:
            cursor = int(meta.get("cursor") or 0)
        else:
            cursor = _take_snapshot(mirror, api, page, summary)
        changed: list[str] = []
        while True:
            got = api.events(cursor, page)
            summary.pages += 1
            events = got["events"]
            summary.events_received += len(events)
            nxt = int(got["next_after"])
            if events:
                ids = [e["entity_id"] for e in events if not is_task(e)]
                task_ids = [e["entity_id"] for e in events if is_task(e)]
                plan = plan_page(events, mirror.held(ids), mirror.seen_events(e["event_id"] for e in events),
                                 mirror.held_tasks(task_ids))
                _complete(plan, api)
                mirror.write(upserts=plan.upserts, deletes=plan.deletes, redirect_rows=plan.redirects,
                             applied=plan.applied, task_upserts=plan.tasks, meta={"cursor": str(max(nxt, cursor))})
                summary.tasks_changed += len(plan.tasks)
                summary.events_applied += sum(a["outcome"] == "applied" for a in plan.applied)
                summary.duplicates += plan.duplicates
                summary.older += plan.older
                changed += [u["entity_id"] for u in plan.upserts] + plan.deletes
            elif nxt > cursor:
                mirror.set_meta({"cursor": str(nxt)})
            progressed = nxt > cursor
            if progressed:
                api.ack(nxt)  # only after the page is committed here
                cursor = nxt
            if not got["has_more"] or not progressed:
                break
        summary.cursor = cursor
        counts = mirror.counts()
        summary.records, summary.tasks = counts["records"], counts["tasks"]
        summary.changed_entities = list(dict.fromkeys(changed))
        return summary
    finally:
        api.close()
        mirror.dispose()
