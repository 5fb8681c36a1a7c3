"""CSV and TSV drops: header detection, then rows in chunks, every line accounted for.

Two parsers, one result. Most lines are one record each: those go through polars' native CSV
parser, vectorised, which keeps a multi-GB export fast. A record spanning lines (a quoted field
with a newline), an unterminated quote or a block with undecodable lines goes through Python's
`csv` module, whose behaviour we can account for record by record (physical line numbers,
original text of rejects, records continuing into the next block). The fast parser is trusted
only when it returns exactly one record per line; otherwise the lines go the slow way.
"""

from __future__ import annotations

import csv
import gc
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers.blocks import Block, NumberedLine, iter_blocks, long_line
from connectors.readers.encoding import detect_encoding
from connectors.readers.header import (
    AUTO_HEADER_SCAN,
    check_header,
    clean_cell,
    header_names,
    is_blank,
    pick_header,
)
from connectors.readers.model import ROW, Chunk, ChunkBuilder, Reject
from connectors.readers.safe import DropFile

QUOTE = '"'
# Lines read while looking for the header, at most: 20 non-empty lines of a title block are far
# less; a header further down than this is a config mistake (header_row) or not a table.
HEADER_SCAN_BYTES = 64 << 20


def read_delimited(source: SourceConfig, path: DropFile | Path, delimiter: str) -> Iterator[Chunk]:
    """Chunks of a CSV/TSV file. File-level problems raise here, before the first chunk."""
    file = path.label if isinstance(path, DropFile) else str(path)
    limits = source.effective_limits
    encoding = detect_encoding(path, source.encoding)
    blocks = iter_blocks(path, encoding, max_line_bytes=limits.max_line_bytes)
    columns, first = _find_header(blocks, source, delimiter, file, encoding)
    return _chunks(columns, first, blocks, source, delimiter, file)


def _chunks(
    columns: list[str], first: Block | None, blocks: Iterator[Block], source: SourceConfig, delimiter: str,
    file: str,
) -> Iterator[Chunk]:
    limits = source.effective_limits
    builder = ChunkBuilder(columns, source.chunk_rows, limits.max_field_bytes)
    carry: list[NumberedLine] = []  # an unfinished quoted record continuing into the next block
    for block in itertools.chain([first] if first else [], blocks):
        if block.data is not None and not carry:
            rows = range(block.start, block.start + block.line_count)
            fast = _fast_parse(block.data, rows, columns, delimiter)
            # One record per line: only a block with a line over the field limit can hold a field
            # over it. Records spanning lines (the mixed parse) are screened whatever their lines.
            screen = fast is None or long_line(block.data, limits.max_field_bytes) is not None
            if fast is None:
                fast = _mixed_parse(block.numbered_lines(), columns, delimiter)
            if fast is not None:
                frame, rejects, carry = fast
                _check_carry(carry, limits.max_line_bytes, file)
                yield from builder.add(frame, rejects, screen_rows=screen or bool(carry))
                continue
        frame, rejects, carry = _slow_parse(carry + block.numbered_lines(), columns, delimiter, final=False)
        _check_carry(carry, limits.max_line_bytes, file)
        yield from builder.add(frame, block.rejects + rejects, screen_rows=True)
    if carry:
        frame, rejects, _ = _slow_parse(carry, columns, delimiter, final=True)
        yield from builder.add(frame, rejects, screen_rows=True)
    yield from builder.finish()


def _check_carry(carry: list[NumberedLine], limit: int, file: str) -> None:
    """A quoted record left open at a block's end is held until it closes; not past the limit."""
    if carry and sum(len(t) for _, t in carry) > limit // 4 and sum(len(t.encode("utf-8")) for _, t in carry) > limit:
        row = carry[0][0]
        raise SourceError(
            file,
            f"the record starting at line {row} runs on for more than the limit max_line_bytes = {limit:,} "
            "bytes inside a quoted field (an unterminated quote?)",
            row=row,
        )


# --- header ---------------------------------------------------------------------------------


