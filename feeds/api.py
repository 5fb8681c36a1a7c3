"""The feed HTTP API: what a station's system calls to receive its permissioned feed.

`create_app(warehouse_url, config_dir)` builds a FastAPI app over one warehouse engine and the
subscriptions loaded once at startup (reloaded when `subscriptions.yaml` changes on disk). All
content decisions — scope, fields, masking, cursors, the audit log — belong to `FeedService`; this
module only authenticates the caller, checks that the token belongs to the subscriber in the path,
bounds the parameters and turns the service's answers into JSON. Every page it hands out is audited
by the service with channel "api" and the token id.

Before any of that, `RequestLimitsMiddleware` refuses what a request may not make the server read
(bodies over `ApiLimits.max_body_bytes`: 413; too many or too large headers: 431), and the server
options of `ApiLimits.uvicorn_options()` bound the request head in the HTTP parser itself. /docs and
/redoc load Swagger UI and ReDoc from this server (the `fastapi-offline` package's copies), never
from a CDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.resources
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import sqlalchemy as sa
from fastapi import Body, Depends, FastAPI, HTTPException, Path as PathParam, Query, Request, Security
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from core.entity_types import load_entity_types
from core.errors import EnteronceError
from feeds.config import FIELD_NAME, read_subscriptions_bytes, subscriptions_from_bytes
from feeds.desk import DESK_CSP, desk_page
from feeds.entry import Enter, enter
from feeds.frontdesk import Caller, FrontDesk, FrontDeskError, Matcher, RateLimiter
from feeds.journal import JOURNAL_ENV, AuditJournal, JournalFull
from feeds.limits import LIMIT_ENV, ApiLimits  # noqa: F401 - LIMIT_ENV: part of this module's API
from feeds.lookup import current_records
from feeds.service import FeedService, UnknownSubscriber
from feeds.tokens import SUBSCRIBER_ID_PATTERN, InvalidToken, TokenInfo, verify_token
from warehouse import Warehouse
from warehouse import schema as wschema
from warehouse.deliveries import LINE_SEP_UTF8
from warehouse.feeds import FeedStore
from warehouse.frontdesk import record_accesses
from warehouse.notices import listen
from warehouse.unchanged import NotKept, memory_only

log = logging.getLogger("enteronce.api")

# Stricter than what a path segment could hold: no dot first (no `..`), no slashes, no quotes.
SUBSCRIBER_PATH_PATTERN = SUBSCRIBER_ID_PATTERN
ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
MAX_IDS = 200
SUBSCRIPTIONS_FILE = "subscriptions.yaml"


def _column_max(column: sa.Column) -> int:
    """The largest value a warehouse integer column holds on every backend (PostgreSQL's int2/4/8)."""
    if isinstance(column.type, sa.BigInteger):
        return 2**63 - 1
    if isinstance(column.type, sa.SmallInteger):
        return 2**15 - 1
    return 2**31 - 1


# A seq the outbox and the cursors can hold (INTEGER: int4 on PostgreSQL); beyond it is 422, not a
# database error.
MAX_SEQ = min(_column_max(c) for c in (wschema.change_events.c.seq, wschema.feed_cursors.c.acked_seq))
_PLAIN_INT = re.compile(r"0|[1-9][0-9]{0,18}")


def _plain_int(value: object) -> object:
    """An integer in a query as a station system writes it: decimal digits and nothing else. Pydantic
    alone would take '+5', ' 5', '1_000', '007' and '5.0'; here they are 422 like '1e3' and '-1'."""
    if isinstance(value, str):
        if not _PLAIN_INT.fullmatch(value):
            raise ValueError("must be a plain decimal integer: digits only, no sign, point, exponent, "
                             "spaces, underscores or leading zeros")
        return int(value)
    return value


def _bounded_int(lo: int, hi: int) -> Any:
    return Annotated[int, BeforeValidator(_plain_int), Field(ge=lo, le=hi),
                     WithJsonSchema({"type": "integer", "minimum": lo, "maximum": hi})]


SeqParam = _bounded_int(0, MAX_SEQ)
LimitParam = _bounded_int(1, MAX_LIMIT)


class UTF8JSONResponse(JSONResponse):
    """JSON with its charset spelled out, so every client reads 张三 as 张三 (Starlette already
    writes UTF-8 without escaping; some station systems only trust the header)."""

    media_type = "application/json; charset=utf-8"


# -- response models (for /docs; the payloads are the service's JSON-ready dicts) ----------------
class EventsPage(BaseModel):
    subscriber: str = Field(description="The subscriber the page is for (the token's owner).")
    events: list[dict[str, Any]] = Field(
        description="Change events in `seq` order: seq, event_id, entity_type, entity_id, op "
        "(create|update|merge|split|retire), version, changed_fields, before, after, sources, occurred_at; "
        "fields projected to the subscription and masked per its role. Delivery is at-least-once: "
        "dedupe on `event_id`.")
    next_after: int = Field(description="Pass as `after` for the next page.")
    has_more: bool = Field(description="More events are waiting after `next_after`.")
    high_water: int = Field(description="The newest `seq` in the outbox when the page was built.")


class SnapshotPage(BaseModel):
    subscriber: str
    records: list[dict[str, Any]] = Field(
        description="Active in-scope golden records (entity_id, entity_type, version, record, provenance), "
        "masked per role, ordered by entity_id.")
    next_after_entity: str | None = Field(description="Pass as `after_entity` for the next page.")
    has_more: bool
    as_of_seq: int = Field(description="The snapshot reflects every event up to this seq: continue with "
                           "`events?after=as_of_seq`.")


class RecordsPage(BaseModel):
    subscriber: str
    records: list[dict[str, Any]] = Field(description="The requested records that are in scope now, masked "
                                          "per role, in the snapshot's format.")


class Ack(BaseModel):
    seq: int = Field(ge=0, le=MAX_SEQ, strict=True, description="The last seq the subscriber has stored (a JSON "
                     "integer); the cursor never moves back and never beyond the high water mark.")


class Cursor(BaseModel):
    subscriber: str
    cursor: int | None = Field(description="The acknowledged seq, or null before the first acknowledgement.")


class Problem(BaseModel):
    detail: str


class MatchRequest(BaseModel):
    entity_type: str = Field(pattern=FIELD_NAME, max_length=32, description="An entity type, e.g. person.")
    record: dict[str, Any] = Field(description="What the resident says: fields as in stations.yaml (name, "
                                   "id_number, birth_date, sex, phone, address, ...), any subset, as text.")


class MatchAnswer(BaseModel):
    checks: list[dict[str, Any]] = Field(description="What is wrong with the submitted record (field, message): "
                                         "ID check digit, ID birth date or sex against the stated ones, "
                                         "impossible dates, malformed phone...")
    candidates: list[dict[str, Any]] = Field(description="In-scope entities, best first: entity_id, "
                                             "match_probability, decision (match|review|non_match), reason, "
                                             "explanation (per comparison: level and weight), record (the golden "
                                             "record projected and masked by the caller's role: a prefill).")


class EntryAnswer(BaseModel):
    status: str = Field(description="loaded (stored as a batch of one) | quarantined (not loaded: see errors) | "
                        "refused (not a record of the type: nothing stored).")
    batch_id: str | None = Field(description="The batch of this record; the same record entered again answers "
                                 "with the first call's batch.")
    record_key: str | None = Field(default=None, description="station_id:local_id of the stored record.")
    duplicate: bool = Field(default=False, description="The same record was entered before (status 200).")
    errors: list[dict[str, Any]] = Field(description="What is wrong, field by field: {field, message}.")
    quarantine_id: int | None = Field(description="The quarantine row keeping a quarantined record whole.")


class SearchAnswer(BaseModel):
    results: list[dict[str, Any]] = Field(description="In-scope entities whose records equal the keys exactly: "
                                          "entity_id and the masked golden record.")
    truncated: bool = Field(description="More entities matched than the caller's max_results.")


def _page(subscriber: str, key: str, items: list[str] | list[bytes], **scalars: Any) -> Response:
    """The page as JSON, with the service's JSON objects spliced in as they are (built by the feed
    builder): no decoding and re-encoding of a thousand events. `items`: the objects as text, or
    UTF-8 chunks of objects already joined by LINE_SEP (a page's prepared blocks), which go into
    the body as they are: a city page's 700 KB is copied once, not joined first (a tenth of
    the API loop's time per page)."""
    head = json.dumps({"subscriber": subscriber, **scalars}, ensure_ascii=False, separators=(",", ":"))
    parts = [head[:-1].encode("utf-8"), b',"', key.encode(), b'":[']
    if items and isinstance(items[0], str):
        parts.append(",".join(items).encode("utf-8"))
    else:
        for i, chunk in enumerate(items):
            if i:
                parts.append(LINE_SEP_UTF8)
            parts.append(chunk)
    parts.append(b"]}")
    return Response(b"".join(parts), media_type=UTF8JSONResponse.media_type)


def audit_journals(store: Warehouse, folder: Path) -> dict[str, AuditJournal]:
    """The API's audit journals in `folder`: feed deliveries and front-desk accesses."""
    return {"feeds": AuditJournal(folder / "feeds", FeedStore(store).record_deliveries, stamp="delivered_at"),
            "front-desk": AuditJournal(folder / "front-desk",
                                       lambda rows, replay: len(record_accesses(store, rows, replay=replay)),
                                       stamp="at")}


# -- subscriptions, loaded once and reloaded when the file's content changes ---------------------
class ServiceHolder:
    """One FeedService per content of subscriptions.yaml; fails closed.

    Every request stats the file (microseconds): a change of inode, size, mtime or ctime reloads it
    before the request is answered, and concurrent requests wait for that reload rather than being
    served under the old rules. ctime counts because `cp -p`, `rsync -a` or `touch -d` can set the
    mtime back but not the ctime. Besides, the bytes are read and hashed (SHA-256) at least every
    `HASH_INTERVAL` seconds, so that an edit stat cannot see (a coarse-timestamp filesystem) is
    noticed within that bound; only new bytes build a new service. Any failure to read, decode,
    parse or validate the file — a YAML error, nesting too deep, an alias bomb, bytes that are not
    UTF-8, an I/O error, a validation error, anything — drops the service: every feed answers 503
    naming the problem (no traceback, no path outside the project) until a valid file is back.
    """

    HASH_INTERVAL = 1.0  # seconds; the documented bound is this plus one request's wait

    def __init__(self, store: Warehouse, config_dir: Path, *,
                 record_deliveries: Callable[[list[dict]], object] | None = None, page_cache_bytes: int = 0):
        self.store = store
        self.record_deliveries = record_deliveries  # FeedService's audit sink (feeds.journal)
        self.page_cache_bytes = page_cache_bytes  # FeedService's prepared blocks in memory
        self.path = Path(config_dir) / SUBSCRIPTIONS_FILE
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._hashed_at = float("-inf")
        self._digest: str | None = None  # of the bytes last tried, loaded or refused
        self._state: tuple[FeedService | None, str | None] = (None, "not loaded yet")
        with self._lock:
            self._refresh()

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return ("unreadable", exc.errno)
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _stale(self) -> bool:
        return self._file_stamp() != self._stamp or time.monotonic() - self._hashed_at >= self.HASH_INTERVAL

    def _refresh(self) -> None:
        """Under the lock: read and hash the file; load it when its bytes are new."""
        self._stamp = self._file_stamp()  # before reading: a change made after it shows next time
        self._hashed_at = time.monotonic()
        try:
            data = read_subscriptions_bytes(self.path)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the feeds stop
            self._fail(exc, None)
            return
        digest = "absent" if data is None else hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return
        try:
            service = FeedService(self.store, subscriptions_from_bytes(data, source=self.path),
                                  record_deliveries=self.record_deliveries, page_cache_bytes=self.page_cache_bytes)
        except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError, ... fail closed too
            self._fail(exc, digest)
            return
        self._digest, self._state = digest, (service, None)
        log.info("subscriptions loaded: %d subscriber(s), sha256 %s", len(service.subscriptions.subscribers),
                 digest[:12])

    def _fail(self, exc: Exception, digest: str | None) -> None:
        if isinstance(exc, EnteronceError):
            reason = str(exc)
        else:  # unexpected (MemoryError, ...): no message that could carry data, and tried again
            reason, digest = f"{self.path}: could not be loaded ({exc.__class__.__name__})", None
        log.error("subscriptions not loaded, the feeds answer 503: %s", reason)
        self._digest = digest  # None: read and tried again at the next check
        self._state = (None, reason.replace(str(self.path), SUBSCRIPTIONS_FILE))

    def service(self) -> FeedService:
        if self._stale():
            with self._lock:
                if self._stale():
                    self._refresh()
        service, error = self._state
        if service is None:
            raise HTTPException(503, f"feeds unavailable: {error}")
        return service


# -- request limits (feeds.limits), applied before any work (token, routing, JSON) ----------------
async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", UTF8JSONResponse.media_type.encode()),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RequestLimitsMiddleware:
    """Pure ASGI, outside routing and authentication: too many or too large headers are 431, a
    declared Content-Length over the limit is 413 before a byte of the body is read, and a body
    without one (chunked) is counted as it streams and cut off past the limit (413). Refusals
    close the connection, so a client cannot keep streaming into it.

    It also sets how many requests do their blocking work at once (`limits.threads`: anyio's
    worker threads, which sync endpoints run in), once per event loop, at its first request: a
    server started without the app's lifespan (BackgroundServer) gets the same."""

    def __init__(self, app: Any, limits: ApiLimits):
        self.app, self.limits = app, limits
        self._loop: object = None  # the event loop whose thread limit is set

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            anyio.to_thread.current_default_thread_limiter().total_tokens = limits.threads
            self._loop = loop
        headers = scope.get("headers") or []
        if len(headers) > limits.max_headers:
            await _refuse(send, 431, f"more than {limits.max_headers} request headers")
            return
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
            len(k) + len(v) + 4 for k, v in headers)
        if head > limits.max_header_bytes:
            await _refuse(send, 431, f"request line and headers larger than {limits.max_header_bytes} bytes")
            return
        declared = None
        for k, v in headers:
            if k == b"content-length":
                if declared is not None or not v.isdigit() or len(v) > 19:
                    await _refuse(send, 400, "invalid Content-Length")
                    return
                declared = int(v)
        too_large = f"request body larger than {limits.max_body_bytes} bytes"
        if declared is not None and declared > limits.max_body_bytes:
            await _refuse(send, 413, too_large)
            return

        received = 0
        over = started = False

        async def receive_limited() -> dict:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:
                    over = True  # the app sees a client gone; its answer is replaced by 413
                    return {"type": "http.disconnect"}
            return message

        async def send_limited(message: dict) -> None:
            nonlocal started
            if over:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_limited, send_limited)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(send, 413, too_large)


