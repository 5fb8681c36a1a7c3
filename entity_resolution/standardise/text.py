"""Text primitives shared by every standardiser: blank handling, half-width, simplified script.

Station exports mix full-width characters, stray whitespace and traditional script in the same
column, and the same person must compare equal whichever station typed them. The costly steps
(Unicode NFKC and OpenCC) touch only the rows that actually contain a character they would change:
that set is computed once per process from the Unicode tables and the OpenCC dictionary, and a
single regex pass finds the rows, so clean (typical) data pays one scan instead of a rewrite.
OpenCC runs once per distinct affected value, never per row, and on whole values so that its
phrase dictionary still applies (乾隆 stays 乾隆 while 乾燥 becomes 干燥).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache, partial
from typing import Literal

import polars as pl

# Planes that hold everything NFKC or OpenCC change in practice (BMP, SMP, SIP); the loop over
# them costs about 20 ms once per process.
_SCAN_LIMIT = 0x30000


def _char_class(chars: Iterable[str]) -> str:
    """A regex character class for `chars`, compressed into ranges so it stays small."""
    points = sorted({ord(c) for c in chars})
    parts: list[str] = []
    start = prev = None
    for p in points:
        if start is None:
            start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            parts.append(_range(start, prev))
            start = prev = p
    if start is not None:
        parts.append(_range(start, prev))
    return "[" + "".join(parts) + "]"


def _range(a: int, b: int) -> str:
    return f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}"


@cache
def _nfkc_chars() -> frozenset[str]:
    """Characters NFKC would change: a row without any of them needs no rewrite."""
    return frozenset(
        chr(c)
        for c in range(_SCAN_LIMIT)
        if not 0xD800 <= c < 0xE000 and unicodedata.normalize("NFKC", chr(c)) != chr(c)
    )


@cache
def _nfkc_pattern() -> str:
    return _char_class(_nfkc_chars())


@cache
def _opencc_t2s():  # noqa: ANN202 - the binding ships no type stubs for its converter
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _traditional_chars() -> frozenset[str] | None:
    """Characters that OpenCC t2s rewrites on their own, found by converting each CJK code point
    (None if the conversion did not line up).

    Converting one newline-separated string is one C++ call (about 20 ms); newlines stop OpenCC's
    phrase matching from spanning two characters, so the output lines up one to one.
    """
    ranges = [(0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00), (0x20000, 0x2A6E0)]
    chars = [chr(c) for a, b in ranges for c in range(a, b)]
    converted = _opencc_t2s().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # pragma: no cover - defensive: fall back to "every CJK char"
        return None
    return frozenset(a for a, b in zip(chars, converted, strict=True) if a != b)


@cache
def _traditional_pattern() -> str:
    chars = _traditional_chars()
    return r"[\p{Han}]" if chars is None else _char_class(chars)


def _subset_apply(
    s: pl.Series, pattern: str, fn: Callable[[pl.Series], pl.Series]
) -> pl.Series:
    """Apply `fn` (Series -> Series) only to the values that match `pattern`, keep the rest."""
    mask = s.str.contains(pattern).fill_null(False)
    if not mask.any():
        return s
    if mask.all():
        return fn(s)
    idx = mask.arg_true()
    return s.scatter(idx, fn(s.gather(idx)))


def _convert_distinct(sub: pl.Series) -> pl.Series:
    """OpenCC on each distinct value of `sub`, mapped back; the only per-string Python loop."""
    uniques = sub.unique().drop_nulls()
    converter = _opencc_t2s()
    converted = pl.Series([converter.convert(v) for v in uniques.to_list()], dtype=pl.String)
    return sub.replace(uniques, converted)


def _nonblank(s: pl.Series) -> pl.Series:
    """Empty strings -> null: after cleaning, "nothing left" means "not given"."""
    return s.replace("", None)


def _clean_series(
    s: pl.Series, *, remove: str | None, case: str | None, simplify: bool
) -> pl.Series:
    """See clean_text. One regex pass finds the rows that need any rewrite at all; only those are
    rewritten (typically a few percent), which keeps the common clean row at the cost of a scan."""
    s = _nonblank(s.cast(pl.String).str.strip_chars())
    triggers = [_nfkc_pattern()]
    if simplify:
        triggers.append(_traditional_pattern())
    if remove is not None:
        triggers.append(remove)
    if case == "upper":
        triggers.append("[a-z]")
    elif case == "lower":
        triggers.append("[A-Z]")

    def rewrite(sub: pl.Series) -> pl.Series:
        sub = sub.str.normalize("NFKC")
        if simplify:
            sub = _subset_apply(sub, _traditional_pattern(), _convert_distinct)
        if remove is not None:
            sub = sub.str.replace_all(remove, "")
        if case == "upper":
            sub = sub.str.to_uppercase()
        elif case == "lower":
            sub = sub.str.to_lowercase()
        return sub

    return _nonblank(_subset_apply(s, "|".join(f"(?:{t})" for t in triggers), rewrite))


def clean_text(
    expr: pl.Expr,
    *,
    remove: str | None = None,
    case: Literal["upper", "lower"] | None = None,
    simplify: bool = False,
) -> pl.Expr:
    """The shared cleaning pass: strip, blank -> null, NFKC (full-width ０-９, Ｘ, （） become
    ASCII), optionally OpenCC t2s (張偉 -> 张伟), drop what matches the regex `remove`, fold case,
    and null again if nothing is left.

    One UDF over Series rather than a chain of expressions: Polars does not deduplicate an
    expression that contains a UDF, so a chain reused in a when/then would run twice.
    """
    fn = partial(_clean_series, remove=remove, case=case, simplify=simplify)
    return expr.map_batches(fn, return_dtype=pl.String, is_elementwise=True)


def normalise_text(expr: pl.Expr) -> pl.Expr:
    """Blank -> null, half-width, simplified, no whitespace (names and addresses)."""
    return clean_text(expr, remove=r"\s+", simplify=True)


def blank_to_null(expr: pl.Expr) -> pl.Expr:
    """Strip surrounding whitespace (incl. U+3000); an empty result means the value is absent."""
    return expr.cast(pl.String).str.strip_chars().replace("", None)


def quoted(expr: pl.Expr) -> pl.Expr:
    """The raw value in single quotes for issue messages, so blanks and spaces stay visible."""
    return pl.concat_str(pl.lit("'"), expr, pl.lit("'"))


# ---------------------------------------------------------------------------------------------
# Per-value twins (standardise/rows.py): the same cleaning for one Python string, without a frame.
#
# Polars runs Rust's regex and Unicode tables, Python its own (older) ones. The regexes of this
# package are translated to Python `re` with the character sets taken from Polars itself (\p{Han},
# \s), and a value holding a character on which the two Unicode versions disagree (NFKC, case) has
# that one step done by Polars, so that a twin never answers differently from the frame version.

# Where Rust's Unicode tables are scanned: planes 0-3 (every Han block) and the tags plane.
_TABLE_RANGES = ((0, 0x40000), (0xE0000, 0xE1000))


@cache
def _rust_tables() -> tuple[str, str, frozenset[str]]:
    """(whitespace chars, Han class body, chars whose NFKC or case mapping differs in Python),
    read from Polars once per process (about 0.2 s)."""
    chars = [chr(c) for a, b in _TABLE_RANGES for c in range(a, b) if not 0xD800 <= c < 0xE000]
    s = pl.Series(chars, dtype=pl.String)
    whitespace = "".join(s.filter(s.str.contains(r"^\s$")).to_list())
    han = _char_class(s.filter(s.str.contains(r"^\p{Han}$")).to_list())[1:-1]
    steps = ((s.str.normalize("NFKC"), partial(unicodedata.normalize, "NFKC")),
             (s.str.to_uppercase(), str.upper), (s.str.to_lowercase(), str.lower))
    differs = frozenset(c for rust, py in steps for c, r in zip(chars, rust.to_list(), strict=True) if py(c) != r)
    return whitespace, _python_class_body(han), differs


def _python_class_body(body: str) -> str:
    """A class body written with \\x{HEX} escapes, in Python's \\UHHHHHHHH escapes."""
    return re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: f"\\U{int(m.group(1), 16):08X}", body)


