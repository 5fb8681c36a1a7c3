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
def _nfkc_pattern() -> str:
    """Characters NFKC would change: a row without any of them needs no rewrite."""
    changed = (
        chr(c)
        for c in range(_SCAN_LIMIT)
        if not 0xD800 <= c < 0xE000 and unicodedata.normalize("NFKC", chr(c)) != chr(c)
    )
    return _char_class(changed)


@cache
def _opencc_t2s():  # noqa: ANN202 - the binding ships no type stubs for its converter
    import opencc

    return opencc.OpenCC("t2s")


@cache
def _traditional_pattern() -> str:
    """Characters that OpenCC t2s rewrites on their own, found by converting each CJK code point.

    Converting one newline-separated string is one C++ call (about 20 ms); newlines stop OpenCC's
    phrase matching from spanning two characters, so the output lines up one to one.
    """
    ranges = [(0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00), (0x20000, 0x2A6E0)]
    chars = [chr(c) for a, b in ranges for c in range(a, b)]
    converted = _opencc_t2s().convert("\n".join(chars)).split("\n")
    if len(converted) != len(chars):  # pragma: no cover - defensive: fall back to "every CJK char"
        return r"[\p{Han}]"
    return _char_class(a for a, b in zip(chars, converted, strict=True) if a != b)


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
