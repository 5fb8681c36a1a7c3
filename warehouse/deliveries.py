"""The feed API's prepared deliveries.

Prepared blocks (`feed_prepared_blocks`) hold each subscriber's events as the API hands them out,
written by the feed build so that a page is a few rows read by key, its JSON lines already joined,
instead of scoping, projecting and masking the outbox (or reading a thousand rows) per request. A
subscriber's mark (`feed_prepared_marks`) says which stretch of the outbox its blocks cover, under
which policy digest, and in which generation: a reset (new digest, or a stretch that no longer
joins) deletes the subscriber's blocks and writes a new generation in one transaction, and every
read of blocks carries the mark as the same statement sees it, so a page never mixes the two.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from core.time import utcnow
from warehouse import schema as s
from warehouse.bulk import in_keys, insert_frame
from warehouse.store import Warehouse
from warehouse.unchanged import Reader

# What the feed build hands in: one row per event (feeds.prepared.prepared_rows)
PREPARED_SCHEMA = {"subscriber_id": pl.String, "seq": pl.Int64, "entity_id": pl.String, "about": pl.String,
                   "fields": pl.String, "line": pl.String}
BLOCK_EVENTS = 256  # events per stored block: a page of 1,000 is about five rows
ID_SEP = "\x1f"  # between a block's entity ids (and abouts): ids never hold control characters
EVENT_SEP = "\x1e"  # between a block's events' field lists (each U+001F-joined)
# between a block's JSON lines, and a page's: a JSON line holds no raw newline, so the separator
# is never inside one, and the lines joined are a JSON array's inside as they are (whitespace)
LINE_SEP = ",\n"
LINE_SEP_UTF8 = LINE_SEP.encode()  # between the chunks of a page's blocks, as bytes
WIDTH = 10  # digits per number in a block's `seqs` and `offsets` (seqs are 32-bit: ten digits)


class _Fixed:
    """A block's seqs or offsets as a sequence of ints, read where asked: a page bisects two
    blocks' seqs in a few slices instead of parsing them."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __len__(self) -> int:
        return len(self.text) // WIDTH

    def __getitem__(self, i: int) -> int:
        return int(self.text[i * WIDTH:(i + 1) * WIDTH])


@dataclass(frozen=True)
class Mark:
    """What is prepared for one subscriber: events in (from_seq, to_seq] under `digest`."""

    generation: int
    digest: str
    from_seq: int
    to_seq: int


@dataclass
class PreparedEvents:
    """Prepared events read for a page, with what its audit row needs.

    `to` is the mark's to_seq (-1 when nothing is prepared from `after` under the digest: the
    caller builds the page itself), `high` the outbox's high water, both as the statement that
    read the first block saw them. `chunks` are the events' JSON lines in seq order, LINE_SEP-joined
    UTF-8 (a block whole, or the slice of it the page takes); `more` says that another prepared
    event follows `last` within the stretch."""

    to: int
    high: int
    chunks: list[bytes] = field(default_factory=list)
    first: int | None = None
    last: int | None = None
    entity_ids: list[str] = field(default_factory=list)  # one per event
    abouts: list[str] = field(default_factory=list)  # the tasks' golden entities
    fields: set[str] = field(default_factory=set)  # the distinct stored field lists (U+001F-joined)
    more: bool = False

    @property
    def count(self) -> int:
        return len(self.entity_ids)

    def add(self, first: int, last: int, chunk: bytes, ids: list[str], abouts: list[str], fields: list[str],
            part: slice = slice(None)) -> None:
        """A block's events, or the `part` of them the page takes (`chunk` their lines), with the
        block's audit columns (split: `_held`)."""
        self.chunks.append(chunk)
        self.entity_ids += ids[part]
        if abouts:  # empty: no event of the block has one
            self.abouts += [a for a in abouts[part] if a]
        self.fields.update(fields[part])
        if self.first is None:
            self.first = first
        self.last = last