def _find_header(
    blocks: Iterator[Block], source: SourceConfig, delimiter: str, file: str, encoding: str
) -> tuple[list[str], Block | None]:
    """Header names, and the rest of the lines read so far as the first data block.

    Reads more blocks only when the first one cannot settle it (fewer than 20 non-empty lines
    in 4 MB, or header_row further down), so the common case touches one block.
    """
    lines: list[NumberedLine] = []
    rejects: list[Reject] = []
    all_decoded = True
    scanned = 0
    while True:
        block = next(blocks, None)
        exhausted = block is None
        if block is not None:
            if scanned > HEADER_SCAN_BYTES:
                raise SourceError(
                    file, f"no header row found in the first {HEADER_SCAN_BYTES >> 20} MiB of the file"
                    + ("" if source.header_row == "auto" else f" (header_row is {source.header_row})"),
                )
            lines.extend(block.numbered_lines())
            rejects.extend(block.rejects)
            scanned += len(block.data) if block.data is not None else sum(len(t) for _, t in block.lines or [])
            all_decoded = all_decoded and block.data is not None
        if source.header_row == "auto":
            found = _locate_auto(lines, source, delimiter, file, exhausted)
        else:
            found = _locate_at(lines, source.header_row, delimiter, file, encoding, exhausted)
        if found is not None:
            break
    cells, row, end = found
    columns = header_names(cells, lambda i: f"column_{i + 1}")
    check_header(columns, source, file, row)
    rest = lines[end:]
    header_last_line = lines[end - 1][0]
    # Undecodable lines above the header are title/preamble lines, not data rows.
    kept = [r for r in rejects if r.row_number > header_last_line]
    if not rest and not kept:
        return columns, None
    if all_decoded:
        data = "".join(t for _, t in rest).encode("utf-8")
        return columns, Block(start=rest[0][0], data=data, line_count=len(rest))
    return columns, Block(start=rest[0][0] if rest else header_last_line + 1, lines=rest, rejects=kept)


def _locate_auto(
    lines: list[NumberedLine], source: SourceConfig, delimiter: str, file: str, exhausted: bool
) -> tuple[list[str], int, int] | None:
    texts = [t for _, t in lines]
    candidates: list[tuple[int, list[str]]] = []
    found: list[tuple[list[str], int]] = []  # raw cells and end index, parallel to candidates
    wanted = set(source.columns)
    for start, end, rec in _records(texts, delimiter):
        if isinstance(rec, csv.Error) or is_blank(rec):
            continue
        cleaned = [clean_cell(c) for c in rec]
        candidates.append((lines[start][0], cleaned))
        found.append((rec, end))
        if wanted <= set(cleaned) or len(candidates) >= AUTO_HEADER_SCAN:
            break
    complete = exhausted or len(candidates) >= AUTO_HEADER_SCAN
    if not complete and not (candidates and wanted <= set(candidates[-1][1])):
        return None  # read another block before deciding
    if not candidates and exhausted:
        raise SourceError(file, "file is empty (no non-blank lines)")
    i = pick_header(candidates, source, file)
    return found[i][0], candidates[i][0], found[i][1]


def _locate_at(
    lines: list[NumberedLine],
    header_row: int,
    delimiter: str,
    file: str,
    encoding: str,
    exhausted: bool,
) -> tuple[list[str], int, int] | None:
    idx = next((i for i, (n, _) in enumerate(lines) if n >= header_row), None)
    if idx is None or (not exhausted and len(lines) - idx < 2):
        if not exhausted:
            return None
        if idx is None:
            last = lines[-1][0] if lines else 0
            raise SourceError(
                file, f"header_row {header_row} is past the end of the file ({last} lines)", row=header_row
            )
    if lines[idx][0] != header_row:
        raise SourceError(file, f"header row {header_row} is not valid {encoding} text", row=header_row)
    texts = [t for _, t in lines[idx:]]
    for _start, end, rec in _records(texts, delimiter):
        if isinstance(rec, csv.Error):
            raise SourceError(file, f"header row {header_row} is not valid CSV: {rec}", row=header_row)
        if is_blank(rec):
            raise SourceError(file, f"header row {header_row} is blank", row=header_row)
        return rec, header_row, idx + end
    raise SourceError(file, f"header row {header_row} is blank", row=header_row)


