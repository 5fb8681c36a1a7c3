"""Finding a source's drops and reading one: the entry points sensors and assets call.

`read_drop` is a plain function, not a generator: it opens the drop and checks everything
file-level (existence, encoding, header, table) before returning the chunk iterator, so a bad
drop fails at the call, before any chunk is handed to a loader.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

from connectors.config import SourceConfig
from connectors.errors import SourceError
from connectors.readers.jsonl import read_jsonl
from connectors.readers.model import Chunk
from connectors.readers.sql import read_sql
from connectors.readers.text import read_delimited
from connectors.readers.xlsx import read_xlsx

_GLOB_CHARS = frozenset("*?[")


def read_drop(
    source: SourceConfig,
    location: Path | str | None,
    *,
    watermark_after: str | None = None,
    base_dir: Path | None = None,
) -> Iterator[Chunk]:
    """Chunks of one drop of `source`; every source row lands once, in `rows` or in `rejects`.

    `location` is the drop file (ignored for sql). A relative `location`, and a relative SQLite
    URL, are taken relative to `base_dir` (the config folder) when it is given.
    `watermark_after` applies to sql sources only.
    """
    if source.kind == "sql":
        return read_sql(source, watermark_after=watermark_after, base_dir=base_dir)
    if location is None:
        raise SourceError(source.name, f"a {source.kind} source needs a file to read")
    path = Path(location)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.exists():
        raise SourceError(str(path), "file not found")
    if source.kind == "csv":
        return read_delimited(source, path, source.delimiter or ",")
    if source.kind == "tsv":
        return read_delimited(source, path, "\t")
    if source.kind == "jsonl":
        return read_jsonl(source, path)
    if source.kind == "xlsx":
        return read_xlsx(source, path)
    raise SourceError(str(path), f"unsupported source kind {source.kind!r}")  # pragma: no cover


def list_drops(source: SourceConfig, base_dir: Path) -> list[Path]:
    """Files matching `source.path` (a file or a glob; relative to `base_dir` unless absolute).

    Sorted by file name, so drops named by date are read oldest first. Cheap (a directory
    listing, no file opened): sensors call this on every tick.
    """
    if source.kind == "sql" or not source.path:
        return []
    pattern = Path(source.path).expanduser()
    if not pattern.is_absolute():
        pattern = Path(base_dir) / pattern
    if _GLOB_CHARS.intersection(str(pattern)):
        matches = [Path(p) for p in glob.glob(str(pattern), recursive=True)]
    else:
        matches = [pattern]
    return sorted((p for p in matches if p.is_file()), key=lambda p: (p.name, str(p)))


def file_version(path: Path) -> str:
    """A version string that changes when the file is rewritten; cheap enough for a sensor tick."""
    stat = Path(path).stat()
    return f"{stat.st_mtime_ns}-{stat.st_size}"
