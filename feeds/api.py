"""The feed HTTP API: what a station's system calls to receive its permissioned feed.

`create_app(warehouse_url, config_dir)` builds a FastAPI app over one warehouse engine and the
subscriptions loaded once at startup (reloaded when `subscriptions.yaml` changes on disk). All
content decisions — scope, fields, masking, cursors, the audit log — belong to `FeedService`; this
module only authenticates the caller, checks that the token belongs to the subscriber in the path,
bounds the parameters and turns the service's answers into JSON. Every page it hands out is audited
by the service with channel "api" and the token id.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Body, Depends, FastAPI, HTTPException, Path as PathParam, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from connectors.errors import EnteronceError
from feeds.config import load_subscriptions
from feeds.lookup import current_records
from feeds.service import FeedService, UnknownSubscriber
from feeds.tokens import SUBSCRIBER_ID_PATTERN, InvalidToken, TokenInfo, verify_token
from warehouse import Warehouse

log = logging.getLogger("enteronce.api")

# Stricter than what a path segment could hold: no dot first (no `..`), no slashes, no quotes.
SUBSCRIBER_PATH_PATTERN = SUBSCRIBER_ID_PATTERN
ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
MAX_IDS = 200
MAX_SEQ = 2**62
SUBSCRIPTIONS_FILE = "subscriptions.yaml"


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
    seq: int = Field(ge=0, description="The last seq the subscriber has stored; the cursor never moves back "
                     "and never beyond the high water mark.")


class Cursor(BaseModel):
    subscriber: str
    cursor: int | None = Field(description="The acknowledged seq, or null before the first acknowledgement.")


class Problem(BaseModel):
    detail: str


def _page(subscriber: str, key: str, lines: list[str], **scalars: Any) -> Response:
    """The page as JSON, with the service's JSON lines spliced in as they are (already UTF-8 JSON
    objects, built by the feed builder): no decoding and re-encoding of a thousand events."""
    head = json.dumps({"subscriber": subscriber, **scalars}, ensure_ascii=False, separators=(",", ":"))
    body = f'{head[:-1]},"{key}":[{",".join(lines)}]}}'
    return Response(body.encode("utf-8"), media_type=UTF8JSONResponse.media_type)


# -- subscriptions, loaded once and reloaded when the file changes -----------------------------
class ServiceHolder:
    """One FeedService per version of subscriptions.yaml.

    The file's mtime is looked at no more than once a second; a file that no longer validates
    fails closed (503 naming the problem) rather than serving under rules nobody wrote.
    """

    def __init__(self, store: Warehouse, config_dir: Path):
        self.store = store
        self.path = Path(config_dir) / SUBSCRIPTIONS_FILE
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[int, int] | None = None
        self._service: FeedService | None = None
        self._error: str | None = None
        self._load()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        try:
            self._service = FeedService(self.store, load_subscriptions(self.path.parent))
            self._error = None
        except EnteronceError as exc:
            self._service, self._error = None, str(exc)
            log.error("subscriptions not loaded: %s", exc)

    def service(self) -> FeedService:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            with self._lock:
                if now - self._checked >= 1.0:
                    self._checked = now
                    if self._file_stamp() != self._stamp:
                        self._load()
        if self._service is None:
            raise HTTPException(503, f"feeds unavailable: {self._error}")
        return self._service


# -- authentication: dependencies shared by every feed endpoint ----------------------------------
_bearer = HTTPBearer(auto_error=False, scheme_name="subscriber token",
                     description="A subscriber's bearer token from `enteronce token issue`.")


def _caller(request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> TokenInfo:
    """Who is calling: 401 for a missing, malformed, unknown or revoked token (alike, on purpose)."""
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="enteronce"'})
    try:
        return verify_token(request.app.state.warehouse, credentials.credentials)
    except InvalidToken:
        raise HTTPException(401, "invalid or revoked token", headers={
            "WWW-Authenticate": 'Bearer realm="enteronce", error="invalid_token"'}) from None


SubscriberPath = Annotated[str, PathParam(pattern=SUBSCRIBER_PATH_PATTERN, max_length=64,
                                          description="The subscriber id, as in subscriptions.yaml.")]


def _authorised(subscriber: SubscriberPath, token: Annotated[TokenInfo, Depends(_caller)]) -> tuple[str, TokenInfo]:
    """The token must be the subscriber's own: 403 otherwise (authenticated, not entitled)."""
    if token.subscriber_id != subscriber:
        raise HTTPException(403, "this token is not for this subscriber")
    return subscriber, token