def _records(texts: list[str], delimiter: str) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
    """(start index, end index, fields or the parse error) per record; a bad record never stops it."""
    reader = csv.reader(texts, delimiter=delimiter)
    prev = 0
    while True:
        try:
            rec: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            rec = exc
        end = reader.line_num
        yield prev, end, rec
        prev = end


# --- fast path: polars ----------------------------------------------------------------------


_EXTRA = "\x00extra"  # internal column names cannot clash with a header
_SENTINEL = "\x01"
_INDEX = "\x00index"


def _fast_parse(
    data: bytes, rows: Sequence[int], columns: Sequence[str], delimiter: str
) -> tuple[pl.DataFrame | None, list[Reject], list[NumberedLine]] | None:
    """Parse UTF-8 `data` whose lines are numbered `rows`; None unless every line is one record.

    Field counts without a per-line Python loop: a sentinel field is appended to every line and
    the frame gets one column more than the header. A line with the right number of fields has
    the sentinel exactly in that extra column; a short line has it further left, a long line
    has some other value there. A record spanning lines swallows a sentinel and a line, so the
    record count no longer matches the line count and the caller falls back.
    """
    body = data[:-1] if data.endswith(b"\n") else data
    if not body.strip():
        return None, [], []  # only blank lines
    n_lines = len(rows)  # the caller counted them
    sep = delimiter.encode("utf-8")
    payload = body.replace(b"\r\n", b"\n").replace(b"\n", sep + b"\x01\n") + sep + b"\x01\n"
    try:
        parsed = pl.read_csv(
            payload,
            has_header=False,
            schema={**{c: pl.String for c in columns}, _EXTRA: pl.String},
            separator=delimiter,
            quote_char=QUOTE,
            infer_schema=False,
            empty_string_is_null=True,
            truncate_ragged_lines=True,
            missing_columns="insert",
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        return None
    if parsed.height != n_lines:
        return None
    parsed = parsed.with_row_index(_INDEX).with_columns(pl.Series(ROW, rows, dtype=pl.Int64))
    fits = (pl.col(_EXTRA) == _SENTINEL).fill_null(False)
    misfits = parsed.filter(~fits)
    good = parsed.filter(fits)
    first = pl.col(columns[0])
    maybe_blank = good.filter(first.is_null() | (first.str.strip_chars() == ""))
    if maybe_blank.height:
        blank = maybe_blank.filter(
            pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in columns])
        )
        if blank.height:
            good = good.filter(~pl.col(_INDEX).is_in(blank.get_column(_INDEX).implode()))
    rejects: list[Reject] = []
    if misfits.height:
        lines = body.decode("utf-8").split("\n")
        ncols = len(columns)
        for i, row in misfits.select(_INDEX, ROW).iter_rows():
            line = lines[i][:-1] if lines[i].endswith("\r") else lines[i]
            fields = [f for rec in csv.reader([line], delimiter=delimiter) for f in rec]
            if not "".join(fields).strip():
                continue  # blank line (or only delimiters): skipped, not counted
            n = len(fields)
            if n == ncols:
                return None  # the two parsers disagree about this line: let csv decide
            rejects.append(Reject(row, None, _count_reason(n, ncols), line))
    return good.select(*columns, ROW), rejects, []