# -- authentication: dependencies shared by every feed endpoint ----------------------------------
_bearer = HTTPBearer(auto_error=False, scheme_name="subscriber token",
                     description="A subscriber's bearer token from `enteronce token issue`.")


async def _presented(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> str:
    """The bearer token as sent (401 when there is none); async, so it costs the request no thread."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="enteronce"'})
    return credentials.credentials


def _invalid_token() -> HTTPException:
    return HTTPException(401, "invalid or revoked token", headers={
        "WWW-Authenticate": 'Bearer realm="enteronce", error="invalid_token"'})


def _verified(store: Warehouse, presented: str) -> TokenInfo:
    """The token's owner: 401 for a missing, malformed, unknown or revoked token (alike, on purpose)."""
    try:
        return verify_token(store, presented)
    except InvalidToken:
        raise _invalid_token() from None


def _caller(request: Request, presented: Annotated[str, Depends(_presented)]) -> TokenInfo:
    """Who is calling (see _verified)."""
    return _verified(request.app.state.warehouse, presented)


SubscriberPath = Annotated[str, PathParam(pattern=SUBSCRIBER_PATH_PATTERN, max_length=64,
                                          description="The subscriber id, as in subscriptions.yaml.")]


class Claim:
    """A request's claim to a subscriber's feed: the bearer token as sent and the subscriber in the
    path. `check()` verifies it in the endpoint's own worker thread, where a sync dependency would
    cost every request a hop to another thread (about a millisecond of CPU here); the subscriber is
    only to be had from `check()`, so no endpoint can serve a feed without it."""

    __slots__ = ("_store", "_subscriber", "_presented")

    def __init__(self, store: Warehouse, subscriber: str, presented: str):
        self._store, self._subscriber, self._presented = store, subscriber, presented

    def check(self) -> tuple[str, TokenInfo]:
        """(subscriber, token); 401 as _verified, 403 when the token is another subscriber's
        (authenticated, not entitled)."""
        token = _verified(self._store, self._presented)
        if token.subscriber_id != self._subscriber:
            raise HTTPException(403, "this token is not for this subscriber")
        return self._subscriber, token


async def _claim(request: Request, subscriber: SubscriberPath, presented: Annotated[str, Depends(_presented)]
                 ) -> Claim:
    return Claim(request.app.state.warehouse, subscriber, presented)


Authorised = Annotated[Claim, Depends(_claim)]
EntityIdQuery = Annotated[str, Field(pattern=ENTITY_ID_PATTERN, max_length=64)]


# -- the app -----------------------------------------------------------------------------------
DESCRIPTION = """
Permissioned subscription feeds of the enteronce hub: golden records and their changes for a
subscriber's scope only, with only the fields its role allows, masked per role.

* Authenticate with `Authorization: Bearer <token>` (issued with `enteronce token issue`).
  A token only opens its own subscriber's feed: others answer 403.
* A new consumer reads the **snapshot** page by page, then the **events** after its `as_of_seq`.
* Events are delivered at least once: dedupe on `event_id`; **acknowledge** the last stored seq.
* Every page delivered is written to the audit log with the token id.
"""


# /docs and /redoc on a closed network: Swagger UI and ReDoc from the fastapi-offline package,
# served by this app; the pages' Content-Security-Policy lets the browser load nothing from elsewhere.
DOCS_ASSETS = "/docs-assets"
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


REDOC_LOGO = b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'  # ReDoc's footer logo, always fetched


def _docs_assets_dir() -> Path:
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


@functools.lru_cache(maxsize=1)
def _redoc_js() -> bytes:
    """ReDoc's bundle with its one outside fetch (the 'API docs by Redocly' logo) pointed at an
    empty data: URL, which ReDoc hides as a broken image; the CSP would block it anyway, noisily."""
    return (_docs_assets_dir() / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, b'src:"data:,"')


def _add_docs(app: FastAPI) -> None:
    assets = _docs_assets_dir()
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        if not (assets / name).is_file():
            raise EnteronceError(f"the API docs' assets are incomplete: {assets / name} is missing "
                                 f"(reinstall fastapi-offline)")

    @app.get(f"{DOCS_ASSETS}/redoc.js", include_in_schema=False)
    def redoc_js() -> Response:
        return Response(_redoc_js(), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    def page(html: HTMLResponse) -> HTMLResponse:
        html.headers["Content-Security-Policy"] = DOCS_CSP
        html.headers["X-Content-Type-Options"] = "nosniff"
        return html

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return page(get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None}))  # no badge fetched from validator.swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return page(get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False))


