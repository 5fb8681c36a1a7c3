"""Which text encoding a station export is in, decided from a sample, before any row is parsed.

Station systems write UTF-8, UTF-8 with a BOM (Excel/WPS "CSV UTF-8") or GBK/GB18030; a file may
also mix them when rows were appended by different tools. Guessing wrong turns every Chinese
value into mojibake silently, so the rules are deliberately conservative (see `detect_encoding`).
"""

from __future__ import annotations

import codecs
from pathlib import Path

from core.errors import SourceError
from connectors.readers.safe import DropFile, as_drop

SAMPLE_BYTES = 1 << 20
UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# Declared encoding -> the codec we decode with. GBK is decoded as GB18030, its superset: a GBK
# export containing a rare character outside GBK (common in names) then still decodes.
CODECS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8",  # the BOM itself is skipped by the block reader
    "gbk": "gb18030",
    "gb18030": "gb18030",
}

# Control bytes that never occur in text exports (tab, LF, VT, FF, CR, ESC excluded).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_BINARY = "not a text file (binary content?)"


def codec_for(encoding: str) -> str:
    return CODECS[encoding]


def read_sample(location: DropFile | Path) -> tuple[bytes, bool]:
    """First ~1 MB of the file and whether that is the whole file; file-level checks included.

    Raises SourceError for a missing, empty, binary or UTF-16 file, or one whose lines end in a
    bare CR: these must fail loudly before any parsing, not show up as a million rejected rows.
    """
    drop, owned = as_drop(location)
    try:
        return _sample(drop)
    finally:
        if owned:
            drop.close()


def _sample(drop: DropFile) -> tuple[bytes, bool]:
    label = drop.label
    with drop.reader() as fh:
        sample = fh.read(SAMPLE_BYTES)
        whole = len(sample) < SAMPLE_BYTES or not fh.read(1)
        body = sample[len(UTF8_BOM):] if sample.startswith(UTF8_BOM) else sample
        if not body.strip():
            if whole or _rest_is_blank(fh):
                raise SourceError(label, "file is empty")
    if sample.startswith(UTF16_BOMS):
        raise SourceError(label, "file is UTF-16 text, which is not supported: export it as UTF-8 or GB18030")
    if b"\x00" in sample:
        raise SourceError(label, _BINARY)
    control = len(sample) - len(sample.translate(None, _CONTROL))
    if control > len(sample) // 20:
        raise SourceError(label, _BINARY)
    if b"\n" not in sample and b"\r" in sample.rstrip(b"\r"):
        raise SourceError(
            label, "lines end with a bare CR (classic Mac line endings), which is not supported: "
            "export with LF or CRLF line endings"
        )
    return sample, whole


def _rest_is_blank(fh) -> bool:
    while block := fh.read(SAMPLE_BYTES):
        if block.strip():
            return False
    return True


def _decodes(data: bytes, codec: str, final: bool) -> bool:
    """Whether `data` is valid in `codec`; with final=False a multibyte char cut at the end is fine."""
    try:
        codecs.getincrementaldecoder(codec)().decode(data, final=final)
    except UnicodeDecodeError:
        return False
    return True


def _complete_lines(sample: bytes, whole: bool) -> tuple[bytes, bool]:
    """Cut the sample after its last newline so no character is split; else decode non-final."""
    if whole:
        return sample, True
    cut = sample.rfind(b"\n")
    if cut < 0:
        return sample, False
    return sample[: cut + 1], True


def detect_encoding(path: DropFile | Path, declared: str = "auto") -> str:
    """The encoding to read `path` with: "utf-8", "utf-8-sig" or "gb18030" (or `declared`).

    Order, and why:
    1. a UTF-8 BOM is unambiguous -> "utf-8-sig";
    2. a sample valid as UTF-8 -> "utf-8" (GBK text is practically never valid UTF-8);
    3. if more than half of the sample's non-ASCII lines are valid UTF-8 -> "utf-8": a UTF-8 file
       with a few rows appended by a GBK tool. This is checked before "valid as GB18030" because
       UTF-8 bytes very often also decode as GB18030 - as mojibake - so a whole-sample GB18030
       check alone would misread such a file;
    4. a sample valid as GB18030 (covers GBK) -> "gb18030";
    5. otherwise whichever of the two decodes more lines (bad lines are rejected row by row), or
       SourceError when neither decodes even half: that is not text.
    A declared encoding is trusted (gbk -> "gb18030") after the binary/empty checks, unless the
    sample shows it is plainly wrong, which fails with a message naming the likely encoding.
    """
    label = path.label if isinstance(path, DropFile) else str(path)
    sample, whole = read_sample(path if isinstance(path, DropFile) else Path(path))
    body, final = _complete_lines(sample, whole)
    if declared != "auto":
        codec = codec_for(declared)
        if not _decodes(body, codec, final):
            _check_declared(label, declared, codec, body)
        return "gb18030" if declared == "gbk" else declared
    if sample.startswith(UTF8_BOM):
        return "utf-8-sig"
    if _decodes(body, "utf-8", final):
        return "utf-8"
    lines = [line for line in body.split(b"\n") if not line.isascii()]
    n = len(lines)
    utf8_ok = sum(_decodes(line, "utf-8", True) for line in lines)
    if utf8_ok * 2 > n:
        return "utf-8"
    gb_ok = sum(_decodes(line, "gb18030", True) for line in lines)
    if gb_ok == n and _decodes(body, "gb18030", final):
        return "gb18030"
    if max(utf8_ok, gb_ok) * 2 < n:
        raise SourceError(
            label,
            f"{_BINARY}: of {n} non-ASCII lines sampled, {utf8_ok} decode as UTF-8 and {gb_ok} as GB18030",
        )
    return "utf-8" if utf8_ok >= gb_ok else "gb18030"


def _check_declared(label: str, declared: str, codec: str, body: bytes) -> None:
    """Fail when most of the sample is not in the declared encoding (a config mistake)."""
    lines = [line for line in body.split(b"\n") if not line.isascii()]
    ok = sum(_decodes(line, codec, True) for line in lines)
    if ok * 2 >= len(lines):
        return  # mostly right: the odd bad line is rejected row by row
    other = "gb18030" if codec == "utf-8" else "utf-8"
    if sum(_decodes(line, other, True) for line in lines) * 2 <= len(lines):
        raise SourceError(
            label, f"{_BINARY}: most lines sampled decode neither as {codec} nor as {other}"
        )
    hint = f"; the file looks like {other} - fix `encoding` in stations.yaml or use auto"
    raise SourceError(
        label,
        f"declared encoding {declared} does not match the file: {len(lines) - ok} of {len(lines)} "
        f"non-ASCII lines sampled are not valid {codec}{hint}",
    )