_COLUMNS = ("first_seq", "last_seq", "n", "seqs", "offsets", "entity_ids", "abouts", "fields", "lines")


def _high() -> sa.ScalarSelect:
    """The outbox's high water."""
    return sa.select(sa.func.coalesce(sa.func.max(s.change_events.c.seq), 0)).scalar_subquery()


def _mark_and_keys() -> tuple[sa.ScalarSelect, sa.ScalarSelect, sa.ScalarSelect, sa.Subquery]:
    """The mark's to_seq (under the digest, covering `after`), the outbox's high water, the mark's
    generation, and the keys (last_seq, first_seq, n) of up to `n` of its blocks ending after
    `after`, in seq order (bound parameters: sid, digest, after, n)."""
    b, m = s.feed_prepared_blocks, s.feed_prepared_marks
    sid, after = sa.bindparam("sid"), sa.bindparam("after")
    to = (sa.select(m.c.to_seq)
          .where(m.c.subscriber_id == sid, m.c.digest == sa.bindparam("digest"), m.c.from_seq <= after)
          .scalar_subquery())
    gen = sa.select(m.c.generation).where(m.c.subscriber_id == sid).scalar_subquery()
    high = _high()
    keys = (sa.select(b.c.last_seq, b.c.first_seq, b.c.n)
            .where(b.c.subscriber_id == sid, b.c.generation == gen, b.c.last_seq > after, b.c.first_seq <= to,
                   b.c.first_seq <= high)
            .order_by(b.c.last_seq).limit(sa.bindparam("n", type_=sa.Integer))).subquery()
    return to, high, gen, keys


def _lines(dialect: str) -> sa.ColumnElement:
    """On SQLite the lines come as bytes (CAST AS BLOB: the UTF-8 as stored, undecoded: they go
    out as they are); elsewhere as text (PostgreSQL's bytea would come hex-encoded, twice the size)."""
    b = s.feed_prepared_blocks
    return (sa.cast(b.c.lines, sa.LargeBinary) if dialect == "sqlite" else b.c.lines).label("lines")


def _block_statement(dialect: str) -> sa.CompoundSelect:
    """Up to `n` blocks of the subscriber's current generation ending after `after` (bound
    parameters: sid, digest, after, n), in seq order, then one row of nulls carrying the mark's
    to_seq, the outbox's high water and the generation as this statement sees them."""
    b = s.feed_prepared_blocks
    to, high, gen, keys = _mark_and_keys()
    # the blocks' keys first, their lines only for those: a plan that sorts the candidates (no
    # statistics yet on a fresh table) then never reads the lines of every block after `after`
    page = (sa.select(*(b.c[c] for c in _COLUMNS[:-1]), _lines(dialect))
            .join_from(b, keys, sa.and_(b.c.subscriber_id == sa.bindparam("sid"), b.c.last_seq == keys.c.last_seq))
            .order_by(b.c.last_seq)).subquery()
    return sa.union_all(
        sa.select(*page.c, sa.literal(None, sa.Integer).label("to_seq"), sa.literal(None, sa.Integer).label("high"),
                  sa.literal(None, sa.Integer).label("generation")),
        sa.select(*(sa.literal(None, c.type).label(c.name) for c in page.c), to.label("to_seq"),
                  high.label("high"), gen.label("generation")))


def _by_keys_statement(dialect: str) -> sa.Select:
    """The blocks of a generation by their last seqs (bound: sid, gen, keys, expanding), only while
    the mark is as the keys were read (bound: stamp, its `updated_at` as the driver gave it: text
    from SQLite), so that blocks of a mark replaced in between never pass for the ones asked for."""
    b, m = s.feed_prepared_blocks, s.feed_prepared_marks
    sid = sa.bindparam("sid")
    stamp = sa.bindparam("stamp", type_=sa.String if dialect == "sqlite" else m.c.updated_at.type)
    same_mark = sa.exists().where(m.c.subscriber_id == sid, m.c.generation == sa.bindparam("gen"),
                                  m.c.updated_at == stamp)
    return (sa.select(*(b.c[c] for c in _COLUMNS[:-1]), _lines(dialect))
            .where(b.c.subscriber_id == sid, b.c.generation == sa.bindparam("gen"),
                   b.c.last_seq.in_(sa.bindparam("keys", expanding=True)), same_mark))


