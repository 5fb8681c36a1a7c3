"""The front desk: match (核录) and search (查询) for a subscriber, scoped, masked, limited, audited.

The matching itself belongs to entity resolution (entity_resolution/matching.py), which this layer
may not import: it is handed in as a `Matcher` (pipelines/frontdesk.py builds one over the
warehouse and keeps it current). Everything a subscriber's answer depends on besides the match is
decided here, with the feeds' own pieces, never a second implementation of them:

- the grant: `query` in subscriptions.yaml (feeds.config.QueryGrant); none is 403, deny by default;
- the scope: the query scope's area prefixes / own records / whole network, applied to the active
  golden records of the candidates (feeds.lookup.in_scope); out-of-scope entities are left out of
  the answer without a trace;
- the fields: the golden record projected and masked by the subscriber's role and field list
  (feeds.build.build_snapshot, as snapshots and record lookups deliver them); the explanation
  shows the submitted values and the levels, never the candidate's values (those come masked in
  `record`);
- the limits: a per-token rate (`per_minute`, 429 with Retry-After) and a hard cap on results;
- the audit: one row per request (warehouse/frontdesk.py), committed before the answer is
  returned (in the API: written to the audit journal before, committed just after, never lost:
  feeds/journal.py), with the query's keys only as HMAC-SHA256 under a key the hub keeps
  (`audit_key`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import math
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import polars as pl

from core.errors import EnteronceError
from feeds.build import audit_fields, build_snapshot
from feeds.config import Subscriber, Subscriptions
from feeds.lookup import in_scope
from feeds.tokens import verify_tokens
from warehouse import Warehouse
from warehouse.feeds import FeedStore
from warehouse.frontdesk import active_golden
from warehouse.frontdesk import record_accesses as record_accesses_now

AUDIT_KEY_ENV = "ENTERONCE_AUDIT_KEY"
AUDIT_KEY_FILE = "front_desk_audit.key"
MAX_FIELDS = 32
MAX_VALUE_CHARS = 200
WILDCARDS = frozenset("*%?")
MAX_BATCH = 64  # requests answered together at most
IDLE_S = 5.0  # a batch worker stops after this long without requests (a new one starts on demand)
WORKERS_ENV = "ENTERONCE_DESK_WORKERS"  # batch workers (default 1; two did not help on two busy cores:
# Polars releases the GIL, but each batch then pays the per-call cost alone)


class Matcher(Protocol):
    """What the front desk needs from entity resolution (pipelines/frontdesk.py provides it).

    `match` -> {"checks": [...], "candidates": [{"entity_id", "match_probability", "decision",
    "reason", "explanation"}, ...], "keys": {field: standardised value}}, best first; the
    explanation is delivered as it is, so it holds levels, weights and the submitted values, never a
    candidate's own (those reach the caller only masked, in `record`);
    `search` -> {"entity_ids": [...], "keys": {...}}. Bad input raises ValueError (its message is
    shown to the caller); an entity type with no resolved state yet raises LookupError.
    """

    def match(self, entity_type: str, record: Mapping[str, str], *, limit: int) -> dict: ...

    def search(self, entity_type: str, record: Mapping[str, str], *, limit: int) -> dict: ...


class BatchMatcher(Matcher, Protocol):
    """A Matcher that also answers several records in one call (the front desk uses it when there):
    `match_many` -> one `match` answer per record; `search_many` -> per record a `search` answer or
    the ValueError that record's search raises. Bad input anywhere may raise for the whole call
    (the front desk then asks record by record)."""

    def match_many(self, entity_type: str, records: list[Mapping[str, str]], *, limit: int) -> list[dict]: ...

    def search_many(self, entity_type: str, records: list[Mapping[str, str]], *, limit: int
                    ) -> list[dict | ValueError]: ...


class FrontDeskError(EnteronceError):
    """A refused request: `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after


def audit_key(data_dir: Path | str | None) -> bytes:
    """The key of the audit log's keyed hashes: ENTERONCE_AUDIT_KEY when set, else a random key kept
    in the warehouse's state folder (created once, readable by its owner only)."""
    env = os.environ.get(AUDIT_KEY_ENV, "").strip()
    if env:
        return env.encode("utf-8")
    if data_dir is None:
        raise EnteronceError(f"the front desk's audit needs a key: set {AUDIT_KEY_ENV} or give a data folder")
    path = Path(data_dir) / AUDIT_KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(path.with_suffix(".tmp"), path)  # the first writer wins; others read its key
        except FileExistsError:
            pass
        path.with_suffix(".tmp").unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip().encode("ascii")


def key_hashes(key: bytes, keys: Mapping[str, str]) -> dict[str, str]:
    """field -> HMAC-SHA256 (hex) of its standardised value: joinable, not readable."""
    return {f: hmac.new(key, f"{f}\x00{v}".encode("utf-8"), hashlib.sha256).hexdigest() for f, v in sorted(keys.items())}


class RateLimiter:
    """A sliding one-minute window per caller (token id): at most `per_minute` requests."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: str, per_minute: int) -> int | None:
        """None when the request may go ahead (and counts it); else seconds until it may."""
        now = self._clock()
        with self._lock:
            window = self._seen.setdefault(caller, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= per_minute:
                return max(1, math.ceil(60.0 - (now - window[0])))
            window.append(now)
            return None


@dataclass(frozen=True)
class Caller:
    subscriber_id: str
    token_id: str | None
    channel: str  # api | cli


@dataclass(eq=False)
class _Job:
    """One request waiting for the batch worker: its answer or its error, then `done` (or, for
    a request from the event loop, its future `settled`). A job from the API arrives with its
    bearer `token` only: the worker checks the tokens, grants and input of the batch (`_admit`)."""

    kind: str  # match | search
    caller: Caller | None
    sub: Subscriber | None
    entity_type: str
    record: object
    token: str | None = None
    settled: asyncio.Future | None = None
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict | None = None
    error: BaseException | None = None

    def result(self) -> dict:
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer


def _finish(jobs: list[_Job]) -> None:
    """Wake the jobs' requests: threads by their event, each event loop once for all its futures
    (one wake-up per batch, not one per request)."""
    loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for job in jobs:
        job.done.set()
        if job.settled is not None:
            loops.setdefault(job.settled.get_loop(), []).append(job.settled)
    for loop, futures in loops.items():
        try:
            loop.call_soon_threadsafe(_settle, futures)
        except RuntimeError:  # the loop is closed: the server stopped, nobody waits
            pass


def _settle(futures: list[asyncio.Future]) -> None:
    for f in futures:
        if not f.done():  # a request cancelled meanwhile (its client left) has nobody to tell
            f.set_result(None)


def clean_record(record: object, *, what: str = "record") -> dict[str, str]:
    """The submitted fields as text: an object of at most MAX_FIELDS short text values, no
    wildcards (a search is an exact lookup; '*' or '%' would only show an attempt to harvest)."""
    if not isinstance(record, Mapping):
        raise FrontDeskError(422, f"{what} must be an object of field -> text")
    if len(record) > MAX_FIELDS:
        raise FrontDeskError(422, f"{what} has more than {MAX_FIELDS} fields")
    out: dict[str, str] = {}
    for k, v in record.items():
        if not isinstance(k, str) or len(k) > 64:
            raise FrontDeskError(422, f"{what}: field names must be text of at most 64 characters")
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise FrontDeskError(422, f"{what}.{k}: expected text")
        v = str(v)
        if len(v) > MAX_VALUE_CHARS:
            raise FrontDeskError(422, f"{what}.{k}: longer than {MAX_VALUE_CHARS} characters")
        if WILDCARDS & set(v):
            raise FrontDeskError(422, f"{what}.{k}: wildcards ({' '.join(sorted(WILDCARDS))}) are not accepted: "
                                 "give exact values")
        if v.strip():
            out[k] = v
    return out


class FrontDesk:
    """Match and search for subscribers over one warehouse, one subscriptions file, one matcher.

    Concurrent requests are answered together: a request from the API (`answer`, async) waits on a
    future while one worker thread checks the tokens of everything that queued up meanwhile in one
    read, then each request's grant, rate and input, and answers them with one matcher call
    (`match_many` / `search_many` when the matcher has them), one golden-record read, one masking
    pass per subscriber and one audit transaction (ENTERONCE_DESK_WORKERS workers, default 1, each
    taking what has queued up); the CLI's `match` and `search` are checked in their own thread and
    queue the same way. Standardising, scoring and masking cost mostly per call, not per record, so
    under load twenty requests cost little more than one; each answer is exactly what the request
    alone would get (the same functions over a
    union of entities, then cut per request). `batch=False` answers each request in its own thread.
    """

    def __init__(self, warehouse: Warehouse, subscriptions: Subscriptions, matcher: Matcher | None, *,
                 audit_key: bytes, limiter: RateLimiter | None = None, batch: bool = True,
                 record_accesses: Callable[[list[dict]], object] | None = None):
        """`record_accesses` takes the audit rows of the answers: by default they are committed
        before any answer is handed out; the API gives its audit journal's `record`
        (feeds/journal.py), which commits them after, never losing one."""
        self.warehouse, self.subscriptions, self.matcher = warehouse, subscriptions, matcher
        self.key = audit_key
        self.record_accesses = record_accesses or functools.partial(record_accesses_now, warehouse)
        self.limiter = limiter or RateLimiter()
        self.store = FeedStore(warehouse)
        self.batch = batch
        self.workers = max(1, int(os.environ.get(WORKERS_ENV, "1") or 1))
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._running = 0  # batch workers alive
        self._worker_lock = threading.Lock()

    # -- the gate -------------------------------------------------------------------------------
    def _grant(self, caller: Caller, entity_type: str, kind: str) -> Subscriber:
        sub = self.subscriptions.subscriber(caller.subscriber_id)
        if sub is None:
            raise FrontDeskError(403, f"no subscription for {caller.subscriber_id!r}")
        if sub.query is None:
            self._audit(caller, kind, entity_type, {}, [], {}, "refused")
            raise FrontDeskError(403, f"{sub.id} has no query grant (subscriptions.yaml: query)")
        if entity_type not in sub.query_types:
            self._audit(caller, kind, entity_type, {}, [], {}, "refused")
            raise FrontDeskError(403, f"{sub.id} may not query entity type {entity_type!r}")
        wait = self.limiter.check(caller.token_id or f"{caller.channel}:{sub.id}", sub.query.per_minute)
        if wait is not None:
            self._audit(caller, kind, entity_type, {}, [], {}, "limited")
            raise FrontDeskError(429, f"rate limit: {sub.query.per_minute} queries per minute", retry_after=wait)
        if self.matcher is None:
            raise FrontDeskError(503, "the front desk is not available on this server (no match index)")
        return sub

    def _audit_row(self, caller: Caller, kind: str, entity_type: str, keys: Mapping[str, str],
                   entity_ids: list[str], fields: dict[str, str], outcome: str, batch_id: str | None = None) -> dict:
        return {"subscriber_id": caller.subscriber_id, "token_id": caller.token_id, "channel": caller.channel,
                "kind": kind, "entity_type": entity_type[:32], "key_hashes": key_hashes(self.key, keys),
                "entity_ids": entity_ids, "fields": fields, "outcome": outcome, "batch_id": batch_id}

    def _audit(self, caller: Caller, kind: str, entity_type: str, keys: Mapping[str, str], entity_ids: list[str],
               fields: dict[str, str], outcome: str, batch_id: str | None = None) -> None:
        self.record_accesses([self._audit_row(caller, kind, entity_type, keys, entity_ids, fields, outcome,
                                              batch_id)])

    def _visible(self, sub: Subscriber, entity_type: str, entity_ids: list[str],
                 golden: pl.DataFrame | None = None) -> pl.DataFrame:
        """The subscriber's masked view (snapshot format) of those entities in its query scope
        (`golden`: their active golden records when already read)."""
        if golden is None:
            golden = active_golden(self.warehouse, entity_ids, entity_type)
        elif not set(entity_ids).issuperset(golden.get_column("entity_id").to_list()):  # else: all of them
            golden = golden.filter(pl.col("entity_id").is_in(list(entity_ids)))
        scope = sub.query.scope
        if not scope.network:
            own = sub.station_id if scope.own_records else None
            members = self.store.memberships(golden["entity_id"].to_list()) if own and golden.height else None
            if members is None:
                members = pl.DataFrame(schema={"entity_id": pl.String, "record_key": pl.String})
            golden = in_scope(golden, members, area_prefixes=tuple(scope.area_codes), own_station=own)
        return build_snapshot(golden, self.subscriptions.levels(sub), self.subscriptions)

    def _views(self, jobs: list[_Job], ids: list[list[str]]) -> list[dict[str, dict]]:
        """Per job, entity_id -> {record, fields} of the entities its subscriber may see among
        `ids` of the job: one golden read for all, one masking pass per subscriber."""
        entity_type = jobs[0].entity_type
        every = list(dict.fromkeys(i for part in ids for i in part))
        golden = active_golden(self.warehouse, every, entity_type)
        by_sub: dict[str, dict[str, dict]] = {}
        for sub_id in dict.fromkeys(j.sub.id for j in jobs):
            sub = next(j.sub for j in jobs if j.sub.id == sub_id)
            wanted = list(dict.fromkeys(i for j, part in zip(jobs, ids, strict=True) if j.sub.id == sub_id
                                        for i in part))
            built = self._visible(sub, entity_type, wanted, golden)
            by_sub[sub_id] = {r["entity_id"]: r for r in built.select("entity_id", "record", "fields")
                              .iter_rows(named=True)}
        return [{i: by_sub[j.sub.id][i] for i in part if i in by_sub[j.sub.id]} for j, part in
                zip(jobs, ids, strict=True)]

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise FrontDeskError(422, str(exc)) from None
        except LookupError as exc:
            raise FrontDeskError(503, f"not ready: {exc}") from None

    # -- batching -------------------------------------------------------------------------------
    def _submit(self, job: _Job) -> dict:
        if not self.batch:
            self._run([job])
        else:
            self._enqueue(job)
            job.done.wait()
        return job.result()

    def _enqueue(self, job: _Job) -> None:
        self._queue.put(job)  # before the worker check: a stopping worker sees it, or a new one starts
        with self._worker_lock:
            if self._running < self.workers and (self._running == 0 or self._queue.qsize() > 1):
                self._running += 1
                threading.Thread(target=self._work, daemon=True, name="front-desk-batcher").start()

    async def answer(self, kind: str, token: str, entity_type: str, record: object) -> dict:
        """match or search for the API, from the event loop: the request waits on a future, not
        in a thread of its own, and the batch worker checks its token with the batch's other
        tokens in one read (InvalidToken when it is not valid). Everything else is as `match`
        and `search` do it, in the same worker."""
        job = _Job(kind, None, None, entity_type, record, token=token,
                   settled=asyncio.get_running_loop().create_future())
        if self.batch:
            self._enqueue(job)
        else:
            threading.Thread(target=self._work_on, args=([job],), daemon=True).start()
        await job.settled
        return job.result()

    def _work(self) -> None:
        while True:
            try:
                jobs = [self._queue.get(timeout=IDLE_S)]
            except queue.Empty:
                with self._worker_lock:
                    if self._queue.empty():
                        self._running -= 1
                        return
                continue
            while len(jobs) < MAX_BATCH:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._work_on(jobs)

    def _work_on(self, jobs: list[_Job]) -> None:
        groups: dict[tuple[str, str], list[_Job]] = {}
        for job in self._admit(jobs):
            groups.setdefault((job.kind, job.entity_type), []).append(job)
        for group in groups.values():
            self._run(group)

    def _admit(self, jobs: list[_Job]) -> list[_Job]:
        """The API's jobs checked as `match` and `search` check theirs before they queue: the
        token (one read for the batch), the grant and rate, the input. Refused jobs end here."""
        unchecked = [j for j in jobs if j.caller is None]
        if unchecked:
            try:
                owners = verify_tokens(self.warehouse, [j.token or "" for j in unchecked])
            except Exception as exc:  # noqa: BLE001 - the warehouse is down: each request hears it
                owners = [exc] * len(unchecked)
            for job, owner in zip(unchecked, owners, strict=True):
                if isinstance(owner, BaseException):
                    job.error = owner
                else:
                    job.caller = Caller(owner.subscriber_id, owner.token_id, "api")
        for job in jobs:
            if job.error is None and job.sub is None:
                try:
                    self._prepare(job)
                except Exception as exc:  # noqa: BLE001 - that request's own error
                    job.error = exc
        _finish([j for j in jobs if j.error is not None])
        return [j for j in jobs if j.error is None]

    def _run(self, jobs: list[_Job]) -> None:
        """Answer jobs of one kind and entity type together; when that fails, one by one (one
        bad record must not fail the others). Every job ends with an answer or an error."""
        try:
            answers = (self._matches if jobs[0].kind == "match" else self._searches)(jobs)
            for job, got in zip(jobs, answers, strict=True):
                if isinstance(got, BaseException):
                    job.error = got
                else:
                    job.answer = got
        except Exception as exc:  # noqa: BLE001 - retried singly, or handed to its request
            if len(jobs) > 1:
                for job in jobs:
                    self._run([job])
                return
            jobs[0].error = exc
        _finish(jobs)

    def _found(self, kind: str, jobs: list[_Job], limit: int) -> list:
        """The matcher's answer per job (or the FrontDeskError of that job's record)."""
        entity_type, records = jobs[0].entity_type, [j.record for j in jobs]
        many = getattr(self.matcher, f"{kind}_many", None)
        if many is not None:
            got = self._call(many, entity_type, records, limit=limit)
            return [FrontDeskError(422, str(g)) if isinstance(g, ValueError) else g for g in got]
        one = getattr(self.matcher, kind)
        out: list = []
        for r in records:
            try:
                out.append(self._call(one, entity_type, r, limit=limit))
            except FrontDeskError as exc:
                if len(jobs) > 1:
                    raise  # retried one by one, where it is that request's own error
                out.append(exc)
        return out

    # -- match (核录) ----------------------------------------------------------------------------
    def match(self, caller: Caller, entity_type: str, record: object) -> dict:
        """{"checks", "candidates": [{entity_id, match_probability, decision, reason, explanation,
        record}]}: in-scope candidates only, best first, at most max_results."""
        return self._submit(self._prepare(_Job("match", caller, None, entity_type, record)))

    def _prepare(self, job: _Job) -> _Job:
        """The gate and the input of one request (FrontDeskError when refused)."""
        assert job.caller is not None
        job.sub = self._grant(job.caller, job.entity_type, job.kind)
        if job.kind == "match":
            job.record = clean_record(job.record)
            if not job.record:
                raise FrontDeskError(422, "record: give at least one field")
        else:
            job.record = clean_record(job.record, what="search")
            if not job.record:
                raise FrontDeskError(422, "search: give a selective key (for example id_number, phone, "
                                     "or name with birth_date)")
        return job

    @staticmethod
    def _match_limit(sub: Subscriber) -> int:
        # Out-of-scope candidates are dropped after matching: ask for more, then cut to the cap. A
        # network-wide grant drops only entities retired since the index was built: a small margin
        # (every candidate asked for is read and masked).
        if sub.query.scope.network:
            return sub.query.max_results * 2
        return max(sub.query.max_results * 5, 20)

    @staticmethod
    def _search_limit(sub: Subscriber) -> int:
        # one more than can be shown tells whether the answer is truncated
        return (sub.query.max_results * 2 if sub.query.scope.network else sub.query.max_results * 5) + 1

    def _matches(self, jobs: list[_Job]) -> list[dict | BaseException]:
        found = self._found("match", jobs, max(self._match_limit(j.sub) for j in jobs))
        ok = [i for i, f in enumerate(found) if not isinstance(f, BaseException)]
        # Ranking is a sort and the limit a prefix: the longest list cut to each job's own limit is
        # what that job alone would get.
        ranked = {i: found[i]["candidates"][:self._match_limit(jobs[i].sub)] for i in ok}
        views = self._views([jobs[i] for i in ok], [[c["entity_id"] for c in ranked[i]] for i in ok]) if ok else []
        answers: list[dict | BaseException] = list(found)
        rows = []
        for i, view in zip(ok, views, strict=True):
            job, cap = jobs[i], jobs[i].sub.query.max_results
            out, delivered = [], []
            for c in ranked[i]:
                seen = view.get(c["entity_id"])
                if seen is None:
                    continue
                out.append({
                    "entity_id": c["entity_id"], "match_probability": round(float(c["match_probability"]), 6),
                    "decision": c["decision"], "reason": c.get("reason"),
                    "explanation": c["explanation"],  # levels and the submitted values only
                    "record": json.loads(seen["record"]),
                })
                delivered.append(seen["fields"])
                if len(out) >= cap:
                    break
            fields = audit_fields(delivered, self.subscriptions.levels(job.sub))
            rows.append(self._audit_row(job.caller, "match", job.entity_type, found[i].get("keys", {}),
                                        [c["entity_id"] for c in out], fields, "ok"))
            answers[i] = {"checks": found[i]["checks"], "candidates": out}
        if rows:
            self.record_accesses(rows)  # committed, or journalled, before any answer is handed out
        return answers

    # -- search (查询) ---------------------------------------------------------------------------
    def search(self, caller: Caller, entity_type: str, keys: object) -> dict:
        """{"results": [{entity_id, record}], "truncated"}: exact lookups on selective keys only."""
        return self._submit(self._prepare(_Job("search", caller, None, entity_type, keys)))

    def _searches(self, jobs: list[_Job]) -> list[dict | BaseException]:
        found = self._found("search", jobs, max(self._search_limit(j.sub) for j in jobs))
        answers: list[dict | BaseException] = list(found)
        rows = []
        ok = []
        for i, f in enumerate(found):
            if isinstance(f, FrontDeskError) and f.status == 422:
                job = jobs[i]
                rows.append(self._audit_row(job.caller, "search", job.entity_type, job.record, [], {}, "refused"))
            elif not isinstance(f, BaseException):
                ok.append(i)
        # entity ids come sorted; each job's own limit is a prefix of the longest list
        ids = {i: found[i]["entity_ids"][:self._search_limit(jobs[i].sub)] for i in ok}
        views = self._views([jobs[i] for i in ok], [ids[i] for i in ok]) if ok else []
        for i, view in zip(ok, views, strict=True):
            job, cap = jobs[i], jobs[i].sub.query.max_results
            visible = [view[e] for e in sorted(view)]
            shown = visible[:cap]
            results = [{"entity_id": r["entity_id"], "record": json.loads(r["record"])} for r in shown]
            fields = audit_fields([r["fields"] for r in shown], self.subscriptions.levels(job.sub))
            rows.append(self._audit_row(job.caller, "search", job.entity_type, found[i].get("keys", {}),
                                        [r["entity_id"] for r in results], fields, "ok"))
            answers[i] = {"results": results, "truncated": len(visible) > cap}
        if rows:
            self.record_accesses(rows)  # committed, or journalled, before any answer is handed out
        return answers
