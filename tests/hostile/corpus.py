"""Hostile drops and the network that carries them, written into a folder on demand.

Each `Probe` is one station of the network: a source, the file(s) an attacker (or a broken
export) would put in its drop folder, and what the hub must do with them - reject the file whole
naming the limit (kept byte for byte in quarantine), refuse it (a link or special file: never
opened, never copied), or load the rest while quarantining the bad rows. Three ordinary stations
ride along and must load whatever their neighbours sent.

Big inputs are cheap to build: the 400 MB cell and the zip bomb are highly compressible and are
streamed through zlib (about a second in all), the 64 MB one-line file is written in one go.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HEADER = ["人员编号", "姓名", "性别", "出生日期", "公民身份号码"]
COLUMNS = dict(zip(HEADER, ["local_id", "name", "sex", "birth_date", "id_number"], strict=True))
JSON_COLUMNS = {"rybh": "local_id", "xm": "name", "sfzh": "id_number"}
GOOD_ROWS = [
    ["r1", "张伟", "男", "1990-01-02", "11010519900102001X"],
    ["r2", "李娜", "女", "1985-03-04", "110105198503040024"],
    ["r3", "王芳", "女", "1990-02-03", "500103199002030028"],
]
SECRET_FILES = ("/etc/passwd", "/proc/self/environ")


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


# -- XLSX by hand: the parts calamine reads, with whatever sheet XML a probe needs ---------------

_CT = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/'
       b'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
       b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
       b'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
       b'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
       b'spreadsheetml.worksheet+xml"/></Types>')
_RELS = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.'
         b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
         b'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
         b'</Relationships>')
_WB = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="http://schemas.openxmlformats.'
       b'org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
       b'<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WB_RELS = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.'
            b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
            b'openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            b'<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            b'sharedStrings" Target="sharedStrings.xml"/></Relationships>')


def cell(ref: str, text: str, extra: str = "") -> bytes:
    return f'<c r="{ref}"{extra} t="inlineStr"><is><t>{text}</t></is></c>'.encode()


def header_row() -> bytes:
    letters = "ABCDE"
    return b'<row r="1">' + b"".join(cell(f"{c}1", h) for c, h in zip(letters, HEADER)) + b"</row>"


def sheet_xml(rows: bytes, dimension: str = "A1:E2") -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.'
            b'openxmlformats.org/spreadsheetml/2006/main"><dimension ref="' + dimension.encode() + b'"/><sheetData>'
            + rows + b"</sheetData></worksheet>")


def write_xlsx(path: Path, sheet: bytes | Callable[[io.BufferedIOBase], None], *, sst: bytes | None = None,
               extra: dict[str, bytes] | None = None, level: int = 6) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _WB_RELS)
        if sst is not None:
            z.writestr("xl/sharedStrings.xml", sst)
        if isinstance(sheet, bytes):
            z.writestr("xl/worksheets/sheet1.xml", sheet)
        else:
            with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
                sheet(fh)
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def good_data_rows(start: int = 2) -> bytes:
    out = b""
    for i, row in enumerate(GOOD_ROWS):
        r = start + i
        out += f'<row r="{r}">'.encode() + b"".join(cell(f"{c}{r}", v) for c, v in zip("ABCDE", row)) + b"</row>"
    return out


def xlsx_huge_dimension(path: Path) -> None:
    """The security review's 6 KB file: declares A1:XFD1048576 and has a cell at its far corner."""
    far = b'<row r="1048576">' + cell("XFD1048576", "x") + b"</row>"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + far, "A1:XFD1048576"))


def xlsx_far_cell(path: Path) -> None:
    """Declares a modest range (A1:E4) but holds a cell at XFD1048576: the dimension lies."""
    far = b'<row r="1048576">' + cell("XFD1048576", "x") + b"</row>"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + far, "A1:E4"))


def xlsx_second_r(path: Path) -> None:
    """A cell tag with two r attributes: calamine takes the last; the first looks harmless."""
    trick = b'<row r="5"><c r="A5" r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + trick, "A1:E5"))


