"""What an XLSX drop would cost calamine, found out before calamine sees it.

calamine (through fastexcel) reads a whole sheet at once, and some of what it allocates is
decided by the file: the shared-strings table is preallocated from its declared `uniqueCount`,
and a sheet becomes one array spanning every row and column between its first and its last
non-empty cell - a 6 KB file with a cell at A1 and one at XFD1048576 asks for 512 GiB and aborts
the process, which no `except` can catch. So the archive is inspected with the standard library
first, streaming and with bounded memory, and anything over the source's limits raises
SourceError naming the limit and what was found:

- the ZIP directory (entry count and size), each member's declared size and compression ratio,
  their sum, and the compression methods (stored or deflate only);
- every member calamine reads (package and workbook relationships, workbook, styles, shared
  strings, the sheet): inflated here, byte for byte, and rejected if it inflates to more than
  its header declares (a lying header would otherwise get past the sums above), if it carries
  XML comments, CDATA or a DTD (spreadsheet writers never do, and they could hide markup from
  the checks below), or if it is not UTF-8;
- the sheet: its declared `<dimension>`, the range its cells actually span (rows x columns,
  whichever way their positions are written), the number of cells, and the XML size of each cell;
- the shared strings: their declared counts, the number of entries and the XML size of each.

Cell positions are read by a vectorised fast path (numpy over each inflated block) for what
every writer produces: `<c r="B7"` opening each cell tag, the only `r` attribute in it. Any other
form - a prefixed or attribute-less cell, a second or spaced or single-quoted `r` - sends the
sheet through an exact, slower path that follows calamine's own rules (a cell without `r` sits
right of the previous one; a row without `r` below the previous one; the last `r` wins).
"""

from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from xml.etree import ElementTree

import numpy as np

from connectors.config import Limits
from core.errors import SourceError

MAX_ENTRIES = 10_000  # members of the archive; a workbook has tens
MAX_DIRECTORY_BYTES = 4 << 20  # the ZIP central directory
OTHER_PART_BYTES = 16 << 20  # workbook, relationships, styles: everything but sheets and shared strings
HEAD_BYTES = 16 << 20  # a sheet's XML before <sheetData> (columns, views, ...)
RATIO_FLOOR = 1 << 20  # members smaller than this are not held to max_compression_ratio
CELL_MARKUP = 1024  # XML around a cell's value (tags, attributes, the row tag) beyond max_field_bytes
IN_CHUNK = 1 << 20
OUT_CHUNK = 4 << 20
MAX_ROWS, MAX_COLS = 1_048_576, 16_384