def _mixed_parse(
    lines: list[NumberedLine], columns: Sequence[str], delimiter: str
) -> tuple[pl.DataFrame | None, list[Reject], list[NumberedLine]] | None:
    """A block the fast parser refused: only the records spanning lines go the slow way.

    A record spans lines when a line ends inside quotes, i.e. has an odd number of quote
    characters; it ends at the next such line. Those stretches are parsed by `csv`, every other
    line by polars in one call. Any inconsistency (a stretch left open before the block's end,
    polars refusing a line) returns None and the whole block goes the slow way.
    """
    odd = [text.count(QUOTE) & 1 for _, text in lines]
    single: list[NumberedLine] = []
    stretches: list[list[NumberedLine]] = []
    i = 0
    while i < len(lines):
        if odd[i]:
            j = i + 1
            while j < len(lines) and not odd[j]:
                j += 1
            stretches.append(lines[i : j + 1])
            i = j + 1
        else:
            single.append(lines[i])
            i += 1
    frames: list[pl.DataFrame] = []
    rejects: list[Reject] = []
    carry: list[NumberedLine] = []
    if single:
        data = "".join(text for _, text in single).encode("utf-8")
        fast = _fast_parse(data, [n for n, _ in single], columns, delimiter)
        if fast is None:
            return None
        if fast[0] is not None:
            frames.append(fast[0])
        rejects.extend(fast[1])
    for k, stretch in enumerate(stretches):
        frame, more, carry = _slow_parse(stretch, columns, delimiter, final=False)
        if carry and (k < len(stretches) - 1 or stretch[-1] is not lines[-1]):
            return None
        if frame is not None:
            frames.append(frame)
        rejects.extend(more)
    if not frames:
        return None, rejects, carry
    return pl.concat(frames).sort(ROW), rejects, carry


# --- slow path: Python's csv module ---------------------------------------------------------


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building ~100k small lists triggers the cyclic GC over and over for nothing (they hold
    only strings); pausing it cuts this path's time by more than half. Nothing yields inside."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _slow_parse(
    lines: list[NumberedLine], columns: Sequence[str], delimiter: str, *, final: bool
) -> tuple[pl.DataFrame | None, list[Reject], list[NumberedLine]]:
    """Rows, rejects, and the lines of a record still open at the end (unless `final`)."""
    ncols = len(columns)
    texts = [t for _, t in lines]
    records: list[list[str]] = []
    rownums: list[int] = []
    rejects: list[Reject] = []
    # (start index, "row" | "reject" | "blank") of the last record: it may continue in the next block
    last: tuple[int, str] | None = None
    with _gc_paused():
        reader = csv.reader(texts, delimiter=delimiter)
        prev = 0
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                end = reader.line_num
                rejects.append(
                    Reject(lines[prev][0], None, f"malformed CSV ({exc})", _original(texts, prev, end))
                )
                prev, last = end, None
                continue
            start, prev = prev, reader.line_num
            n = len(rec)
            if n == ncols and (rec[0].strip() or "".join(rec).strip()):
                records.append(rec)
                rownums.append(lines[start][0])
                last = (start, "row")
            elif n == 0 or not "".join(rec).strip():
                last = (start, "blank")  # blank line: skipped, not counted
            else:
                rejects.append(
                    Reject(lines[start][0], None, _count_reason(n, ncols), _original(texts, start, prev))
                )
                last = (start, "reject")
        carry: list[NumberedLine] = []
        if last is not None and _ends_inside_quotes(texts[last[0] :], delimiter):
            start, kind = last
            if kind == "row":
                records.pop()
                rownums.pop()
            elif kind == "reject":
                rejects.pop()
            if final:
                rejects.append(
                    Reject(
                        lines[start][0],
                        None,
                        "unterminated quoted field at end of file (truncated file?)",
                        _original(texts, start, len(texts)),
                    )
                )
            else:
                carry = lines[start:]
        frame = None
        if records:
            cols = list(zip(*records))
            frame = pl.DataFrame(
                [pl.Series(c, col, dtype=pl.String) for c, col in zip(columns, cols)]
                + [pl.Series(ROW, rownums, dtype=pl.Int64)]
            )
    return frame, rejects, carry


def _ends_inside_quotes(texts: list[str], delimiter: str) -> bool:
    """Whether the record in `texts` is cut off inside a quoted field (more lines may follow)."""
    try:
        for _ in csv.reader(texts, delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _original(texts: list[str], start: int, end: int) -> str:
    text = "".join(texts[start:end])
    if text.endswith("\n"):
        text = text[:-1]
    return text[:-1] if text.endswith("\r") else text


def _count_reason(n: int, ncols: int) -> str:
    hint = "truncated row?" if n < ncols else "an unquoted delimiter inside a value?"
    return f"row has {n} fields, header has {ncols} ({hint})"