def rust_whitespace() -> str:
    """The characters Rust calls whitespace (`\\s`, `trim`): Unicode White_Space."""
    return _rust_tables()[0]


def _whitespace_class() -> str:
    return "".join(f"\\U{ord(c):08X}" for c in rust_whitespace())


def _translate(pattern: str) -> str:
    """A Rust regex of this package as a Python `re` pattern with the same matches.

    Covers what the standardisers write: \\p{Han}, the set difference [\\p{Han}--[...]], \\x{HEX},
    \\s (Unicode White_Space, as Rust reads it) and `$` (end of text only, like Rust's)."""
    han = _rust_tables()[1]
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        if pattern.startswith(r"[\p{Han}--[", i):
            end = pattern.index("]]", i)
            excluded = _translate("[" + pattern[i + len(r"[\p{Han}--["):end] + "]")
            out.append(f"(?:(?!{excluded})[{han}])")
            i = end + 2
            continue
        if pattern.startswith(r"\p{Han}", i):
            out.append(han if in_class else f"[{han}]")
            i += len(r"\p{Han}")
            continue
        m = re.match(r"\\x\{([0-9A-Fa-f]+)\}", pattern[i:])
        if m:
            out.append(f"\\U{int(m.group(1), 16):08X}")
            i += m.end()
            continue
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1]
            out.append(_whitespace_class() if nxt == "s" and in_class else
                       f"[{_whitespace_class()}]" if nxt == "s" else pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1] == "]":  # a literal ] first in a class
                out.append(r"\]")
                i += 1
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        elif c == "$" and not in_class:
            out.append(r"\Z")
        else:
            out.append(c)
        i += 1
    return "".join(out)