def create_app(warehouse_url: str, config_dir: Path | str, *, limits: ApiLimits | None = None,
               matcher: Matcher | None = None, audit_key: bytes | None = None,
               store: Warehouse | None = None, entry: Enter | None = None,
               journal_dir: Path | None = None) -> FastAPI:
    """The API over one warehouse (one engine, migrated once) and one project folder; `limits`
    default to ApiLimits.from_env() (the defaults unless ENTERONCE_API_* say otherwise).

    `journal_dir`: the audit rows of feed pages and front-desk answers go through audit journals
    there (feeds.journal: written before the answer leaves, committed after it; `feeds/` and
    `front-desk/`); without it each is committed before. The journals are `app.state.journals`;
    the app's shutdown (or BackgroundServer's exit) closes them.

    `matcher` (pipelines/frontdesk.py) opens the front desk, /v1/match and /v1/search, whose audit
    rows hash the query keys under `audit_key`; without a matcher they answer 503. `entry`
    (pipelines/entry.py) opens POST /v1/records (without it, 503). /desk is the officers' page."""
    limits = limits if limits is not None else ApiLimits.from_env()
    store = store if store is not None else Warehouse(warehouse_url).migrate()
    journals = audit_journals(store, journal_dir) if journal_dir is not None else {}
    holder = ServiceHolder(store, Path(config_dir), record_deliveries=journals["feeds"].record if journals else None,
                           page_cache_bytes=limits.page_cache_mb * 2**20)
    limiter = RateLimiter()
    desks: dict[int, tuple[FeedService, FrontDesk]] = {}
    notices = listen(store.engine)  # PostgreSQL: what pages keep, forgotten on every commit that changes it

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        close_app(app)

    app = FastAPI(title="enteronce feeds", version="1", description=DESCRIPTION,
                  default_response_class=UTF8JSONResponse, docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None, lifespan=lifespan)
    app.state.warehouse = store
    app.state.journals = journals
    app.state.notices = notices

    @app.exception_handler(JournalFull)
    async def audit_unavailable(_request: Request, exc: JournalFull) -> Response:
        # nothing leaves without its audit row: while the log refuses rows, no answers
        log.error("%s", exc)
        return UTF8JSONResponse({"detail": "the audit log is unavailable; try again later"}, status_code=503,
                                headers={"Retry-After": "30"})
    app.state.services = holder
    app.state.limits = limits
    app.add_middleware(RequestLimitsMiddleware, limits=limits)
    _add_docs(app)

    def service_for(subscriber: str) -> FeedService:
        service = holder.service()
        try:
            service.subscriber(subscriber)
        except UnknownSubscriber:
            raise HTTPException(403, f"no subscription for {subscriber!r}") from None
        return service

    errors_401 = {"model": Problem, "description": "Missing, malformed, unknown or revoked token."}
    errors = {401: errors_401,
              403: {"model": Problem, "description": "The token belongs to another subscriber, or there is no "
                    "subscription."},
              422: {"description": "A parameter out of bounds or a subscriber id that is not one."}}

    def desk() -> FrontDesk:
        """The front desk under the subscriptions now in force (one per content of the file)."""
        service = holder.service()
        got = desks.get(id(service))
        if got is None or got[0] is not service:
            if (matcher is not None or entry is not None) and audit_key is None:
                raise HTTPException(503, "the front desk has no audit key")
            got = (service, FrontDesk(store, service.subscriptions, matcher, audit_key=audit_key or b"",
                                      limiter=limiter,
                                      record_accesses=journals["front-desk"].record if journals else None))
            desks.clear()
            desks[id(service)] = got
        return got[1]

    def refused(exc: FrontDeskError) -> HTTPException:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return HTTPException(exc.status, exc.detail, headers=headers)

    def front_desk_call(fn, *args) -> dict:
        try:
            return fn(*args)
        except FrontDeskError as exc:
            raise refused(exc) from None

    async def front_desk_answer(kind: str, presented: str, entity_type: str, record: object) -> Response:
        # async all the way: the token, grant, matching, masking and audit run in the front desk's
        # batch worker, the request only waits for them (no thread per request, no hop between)
        try:
            answer = await desk().answer(kind, presented, entity_type, record)
        except InvalidToken:
            raise _invalid_token() from None
        except FrontDeskError as exc:
            raise refused(exc) from None
        # JSON-ready already: a Response skips FastAPI's re-validation and encoding of the answer
        # (the response model is for /docs), a few milliseconds of a match's answer
        return UTF8JSONResponse(answer)

    desk_errors = {401: errors_401, 403: {"model": Problem, "description": "No subscription, no query grant, or an "
                                          "entity type outside it."},
                   422: {"model": Problem, "description": "An unknown field, a wildcard, a value too long, or a "
                         "search without a selective key."},
                   429: {"model": Problem, "description": "Over the caller's per-minute queries (Retry-After)."},
                   503: {"model": Problem, "description": "No match index on this server, or none built yet."}}

    @app.post("/v1/match", response_model=MatchAnswer, responses=desk_errors, tags=["front desk"],
              summary="Match one record (核录): checks and candidate entities with a masked prefill")
    async def post_match(presented: Annotated[str, Depends(_presented)], body: Annotated[MatchRequest, Body()]
                         ) -> Response:
        return await front_desk_answer("match", presented, body.entity_type, body.record)

    @app.get("/v1/search", response_model=SearchAnswer, responses=desk_errors, tags=["front desk"],
             summary="Search (查询) by a selective key: id_number, phone, name with birth_date, credit_code...")
    async def get_search(
        request: Request, presented: Annotated[str, Depends(_presented)],
        entity_type: Annotated[str, Query(pattern=FIELD_NAME, max_length=32, description="An entity type.")],
    ) -> Response:
        params = request.query_params
        repeated = sorted({k for k in params.keys() if len(params.getlist(k)) > 1})
        if repeated:
            raise HTTPException(422, f"repeated parameter(s) {repeated}")
        keys = {k: v for k, v in params.items() if k != "entity_type"}
        return await front_desk_answer("search", presented, entity_type, keys)

    @app.post("/v1/records", response_model=EntryAnswer, status_code=201, tags=["front desk"],
              responses={**desk_errors, 200: {"model": EntryAnswer, "description": "The same record was entered "
                                              "before: its batch."},
                         403: {"model": Problem, "description": "No entry grant (query.entry, station subscribers "
                               "only), or an entity type outside it."},
                         422: {"model": EntryAnswer, "description": "Quarantined (errors field by field, quarantine "
                               "id) or not a record of the type."}},
              summary="Enter a verified record (采录) of the caller's station: a batch of one, like a drop")
    def post_records(token: Annotated[TokenInfo, Depends(_caller)], body: Annotated[MatchRequest, Body()]
                     ) -> Response:
        caller = Caller(token.subscriber_id, token.token_id, "api")
        status, answer = front_desk_call(lambda: enter(desk(), entry, caller, body.entity_type, body.record))
        return UTF8JSONResponse(answer, status_code=status)

    @app.get("/desk", include_in_schema=False)
    def front_desk_page() -> HTMLResponse:
        html = HTMLResponse(desk_page(load_entity_types(config_dir)))  # the project's types, as now on disk
        html.headers["Content-Security-Policy"] = DESK_CSP
        html.headers["X-Content-Type-Options"] = "nosniff"
        html.headers["Referrer-Policy"] = "no-referrer"
        html.headers["Cache-Control"] = "no-store"
        return html

    @app.get("/healthz", summary="Liveness and warehouse reachability", tags=["health"])
    def healthz() -> dict:
        try:
            store.max_event_seq()  # one cheap read: the warehouse answers
        except sa.exc.SQLAlchemyError:
            return UTF8JSONResponse({"status": "unavailable", "warehouse": "unreachable"}, status_code=503)
        return {"status": "ok"}

    # A prepared page on a SQLite warehouse is a few indexed reads of a local file (well under a
    # millisecond): the event loop serves it at once, sparing the request two hops between threads
    # and the GIL hand-offs that go with them (a fifth of a page's CPU under 20 clients). On
    # PostgreSQL the loop serves a page only from memory (its token, mark and blocks kept), once
    # the listener's barrier has heard every commit before the request (warehouse.notices); a
    # page that would read across the socket is not begun there (NotKept).
    # A page that must be built (past the last build, under a changed policy) takes a worker
    # thread, as does every page whose audit row waits for a commit (no journal) or a disk flush
    # (ENTERONCE_AUDIT_FSYNC=1).
    pages_in_loop = bool(journals) and not journals["feeds"].fsync and (
        store.engine.dialect.name == "sqlite" or notices is not None)

    @app.get("/v1/feeds/{subscriber}/events", response_model=EventsPage, responses=errors, tags=["feeds"],
             summary="Change events after a sequence number")
    async def get_events(
        who: Authorised,
        after: Annotated[SeqParam | None, Query(description="Return events with seq greater than "
                                                "this; omitted: from the acknowledged cursor.")] = None,
        limit: Annotated[LimitParam, Query(description="Events per page.")] = DEFAULT_LIMIT,
    ) -> Response:
        def answer(prepared_only: bool) -> Response | None:
            subscriber, token = who.check()
            page = service_for(subscriber).events(subscriber, after=after, limit=limit, channel="api",
                                                  token_id=token.token_id, prepared_only=prepared_only)
            return None if page is None else _page(subscriber, "events", page.chunks, next_after=page.next_after,
                                                   has_more=page.has_more, high_water=page.high_water)

        async def in_loop() -> Response | None:
            if notices is None:  # SQLite: its connections check what they keep themselves
                return answer(True)
            if not await notices.barrier():
                return None
            try:
                with memory_only():
                    return answer(True)
            except NotKept:
                return None

        return (await in_loop() if pages_in_loop else None) or await anyio.to_thread.run_sync(answer, False)

    @app.get("/v1/feeds/{subscriber}/snapshot", response_model=SnapshotPage, responses=errors, tags=["feeds"],
             summary="All in-scope golden records, page by page")
    def get_snapshot(
        who: Authorised,
        after_entity: Annotated[str | None, Query(pattern=ENTITY_ID_PATTERN, max_length=64,
                                                  description="Return records with entity_id greater than "
                                                  "this.")] = None,
        limit: Annotated[LimitParam, Query(description="Records per page.")] = DEFAULT_LIMIT,
    ) -> Response:
        subscriber, token = who.check()
        page = service_for(subscriber).snapshot(subscriber, after_entity=after_entity, limit=limit, channel="api",
                                                token_id=token.token_id)
        return _page(subscriber, "records", page.lines, next_after_entity=page.next_after_entity,
                     has_more=page.has_more, as_of_seq=page.as_of_seq)

    @app.get("/v1/feeds/{subscriber}/records", response_model=RecordsPage, responses=errors, tags=["feeds"],
             summary="Current records by entity id (e.g. a resident who just moved into the area)")
    def get_records(
        who: Authorised,
        entity_id: Annotated[list[EntityIdQuery],
                             Query(min_length=1, max_length=MAX_IDS,
                                   description="Entity ids (repeat the parameter). Ids out of scope, of "
                                   "other types or not active are absent from the answer.")],
    ) -> Response:
        subscriber, token = who.check()
        lines = current_records(service_for(subscriber), subscriber, entity_id, channel="api",
                                token_id=token.token_id)
        return _page(subscriber, "records", lines)

    @app.post("/v1/feeds/{subscriber}/ack", response_model=Cursor, responses={
        **errors, 409: {"model": Problem, "description": "seq beyond the high water mark."}}, tags=["feeds"],
        summary="Acknowledge: advance the subscriber's cursor")
    def post_ack(who: Authorised, ack: Annotated[Ack, Body()]) -> dict:
        subscriber, _ = who.check()
        service = service_for(subscriber)
        high = store.max_event_seq()
        if ack.seq > high:
            raise HTTPException(409, f"seq {ack.seq} is beyond the high water mark {high}")
        try:
            cursor = service.acknowledge(subscriber, ack.seq, channel="api")
        except EnteronceError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"subscriber": subscriber, "cursor": cursor}

    @app.get("/v1/feeds/{subscriber}/cursor", response_model=Cursor, responses=errors, tags=["feeds"],
             summary="The acknowledged cursor")
    def get_cursor(who: Authorised) -> dict:
        subscriber, _ = who.check()
        return {"subscriber": subscriber, "cursor": service_for(subscriber).cursor(subscriber, channel="api")}

    return app


