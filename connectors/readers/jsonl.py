"""JSON Lines drops: one object per line; keys play the role of headers.

Objects from station systems omit keys freely (a missing key is a null, not an error), so there is
no header to check except one sanity check: if no object in the first chunk carries the key
mapped to `local_id`, the mapping is wrong for this file and nothing downstream could key a record.

Bounded cost: lines over max_line_bytes fail the file (see blocks); a line nested deeper than
max_json_depth, or one the decoder refuses for its size (a 5,000-digit integer), is quarantined
without being decoded further; a value over max_field_bytes or holding a NUL quarantines its row;
more distinct keys than max_columns fail the file (each key is a column of every chunk).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from pathlib import Path

import polars as pl

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers.blocks import iter_blocks
from connectors.readers.encoding import detect_encoding
from connectors.readers.header import clean_cell
from connectors.readers.model import (
    CHUNK_BYTES,
    REJECT_FLUSH,
    ROW,
    ROW_HASH,
    Chunk,
    Reject,
    finalize,
    hash_values,
)
from connectors.readers.safe import DropFile

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(line: str) -> int:
    """How deeply the JSON text nests arrays and objects (brackets inside strings not counted)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", line))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def read_jsonl(source: SourceConfig, path: DropFile | Path) -> Iterator[Chunk]:
    """Chunks of a JSON Lines file. File-level problems raise here, before the first chunk."""
    encoding = detect_encoding(path, source.encoding)
    chunks = _chunks(source, path, encoding)
    first = next(chunks)  # parse the first chunk now: a wrong mapping fails before any data moves
    return _prepend(first, chunks)


def _prepend(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def _chunks(source: SourceConfig, path: DropFile | Path, encoding: str) -> Iterator[Chunk]:
    file = path.label if isinstance(path, DropFile) else str(path)
    limits = source.effective_limits
    max_depth, max_field, max_columns = limits.max_json_depth, limits.max_field_bytes, limits.max_columns
    columns: dict[str, None] = dict.fromkeys(source.columns)  # ordered set: mapped keys first
    rows: list[dict[str, str | None]] = []
    rownums: list[int] = []
    hashes: list[str] = []
    rejects: list[Reject] = []
    held = 0  # bytes of the lines held in `rows` and `rejects`
    emitted = 0
    id_key = source.column_for("local_id")
    id_seen = False

    def emit() -> Chunk:
        nonlocal rows, rownums, hashes, rejects, emitted, held
        if emitted == 0 and rows and not id_seen:
            raise SourceError(
                file,
                f"no JSON object among the first {len(rows)} has the key {id_key!r} (mapped to "
                f"local_id); other keys seen: {[k for k in columns if k not in source.columns]}",
                field=id_key,
            )
        cols = list(columns)
        frame = pl.DataFrame(
            [pl.Series(c, [r.get(c) for r in rows], dtype=pl.String) for c in cols]
            + [pl.Series(ROW, rownums, dtype=pl.Int64), pl.Series(ROW_HASH, hashes, dtype=pl.String)]
        )
        chunk = Chunk(rows=finalize(frame, cols), rejects=rejects)
        rows, rownums, hashes, rejects = [], [], [], []
        held = 0
        emitted += 1
        return chunk

    flush_at = max(source.chunk_rows, REJECT_FLUSH)
    for block in iter_blocks(path, encoding, max_line_bytes=limits.max_line_bytes):
        rejects.extend(block.rejects)
        for number, text in block.numbered_lines():
            line = text.strip()
            if not line:
                continue
            original = text.rstrip("\r\n")
            held += len(line)
            value = None
            if line.count("[") + line.count("{") > max_depth and (depth := json_depth(line)) > max_depth:
                rejects.append(Reject(number, None, f"JSON nested {depth} levels deep, over the limit "
                                                    f"max_json_depth = {max_depth}", original))
            else:
                try:
                    value = json.loads(line, parse_float=_float_text, parse_constant=str)
                except json.JSONDecodeError as exc:
                    rejects.append(Reject(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}", original))
                except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4,300 digits
                    rejects.append(Reject(number, None, f"invalid JSON: {str(exc).splitlines()[0][:200]}", original))
                else:
                    if not isinstance(value, dict):
                        rejects.append(
                            Reject(number, None, f"JSON value is not an object (got {_json_type(line)})", original)
                        )
                        value = None
            if value is not None:
                row = {clean_cell(k): _render(v) for k, v in value.items()}
                if len(line) > max_field // 4 or "\\u0000" in line:
                    bad = _bad_value(row, max_field)
                    if bad is not None:
                        rejects.append(Reject(number, bad[0], bad[1], original))
                        row = None
            else:
                row = None
            if row is not None:
                for key in row:
                    if key not in columns:
                        columns[key] = None
                        if len(columns) > max_columns:
                            raise SourceError(
                                file,
                                f"the objects up to line {number} use {len(columns):,} distinct keys, over the "
                                f"limit max_columns = {max_columns:,} (each key is a column)",
                                row=number,
                            )
                if not id_seen and id_key is not None and row.get(id_key) is not None:
                    id_seen = True
                rows.append(row)
                rownums.append(number)
                pairs = sorted(row.items())
                hashes.append(hash_values([f"{k}={'' if v is None else v}" for k, v in pairs]))
            if len(rows) >= source.chunk_rows or len(rejects) >= flush_at or held >= CHUNK_BYTES:
                yield emit()
        if len(rejects) >= flush_at:
            yield emit()
    if rows or rejects or emitted == 0:
        yield emit()


def _bad_value(row: dict[str, str | None], max_field: int) -> tuple[str, str] | None:
    """(key, reason) of the first value over `max_field` bytes or holding a NUL, if any."""
    for key, value in row.items():
        if value is None:
            continue
        if "\x00" in value:
            return key, f"field {key!r} contains a NUL character (\\u0000)"
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > max_field:
            return key, f"field {key!r} is {size:,} bytes, over the limit max_field_bytes = {max_field:,}"
    return None


def _float_text(text: str) -> str:
    """Keep a JSON number's own digits; only integral values lose their float noise ("5.0" -> "5").

    Going through Python float would turn an 18-digit ID written as a number into 5.001011990010113e17.
    """
    try:
        d = Decimal(text)
    except InvalidOperation:
        return text
    # Bounded exponent: "1e999999" must not become a million-digit string.
    if d.is_finite() and abs(d.adjusted()) <= 40 and d == d.to_integral_value():
        return str(int(d))
    return text


def _render(value: object) -> str | None:
    """A JSON value as raw field text: scalars as their text, nested values as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_type(line: str) -> str:
    """The JSON type of a valid non-object line, named as JSON names it."""
    return {"[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}.get(
        line[0], "number"
    )