def xlsx_implicit_far(path: Path) -> None:
    """Cells without r sit right of the previous one: 20,000 of them run past column XFD."""
    row = b'<row r="5">' + b"<c><v>1</v></c>" * 20_000 + b"</row>"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + row, "A1:E5"))


def xlsx_comment_hides_markup(path: Path) -> None:
    """An XML comment holding a fake </sheetData>, to make a naive scanner stop early."""
    hidden = b'<!-- </sheetData> --><row r="1048576">' + cell("XFD1048576", "x") + b"</row>"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + hidden, "A1:E4"))


def xlsx_400mb_cell(path: Path) -> None:
    """The review's 413 KB workbook whose one cell inflates to 400 MB."""
    def sheet(fh) -> None:
        fh.write(sheet_xml(header_row(), "A1:E2").split(b"</sheetData>")[0])
        fh.write(b'<row r="2"><c r="A2" t="inlineStr"><is><t>r1</t></is></c><c r="B2" t="inlineStr"><is><t>')
        block = b"A" * (1 << 20)
        for _ in range(400):
            fh.write(block)
        fh.write(b"</t></is></c></row></sheetData></worksheet>")
    write_xlsx(path, sheet)


def xlsx_wide_cell(path: Path) -> None:
    """One cell of 200 KB of varied text: compresses poorly, so only the cell-size check stops it."""
    rng = random.Random(7)
    text = "".join(rng.choice("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥") for _ in range(70_000))
    row = b'<row r="5">' + cell("A5", "r9") + cell("B5", text) + b"</row>"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + row, "A1:E5"))


def xlsx_zip_bomb(path: Path) -> None:
    """A valid workbook plus a 256 MB member of zeros that deflates to ~250 KB."""
    write_xlsx(path, sheet_xml(header_row() + good_data_rows()))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("xl/media/image1.bin", "w", force_zip64=True) as fh:
            zero = bytes(1 << 20)
            for _ in range(256):
                fh.write(zero)


def xlsx_lying_size(path: Path) -> None:
    """The sheet's header declares 600 bytes (and their CRC) but its deflate stream holds 64 MB.

    Python's zipfile stops at the declared size and is satisfied; calamine's zip reader would
    inflate the whole stream. The declared size is too small for the ratio check to apply.
    """
    real = sheet_xml(header_row() + good_data_rows()).split(b"</sheetData>")[0]
    real += b'<row r="9"><c r="A9" t="inlineStr"><is><t>' + b"B" * (64 << 20) + b"</t></is></c></row></sheetData></worksheet>"
    write_xlsx(path, real)
    data = bytearray(path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    forged, crc = 600, zlib.crc32(real[:600])
    for sig, off_crc, off_usize in ((b"PK\x03\x04", 14, 22), (b"PK\x01\x02", 16, 24)):
        at = 0
        while (at := data.find(sig, at)) >= 0:
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                struct.pack_into("<I", data, at + off_crc, crc)
                struct.pack_into("<I", data, at + off_usize, forged)
            at += 4
    path.write_bytes(bytes(data))


def xlsx_many_members(path: Path) -> None:
    write_xlsx(path, sheet_xml(header_row() + good_data_rows()))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED) as z:
        for i in range(10_001):
            z.writestr(f"customXml/item{i}.xml", b"")


def xlsx_over_total(path: Path) -> None:
    """~3 MB of ordinary rows: over a source limit of max_decompressed_bytes = 1 MiB."""
    rows = b"".join(
        f'<row r="{r}">'.encode() + cell(f"A{r}", f"r{r}") + cell(f"B{r}", "张伟" * 20) + b"</row>"
        for r in range(2, 12_000)
    )
    write_xlsx(path, sheet_xml(header_row() + rows, "A1:B12000"))


def xlsx_forged_string_count(path: Path) -> None:
    """uniqueCount="4000000000": calamine would reserve room for four billion strings first."""
    sst = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://schemas.openxmlformats.org/'
           b'spreadsheetml/2006/main" count="1" uniqueCount="4000000000"><si><t>x</t></si></sst>')
    write_xlsx(path, sheet_xml(header_row() + good_data_rows()), sst=sst)