def _mark_row(mark: sa.Subquery) -> sa.Select:
    """One row however many marks: the subscriber's mark's generation, digest, from_seq, to_seq and
    `updated_at` (nulls without one), and the outbox's high water (bound: sid)."""
    return (sa.select(mark.c.generation, mark.c.digest, mark.c.from_seq, mark.c.to_seq, mark.c.updated_at,
                      _high().label("high"))
            .select_from(sa.select(sa.literal(1).label("one")).subquery().outerjoin(mark, sa.true())))


def _subscriber_mark() -> sa.Subquery:
    m = s.feed_prepared_marks
    return sa.select(m).where(m.c.subscriber_id == sa.bindparam("sid")).subquery()


def _mark_statement(dialect: str) -> sa.Select:
    """The mark row of `_state_statement` alone (bound: sid)."""
    return _mark_row(_subscriber_mark())


def _state_statement(dialect: str) -> sa.CompoundSelect:
    """What a page's keys are picked from (`_State.pick`), for one subscriber (bound: sid): the keys
    (first_seq, last_seq, n) of every block of its current generation, then the mark row (`_mark_row`)."""
    b = s.feed_prepared_blocks
    mark = _subscriber_mark()
    marked = _mark_row(mark).subquery()
    return sa.union_all(
        sa.select(b.c.first_seq, b.c.last_seq, b.c.n, *(sa.literal(None, c.type).label(c.name) for c in marked.c))
        .where(b.c.subscriber_id == sa.bindparam("sid"), b.c.generation == sa.select(mark.c.generation).scalar_subquery()),
        sa.select(*(sa.literal(None, sa.Integer) for _ in range(3)), *marked.c))


@dataclass(frozen=True)
class _State:
    """A subscriber's blocks' keys (first, last, n; sorted by last seq), their last seqs, its
    mark and the high water, as `_state_statement` and `_mark_statement` read them."""

    keys: list[tuple]
    lasts: list[int]
    generation: int | None
    digest: str | None
    from_seq: int | None
    to_seq: int | None
    stamp: object
    high: int

    def pick(self, digest: str, after: int, n: int) -> tuple[list[tuple], tuple]:
        """The keys of up to `n` blocks a page after `after` reads, in seq order, and (to_seq, high,
        generation, stamp), as `_block_statement` would choose them: to_seq only under `digest`
        with `after` within the stretch, blocks of the generation up to to_seq and the high water."""
        to = self.to_seq if self.digest == digest and self.from_seq is not None and self.from_seq <= after else None
        mark = (to, self.high, self.generation, self.stamp)
        if to is None:
            return [], mark
        cap, keys, at = min(to, self.high), [], bisect_right(self.lasts, after)
        for key in self.keys[at:at + n]:
            if key[0] > cap:
                break
            keys.append(key)
        return keys, mark


def _state(reader: Reader, sid: str, kept: dict | None, trusted: bool, cache: BlockCache) -> _State:
    """The subscriber's state as last read while nothing changed (`kept`, when `trusted`:
    warehouse.unchanged); else its mark read anew (one small read a page), and its blocks' keys
    from `cache` while the mark is as they were read under. The keys of a generation
    change only when the mark's `updated_at` and to_seq do (a build: blocks added), or when a
    prune deletes blocks up to its from_seq: those are never picked again (a page starts at or
    after from_seq)."""
    got = kept.get(sid) if trusted else None
    if got is not None:
        return got

    def version(mark: tuple) -> tuple:  # (generation, digest, from_seq, to_seq, updated_at, high)
        return ("keys", sid, mark[0], str(mark[4]), mark[3])

    conn = reader.conn()
    dialect = conn.dialect.name
    mark = _rows(conn, _statement("mark", dialect), {"sid": sid})[0]
    held = cache.get(version(mark)) if mark[0] is not None else ([], [])
    if held is None:
        keys, mark = _split_mark(_rows(conn, _statement("state", dialect), {"sid": sid}), 3)
        held = ([k[:3] for k in keys], [k[1] for k in keys])
        if mark[0] is not None:
            cache.put(version(mark), held, 100 + 100 * len(keys))
    got = _State(*held, *mark)
    if kept is not None:
        kept[sid] = got
    return got


