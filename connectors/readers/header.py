"""Finding and checking the header row, shared by the text and XLSX readers.

Station exports often carry a title row ("XX派出所实有人口登记表") or a blank line above the real
header, and a header is the one thing a data engineer can fix in config (`header_row`,
`columns`), so every failure here names the row and the columns involved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers.model import ROW, ROW_HASH

AUTO_HEADER_SCAN = 20  # non-empty rows looked at for header_row: auto
RESERVED = frozenset({ROW, ROW_HASH})


def clean_cell(cell: str | None) -> str:
    """Header text as compared with config keys: no surrounding whitespace, no stray BOM."""
    return "" if cell is None else cell.replace("\ufeff", "").strip()


def is_blank(cells: Sequence[str | None]) -> bool:
    return all(c is None or not c.strip() for c in cells)


def header_names(cells: Sequence[str | None], unnamed: Callable[[int], str]) -> list[str]:
    """Cleaned header names; an empty header cell gets `unnamed(index)` so its data is kept."""
    return [clean_cell(c) or unnamed(i) for i, c in enumerate(cells)]


def check_header(names: Sequence[str], source: SourceConfig, file: str, row: int) -> None:
    """Raise for too many columns, duplicate headers, reserved names or mapped columns the header lacks."""
    limit = source.effective_limits.max_columns
    if len(names) > limit:
        raise SourceError(
            file, f"header row {row} has {len(names):,} columns, over the limit max_columns = {limit:,}", row=row
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name in RESERVED:
            raise SourceError(
                file, f"header {name!r} (column {i}) is a name the hub reserves for lineage", row=row, field=name
            )
        if name in seen:
            raise SourceError(
                file,
                f"duplicate header {name!r} (columns {seen[name]} and {i}); "
                "each column needs a distinct name",
                row=row,
                field=name,
            )
        seen[name] = i
    missing = [c for c in source.columns if c not in seen]
    if missing:
        raise SourceError(
            file,
            f"header row {row} lacks mapped column(s) {missing}; it has {list(names)}",
            row=row,
            field=missing[0] if len(missing) == 1 else None,
        )


def pick_header(
    candidates: Sequence[tuple[int, list[str]]], source: SourceConfig, file: str
) -> int:
    """Index into `candidates` (non-empty rows as (row, cleaned cells)) of the header row.

    The header is the first row holding every mapped column; anything above it is a title.
    """
    wanted = list(source.columns)
    best, best_hits = -1, -1
    for i, (_row, cells) in enumerate(candidates[:AUTO_HEADER_SCAN]):
        present = set(cells)
        hits = sum(c in present for c in wanted)
        if hits == len(wanted):
            return i
        if hits > best_hits:
            best, best_hits = i, hits
    if best < 0:
        raise SourceError(file, "file is empty (no non-blank rows)")
    row, cells = candidates[best]
    missing = [c for c in wanted if c not in set(cells)]
    raise SourceError(
        file,
        f"no header row found: none of the first {min(len(candidates), AUTO_HEADER_SCAN)} "
        f"non-empty rows contains all mapped columns {wanted}; the closest is row {row}, "
        f"which lacks {missing} (it has {[c for c in cells if c]})",
        row=row,
    )
