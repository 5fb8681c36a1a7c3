"""The front desk assembled: the match index over the warehouse, kept current, handed to the feeds.

Entity resolution may not read the warehouse and the feeds may not import entity resolution, so
the two meet here, at the top: `LiveMatcher` builds one `MatchIndex` per entity type from the state
the last resolution run left (warehouse/frontdesk.py), answers the feeds' `Matcher` protocol with
it, and keeps it current without re-reading the warehouse per request: at most every
`check_every` seconds a request asks the warehouse for the latest run seq (one indexed max()), and
when it changed a background thread builds the new index while requests go on being answered by
the old one; the new one replaces it when complete (new entities, merges, splits and judgements
are then visible).

`front_desk(project)` is what `enteronce serve`, `enteronce match/search` and the benchmark use.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping

from entity_resolution.matching import MatchIndex, MatchResult, ResolvedState
from entity_resolution.service import needed_columns
from feeds.config import load_subscriptions
from feeds.frontdesk import FrontDesk, audit_key
from pipelines.project import AUDIT_JOURNAL, Project
from warehouse import Warehouse
from warehouse.frontdesk import latest_resolution_seq, resolved_state

log = logging.getLogger("enteronce.frontdesk")
PUBLISH_ENV = "ENTERONCE_PUBLISH_ENTRIES"
NO_JOURNAL_ENV = "ENTERONCE_NO_AUDIT_JOURNAL"  # several workers: serve --no-audit-journal, passed on


class _Slot:
    """One entity type's index, the seq it reflects, and the rebuild in progress (if any)."""

    def __init__(self) -> None:
        self.index: MatchIndex | None = None
        self.seq = -1
        self.checked = float("-inf")
        self.building = False
        self.error: str | None = None
        self.lock = threading.Lock()


class _Batcher:
    """Concurrent requests matched together: each waits while one worker thread matches everything
    that queued up meanwhile in one `match_many` call. Standardising and scoring cost mostly per
    call, not per record, so under load a batch of twenty costs little more than one record."""

    def __init__(self, run, max_batch: int = 64):
        self._run, self._max = run, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True, name="match-batcher")
        self._thread.start()

    def submit(self, item):
        done = threading.Event()
        box: list = [done, None, None]
        self._queue.put((item, box))
        done.wait()
        if box[2] is not None:
            raise box[2]
        return box[1]

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self._run([item for item, _ in batch])
                for (_, box), result in zip(batch, results, strict=True):
                    box[1] = result
            except Exception:  # noqa: BLE001 - one bad record must not fail the others: one by one
                for item, box in batch:
                    try:
                        box[1] = self._run([item])[0]
                    except Exception as exc:  # noqa: BLE001 - handed to its own request
                        box[2] = exc
            for _, box in batch:
                box[0].set()


