"""Finding a source's drops and reading one: the entry points sensors and assets call.

`read_drop` is a plain function, not a generator: it opens the drop and checks everything
file-level (existence, size, encoding, header, table) before returning the chunk iterator, so a
bad drop fails at the call, before any chunk is handed to a loader.

Drops are found by walking the folder without following links (`scan_drops`): a glob is matched
component by component with lstat semantics, so neither a match nor a folder on the way to it
can lead outside the config folder (or the source's allowed roots). What is not a regular file -
a symbolic link (dangling or not), a FIFO, a device, a socket, a directory named like a drop - is
never opened: it is listed as refused, with the reason, for the ingest to record.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.config import SourceConfig, within_roots
from core.errors import SourceError
from connectors.readers.jsonl import read_jsonl
from connectors.readers.model import Chunk
from connectors.readers.safe import DropFile, as_drop, check_size, display, refusal
from connectors.readers.sql import read_sql
from connectors.readers.text import read_delimited
from connectors.readers.xlsx import read_xlsx

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Refused:
    """Something matching a source's path that is not read: its path and why."""

    path: Path
    reason: str

    @property
    def label(self) -> str:
        return display(self.path)


@dataclass
class DropScan:
    files: list[Path] = field(default_factory=list)  # regular files, sorted by name
    refused: list[Refused] = field(default_factory=list)


def read_drop(
    source: SourceConfig,
    location: DropFile | Path | str | None,
    *,
    watermark_after: str | None = None,
    base_dir: Path | None = None,
) -> Iterator[Chunk]:
    """Chunks of one drop of `source`; every source row lands once, in `rows` or in `rejects`.

    `location` is the drop: a `DropFile` the caller opened (and closes), or a path, opened here
    the same safe way and closed when the chunks are exhausted (ignored for sql). A relative
    path, and a relative SQLite URL, are taken relative to `base_dir` (the config folder) when it
    is given. `watermark_after` applies to sql sources only.
    """
    if source.kind == "sql":
        return read_sql(source, watermark_after=watermark_after, base_dir=base_dir)
    if location is None:
        raise SourceError(source.name, f"a {source.kind} source needs a file to read")
    if not isinstance(location, DropFile):
        location = Path(location)
        if not location.is_absolute() and base_dir is not None:
            location = Path(base_dir) / location
    drop, owned = as_drop(location)
    try:
        check_size(drop, source.effective_limits.max_file_bytes)
        if source.kind == "csv":
            chunks = read_delimited(source, drop, source.delimiter or ",")
        elif source.kind == "tsv":
            chunks = read_delimited(source, drop, "\t")
        elif source.kind == "jsonl":
            chunks = read_jsonl(source, drop)
        elif source.kind == "xlsx":
            chunks = read_xlsx(source, drop)
        else:  # pragma: no cover
            raise SourceError(drop.label, f"unsupported source kind {source.kind!r}")
    except BaseException:
        if owned:
            drop.close()
        raise
    return _closing(chunks, drop) if owned else chunks


def _closing(chunks: Iterator[Chunk], drop: DropFile) -> Iterator[Chunk]:
    try:
        yield from chunks
    finally:
        drop.close()


def list_drops(source: SourceConfig, base_dir: Path) -> list[Path]:
    """Regular files matching `source.path` (see `scan_drops`), sorted by file name."""
    return scan_drops(source, base_dir).files


def scan_drops(source: SourceConfig, base_dir: Path) -> DropScan:
    """Files matching `source.path` (a file or a glob; relative to `base_dir` unless absolute),
    and what matches but is refused.

    Files are sorted by file name, so drops named by date are read oldest first. Cheap (directory
    listings and lstat, no file opened): sensors call this on every tick. Hidden names (a leading
    dot, e.g. an upload in progress) match only a pattern that starts with a dot, as with glob.
    """
    scan = DropScan()
    if source.kind == "sql" or not source.path:
        return scan
    pattern = os.path.expanduser(source.path)
    if not os.path.isabs(pattern):
        pattern = os.path.join(base_dir, pattern)
    pattern = os.path.normpath(pattern)
    parts = Path(pattern).parts
    first_glob = next((i for i, p in enumerate(parts) if _GLOB_CHARS.intersection(p)), None)
    literal = Path(*parts[: (len(parts) - 1 if first_glob is None else first_glob)])
    rest = list(parts[len(literal.parts):])
    roots = source.roots
    if roots is not None:
        real = os.path.realpath(literal)
        if not within_roots(real, roots):
            scan.refused.append(Refused(literal, (
                f"folder resolves to {display(real)}, outside the config folder and allowed_roots "
                "(a symbolic link?): nothing in it is read")))
            return scan
    for path, st in _walk(literal, rest, scan):
        _classify(path, st, scan)
    scan.files.sort(key=lambda p: (p.name, str(p)))
    scan.refused.sort(key=lambda r: str(r.path))
    return scan


def _classify(path: Path, st: os.stat_result, scan: DropScan) -> None:
    if not stat.S_ISREG(st.st_mode):
        scan.refused.append(Refused(path, refusal(path, st)))
        return
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        scan.refused.append(Refused(path, "file name is not valid UTF-8: not read, not copied"))
        return
    scan.files.append(path)


def _walk(folder: Path, comps: list[str], scan: DropScan) -> Iterator[tuple[Path, os.stat_result]]:
    """(path, lstat) of every entry matching `comps` below `folder`; links never followed.

    A link (or anything but a real folder) matching a folder component is refused, not entered.
    """
    if not comps:
        return
    comp, more = comps[0], comps[1:]
    if comp == "**":
        yield from _walk(folder, more, scan) if more else _all_below(folder)
        if more:
            for entry in _entries(folder, hidden=False):
                if entry.is_dir(follow_symlinks=False):
                    yield from _walk(Path(entry.path), comps, scan)
        return
    if not _GLOB_CHARS.intersection(comp):
        candidates = [(folder / comp, _lstat(folder / comp))]
    else:
        candidates = [
            (Path(e.path), _lstat(Path(e.path)))
            for e in _entries(folder, hidden=comp.startswith("."))
            if fnmatch.fnmatchcase(e.name, comp)
        ]
    for path, st in candidates:
        if st is None:
            continue
        if not more:
            yield path, st
        elif stat.S_ISDIR(st.st_mode):
            yield from _walk(path, more, scan)
        elif stat.S_ISLNK(st.st_mode):
            scan.refused.append(Refused(path, refusal(path, st)))


def _all_below(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """A trailing `**`: every non-folder entry below `folder`, folders entered but not followed."""
    for entry in _entries(folder, hidden=False):
        path = Path(entry.path)
        st = _lstat(path)
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _all_below(path)
        else:
            yield path, st


def _entries(folder: Path, *, hidden: bool) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if hidden or not e.name.startswith(".")]
    except OSError:
        return []  # a folder that is missing or unreadable holds no drops (as with glob)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def file_version(path: Path) -> str:
    """A version string that changes when the file is rewritten; cheap enough for a sensor tick.
    lstat: a drop is a regular file, and a link's target is never looked at."""
    st = os.lstat(path)
    return f"{st.st_mtime_ns}-{st.st_size}"