def xlsx_many_strings(path: Path) -> None:
    """1,500 shared strings, over a source limit of max_xlsx_strings = 1,000."""
    sst = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://schemas.openxmlformats.org/'
           b'spreadsheetml/2006/main">' + b"".join(f"<si><t>s{i}</t></si>".encode() for i in range(1500)) + b"</sst>")
    write_xlsx(path, sheet_xml(header_row() + good_data_rows()), sst=sst)


# -- text -------------------------------------------------------------------------------------


def csv_nul_late(path: Path) -> None:
    """1.1 MB of good rows (long remarks), then a row with a NUL byte: past the 1 MiB sample the
    binary check reads, so only the row can be set aside."""
    rows = [[f"g{i}", "张伟", "男", "1990-01-02", "11010519900102001X", "x" * 60_000] for i in range(18)]
    text = csv_text(rows, HEADER + ["备注"])
    path.write_bytes(text.encode() + "n1,王\x00芳,女,1990-02-03,500103199002030028,\n".encode())


def csv_cr_only(path: Path) -> None:
    path.write_bytes(csv_text(GOOD_ROWS).replace("\n", "\r").encode())


def csv_long_line(path: Path) -> None:
    """A 3 MiB line among ordinary rows: over max_line_bytes (1 MiB)."""
    path.write_bytes((csv_text(GOOD_ROWS) + "r9," + "长" * (1 << 20) + ",男,1990-01-01,x\n").encode())


def csv_one_huge_line(path: Path) -> None:
    """64 MB without a single newline: must cost one limit's worth of memory, not 64 MB or more."""
    with path.open("wb") as fh:
        fh.write(",".join(HEADER).encode() + b",")
        block = b"x" * (1 << 20)
        for _ in range(64):
            fh.write(block)


def csv_wide_field(path: Path) -> None:
    """A 200 KB field in a row of 200 KB: under max_line_bytes, over max_field_bytes (64 KiB)."""
    path.write_bytes((csv_text(GOOD_ROWS) + "r9," + "字" * 70_000 + ",男,1990-01-01,x\n").encode())


def csv_unterminated_quote(path: Path) -> None:
    """A quote opened on line 3 and never closed, then 5,000 lines: the csv parser gives up on the
    record at its field limit (128 K characters); that stretch is quarantined, the rest loads."""
    lines = [f"q{i},张伟,男,1990-01-02,11010519900102001X" for i in range(5_000)]
    path.write_bytes((csv_text(GOOD_ROWS[:1]) + 'r2,"李娜,女,1985-03-04,x\n' + "\n".join(lines) + "\n").encode())


def csv_many_columns(path: Path) -> None:
    header = HEADER + [f"c{i}" for i in range(5000)]
    path.write_bytes(csv_text([r + [""] * 5000 for r in GOOD_ROWS], header).encode())


def csv_gbk_invalid(path: Path) -> None:
    """A GBK export with two lines holding byte sequences that are not GBK (or GB18030)."""
    good = csv_text(GOOD_ROWS).encode("gbk")
    bad1 = b"b1,\x81\x20\xff\xfe,\xe5,1990-01-01,x\n"
    bad2 = b"b2,\xff\xff\xff,\x80,1990-01-01,x\n"
    path.write_bytes(good + bad1 + "r4,赵六,男,1991-01-01,110105199101010011\n".encode("gbk") + bad2)


def jsonl_lines(extra: list[str]) -> str:
    good = [json.dumps({"rybh": r[0], "xm": r[1], "sfzh": r[4]}, ensure_ascii=False) for r in GOOD_ROWS]
    return "\n".join(good + extra) + "\n"


def jsonl_deep(path: Path) -> None:
    """One line nested 100,000 levels deep (200 KB): Python's decoder would raise RecursionError."""
    deep = '{"rybh": "d1", "xm": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text(jsonl_lines([deep]), encoding="utf-8")


def jsonl_big_int(path: Path) -> None:
    """An integer of 10,000 digits: Python refuses to convert it (ValueError, not a JSON error)."""
    path.write_text(jsonl_lines(['{"rybh": "i1", "xm": ' + "7" * 10_000 + "}"]), encoding="utf-8")