@cache
def py_regex(pattern: str) -> re.Pattern[str]:
    """The compiled Python twin of a Rust regex of this package (see _translate)."""
    return re.compile(_translate(pattern))


@cache
def py_template(replacement: str) -> str:
    """A Polars replacement ("${1}·${2}") as a Python `re` template ("\\g<1>·\\g<2>")."""
    return re.sub(r"\$\{?([0-9]+)\}?", r"\\g<\1>", replacement)


def strip_value(value: str) -> str:
    """`str.strip_chars()`: Rust's trim, i.e. Unicode White_Space (not Python's isspace set)."""
    return value.strip(_rust_tables()[0])


def blank_to_null_value(value: str | None) -> str | None:
    """Per-value `blank_to_null`."""
    return None if value is None else strip_value(value) or None


def quoted_value(value: str | None) -> str | None:
    """Per-value `quoted` (null stays null, as concat_str does)."""
    return None if value is None else f"'{value}'"


def case_value(value: str, case: Literal["upper", "lower"]) -> str:
    """`str.to_uppercase()` / `str.to_lowercase()` of one value, as Polars folds it."""
    return _rust_step(value, case, str.upper if case == "upper" else str.lower)


def _rust_step(value: str, step: str, python: Callable[[str], str]) -> str:
    """NFKC or case folding as Polars does it: Python's own unless the value holds a character
    on which the two Unicode versions disagree."""
    if _rust_tables()[2].isdisjoint(value):
        return python(value)
    s = pl.Series([value], dtype=pl.String)
    rust = {"nfkc": s.str.normalize("NFKC"), "upper": s.str.to_uppercase(), "lower": s.str.to_lowercase()}[step]
    return rust.item()


def _has_traditional(text: str) -> bool:
    """Whether `_traditional_pattern` matches: a set lookup (Python's `re` scans a class of
    thousands of ranges outside the BMP one range at a time)."""
    chars = _traditional_chars()
    return bool(py_regex(_traditional_pattern()).search(text)) if chars is None else not chars.isdisjoint(text)


@cache
def _trigger(remove: str | None, case: str | None) -> re.Pattern[str] | None:
    """The small part of the trigger `_clean_series` builds (what `remove` and case folding
    would change); its NFKC and traditional parts are looked up as sets."""
    triggers = [] if remove is None else [remove]
    if case == "upper":
        triggers.append("[a-z]")
    elif case == "lower":
        triggers.append("[A-Z]")
    return py_regex("|".join(f"(?:{t})" for t in triggers)) if triggers else None


def _needs_rewrite(text: str, remove: str | None, case: str | None, simplify: bool) -> bool:
    """Whether `_clean_series`'s trigger pattern matches `text`."""
    if not _nfkc_chars().isdisjoint(text) or (simplify and _has_traditional(text)):
        return True
    pattern = _trigger(remove, case)
    return pattern is not None and pattern.search(text) is not None


def clean_text_value(
    value: str | None,
    *,
    remove: str | None = None,
    case: Literal["upper", "lower"] | None = None,
    simplify: bool = False,
) -> str | None:
    """`clean_text` for one value: the same steps, taken only when the same trigger matches."""
    if value is None:
        return None
    text = strip_value(value)
    if not text or not _needs_rewrite(text, remove, case, simplify):
        return text or None
    text = _rust_step(text, "nfkc", partial(unicodedata.normalize, "NFKC"))
    if simplify and _has_traditional(text):
        text = _opencc_t2s().convert(text)
    if remove is not None:
        text = py_regex(remove).sub("", text)
    if case is not None:
        text = case_value(text, case)
    return text or None


def normalise_text_value(value: str | None) -> str | None:
    """Per-value `normalise_text`."""
    return clean_text_value(value, remove=r"\s+", simplify=True)