_STATEMENTS: dict[tuple[str, str], sa.Executable] = {}


def _statement(kind: str, dialect: str) -> sa.Executable:
    stmt = _STATEMENTS.get((kind, dialect))
    if stmt is None:
        build = {"blocks": _block_statement, "by_keys": _by_keys_statement, "state": _state_statement,
                 "mark": _mark_statement}[kind]
        stmt = _STATEMENTS[(kind, dialect)] = build(dialect)
    return stmt


def _rows(conn: sa.Connection, stmt: sa.Executable, params: dict) -> list[tuple]:
    result = conn.execute(stmt, params)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _split_mark(rows: list[tuple], width: int) -> tuple[list[tuple], tuple]:
    """The blocks in seq order (by last_seq, their second column) and the mark row's fields after
    the blocks' `width` columns."""
    # the databases give a UNION ALL's branches in order; should one not, the blocks are sorted here
    at = len(rows) - 1 if rows[-1][0] is None else next(i for i, r in enumerate(rows) if r[0] is None)
    mark = rows.pop(at)[width:]
    if any(rows[i][1] >= rows[i + 1][1] for i in range(len(rows) - 1)):
        rows.sort(key=lambda r: r[1])
    return rows, mark


def _held(row: tuple) -> tuple[tuple, int]:
    """A block row as the driver gives it, as a page uses it (the lines as bytes, the audit
    columns split), and about the memory it takes."""
    first, last, n, seqs, offsets, ids, abouts, fields, lines = row
    size = len(lines) + 2 * (len(seqs) + len(offsets) + len(ids) + len(fields))
    return (first, last, n, seqs, offsets, ids.split(ID_SEP), abouts.split(ID_SEP) if abouts else [],
            fields.split(EVENT_SEP), lines.encode() if isinstance(lines, str) else lines), size


def _fetch(reader: Reader, params: dict, cache: BlockCache | None = None) -> tuple[list[tuple], tuple] | None:
    """The blocks (`_held`), in seq order, and the mark row (to_seq, high, generation).

    With a `cache`, the mark is read first (or kept: `_state`) and the blocks' keys picked from
    those kept for it, and only the blocks not in memory are read whole; None when one of those
    is gone by then (a build replaced the generation meanwhile): the caller reads again, with
    the kept state forgotten (a build may have committed after the page's barrier: warehouse.notices)."""
    if cache is None:
        conn = reader.conn()
        blocks, mark = _split_mark(_rows(conn, _statement("blocks", conn.dialect.name), params), len(_COLUMNS))
        return [_held(row[:len(_COLUMNS)])[0] for row in blocks], mark  # without the mark's null columns
    kept, trusted = reader.kept("prepared")
    state = _state(reader, params["sid"], kept, trusted, cache)
    keys, (to, high, gen, stamp) = state.pick(params["digest"], params["after"], params["n"])
    mark = (to, high, gen)
    if not keys:
        return [], mark
    version = (params["sid"], gen, str(stamp))
    got = {k[1]: cache.get((*version, k[1])) for k in keys}
    missing = [last for last, row in got.items() if row is None]
    if missing:
        conn = reader.conn()
        for raw in _rows(conn, _statement("by_keys", conn.dialect.name),
                         {"sid": params["sid"], "gen": gen, "stamp": stamp, "keys": missing}):
            row, size = _held(raw)
            got[row[1]] = row
            cache.put((*version, row[1]), row, size)
        if any(got[last] is None for last in missing):
            if kept is not None:
                kept.pop(params["sid"], None)
            return None
    return [got[k[1]] for k in keys], mark


