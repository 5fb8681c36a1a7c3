"""What every reader hands on: chunks of raw string rows plus the rows it had to reject.

All readers funnel through `ChunkBuilder`/`finalize` so that the contract downstream relies on
(string columns, `__row__`, `__row_hash__`, nulls for blanks, at most `chunk_rows` rows) is
enforced in exactly one place, whatever the source format.
"""

from __future__ import annotations

import hashlib
import json
from operator import methodcaller
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import polars as pl

ROW = "__row__"
ROW_HASH = "__row_hash__"
FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: cannot occur in sane field values
# Rejects are rows too: flush a chunk early when this many pile up, so memory stays bounded
# even for a file that is garbage from start to end.
REJECT_FLUSH = 10_000
# A chunk is also cut when its rows (or its rejects' original text) reach this many bytes: rows
# may be up to max_line_bytes each, and chunk_rows of those would not fit in memory. A chunk of
# ordinary rows (a few hundred bytes) reaches chunk_rows long before this.
CHUNK_BYTES = 128 << 20


@dataclass(frozen=True)
class Reject:
    """A source row that could not become a raw record; kept whole so quarantine loses nothing."""

    row_number: int  # 1-based line (text), sheet row (xlsx) or ordinal (sql)
    field: str | None  # source header concerned, if any
    reason: str  # human readable, for the data engineer
    original: str  # the row's original text (undecodable bytes as backslash escapes)


@dataclass
class Chunk:
    """A bounded slice of one drop: `rows` + `rejects` together account for every row read."""

    rows: pl.DataFrame  # pl.String per source header, then __row__ (Int64), __row_hash__ (String)
    rejects: list[Reject]
    watermark_max: str | None = None  # sql only: largest watermark value in this chunk, as text


def hash_rows(joined: Iterable[bytes]) -> list[str]:
    """SHA-1 hex of each row's text, given as UTF-8 bytes.

    A digest from the standard library, not polars' `hash()`: the row hash is stored in the
    warehouse and compared across runs, so it must not change with a library upgrade (polars
    documents its hash as unstable across versions). SHA-1 here is an identity, not a security
    measure, and it is the fastest stdlib digest for short inputs (one C call per row).
    """
    return list(map(methodcaller("hexdigest"), map(hashlib.sha1, joined)))


def hash_values(values: Sequence[str | None]) -> str:
    """The hash of one row given as values; the same digest `finalize` computes column-wise."""
    text = FIELD_SEPARATOR.join("" if v is None else v for v in values)
    return hash_rows([text.encode("utf-8", "surrogatepass")])[0]


def empty_raw_frame(columns: Sequence[str]) -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String for c in columns}, ROW: pl.Int64})


