"""Stream a text file as decoded blocks of whole lines, with physical line numbers.

Memory stays bounded (one block, ~4 MB, plus the tail of a line cut by the block edge) however
large the file is. Each block is decoded in one call when it can be - the common case, and fast -
and line by line only when that fails, so a single row in another encoding costs one slow block
and becomes one reject instead of failing the file.

Blocks are cut at b"\\n": in UTF-8 and GB18030 that byte never occurs inside a multibyte
character, so a cut never splits a character. Physical lines are counted by "\\n" (a "\\r\\n"
ending counts once).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from connectors.readers.encoding import UTF8_BOM, codec_for
from connectors.readers.model import Reject

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


def iter_blocks(path: Path, encoding: str, *, block_bytes: int | None = None) -> Iterator[Block]:
    """Decoded blocks of `path` in `encoding` (as returned by `detect_encoding`).

    `block_bytes` defaults to the module's BLOCK_BYTES, read at call time so tests can shrink it
    and push every record across block edges.
    """
    block_bytes = block_bytes or BLOCK_BYTES
    codec = codec_for(encoding)
    with Path(path).open("rb") as fh:
        head = fh.read(len(UTF8_BOM))
        # A UTF-8 BOM is never data, even when the encoding was declared as plain utf-8.
        pending = b"" if codec == "utf-8" and head == UTF8_BOM else head
        line_no = 1
        while True:
            data = fh.read(block_bytes)
            buf = pending + data
            if data:
                cut = buf.rfind(b"\n")
                if cut < 0:  # one line longer than a block: keep reading it
                    pending = buf
                    continue
                pending, buf = buf[cut + 1 :], buf[: cut + 1]
            if buf:
                block = _decode(buf, line_no, codec, encoding)
                block.line_count = buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
                line_no += block.line_count
                yield block
            if not data:
                return


def _decode(buf: bytes, start: int, codec: str, encoding: str) -> Block:
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