class BlockCache:
    """Prepared blocks kept in memory by a long-running reader (the feed API), least recently used
    out first past `max_bytes`. A city-wide page is about five blocks of 100 KB; read from the
    database and split each time, they were about a third of the API's loop time per page under 20
    clients (py-spy), and half of a page's service work in process (0.77 -> 0.40 ms). A block
    is immutable once written: it is keyed by its subscriber, generation, mark stamp and last
    seq, so a build that replaces or extends the subscriber's blocks makes the old entries
    unreachable (they age out)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._held: OrderedDict[tuple, tuple[tuple, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple | None:
        with self._lock:
            got = self._held.get(key)
            if got is None:
                return None
            self._held.move_to_end(key)
            return got[0]

    def put(self, key: tuple, row: tuple, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._held[key] = (row, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._held.popitem(last=False)
                self._bytes -= dropped


class PreparedStore:
    def __init__(self, store: Warehouse, *, cache_bytes: int = 0):
        """`cache_bytes`: blocks read for pages are kept in memory up to this size (BlockCache)."""
        self.store = store
        self.engine = store.engine
        self.cache = BlockCache(cache_bytes) if cache_bytes > 0 else None

    def marks(self, subscriber_ids: Iterable[str] | None = None) -> dict[str, Mark]:
        m = s.feed_prepared_marks
        stmt = sa.select(m.c.subscriber_id, m.c.generation, m.c.digest, m.c.from_seq, m.c.to_seq)
        with self.engine.connect() as conn:
            if subscriber_ids is not None:
                stmt = stmt.where(in_keys(conn, m.c.subscriber_id, list(subscriber_ids)))
            return {r[0]: Mark(r[1], r[2], r[3], r[4]) for r in conn.execute(stmt)}

    def mark(self, subscriber_id: str) -> Mark | None:
        m = s.feed_prepared_marks
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(m.c.generation, m.c.digest, m.c.from_seq, m.c.to_seq)
                             .where(m.c.subscriber_id == subscriber_id)).first()
        return None if r is None else Mark(r[0], r[1], r[2], r[3])

    def read(self, subscriber_id: str, digest: str, *, after: int, limit: int) -> PreparedEvents:
        """Up to `limit` prepared events after `after`, up to the mark's to_seq and the outbox's
        high water, in seq order (see PreparedEvents).

        Blocks are read in rounds of a few; every round's statement carries the mark as it sees
        it, and a round that finds another generation (a build replaced the blocks meanwhile)
        starts the read again, so a page is of one generation whole."""
        for _ in range(8):
            got = self._read(subscriber_id, digest, after=after, limit=limit)
            if got is not None:
                return got
        raise RuntimeError(f"the prepared pages of {subscriber_id!r} kept changing while read")

    def _read(self, subscriber_id: str, digest: str, *, after: int, limit: int) -> PreparedEvents | None:
        per_round = -(-(limit + 1) // BLOCK_EVENTS) + 1  # blocks: enough when they are full
        params = {"sid": subscriber_id, "digest": digest, "after": after, "n": per_round}
        with Reader(self.engine) as reader:
            fetched = _fetch(reader, params, self.cache)
            if fetched is None:
                return None  # replaced while read: read again
            blocks, (to, high, gen) = fetched
            if to is None or to <= after:
                return PreparedEvents(to=-1, high=high)  # nothing prepared from `after` under this digest
            out, cap = PreparedEvents(to=to, high=high), min(to, high)
            while True:
                for first, last, n, seqs, offsets, ids, abouts, fields, lines in blocks:
                    if first > cap:
                        return out
                    need = limit - out.count
                    if first > after and last <= cap and n <= need:
                        out.add(first, last, lines, ids, abouts, fields)
                        continue
                    seq = _Fixed(seqs)
                    i0, i1 = bisect_right(seq, after), bisect_right(seq, cap)
                    if i0 >= i1:
                        continue
                    if need == 0:
                        out.more = True
                        return out
                    j = min(i1, i0 + need)
                    at = _Fixed(offsets)
                    chunk = lines[at[i0]:at[j] - len(LINE_SEP) if j < n else len(lines)]
                    out.add(seq[i0], seq[j - 1], chunk, ids, abouts, fields, slice(i0, j))
                    if j < i1:
                        out.more = True
                        return out
                if len(blocks) < params["n"]:
                    return out
                params = {**params, "after": blocks[-1][1], "n": params["n"] * 2}
                fetched = _fetch(reader, params, self.cache)
                if fetched is None:
                    return None
                blocks, (now_to, _, now) = fetched
                if now != gen or now_to is None:
                    return None  # replaced (or pruned past this page) meanwhile: read again

    def write(self, rows: pl.DataFrame, *, resets: dict[str, tuple[str, int, int]],
              extends: dict[str, int]) -> dict[str, int]:
        """One build's prepared rows (PREPARED_SCHEMA, one per event), stored as blocks in one
        transaction; returns how many events each subscriber got.

        resets: subscriber -> (digest, from_seq, to_seq): its rows are replaced by those given
        with from_seq < seq <= to_seq, in a new generation. extends: subscriber -> to_seq: rows
        after its mark's to_seq are added and the mark moves to to_seq (never back)."""
        p, m = s.feed_prepared_blocks, s.feed_prepared_marks
        now = utcnow()
        ids = sorted(set(resets) | set(extends))
        if not ids:
            return {}
        with self.store.transaction(large=True) as conn:
            have = {r[0]: (r[1], r[2]) for r in conn.execute(
                sa.select(m.c.subscriber_id, m.c.generation, m.c.to_seq).where(in_keys(conn, m.c.subscriber_id, ids)))}
            # the window each subscriber's new rows must fall in; extends of a vanished mark are dropped
            lo: dict[str, int] = {}
            hi: dict[str, int] = {}
            if resets:
                reset_ids = sorted(resets)
                conn.execute(p.delete().where(in_keys(conn, p.c.subscriber_id, reset_ids)))
                conn.execute(m.delete().where(in_keys(conn, m.c.subscriber_id, reset_ids)))
                fresh = [{"subscriber_id": sid, "generation": have.get(sid, (0, 0))[0] + 1, "digest": digest,
                          "from_seq": frm, "to_seq": to, "updated_at": now}
                         for sid, (digest, frm, to) in resets.items()]
                conn.execute(m.insert(), fresh)
                for r in fresh:
                    have[r["subscriber_id"]] = (r["generation"], r["to_seq"])
                    lo[r["subscriber_id"]], hi[r["subscriber_id"]] = r["from_seq"], r["to_seq"]
            moves = [{"sid": sid, "to": to} for sid, to in extends.items()
                     if sid in have and sid not in resets and to > have[sid][1]]
            for mv in moves:
                lo[mv["sid"]], hi[mv["sid"]] = have[mv["sid"]][1], mv["to"]
            if moves:
                conn.execute(m.update().where(m.c.subscriber_id == sa.bindparam("sid"))
                             .values(to_seq=sa.bindparam("to"), updated_at=now), moves)
            if not lo or rows.height == 0:
                return {}
            window = pl.DataFrame({"subscriber_id": list(lo), "_lo": list(lo.values()),
                                   "_hi": [hi[k] for k in lo],
                                   "generation": [have[k][0] for k in lo]},
                                  schema={"subscriber_id": pl.String, "_lo": pl.Int64, "_hi": pl.Int64,
                                          "generation": pl.Int64})
            new = (rows.join(window, on="subscriber_id")
                   .filter((pl.col("seq") > pl.col("_lo")) & (pl.col("seq") <= pl.col("_hi")))
                   .drop("_lo", "_hi"))
            insert_frame(conn, p, blocks(new))
        return dict(new.group_by("subscriber_id").len().iter_rows()) if new.height else {}

    def prune(self, upto: dict[str, int]) -> None:
        """Drop each subscriber's blocks that end by a seq (its acknowledged API cursor: pages
        before it are asked again only by a client going back, and are then built on demand),
        moving its mark's from_seq up to it, in one transaction."""
        p, m = s.feed_prepared_blocks, s.feed_prepared_marks
        if not upto:
            return
        with self.store.transaction() as conn:
            marks = {r[0]: (r[1], r[2]) for r in conn.execute(
                sa.select(m.c.subscriber_id, m.c.from_seq, m.c.to_seq).where(in_keys(conn, m.c.subscriber_id,
                                                                                    sorted(upto))))}
            moves = [{"sid": sid, "upto": min(upto[sid], to)} for sid, (frm, to) in marks.items()
                     if min(upto[sid], to) > frm]
            if moves:
                conn.execute(p.delete().where(p.c.subscriber_id == sa.bindparam("sid"),
                                              p.c.last_seq <= sa.bindparam("upto")), moves)
                conn.execute(m.update().where(m.c.subscriber_id == sa.bindparam("sid"))
                             .values(from_seq=sa.bindparam("upto")), moves)

    def forget(self, keep: Iterable[str]) -> int:
        """Drop the prepared blocks and marks of subscribers no longer subscribed; returns how many."""
        p, m = s.feed_prepared_blocks, s.feed_prepared_marks
        keep = set(keep)
        with self.engine.connect() as conn:
            gone = [sid for sid in conn.scalars(sa.select(m.c.subscriber_id)) if sid not in keep]
        if gone:
            with self.store.transaction() as conn:
                conn.execute(p.delete().where(in_keys(conn, p.c.subscriber_id, gone)))
                conn.execute(m.delete().where(in_keys(conn, m.c.subscriber_id, gone)))
        return len(gone)