def finalize(raw: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Turn raw field text into the chunk contract.

    The hash is taken over the values as they were in the source (before stripping), so that it
    identifies the original row; the columns handed on are stripped and blank-is-null, because
    "  " and "" mean "no value" in every station export seen so far.
    """
    if ROW_HASH in raw.columns:
        hashes = raw.get_column(ROW_HASH)
    else:
        joined = raw.select(
            pl.concat_str([pl.col(c).fill_null("") for c in columns], separator=FIELD_SEPARATOR)
        ).to_series()
        # Binary to_list hands Python the UTF-8 bytes directly: no per-row str.encode().
        hashes = pl.Series(ROW_HASH, hash_rows(joined.cast(pl.Binary).to_list()), dtype=pl.String)
    stripped = raw.select(*[pl.col(c).cast(pl.String).str.strip_chars() for c in columns], pl.col(ROW))
    return stripped.select(
        *[pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)).alias(c) for c in columns],
        pl.col(ROW).cast(pl.Int64),
        hashes.alias(ROW_HASH).cast(pl.String),
    )


def reject_bytes(rejects: Iterable[Reject]) -> int:
    return sum(len(r.original) for r in rejects)


def screen(frame: pl.DataFrame, columns: Sequence[str], max_field_bytes: int) -> tuple[pl.DataFrame, list[Reject]]:
    """Move rows holding a field over `max_field_bytes` or a NUL character to rejects.

    A NUL cannot be stored in a PostgreSQL text value, and one oversized field must not be
    carried through standardisation and the warehouse; either way only that row is set aside.
    The original is kept as the row's values under its own headers (JSON: a NUL becomes \\u0000).
    """
    if not frame.height or not columns:
        return frame, []
    checks = [
        (pl.col(c).str.len_bytes() > max_field_bytes) | pl.col(c).str.contains("\x00", literal=True)
        for c in columns
    ]
    bad = pl.any_horizontal(checks).fill_null(False)
    flagged = frame.filter(bad)
    if not flagged.height:
        return frame, []
    rejects = []
    for row in flagged.iter_rows(named=True):
        values = {c: row[c] for c in columns}
        field = reason = None
        for c, v in values.items():
            size = len(v.encode("utf-8")) if v is not None else 0
            if size > max_field_bytes:
                field, reason = c, f"field {c!r} is {size:,} bytes, over the limit max_field_bytes = {max_field_bytes:,}"
                break
        if field is None:
            field = next(c for c, v in values.items() if v is not None and "\x00" in v)
            reason = f"field {field!r} contains a NUL character (binary data?)"
        original = json.dumps(values, ensure_ascii=False)  # control characters, NUL too, come out escaped
        rejects.append(Reject(row_number=row[ROW], field=field, reason=reason, original=original))
    return frame.filter(~bad), rejects


class ChunkBuilder:
    """Re-cuts frames of any size into chunks of exactly `chunk_rows` rows (the last shorter),
    or fewer when they reach CHUNK_BYTES.

    Readers parse in blocks whose size has nothing to do with `chunk_rows`; keeping the
    re-cutting here keeps each reader's loop about parsing only. With `max_field_bytes`, rows
    added with `screen_rows=True` are screened first (see `screen`).
    """

    def __init__(self, columns: Sequence[str], chunk_rows: int, max_field_bytes: int | None = None):
        self.columns = list(columns)
        self._chunk_rows = chunk_rows
        self._max_field = max_field_bytes
        self._frames: list[pl.DataFrame] = []
        self._height = 0
        self._bytes = 0
        self._rejects: list[Reject] = []
        self._reject_bytes = 0
        self._emitted = 0

    def add(
        self, frame: pl.DataFrame | None, rejects: Iterable[Reject] = (), *, screen_rows: bool = False
    ) -> Iterator[Chunk]:
        """Buffer `frame` (raw columns + __row__) and `rejects`; yield every chunk now full."""
        rejects = list(rejects)
        if frame is not None and frame.height and screen_rows and self._max_field is not None:
            frame, more = screen(frame, self.columns, self._max_field)
            rejects.extend(more)
        if frame is not None and frame.height:
            self._frames.append(frame)
            self._height += frame.height
            self._bytes += frame.estimated_size()
        self._rejects.extend(rejects)
        self._reject_bytes += reject_bytes(rejects)
        while self._height >= self._chunk_rows:
            yield self._emit(self._chunk_rows)
        if self._height and self._bytes >= CHUNK_BYTES:
            yield self._emit(self._height)
        if len(self._rejects) >= max(self._chunk_rows, REJECT_FLUSH) or self._reject_bytes >= CHUNK_BYTES:
            yield self._emit(self._height)

    def finish(self) -> Iterator[Chunk]:
        """Yield what is left; a drop always gives at least one (possibly empty) chunk."""
        if self._height or self._rejects or not self._emitted:
            yield self._emit(self._height)

    def _emit(self, n: int) -> Chunk:
        if not self._frames:
            whole = empty_raw_frame(self.columns)
        elif len(self._frames) == 1:
            whole = self._frames[0]
        else:
            whole = pl.concat(self._frames, how="vertical", rechunk=False)
        take, rest = whole.slice(0, n), whole.slice(n)
        self._frames = [rest] if rest.height else []
        self._height = rest.height
        self._bytes = rest.estimated_size() if rest.height else 0
        rejects, self._rejects = self._rejects, []
        self._reject_bytes = 0
        self._emitted += 1
        return Chunk(rows=finalize(take, self.columns), rejects=rejects)
