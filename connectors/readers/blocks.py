"""Stream a text file as decoded blocks of whole lines, with physical line numbers.

Memory stays bounded (one block, ~4 MB, plus the tail of a line cut by the block edge) however
large the file is. Each block is decoded in one call when it can be - the common case, and fast -
and line by line only when that fails, so a single row in another encoding costs one slow block
and becomes one reject instead of failing the file.

Blocks are cut at b"\\n": in UTF-8 and GB18030 that byte never occurs inside a multibyte
character, so a cut never splits a character. Physical lines are counted by "\\n" (a "\\r\\n"
ending counts once).

A line longer than `max_line_bytes` fails the file (SourceError naming the line and the limit)
as soon as it is seen, so a file that is one 10 GB line costs one limit's worth of memory. A
line holding a NUL byte is rejected like an undecodable one: no text value may carry a NUL into
the warehouse (PostgreSQL refuses it), and the line's original is kept with the NUL escaped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import SourceError
from connectors.readers.encoding import UTF8_BOM, codec_for
from connectors.readers.model import Reject
from connectors.readers.safe import DropFile, as_drop

BLOCK_BYTES = 4 << 20

NumberedLine = tuple[int, str]  # (physical line number, text including its "\n" if any)


@dataclass
class Block:
    """Consecutive lines of the file; exactly one of `data` / `lines` is set."""

    start: int  # physical line number of the first line
    # The whole block as UTF-8 bytes, when it decoded in one go. Bytes, not str: the fast CSV
    # parser takes UTF-8 bytes, and for a UTF-8 file these are the file's own bytes (no copy).
    data: bytes | None = None
    lines: list[NumberedLine] | None = None  # decodable lines only, when it did not
    line_count: int = 0  # physical lines in the block, decodable or not
    rejects: list[Reject] = field(default_factory=list)  # its undecodable lines

    def numbered_lines(self) -> list[NumberedLine]:
        if self.lines is not None:
            return self.lines
        return split_numbered((self.data or b"").decode("utf-8"), self.start)


def split_numbered(text: str, start: int) -> list[NumberedLine]:
    parts = text.split("\n")
    last = parts.pop()  # "" when the text ends with a newline
    out = [(start + i, part + "\n") for i, part in enumerate(parts)]
    if last:
        out.append((start + len(parts), last))
    return out


def long_line(data: bytes, limit: int) -> int | None:
    """Offset where the first line of `data` longer than `limit` bytes starts, or None.

    Cheap however many lines there are: each step looks for the last newline within `limit`+1
    bytes of the current line's start and jumps past it, so a block of short lines takes about
    len(data) / limit steps.
    """
    start, n = 0, len(data)
    while n - start > limit:
        nl = data.rfind(b"\n", start, start + limit + 1)
        if nl < 0:
            return start
        start = nl + 1
    return None


def iter_blocks(
    path: DropFile | Path,
    encoding: str,
    *,
    block_bytes: int | None = None,
    max_line_bytes: int | None = None,
) -> Iterator[Block]:
    """Decoded blocks of `path` in `encoding` (as returned by `detect_encoding`).

    `block_bytes` defaults to the module's BLOCK_BYTES, read at call time so tests can shrink it
    and push every record across block edges. A line over `max_line_bytes` raises SourceError.
    """
    block_bytes = block_bytes or BLOCK_BYTES
    codec = codec_for(encoding)
    drop, owned = as_drop(path if isinstance(path, DropFile) else Path(path))
    try:
        yield from _blocks(drop, codec, encoding, block_bytes, max_line_bytes)
    finally:
        if owned:
            drop.close()


def _blocks(
    drop: DropFile, codec: str, encoding: str, block_bytes: int, max_line: int | None
) -> Iterator[Block]:
    with drop.reader(buffering=block_bytes) as fh:
        head = fh.read(len(UTF8_BOM))
        # A UTF-8 BOM is never data, even when the encoding was declared as plain utf-8.
        pending = b"" if codec == "utf-8" and head == UTF8_BOM else head
        line_no = 1
        while True:
            data = fh.read(block_bytes)
            buf = pending + data
            if data:
                cut = buf.rfind(b"\n")
                if cut < 0:  # one line longer than a block: keep reading it, up to the limit
                    if max_line is not None and len(buf) > max_line:
                        _too_long(drop, line_no, max_line)
                    pending = buf
                    continue
                pending, buf = buf[cut + 1 :], buf[: cut + 1]
            if max_line is not None:
                at = long_line(buf, max_line)
                if at is not None:
                    _too_long(drop, line_no + buf.count(b"\n", 0, at), max_line)
                if len(pending) > max_line:
                    _too_long(drop, line_no + buf.count(b"\n"), max_line)
            if buf:
                block = _decode(buf, line_no, codec, encoding)
                block.line_count = buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
                line_no += block.line_count
                yield block
            if not data:
                return


def _too_long(drop: DropFile, line: int, limit: int) -> None:
    raise SourceError(
        drop.label,
        f"line {line} is longer than the limit max_line_bytes = {limit:,} bytes "
        "(a broken export, or a file that is not line-based?)",
        row=line,
    )


def _decode(buf: bytes, start: int, codec: str, encoding: str) -> Block:
    if b"\x00" not in buf:
        try:
            text = buf.decode(codec)
        except UnicodeDecodeError:
            pass
        else:
            return Block(start=start, data=buf if codec == "utf-8" else text.encode("utf-8"))
    raws = buf.split(b"\n")
    ends_with_newline = raws[-1] == b""
    if ends_with_newline:
        raws.pop()
    lines: list[NumberedLine] = []
    rejects: list[Reject] = []
    for i, raw in enumerate(raws):
        newline = "\n" if ends_with_newline or i < len(raws) - 1 else ""
        if b"\x00" in raw:
            rejects.append(
                Reject(
                    row_number=start + i,
                    field=None,
                    reason="line contains a NUL byte (binary data in a text export?)",
                    original=raw.rstrip(b"\r").decode(codec, errors="backslashreplace").replace("\x00", "\\x00"),
                )
            )
            continue
        try:
            lines.append((start + i, raw.decode(codec) + newline))
        except UnicodeDecodeError as exc:
            rejects.append(
                Reject(
                    row_number=start + i,
                    field=None,
                    reason=(
                        f"line is not valid {encoding} text ({exc.reason} at byte {exc.start + 1}); "
                        "a row written in another encoding?"
                    ),
                    original=raw.rstrip(b"\r").decode(codec, errors="backslashreplace"),
                )
            )
    return Block(start=start, lines=lines, rejects=rejects)