class LiveMatcher:
    """`feeds.frontdesk.Matcher` over a warehouse, one index per entity type, swapped on new runs."""

    def __init__(self, store: Warehouse, project: Project, *, check_every: float = 2.0, background: bool = True):
        self.store, self.project = store, project
        self.check_every, self.background = check_every, background
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._batchers: dict[tuple[str, str], _Batcher] = {}

    def _types(self):
        return self.project.pipeline_types

    def _slot(self, entity_type: str) -> _Slot:
        if entity_type not in self._types():
            raise ValueError(f"unknown entity type {entity_type!r} (this hub resolves {self._types().names})")
        with self._lock:
            return self._slots.setdefault(entity_type, _Slot())

    def build(self, entity_type: str) -> MatchIndex | None:
        """Build the entity type's index from the warehouse now (None before its first run)."""
        et = self.project.entity_types.get(entity_type)
        settings = self.project.resolution.entity(et.resolution_entity)
        records, membership, model, judgements, seq = resolved_state(
            self.store, entity_type, et.record_table, needed_columns(settings))
        if model is None or membership.height == 0:
            return None
        return MatchIndex.build(ResolvedState(records, membership, model, judgements, seq), settings, et)

    def _rebuild(self, entity_type: str, slot: _Slot, seq: int) -> None:
        try:
            index = self.build(entity_type)
            with slot.lock:
                slot.index, slot.seq, slot.error = index, seq, None
            log.info("match index for %s rebuilt at run %s (%s records)", entity_type, seq,
                     index.size if index else 0)
        except Exception as exc:  # noqa: BLE001 - the old index keeps serving; the error is shown
            log.exception("match index for %s not rebuilt", entity_type)
            with slot.lock:
                slot.error = f"{exc.__class__.__name__}: {exc}"
        finally:
            with slot.lock:
                slot.building = False

    def refresh(self, entity_type: str, *, wait: bool = False, force: bool = False) -> MatchIndex | None:
        """The current index; starts a rebuild when the warehouse has a newer run, or with `force`
        (waits for it when there is no index yet, or when `wait`; the old index answers meanwhile)."""
        slot = self._slot(entity_type)
        now = time.monotonic()
        start = None
        with slot.lock:
            due = wait or force or slot.index is None or now - slot.checked >= self.check_every
            if due and not slot.building:
                slot.checked = now
                seq = latest_resolution_seq(self.store, entity_type)
                if seq != slot.seq or force:
                    slot.building = True
                    start = seq
        if start is not None:
            if self.background and slot.index is not None and not wait:
                threading.Thread(target=self._rebuild, args=(entity_type, slot, start), daemon=True,
                                 name=f"match-index-{entity_type}").start()
            else:
                self._rebuild(entity_type, slot, start)
        elif wait or slot.index is None:
            while True:  # another request is building the first index: wait for it
                with slot.lock:
                    if not slot.building:
                        break
                time.sleep(0.01)
        return slot.index

    def warm(self) -> threading.Thread:
        """Build every type's index in the background (a server's first match need not wait long)."""
        def run() -> None:
            for name in self._types().names:
                try:
                    self.refresh(name)
                except Exception:  # noqa: BLE001 - a request will try again and show the error
                    log.exception("match index for %s not built", name)
        thread = threading.Thread(target=run, daemon=True, name="match-index-warm")
        thread.start()
        return thread

    def _index(self, entity_type: str) -> MatchIndex:
        index = self.refresh(entity_type)
        if index is None:
            slot = self._slot(entity_type)
            raise LookupError(slot.error or f"no resolution run for {entity_type} yet")
        return index

    # -- feeds.frontdesk.Matcher ------------------------------------------------------------------
    def _batcher(self, entity_type: str, kind: str) -> _Batcher:
        with self._lock:
            got = self._batchers.get((entity_type, kind))
            if got is None:
                def run(items: list[tuple[Mapping[str, str], int]]) -> list:
                    index = self._index(entity_type)
                    many = index.match_many if kind == "match" else index.search_many
                    return many([r for r, _ in items], limit=max(limit for _, limit in items))
                got = self._batchers[(entity_type, kind)] = _Batcher(run)
            return got

    def match(self, entity_type: str, record: Mapping[str, str], *, limit: int) -> dict:
        index = self._index(entity_type)
        index.check_input(record)  # bad input is refused in the request's own thread, not in a batch
        result: MatchResult = self._batcher(entity_type, "match").submit((record, limit))
        candidates = result.candidates[:limit]
        return {"checks": result.checks, "candidates": candidates, "keys": result.keys}

    def match_many(self, entity_type: str, records: list[Mapping[str, str]], *, limit: int) -> list[dict]:
        """`match` for several records in one call (the front desk batches concurrent requests)."""
        index = self._index(entity_type)
        for record in records:
            index.check_input(record)
        return [{"checks": r.checks, "candidates": r.candidates[:limit], "keys": r.keys}
                for r in index.match_many(records, limit=limit)]

    def search_many(self, entity_type: str, records: list[Mapping[str, str]], *, limit: int) -> list:
        """`search` for several records in one call: per record its answer or its MatchInputError."""
        index = self._index(entity_type)
        for record in records:
            index.check_input(record)
        return [got if isinstance(got, Exception) else {"entity_ids": got[0][:limit], "rules": got[1], "keys": got[2]}
                for got in index.search_many(records, limit=limit)]

    def search(self, entity_type: str, record: Mapping[str, str], *, limit: int) -> dict:
        self._index(entity_type).check_input(record)
        got = self._batcher(entity_type, "search").submit((record, limit))
        if isinstance(got, Exception):
            raise got
        ids, rules, keys = got
        ids = ids[:limit]
        return {"entity_ids": ids, "rules": rules, "keys": keys}


def create_hub_app(project: Project, *, limits=None, warm: bool = True, publish_entries: bool = False,
                   audit_journal: bool = True):
    """The feed API with the front desk open: `enteronce serve` and the hub's API service.
    `publish_entries`: entered records are published by this process at once
    (pipelines/entry_publisher.py; the hub turns it on), not at the daemon's next look.
    `audit_journal`: audit rows through the journal in the data folder (feeds.journal), else
    committed before each answer."""
    from feeds.api import create_app

    store = project.open_warehouse()
    matcher = LiveMatcher(store, project)
    if warm:
        matcher.warm()
    from pipelines.entry import project_entry
    from pipelines.entry_publisher import EntryPublisher

    publisher = EntryPublisher(project, store) if publish_entries else None
    return create_app(project.warehouse_url, project.config_dir, limits=limits, matcher=matcher,
                      audit_key=audit_key(project.data_dir), store=store,
                      entry=project_entry(project, store, publisher=publisher),
                      journal_dir=project.data_dir / AUDIT_JOURNAL if audit_journal else None)


def app_from_env():
    """For `uvicorn --factory pipelines.frontdesk:app_from_env` (several workers: each holds its own
    index): the project from ENTERONCE_CONFIG and ENTERONCE_WAREHOUSE_URL, limits from ENTERONCE_API_*,
    entries published at once when ENTERONCE_PUBLISH_ENTRIES=1, audit rows committed before each
    answer when ENTERONCE_NO_AUDIT_JOURNAL=1."""
    import os

    from feeds.limits import ApiLimits

    return create_hub_app(Project.load(os.environ.get("ENTERONCE_CONFIG"), os.environ.get("ENTERONCE_WAREHOUSE_URL")),
                          limits=ApiLimits.from_env(), publish_entries=os.environ.get(PUBLISH_ENV) == "1",
                          audit_journal=os.environ.get(NO_JOURNAL_ENV) != "1")


def front_desk(project: Project, store: Warehouse | None = None, *, matcher: LiveMatcher | None = None) -> FrontDesk:
    """A FrontDesk over the project's warehouse and subscriptions (CLI; the API reloads the
    subscriptions itself and builds a FrontDesk per content of the file)."""
    store = store or project.open_warehouse()
    return FrontDesk(store, load_subscriptions(project.config_dir), matcher or LiveMatcher(store, project),
                     audit_key=audit_key(project.data_dir))