def close_app(app: FastAPI) -> None:
    """What the app holds open beyond its requests: its audit journals (they commit what they
    hold, then close) and its listener for change notices."""
    for journal in getattr(app.state, "journals", {}).values():
        journal.close()
    notices = getattr(app.state, "notices", None)
    if notices is not None:
        notices.close()


def app_from_env() -> FastAPI:
    """For `uvicorn --factory feeds.api:app_from_env` (several workers, or a separate process):
    the project folder and warehouse from ENTERONCE_CONFIG and ENTERONCE_WAREHOUSE_URL, the limits
    from ENTERONCE_API_* (ApiLimits.from_env). Run uvicorn with `--http
    feeds.http_protocol:EnvBoundedHttpToolsProtocol` (what `enteronce serve` uses) to bound request
    heads in the parser too. ENTERONCE_AUDIT_JOURNAL names the folder of the audit journals
    (feeds.journal); without it each audit row is committed before its answer is sent."""
    missing = [k for k in ("ENTERONCE_CONFIG", "ENTERONCE_WAREHOUSE_URL") if not os.environ.get(k)]
    if missing:
        raise EnteronceError(f"app_from_env: set {', '.join(missing)}")
    journal = os.environ.get(JOURNAL_ENV)
    return create_app(os.environ["ENTERONCE_WAREHOUSE_URL"], os.environ["ENTERONCE_CONFIG"],
                      journal_dir=Path(journal) if journal else None)


class BackgroundServer:
    """The app on a real loopback socket in a thread of this process (tests, embedding):
    `with BackgroundServer(app) as url: httpx.get(url + "/healthz")`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        limits = getattr(app.state, "limits", None) or ApiLimits()
        self._app = app
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                     **limits.uvicorn_options()))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        close_app(self._app)  # no lifespan here: the server has stopped, its journals commit and close
