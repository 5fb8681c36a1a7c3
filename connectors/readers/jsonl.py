"""JSON Lines drops: one object per line; keys play the role of headers.

Objects from station systems omit keys freely (a missing key is a null, not an error), so there is
no header to check except one sanity check: if no object in the first chunk carries the key
mapped to `local_id`, the mapping is wrong for this file and nothing downstream could key a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl

from connectors.config import SourceConfig
from connectors.errors import SourceError
from connectors.readers.blocks import iter_blocks
from connectors.readers.encoding import detect_encoding
from connectors.readers.header import clean_cell
from connectors.readers.model import (
    REJECT_FLUSH,
    ROW,
    ROW_HASH,
    Chunk,
    Reject,
    finalize,
    hash_values,
)


def read_jsonl(source: SourceConfig, path: Path) -> Iterator[Chunk]:
    """Chunks of a JSON Lines file. File-level problems raise here, before the first chunk."""
    encoding = detect_encoding(path, source.encoding)
    chunks = _chunks(source, path, encoding)
    first = next(chunks)  # parse the first chunk now: a wrong mapping fails before any data moves
    return _prepend(first, chunks)


def _prepend(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def _chunks(source: SourceConfig, path: Path, encoding: str) -> Iterator[Chunk]:
    columns: dict[str, None] = dict.fromkeys(source.columns)  # ordered set: mapped keys first
    rows: list[dict[str, str | None]] = []
    rownums: list[int] = []
    hashes: list[str] = []
    rejects: list[Reject] = []
    emitted = 0
    id_key = source.column_for("local_id")
    id_seen = False

    def emit() -> Chunk:
        nonlocal rows, rownums, hashes, rejects, emitted
        if emitted == 0 and rows and not id_seen:
            raise SourceError(
                str(path),
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
        emitted += 1
        return chunk

    flush_at = max(source.chunk_rows, REJECT_FLUSH)
    for block in iter_blocks(path, encoding):
        rejects.extend(block.rejects)
        for number, text in block.numbered_lines():
            line = text.strip()
            if not line:
                continue
            original = text.rstrip("\r\n")
            try:
                value = json.loads(line, parse_float=_float_text, parse_constant=str)
            except json.JSONDecodeError as exc:
                rejects.append(Reject(number, None, f"invalid JSON: {exc.msg} at column {exc.colno}", original))
                value = None
            else:
                if not isinstance(value, dict):
                    rejects.append(
                        Reject(number, None, f"JSON value is not an object (got {_json_type(line)})", original)
                    )
                    value = None
            if value is not None:
                row = {clean_cell(k): _render(v) for k, v in value.items()}
                for key in row:
                    if key not in columns:
                        columns[key] = None
                if not id_seen and id_key is not None and row.get(id_key) is not None:
                    id_seen = True
                rows.append(row)
                rownums.append(number)
                pairs = sorted(row.items())
                hashes.append(hash_values([f"{k}={'' if v is None else v}" for k, v in pairs]))
            if len(rows) >= source.chunk_rows or len(rejects) >= flush_at:
                yield emit()
        if len(rejects) >= flush_at:
            yield emit()
    if rows or rejects or emitted == 0:
        yield emit()


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