def jsonl_nul(path: Path) -> None:
    """A \\u0000 escape: valid JSON, a NUL character PostgreSQL cannot store."""
    path.write_text(jsonl_lines(['{"rybh": "n1", "xm": "王\\u0000芳"}']), encoding="utf-8")


def jsonl_many_keys(path: Path) -> None:
    """Every object brings new keys: 3,000 distinct ones, each a column of every chunk."""
    lines = [json.dumps({"rybh": f"k{i}", **{f"k{i}_{j}": "x" for j in range(3)}}) for i in range(1000)]
    path.write_text(jsonl_lines(lines), encoding="utf-8")


# -- the network ------------------------------------------------------------------------------


@dataclass
class Probe:
    station: str
    what: str  # the hostile input, as the probe table names it
    kind: str
    build: Callable[[Path], None] | None  # writes the drop at the source's path
    expect: str  # "rejected" | "refused" | "loaded"
    says: tuple[str, ...] = ()  # fragments the error (or a quarantine reason) must contain
    limits: dict = field(default_factory=dict)
    rows: tuple[int, int] | None = None  # (loaded, quarantined) for "loaded"
    filename: str | None = None

    @property
    def path(self) -> str:
        ext = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "xlsx": "xlsx"}[self.kind]
        return f"{self.station}/{self.filename or 'drop.' + ext}"


PROBES: list[Probe] = [
    Probe("x_dimension", "XLSX declaring A1:XFD1048576 (cell at the far corner)", "xlsx", xlsx_huge_dimension,
          "rejected", ("A1:XFD1048576", "max_xlsx_cells")),
    Probe("x_far_cell", "XLSX declaring A1:E4, cell at XFD1048576", "xlsx", xlsx_far_cell, "rejected",
          ("1,048,576 rows x 16,384 columns", "max_xlsx_cells")),
    Probe("x_second_r", 'XLSX cell tag with a second r="XFD1048576"', "xlsx", xlsx_second_r, "rejected",
          ("2 r attributes",)),
    Probe("x_implicit", "XLSX row of 20,000 cells without r", "xlsx", xlsx_implicit_far, "rejected",
          ("outside the XLSX grid",)),
    Probe("x_comment", "XLSX hiding markup in an XML comment", "xlsx", xlsx_comment_hides_markup, "rejected",
          ("comments",)),
    Probe("x_400mb", "XLSX with one 400 MB cell (409 KB file)", "xlsx", xlsx_400mb_cell, "rejected",
          ("max_compression_ratio",)),
    Probe("x_wide_cell", "XLSX with one 200 KB cell (incompressible)", "xlsx", xlsx_wide_cell, "rejected",
          ("max_field_bytes",)),
    Probe("x_bomb", "zip bomb: 256 MB of zeros in ~1 MB", "xlsx", xlsx_zip_bomb, "rejected",
          ("max_compression_ratio", "image1.bin")),
    Probe("x_lying", "zip member declaring 600 B, inflating to 64 MB", "xlsx", xlsx_lying_size, "rejected",
          ("more than the 600 bytes",)),
    Probe("x_total", "XLSX inflating to 3 MB, limit 1 MiB", "xlsx", xlsx_over_total, "rejected",
          ("max_decompressed_bytes",), limits={"max_decompressed_bytes": "1 MiB"}),
    Probe("x_members", "zip with 10,006 members", "xlsx", xlsx_many_members, "rejected", ("members",)),
    Probe("x_sst_forged", 'shared strings declaring uniqueCount="4000000000"', "xlsx", xlsx_forged_string_count,
          "rejected", ("uniqueCount=4,000,000,000", "max_xlsx_strings")),
    Probe("x_sst_many", "1,500 shared strings, limit 1,000", "xlsx", xlsx_many_strings, "rejected",
          ("max_xlsx_strings",), limits={"max_xlsx_strings": 1000}),
    Probe("j_deep", "JSON line nested 100,000 deep", "jsonl", jsonl_deep, "loaded", ("max_json_depth",),
          rows=(3, 1)),
    Probe("j_bigint", "JSON integer of 10,000 digits", "jsonl", jsonl_big_int, "loaded", ("invalid JSON",),
          rows=(3, 1)),
    Probe("j_nul", "JSON value with \\u0000", "jsonl", jsonl_nul, "loaded", ("NUL",), rows=(3, 1)),
    Probe("j_keys", "JSON Lines with 3,000 distinct keys", "jsonl", jsonl_many_keys, "rejected", ("max_columns",)),
    Probe("c_nul", "CSV row with a NUL byte after the first MiB", "csv", csv_nul_late, "loaded", ("NUL",),
          rows=(18, 1)),
    Probe("c_cr", "CSV with CR-only line endings", "csv", csv_cr_only, "rejected", ("bare CR",)),
    Probe("c_long_line", "CSV with a 3 MiB line", "csv", csv_long_line, "rejected", ("line 5", "max_line_bytes")),
    Probe("c_one_line", "64 MB file without a newline", "csv", csv_one_huge_line, "rejected",
          ("line 1", "max_line_bytes")),
    Probe("c_wide_field", "CSV field of 200 KB (row under the line limit)", "csv", csv_wide_field, "loaded",
          ("max_field_bytes",), rows=(3, 1)),
    Probe("c_quote", "CSV quote never closed, 5,000 lines follow", "csv", csv_unterminated_quote, "loaded",
          ("malformed CSV",)),
    Probe("c_columns", "CSV header of 5,005 columns", "csv", csv_many_columns, "rejected", ("max_columns",)),
    Probe("c_gbk", "GBK file with invalid byte sequences", "csv", csv_gbk_invalid, "loaded", ("not valid gb18030",),
          rows=(4, 2)),
]