def _fixed(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).str.zfill(WIDTH).str.join("")


def blocks(rows: pl.DataFrame) -> pl.DataFrame:
    """Prepared rows (PREPARED_SCHEMA plus `generation`) as stored: each subscriber's events in
    seq order, BLOCK_EVENTS to a block; `seqs` and `offsets` (where each line starts in `lines`,
    in bytes) as fixed-width numbers; `abouts` empty when no event of the block has one."""
    if rows["line"].str.contains("\n", literal=True).any():
        raise ValueError("a prepared JSON line holds a raw newline (the builder's lines are compact JSON)")
    return (rows.sort("subscriber_id", "seq")
            .with_columns((pl.int_range(pl.len()).over("subscriber_id") // BLOCK_EVENTS).alias("_block"),
                          (pl.col("line").str.len_bytes() + len(LINE_SEP)).alias("_size"))
            .with_columns((pl.col("_size").cum_sum() - pl.col("_size")).over("subscriber_id", "_block").alias("_at"))
            .group_by("subscriber_id", "generation", "_block", maintain_order=True)
            .agg(pl.col("seq").first().alias("first_seq"), pl.col("seq").last().alias("last_seq"),
                 pl.len().alias("n"), _fixed("seq").alias("seqs"), _fixed("_at").alias("offsets"),
                 pl.col("entity_id").str.join(ID_SEP).alias("entity_ids"),
                 pl.when(pl.col("about").is_not_null().any())
                 .then(pl.col("about").fill_null("").str.join(ID_SEP)).otherwise(pl.lit("")).alias("abouts"),
                 pl.col("fields").str.join(EVENT_SEP).alias("fields"),
                 pl.col("line").str.join(LINE_SEP).alias("lines"))
            .drop("_block"))
