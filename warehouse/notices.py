"""Notices of PostgreSQL commits that change what the feed API keeps between pages.

The feed API keeps its callers' token rows and each subscriber's mark and high water between
pages (warehouse.unchanged). On SQLite a connection asks the file whether anything was committed
since it last looked; PostgreSQL has no such question, and reading the rows themselves was most
of a page's cost there (three pooled checkouts, each with a ping and a rollback: 3.4 ms of the
API's CPU a page, p99 about 160 ms under 20 clients). Instead, triggers (migration 0020) send a
notice on CHANNEL for every statement that writes one of those tables; PostgreSQL delivers it to
listeners when, and only if, its transaction commits.

A ChangeListener holds one connection that LISTENs, on the API's event loop, and counts the
notices it hears in `version`. A page trusts what is kept only after a `barrier()`: a round trip
on that connection begun after the page's request arrived. PostgreSQL sends a listener every
notice already signalled to it before it answers a command (postgres.c: "they'll be seen by the
client before ReadyForQuery is"), and a writer's commit signals listeners before it returns, so
after the barrier every commit that finished before the request has been counted: a revocation
or a build counts from its commit on, as on SQLite. Concurrent requests share one round trip
(those that arrive while one is under way wait for the next), so under load a barrier costs a
fraction of a round trip per page. While not connected, barrier() answers False and pages read
the database as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from functools import partial

import sqlalchemy as sa

CHANNEL = "enteronce_changed"  # migration 0020
APPLICATION_NAME = "enteronce-notices"  # the listening connection, as pg_stat_activity shows it
NOTIFYING_TABLES = ("feed_tokens", "feed_prepared_marks", "feed_prepared_blocks", "change_events")
MAX_ENTRIES = 10_000  # per kind: unknown token ids cannot grow it past this
IDLE_BARRIER_S = 5.0  # an idle API still reads its notices this often (they would queue on the server)
BARRIER_TIMEOUT_S = 1.0  # a round trip that takes longer: the connection is given up, pages read the warehouse

log = logging.getLogger(__name__)
_LISTENERS: weakref.WeakKeyDictionary[sa.Engine, ChangeListener] = weakref.WeakKeyDictionary()


class ChangeListener:
    """Listens for CHANNEL's notices on the engine's database (see the module's docstring). Its
    connection is made on the first barrier, on the loop that calls it."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self.version = 0  # counts notices heard, and every loss or gain of the connection
        self._conn = None  # psycopg.AsyncConnection, once connected
        self._connecting: asyncio.Task | None = None
        self._waiting: asyncio.Future | None = None  # the requests the next round trip answers
        self._flying = False
        self._idle: asyncio.Task | None = None
        self._held: tuple[int, dict[str, dict]] | None = None
        self._closed = False

    # -- what is kept ---------------------------------------------------------------------------
    def kept(self, kind: str) -> dict:
        """The memory of `kind` reads for the current version (emptied when a notice was heard
        since it was filled). Fill it with what is read after this call, from anywhere; trust it
        only after a barrier (warehouse.unchanged.Reader)."""
        version, held = self.version, self._held
        if held is None or held[0] != version:
            held = self._held = (version, {})
        got = held[1].get(kind)
        if got is None or len(got) >= MAX_ENTRIES:
            got = held[1][kind] = {}
        return got

    def wait_listening(self, timeout: float) -> bool:
        """From another thread: True once listening (the first barrier begins it), within `timeout` s."""
        deadline = time.monotonic() + timeout
        while self._conn is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._conn is not None

    # -- the barrier ----------------------------------------------------------------------------
    async def barrier(self) -> bool:
        """True once every commit finished before this call has been heard; False while not
        connected (a connection is begun in the background), and when the round trip took longer
        than BARRIER_TIMEOUT_S (the connection is then given up and made again)."""
        if self._conn is None:
            if not self._closed and (self._connecting is None or self._connecting.done()):
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return False
        waiter = self._waiting
        if waiter is None:
            waiter = self._waiting = asyncio.get_running_loop().create_future()
            if not self._flying:
                asyncio.get_running_loop().create_task(self._fly())
        return await asyncio.shield(waiter)

    async def _fly(self) -> None:
        """Round trips while requests wait, each answering those that arrived before it began."""
        self._flying = True
        try:
            while self._waiting is not None:
                waiter, self._waiting = self._waiting, None
                ok = False
                conn = self._conn
                if conn is not None:
                    # the notices signalled before it arrive through _hear
                    trip = asyncio.get_running_loop().create_task(conn.execute("SELECT 1"))
                    done, _ = await asyncio.wait({trip}, timeout=BARRIER_TIMEOUT_S)
                    if not done:
                        # a server that does not answer (stopped, cut off) holds no page up: the
                        # connection is given up now, psycopg's cancel (seconds) runs on behind
                        trip.cancel()
                        trip.add_done_callback(partial(_finish_after, conn=conn))
                        self._lost(TimeoutError(f"no answer within {BARRIER_TIMEOUT_S} s"), finish=False)
                    elif trip.exception() is not None:  # not listening any more: connect again
                        self._lost(trip.exception())
                    else:
                        ok = True
                waiter.set_result(ok)
        finally:
            self._flying = False

    async def _connect(self) -> None:
        import psycopg

        dialect = self.engine.dialect
        cargs, cparams = dialect.create_connect_args(self.engine.url)
        cparams.pop("context", None)  # the engine's adapters: this connection reads nothing
        cparams["application_name"] = APPLICATION_NAME
        try:
            conn = await psycopg.AsyncConnection.connect(*cargs, **cparams, autocommit=True)
            if not await _triggers_present(conn):
                await conn.close()
                log.warning("%s: the change notices' triggers are missing (migration 0020); the feed API "
                            "reads its tokens and marks for every page", CHANNEL)
                await asyncio.sleep(30)
                return
            conn.add_notify_handler(self._hear)
            await conn.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:  # noqa: BLE001 - tried again at a later request
            log.warning("%s: cannot listen (%s); pages read the warehouse meanwhile", CHANNEL, exc)
            await asyncio.sleep(5)
            return
        if self._closed:
            _finish(conn)
            return
        self.version += 1  # whatever was kept before was not watched
        self._conn = conn
        if self._idle is None:
            self._idle = asyncio.get_running_loop().create_task(self._idle_barriers())

    async def _idle_barriers(self) -> None:
        while not self._closed:
            await asyncio.sleep(IDLE_BARRIER_S)
            if self._conn is not None:
                await self.barrier()

    def _hear(self, _notice) -> None:
        self.version += 1

    def _lost(self, exc: Exception, *, finish: bool = True) -> None:
        log.warning("%s: the listening connection failed (%s); connecting again", CHANNEL, exc)
        conn, self._conn = self._conn, None
        self.version += 1
        if conn is not None and finish:
            _finish(conn)

    def close(self) -> None:
        """Stop listening (from any thread, once the app's loop is done with requests)."""
        self._closed = True
        conn, self._conn = self._conn, None
        if self._idle is not None:
            self._idle.cancel()
        if conn is not None:
            _finish(conn)
        if _LISTENERS.get(self.engine) is self:
            del _LISTENERS[self.engine]


def _finish_after(query: asyncio.Task, conn) -> None:
    """`_finish(conn)` once a query on it has ended (cancelled or not); its outcome is taken, so
    asyncio does not log it as an exception nobody retrieved."""
    if not query.cancelled():
        query.exception()
    _finish(conn)


def _finish(conn) -> None:
    """Close the connection without its loop (which may have ended): libpq closes the socket."""
    try:
        conn.pgconn.finish()
    except Exception:  # noqa: BLE001 - closing anyway
        pass


async def _triggers_present(conn) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM unnest(%s::text[]) AS t(name) JOIN pg_trigger g "
        "ON g.tgrelid = to_regclass(t.name) AND g.tgname = t.name || '_notify'", [list(NOTIFYING_TABLES)])
    return (await cur.fetchone())[0] == len(NOTIFYING_TABLES)


def listen(engine: sa.Engine) -> ChangeListener | None:
    """The engine's listener (one per engine: what its readers keep is kept under it); None on a
    database other than PostgreSQL with psycopg (SQLite needs none: warehouse.unchanged)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    got = _LISTENERS.get(engine)
    if got is None or got._closed:
        got = _LISTENERS[engine] = ChangeListener(engine)
    return got


def listener_of(engine: sa.Engine) -> ChangeListener | None:
    """The engine's listener, if `listen` made one."""
    return _LISTENERS.get(engine)