# The link probes live in one station's drop folder (a glob), beside one good drop.
LINKS = {
    "passwd.csv": ("symlink to /etc/passwd", "/etc/passwd"),
    "environ.csv": ("symlink to /proc/self/environ", "/proc/self/environ"),
    "inside.csv": ("symlink to a file inside the config folder", "../good1/residents.csv"),
    "dangling.csv": ("dangling symlink", "/nonexistent/residents.csv"),
}
SPECIALS = {"fifo.csv": "FIFO (named pipe)", "folder.csv": "directory named like a drop"}
# A name that is not UTF-8 cannot be stored as text (the batch's source_ref), so it is refused too.
BAD_NAME = b"bad-\xff-name.csv"


def build_network(root: Path) -> Path:
    """Write the hostile network's files and stations.yaml under `root`; return `root`."""
    stations = []
    for sid in ("good1", "good2", "good3"):
        (root / sid).mkdir(parents=True, exist_ok=True)
        (root / sid / "residents.csv").write_text(csv_text([[f"{sid}-{r[0]}", *r[1:]] for r in GOOD_ROWS]),
                                                  encoding="utf-8")
        stations.append(_station(sid, "csv", f"{sid}/residents.csv", COLUMNS))
    for probe in PROBES:
        (root / probe.station).mkdir(parents=True, exist_ok=True)
        probe.build(root / probe.path)
        columns = JSON_COLUMNS if probe.kind == "jsonl" else COLUMNS
        stations.append(_station(probe.station, probe.kind, probe.path, columns, probe.limits))
    drops = root / "links" / "drops"
    drops.mkdir(parents=True, exist_ok=True)
    (drops / "ok.csv").write_text(csv_text([[f"l-{r[0]}", *r[1:]] for r in GOOD_ROWS]), encoding="utf-8")
    for name, (_what, target) in LINKS.items():
        os.symlink(target, drops / name)
    os.mkfifo(drops / "fifo.csv")
    (drops / "folder.csv").mkdir()
    with open(os.fsencode(drops) + b"/" + BAD_NAME, "wb") as fh:
        fh.write(csv_text(GOOD_ROWS).encode())
    stations.append(_station("links", "csv", "links/drops/*.csv", COLUMNS))
    config = {"version": 1, "stations": stations}
    (root / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def _station(sid: str, kind: str, path: str, columns: dict, limits: dict | None = None) -> dict:
    source = {"name": "residents", "entity": "person", "kind": kind, "path": path, "columns": columns}
    if limits:
        source["limits"] = limits
    return {"id": sid, "name": sid, "jurisdiction": ["500103"], "sources": [source]}