_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_ATTRS = rb"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_SPACED_R = re.compile(rb"r[ \t\r\n]+=")
_TAG = re.compile(rb"<(/?)(?:[\w.-]+:)?(row|c)(?=[\s/>])(" + _ATTRS + rb")>")
_R_ATTR = re.compile(rb"""(?:^|\s)r\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_SI_PREFIXED = re.compile(rb":si[\s/>]")
_SI = re.compile(rb"<(?:[\w.-]+:)?si[\s/>]")
_SI_END = re.compile(rb"</(?:[\w.-]+:)?si\s*>")
_CELL_END = re.compile(rb"</(?:[\w.-]+:)?c\s*>")
_DIMENSION = re.compile(rb"<(?:[\w.-]+:)?dimension\b" + _ATTRS + rb"""\sref\s*=\s*["']([^"']*)["']""")
_SHEETDATA = re.compile(rb"<(/?)((?:[\w.-]+:)?)sheetData(?=[\s/>])(" + _ATTRS + rb")>")
_SST_START = re.compile(rb"<(?:[\w.-]+:)?sst(?=[\s/>])(" + _ATTRS + rb")>")
_SHEETDATA_START = re.compile(rb"<((?:[\w.-]+:)?)sheetData(?=[\s/>])(" + _ATTRS + rb")>")
_SST_COUNT = re.compile(rb"""\b(uniqueCount|count)\s*=\s*["']\s*(\d+)""")
_ENCODING = re.compile(rb"""^\s*<\?xml\b[^>]*\bencoding\s*=\s*["']([^"']*)["']""")


def _cells(n: int) -> str:
    return f"{n:,} cells"


class XlsxGuard:
    """Checks one workbook against `limits` (see the module docstring); `check` raises SourceError."""

    def __init__(self, fh: io.BufferedIOBase, size: int, label: str, limits: Limits, sheet: str | None):
        self.fh, self.size, self.label, self.limits, self.sheet = fh, size, label, limits, sheet

    def fail(self, message: str) -> None:
        raise SourceError(self.label, message)

    def check(self) -> None:
        self._directory()
        try:
            self.zip = zipfile.ZipFile(self.fh)
        except (zipfile.BadZipFile, ValueError, EOFError) as exc:
            self.fail(f"not a readable XLSX workbook: {exc}")
        self._members()
        for name in self._readable():
            info = self.members.get(name)
            if info is None:
                continue
            if name in self.sheets:
                self._sheet(info)
            if name.endswith("sharedstrings.xml"):
                self._shared_strings(info)
            elif name not in self.sheets:
                self._read_small(info)

    # -- the archive -----------------------------------------------------------------------

    def _directory(self) -> None:
        """The end-of-central-directory record: how many members, how big a directory."""
        tail_len = min(self.size, 65_535 + 22 + 20 + 56)
        self.fh.seek(self.size - tail_len)
        tail = self.fh.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            self.fail("not a readable XLSX workbook: not a ZIP archive (an old .xls, or a password-protected workbook?)")
        entries, cd_size = struct.unpack("<HI", tail[at + 10 : at + 16])
        if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
            (z64_offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
            if z64_offset + 56 > self.size:
                self.fail("not a readable XLSX workbook: broken ZIP64 directory")
            self.fh.seek(z64_offset)
            rec = self.fh.read(56)
            if rec[:4] != b"PK\x06\x06":
                self.fail("not a readable XLSX workbook: broken ZIP64 directory")
            entries, cd_size = struct.unpack("<QQ", rec[32:48])
        if entries > MAX_ENTRIES:
            self.fail(f"the archive declares {entries:,} members; a workbook has tens (limit {MAX_ENTRIES:,})")
        if cd_size > MAX_DIRECTORY_BYTES:
            self.fail(f"the archive's directory is {cd_size:,} bytes (limit {MAX_DIRECTORY_BYTES:,})")
        self.fh.seek(0)

    def _members(self) -> None:
        """Names as calamine looks them up (case-insensitive, "\\" as "/"), sizes, ratios, methods."""
        limits = self.limits
        infos = self.zip.infolist()
        if len(infos) > MAX_ENTRIES:
            self.fail(f"the archive has {len(infos):,} members; a workbook has tens (limit {MAX_ENTRIES:,})")
        self.members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename.replace("\\", "/").lower()
            if name in self.members:
                self.fail(f"the archive holds member {info.filename!r} twice (a name that differs only in case?)")
            self.members[name] = info
            total += info.file_size
            if info.file_size > RATIO_FLOOR and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                self.fail(
                    f"member {info.filename!r} inflates {ratio:,.0f}-fold ({info.compress_size:,} to "
                    f"{info.file_size:,} bytes), over the limit max_compression_ratio = "
                    f"{limits.max_compression_ratio:,} (a zip bomb?)"
                )
            if info.flag_bits & 0x1:
                self.fail("not a readable XLSX workbook: its members are encrypted")
        if total > limits.max_decompressed_bytes:
            self.fail(
                f"the archive inflates to {total:,} bytes, over the limit max_decompressed_bytes = "
                f"{limits.max_decompressed_bytes:,}"
            )

    def _inflate(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        """The member's bytes, inflated here; never more than its header declares."""
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.fail(f"member {info.filename!r} uses compression method {info.compress_type}; "
                      "spreadsheet writers use deflate")
        self.fh.seek(info.header_offset)
        local = self.fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            self.fail(f"not a readable XLSX workbook: member {info.filename!r} is damaged")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        self.fh.seek(info.header_offset + 30 + name_len + extra_len)
        remaining, total, crc = info.compress_size, 0, 0
        stored = info.compress_type == zipfile.ZIP_STORED
        d = None if stored else zlib.decompressobj(-zlib.MAX_WBITS)
        pending = b""
        while True:
            if not pending and remaining > 0:
                pending = self.fh.read(min(remaining, IN_CHUNK))
                if not pending:
                    self.fail(f"not a readable XLSX workbook: member {info.filename!r} is truncated")
                remaining -= len(pending)
            if stored:
                out, pending = pending, b""
            else:
                try:
                    out = d.decompress(pending, OUT_CHUNK)
                except zlib.error as exc:
                    self.fail(f"not a readable XLSX workbook: member {info.filename!r}: {exc}")
                pending = d.unconsumed_tail
            if out:
                total += len(out)
                if total > info.file_size:
                    self.fail(
                        f"member {info.filename!r} inflates to more than the {info.file_size:,} bytes its "
                        "header declares (a forged size: a zip bomb?)"
                    )
                crc = zlib.crc32(out, crc)
                yield out
            if (d is not None and d.eof) or (not out and not pending and remaining <= 0):
                break
        if total != info.file_size or crc != info.CRC:
            self.fail(f"not a readable XLSX workbook: member {info.filename!r} is damaged (size or CRC mismatch)")

    def _read_small(self, info: zipfile.ZipInfo) -> bytes:
        if info.file_size > OTHER_PART_BYTES:
            self.fail(f"member {info.filename!r} is {info.file_size:,} bytes (limit {OTHER_PART_BYTES:,} for "
                      "a part that is neither a sheet nor the shared strings)")
        data = b"".join(self._inflate(info))
        _plain_xml(self, info.filename, data, first=True)
        return data

    # -- which members calamine reads -----------------------------------------------------------

    def _readable(self) -> list[str]:
        """Package relationships, workbook, its relationships, styles, shared strings, the sheet(s)."""
        names = ["_rels/.rels"]
        workbook = "xl/workbook.xml"
        rels = self.members.get("_rels/.rels")
        if rels is not None:
            for rel_type, target in _relationships(self, self._read_small(rels)):
                if rel_type.endswith("/officeDocument"):
                    workbook = _resolve("", target)
        folder = posixpath.dirname(workbook)
        folder = folder + "/" if folder else ""
        wb_rels = f"{folder}_rels/{posixpath.basename(workbook)}.rels"
        names += [workbook, wb_rels]
        for part in ("sharedstrings.xml", "styles.xml"):
            names += [folder + part, "xl/" + part]
        targets: dict[str, str] = {}
        if wb_rels in self.members:
            for rel_id, target in _relationships(self, self._read_small(self.members[wb_rels]), "Id"):
                targets[rel_id] = _resolve(folder, target)
        sheets: list[tuple[str, str]] = []
        if workbook in self.members:
            sheets = _sheets(self, self._read_small(self.members[workbook]))
        wanted = self.sheet if self.sheet is not None else (sheets[0][0] if sheets else None)
        chosen = [targets.get(rid) for name, rid in sheets if name == wanted]
        if not chosen or chosen[0] is None:  # not found here: whatever calamine would open is checked
            chosen = list(targets.values())
        self.sheets = {c for c in chosen if c}
        # Package relationships, workbook and its relationships were read (and checked) above.
        rest = [folder + "sharedstrings.xml", "xl/sharedstrings.xml", folder + "styles.xml", "xl/styles.xml"]
        return list(dict.fromkeys(rest + sorted(self.sheets)))

    # -- shared strings -----------------------------------------------------------------------

    def _shared_strings(self, info: zipfile.ZipInfo) -> None:
        limits = self.limits
        cap = limits.max_field_bytes + CELL_MARKUP
        count = 0
        run = 0  # bytes since the last </si>
        head: bytes | None = b""  # until the <sst> tag is seen: calamine preallocates its uniqueCount
        carry = b""
        for piece in self._inflate(info):
            data = carry + piece
            cut = _safe_cut(data)
            region, carry = data[:cut], data[cut:]
            if head is not None:
                _plain_xml(self, info.filename, head + region, first=True)
                head += region
                m = _SST_START.search(head)
                if m is None:
                    if len(head) > HEAD_BYTES:
                        self.fail(f"member {info.filename!r} has more than {HEAD_BYTES:,} bytes before its <sst> tag")
                    continue
                for key, value in _SST_COUNT.findall(m.group(1)):
                    if int(value) > limits.max_xlsx_strings:
                        self.fail(
                            f"the shared-strings table declares {key.decode()}={int(value):,}, over the limit "
                            f"max_xlsx_strings = {limits.max_xlsx_strings:,}"
                        )
                region, head = head[m.end():], None
            else:
                _plain_xml(self, info.filename, region, first=False)
            prefixed = _SI_PREFIXED.search(region) is not None
            if prefixed:
                count += len(_SI.findall(region))
            else:
                count += region.count(b"<si")  # nothing else in a shared-strings table starts so
            if count > limits.max_xlsx_strings:
                self.fail(f"the shared-strings table holds more than {limits.max_xlsx_strings:,} entries, over "
                          "the limit max_xlsx_strings")
            parts = _SI_END.split(region) if prefixed or b"</si " in region else region.split(b"</si>")
            run = self._largest(parts, run, cap, "a shared string")
        self._largest([carry], run, cap, "a shared string")

    def _largest(self, parts: list[bytes], run: int, cap: int, what: str) -> int:
        """Track the bytes between consecutive end tags across blocks; fail past `cap`."""
        first = run + len(parts[0])
        biggest = max(first, max(map(len, parts[1:-1]), default=0)) if len(parts) > 1 else first
        if biggest > cap:
            self.fail(
                f"{what} takes {biggest:,} bytes of XML, over the limit max_field_bytes = "
                f"{self.limits.max_field_bytes:,} (plus {CELL_MARKUP:,} bytes for its markup)"
            )
        return len(parts[-1]) if len(parts) > 1 else first

    # -- the sheet ------------------------------------------------------------------------------

    def _sheet(self, info: zipfile.ZipInfo) -> None:
        scan = _SheetScan(self, info)
        if not scan.run(fast=True):
            _SheetScan(self, info).run(fast=False)


class _SheetScan:
    def __init__(self, guard: XlsxGuard, info: zipfile.ZipInfo):
        self.g, self.info = guard, info
        self.limits = guard.limits
        self.cells = 0
        self.max_row = self.max_col = 0
        self.row_index = self.col_index = 0  # calamine's implicit position (0-based), slow path
        self.run_bytes = 0
        self.cap = self.limits.max_field_bytes + CELL_MARKUP

    def run(self, *, fast: bool) -> bool:
        """Scan the sheet; False when the fast path met a form it does not cover."""
        head, body, carry, done = b"", False, b"", False
        for piece in self.g._inflate(self.info):
            if not body:
                head += piece
                start = _SHEETDATA_START.search(head)
                if start is None:
                    if len(head) > HEAD_BYTES:
                        self.g.fail(f"sheet {self.info.filename!r} has more than {HEAD_BYTES:,} bytes of XML "
                                    "before its data")
                    continue
                self._head(head[: start.start()])
                body, data = True, head[start.end():]
                if start.group(2).rstrip().endswith(b"/"):
                    return True  # <sheetData/>: no cells
                head = b""
            else:
                data = carry + piece
            end = _sheetdata_end(data)
            if end is not None:
                data, done = data[:end], True
                cut = len(data)
            else:
                cut = _safe_cut(data)
            region, carry = data[:cut], data[cut:]
            if not self._region(region, fast):
                return False
            if done:
                return True  # calamine stops at </sheetData>; so do we
        if body and carry and not self._region(carry, fast):
            return False
        self._size_check([b""])
        return True

    def _region(self, region: bytes, fast: bool) -> bool:
        _plain_xml(self.g, self.info.filename, region, first=False)
        if not fast:
            self._slow(region)
            return True
        if _PREFIXED_CELL.search(region) or _SPACED_R.search(region):
            return False
        found = _canonical_cells(region)
        if found is None or region.count(b"r=") != found[0] + region.count(b'<row r="'):
            return False  # some cell tag is not `<c r="REF"...`, or some tag has another r
        cells, max_row, max_col = found
        self.cells += cells
        if cells:
            self._bound(max_col, max_row)
        self._totals()
        self._size_check(region.split(b"</c>"))
        return True

    def _head(self, head: bytes) -> None:
        _plain_xml(self.g, self.info.filename, head, first=True)
        m = _DIMENSION.search(head)
        if m is None:
            return
        ref = m.group(1).decode("ascii", "replace")
        corners = [_parse_ref(p.encode()) for p in ref.split(":")]
        if any(c is None for c in corners) or not corners:
            return  # calamine fails on it too
        rows = max(c[0] for c in corners) - min(c[0] for c in corners) + 1
        cols = max(c[1] for c in corners) - min(c[1] for c in corners) + 1
        if rows * cols > self.limits.max_xlsx_cells:
            self.g.fail(
                f"sheet {self.info.filename!r} declares the range {ref} ({_cells(rows * cols)}), over the limit "
                f"max_xlsx_cells = {self.limits.max_xlsx_cells:,}"
            )

    def _slow(self, region: bytes) -> None:
        for m in _TAG.finditer(region):
            closing, tag, attrs = m.group(1), m.group(2), m.group(3)
            empty = attrs.rstrip().endswith(b"/")
            if tag == b"row":
                if closing:
                    self.row_index, self.col_index = self.row_index + 1, 0
                    continue
                ref = self._r(attrs)
                if ref is not None:
                    pos = _parse_ref(ref, column=False)
                    if pos is None:
                        self.g.fail(f"sheet {self.info.filename!r}: row reference {ref[:40]!r} is not valid")
                    self.row_index = pos[0] - 1
                if empty:
                    self.row_index, self.col_index = self.row_index + 1, 0
                continue
            if closing:
                continue
            ref = self._r(attrs)
            if ref is not None:
                pos = _parse_ref(ref)
                if pos is None:
                    self.g.fail(f"sheet {self.info.filename!r}: cell reference {ref[:40]!r} is not valid")
                row, col = pos
                self.col_index = col - 1
            else:
                row, col = self.row_index + 1, self.col_index + 1
            self.cells += 1
            self._bound(col, row)
            self.col_index += 1
        self._totals()
        self._size_check(_CELL_END.split(region))

    def _r(self, attrs: bytes) -> bytes | None:
        found = _R_ATTR.findall(attrs)
        if len(found) > 1:
            self.g.fail(f"sheet {self.info.filename!r}: a cell or row has {len(found)} r attributes")
        return (found[0][0] or found[0][1]) if found else None

    def _bound(self, col: int, row: int) -> None:
        if row > MAX_ROWS or col > MAX_COLS:
            self.g.fail(f"sheet {self.info.filename!r} has a cell at row {row:,}, column {col:,}: "
                        f"outside the XLSX grid ({MAX_ROWS:,} rows x {MAX_COLS:,} columns)")
        self.max_row, self.max_col = max(self.max_row, row), max(self.max_col, col)

    def _totals(self) -> None:
        limit = self.limits.max_xlsx_cells
        if self.max_row * self.max_col > limit:
            self.g.fail(
                f"sheet {self.info.filename!r} has cells spanning {self.max_row:,} rows x {self.max_col:,} columns "
                f"({_cells(self.max_row * self.max_col)}), over the limit max_xlsx_cells = {limit:,}"
            )
        if self.cells > limit:
            self.g.fail(f"sheet {self.info.filename!r} has more than {_cells(limit)}, over the limit max_xlsx_cells")

    def _size_check(self, parts: list[bytes]) -> None:
        self.run_bytes = self.g._largest(parts, self.run_bytes, self.cap, f"a cell of sheet {self.info.filename!r}")


# -- helpers ------------------------------------------------------------------------------------


def _safe_cut(data: bytes) -> int:
    """Where to cut a block so no tag is split: at its last "<" if that is near the end."""
    at = data.rfind(b"<", max(0, len(data) - 512))
    return at if at >= 0 else len(data)


def _sheetdata_end(data: bytes) -> int | None:
    if data.find(b"sheetData") < 0:
        return None
    for m in _SHEETDATA.finditer(data):
        if m.group(1):
            return m.start()
    return None


def _plain_xml(guard: XlsxGuard, name: str, data: bytes, *, first: bool) -> None:
    """No comments, CDATA, DTDs or processing instructions (bar the XML declaration); UTF-8."""
    body = data
    if first:
        body = data.lstrip(b"\xef\xbb\xbf").lstrip()
        if body.startswith((b"\xff\xfe", b"\xfe\xff")) or data.startswith((b"\xff\xfe", b"\xfe\xff")):
            guard.fail(f"member {name!r} is UTF-16 XML, which spreadsheet writers do not produce")
        m = _ENCODING.match(body)
        if m is not None and m.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
            guard.fail(f"member {name!r} is XML in {m.group(1).decode('ascii', 'replace')!r}, not UTF-8")
        if body.startswith(b"<?xml"):
            body = body[body.find(b"?>") + 2 if b"?>" in body else 0:]
    if (b"!" in body and b"<!" in body) or (b"?" in body and b"<?" in body):
        guard.fail(f"member {name!r} holds XML comments, CDATA, a DTD or processing instructions, which "
                   "spreadsheet writers do not produce (a file crafted to hide markup?)")


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def _parse_ref(ref: bytes, *, column: bool = True) -> tuple[int, int] | None:
    """(row, column), 1-based, as calamine reads a reference (letters then digits); None if invalid.
    Values are exact (calamine's u32 arithmetic would wrap: anything beyond the grid is refused)."""
    m = re.fullmatch(rb"([A-Za-z]*)([0-9]+)", ref)
    if m is None or (column and not m.group(1)):
        return None
    row = int(m.group(2)) if len(m.group(2)) < 20 else 10**20
    return row, _col_number(m.group(1)) if m.group(1) else 0


def _canonical_cells(region: bytes) -> tuple[int, int, int] | None:
    """(cells, largest row, largest column) when every unprefixed cell tag in `region` opens with
    `<c r="REF"` (REF: 1-3 letters, 1-7 digits); None when one does not. Vectorised: the
    positions of "<c" come from one comparison over the block, the references are decoded as
    columns of bytes, so a block of 100,000 cells costs milliseconds."""
    a = np.frombuffer(region + b"\0" * 16, dtype=np.uint8)
    lt = np.flatnonzero(a[:-16] == 60)  # "<"
    c = lt[a[lt + 1] == 99]  # "<c"
    nxt = a[c + 2]
    c = c[(nxt == 32) | (nxt == 9) | (nxt == 10) | (nxt == 13) | (nxt == 47) | (nxt == 62)]
    if not c.size:
        return 0, 0, 0
    if not ((a[c + 2] == 32) & (a[c + 3] == 114) & (a[c + 4] == 61) & (a[c + 5] == 34)).all():  # ' r="'
        return None
    s = c + 6
    upper = [a[s + k] & 0xDF for k in range(4)]
    letter = [(u >= 65) & (u <= 90) for u in upper]
    l1 = letter[0]
    l2 = l1 & letter[1]
    l3 = l2 & letter[2]
    if not l1.all() or (l3 & letter[3]).any():
        return None
    v = [u.astype(np.int64) - 64 for u in upper[:3]]
    col = np.where(l3, v[0] * 676 + v[1] * 26 + v[2], np.where(l2, v[0] * 26 + v[1], v[0]))
    d = s + l1.astype(np.int64) + l2 + l3
    row = np.zeros(c.size, np.int64)
    digits = np.zeros(c.size, np.int64)
    more = np.ones(c.size, bool)
    for k in range(8):
        x = a[d + k]
        more &= (x >= 48) & (x <= 57)
        if not more.any():
            break
        row = np.where(more, row * 10 + (x.astype(np.int64) - 48), row)
        digits += more
    if (digits == 0).any() or (digits > 7).any() or not (a[d + digits] == 34).all():
        return None
    return int(c.size), int(row.max()), int(col.max())


def _xml(guard: XlsxGuard, data: bytes, what: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        guard.fail(f"not a readable XLSX workbook: {what}: {exc}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _relationships(guard: XlsxGuard, data: bytes, key: str = "Type") -> list[tuple[str, str]]:
    """(the relationship's `key` attribute - Type or Id -, its Target) for each relationship."""
    return [(r.get(key, ""), r.get("Target", "")) for r in _xml(guard, data, "relationships").iter()
            if _local(r.tag) == "Relationship"]


def _sheets(guard: XlsxGuard, data: bytes) -> list[tuple[str, str]]:
    out = []
    for el in _xml(guard, data, "workbook").iter():
        if _local(el.tag) == "sheet":
            rid = el.get(f"{{{_REL_NS}}}id") or next((v for k, v in el.attrib.items() if _local(k) == "id"), "")
            out.append((el.get("name", ""), rid))
    return out


def _resolve(folder: str, target: str) -> str:
    target = target.replace("\\", "/")
    path = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
    return posixpath.normpath(path).lower()
