"""XLSX drops: one sheet, every cell read as text, sheet row numbers kept.

Cells are never type-inferred: an ID number typed into a text cell (500101199001011234) must stay
exactly that string, not become 5.001011990010112e17. A cell that really is numeric in the
workbook is rendered by calamine as its integer digits when integral (no ".0").

The whole sheet is loaded at once (calamine has no streaming interface; chunks are then cut
from it), so what that costs is checked first, against the source's limits, by
`connectors.readers.xlsx_guard`: a workbook whose sheet would need more than max_xlsx_cells, a
cell over max_field_bytes, a forged shared-strings count or a zip bomb is rejected before
calamine allocates anything. calamine then reads the very file that was checked (through the
open descriptor, see `DropFile.fs_path`). A row with a NUL character in a cell (`_x0000_`) is
quarantined by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fastexcel
import polars as pl

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers.header import (
    AUTO_HEADER_SCAN,
    check_header,
    clean_cell,
    header_names,
    is_blank,
    pick_header,
)
from connectors.readers.model import ROW, Chunk, ChunkBuilder
from connectors.readers.safe import DropFile, as_drop
from connectors.readers.xlsx_guard import XlsxGuard

# A date-formatted cell comes out of calamine as "YYYY-MM-DD 00:00:00"; the station meant a date,
# and the text exports of the same systems write plain "YYYY-MM-DD".
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00$"


def read_xlsx(source: SourceConfig, path: DropFile | Path) -> Iterator[Chunk]:
    """Chunks of one sheet. File-level problems raise here, before the first chunk."""
    drop, owned = as_drop(path)
    try:
        return _read(source, drop)
    finally:
        if owned:
            drop.close()  # the sheet is in memory by now


def _read(source: SourceConfig, drop: DropFile) -> Iterator[Chunk]:
    file = drop.label
    if drop.size == 0:
        raise SourceError(file, "file is empty")
    with drop.reader() as fh:
        XlsxGuard(fh, drop.size, file, source.effective_limits, source.sheet).check()
    try:
        workbook = fastexcel.read_excel(drop.fs_path())
        sheets = list(workbook.sheet_names)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # FastExcelError, and a Rust panic (pyo3's PanicException)
        raise SourceError(file, f"not a readable XLSX workbook: {_first_line(exc)}") from None
    sheet = source.sheet if source.sheet is not None else (sheets[0] if sheets else None)
    if sheet is None or sheet not in sheets:
        raise SourceError(file, f"sheet {sheet!r} not found; the workbook has sheets {sheets}")
    try:
        loaded = workbook.load_sheet(sheet, header_row=None, skip_rows=0, dtypes="string")
        letters = [_column_letter(c.absolute_index) for c in loaded.selected_columns]
        grid = loaded.to_polars()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise SourceError(file, f"not a readable XLSX workbook: sheet {sheet!r}: {_first_line(exc)}") from None
    # skip_rows=0 keeps leading empty rows, so frame index + 1 is the sheet row number. A column
    # of empty-but-formatted cells may come back as dtype Null: make everything String.
    grid = grid.with_columns(pl.all().cast(pl.String))
    grid = grid.with_row_index(ROW, offset=1).with_columns(pl.col(ROW).cast(pl.Int64))
    cells = [c for c in grid.columns if c != ROW]
    if not cells or grid.height == 0:
        raise SourceError(file, f"sheet {sheet!r} is empty")

    header_idx = _header_index(grid, cells, source, file, sheet)
    header_row = header_idx + 1
    header = grid.select(cells).row(header_idx)
    names = header_names(list(header), lambda i: f"column_{letters[i]}")
    data = grid.slice(header_idx + 1)
    # Columns with neither a header nor any value are formatting debris: drop them.
    keep = [i for i, cell in enumerate(cells) if clean_cell(header[i]) or _has_values(data, cell)]
    names = [names[i] for i in keep]
    check_header(names, source, file, header_row)
    data = data.select(
        *[pl.col(cells[i]).str.replace(_MIDNIGHT, "$1").alias(name) for i, name in zip(keep, names)],
        pl.col(ROW),
    )
    blank = pl.all_horizontal(
        [pl.col(n).is_null() | (pl.col(n).str.strip_chars() == "") for n in names]
    )
    data = data.filter(~blank)
    return _chunks(data, names, source.chunk_rows, source.effective_limits.max_field_bytes)


def _chunks(data: pl.DataFrame, names: list[str], chunk_rows: int, max_field_bytes: int) -> Iterator[Chunk]:
    builder = ChunkBuilder(names, chunk_rows, max_field_bytes)
    for offset in range(0, data.height, chunk_rows):
        yield from builder.add(data.slice(offset, chunk_rows), screen_rows=True)
    yield from builder.finish()


def _header_index(grid: pl.DataFrame, cells: list[str], source: SourceConfig, file: str, sheet: str) -> int:
    if source.header_row != "auto":
        idx = source.header_row - 1
        if idx >= grid.height:
            raise SourceError(
                file, f"header_row {source.header_row} is past the end of sheet {sheet!r} ({grid.height} rows)",
                row=source.header_row,
            )
        if is_blank(grid.select(cells).row(idx)):
            raise SourceError(file, f"header row {source.header_row} is blank", row=source.header_row)
        return idx
    candidates: list[tuple[int, list[str]]] = []
    indices: list[int] = []
    for idx, row in enumerate(grid.select(cells).iter_rows()):
        if is_blank(row):
            continue
        candidates.append((idx + 1, [clean_cell(c) for c in row]))
        indices.append(idx)
        if len(candidates) >= AUTO_HEADER_SCAN:
            break
    if not candidates:
        raise SourceError(file, f"sheet {sheet!r} is empty")
    return indices[pick_header(candidates, source, file)]


def _has_values(data: pl.DataFrame, column: str) -> bool:
    values = data.get_column(column).str.strip_chars()
    return bool((values.is_not_null() & (values != "")).any())


def _column_letter(index: int) -> str:
    """0-based column index -> Excel letters (0 -> A, 26 -> AA), for naming headerless columns."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