Authorised = Annotated[tuple[str, TokenInfo], Depends(_authorised)]
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


def create_app(warehouse_url: str, config_dir: Path | str) -> FastAPI:
    """The API over one warehouse (one engine, migrated once) and one project folder."""
    store = Warehouse(warehouse_url).migrate()
    holder = ServiceHolder(store, Path(config_dir))

    app = FastAPI(title="enteronce feeds", version="1", description=DESCRIPTION,
                  default_response_class=UTF8JSONResponse)
    app.state.warehouse = store
    app.state.services = holder

    def service_for(subscriber: str) -> FeedService:
        service = holder.service()
        try:
            service.subscriber(subscriber)
        except UnknownSubscriber:
            raise HTTPException(403, f"no subscription for {subscriber!r}") from None
        return service

    errors = {401: {"model": Problem, "description": "Missing, malformed, unknown or revoked token."},
              403: {"model": Problem, "description": "The token belongs to another subscriber, or there is no "
                    "subscription."},
              422: {"description": "A parameter out of bounds or a subscriber id that is not one."}}

    @app.get("/healthz", summary="Liveness and warehouse reachability", tags=["health"])
    def healthz() -> dict:
        try:
            store.max_event_seq()  # one cheap read: the warehouse answers
        except sa.exc.SQLAlchemyError:
            return UTF8JSONResponse({"status": "unavailable", "warehouse": "unreachable"}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/feeds/{subscriber}/events", response_model=EventsPage, responses=errors, tags=["feeds"],
             summary="Change events after a sequence number")
    def get_events(
        who: Authorised,
        after: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Return events with seq greater than "
                                           "this; omitted: from the acknowledged cursor.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Events per page.")] = DEFAULT_LIMIT,
    ) -> Response:
        subscriber, token = who
        page = service_for(subscriber).events(subscriber, after=after, limit=limit, channel="api",
                                              token_id=token.token_id)
        return _page(subscriber, "events", page.lines, next_after=page.next_after, has_more=page.has_more,
                     high_water=page.high_water)

    @app.get("/v1/feeds/{subscriber}/snapshot", response_model=SnapshotPage, responses=errors, tags=["feeds"],
             summary="All in-scope golden records, page by page")
    def get_snapshot(
        who: Authorised,
        after_entity: Annotated[str | None, Query(pattern=ENTITY_ID_PATTERN, max_length=64,
                                                  description="Return records with entity_id greater than "
                                                  "this.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Records per page.")] = DEFAULT_LIMIT,
    ) -> Response:
        subscriber, token = who
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
        subscriber, token = who
        lines = current_records(service_for(subscriber), subscriber, entity_id, channel="api",
                                token_id=token.token_id)
        return _page(subscriber, "records", lines)

    @app.post("/v1/feeds/{subscriber}/ack", response_model=Cursor, responses={
        **errors, 409: {"model": Problem, "description": "seq beyond the high water mark."}}, tags=["feeds"],
        summary="Acknowledge: advance the subscriber's cursor")
    def post_ack(who: Authorised, ack: Annotated[Ack, Body()]) -> dict:
        subscriber, _ = who
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
        subscriber, _ = who
        return {"subscriber": subscriber, "cursor": service_for(subscriber).cursor(subscriber, channel="api")}

    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory feeds.api:app_from_env` (several workers, or a separate process):
    the project folder and warehouse from ENTERONCE_CONFIG and ENTERONCE_WAREHOUSE_URL."""
    missing = [k for k in ("ENTERONCE_CONFIG", "ENTERONCE_WAREHOUSE_URL") if not os.environ.get(k)]
    if missing:
        raise EnteronceError(f"app_from_env: set {', '.join(missing)}")
    return create_app(os.environ["ENTERONCE_WAREHOUSE_URL"], os.environ["ENTERONCE_CONFIG"])


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
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
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
