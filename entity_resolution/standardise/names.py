"""Person and organisation names: a comparable form (`name_norm`), a phonetic key (`name_pinyin`).

Stations type the same name in traditional or simplified script, with full-width characters, stray
spaces and any of half a dozen look-alike dots between the parts of a minority name
(阿依古丽·买买提). `name_norm` removes those differences and nothing else.

`name_pinyin` lets blocking and comparison catch homophones that are typing variants (张伟/章伟) and
different characters chosen for the same sound. pypinyin runs once per distinct character (a few
thousand even for millions of rows); names are then assembled from that table with list
expressions over the distinct names only.
"""

from __future__ import annotations

from functools import partial

import polars as pl

from entity_resolution.standardise.frames import via_distinct
from entity_resolution.standardise.text import (
    blank_to_null,
    blank_to_null_value,
    normalise_text,
    normalise_text_value,
    py_regex,
    py_template,
)

MIDDLE_DOT = "·"  # U+00B7, the form used by the Ministry of Public Security's ID system

# Dot look-alikes that people and IMEs put between name parts. After NFKC, "．" is already ".".
_DOT_VARIANTS = (
    r"[\x{00B7}\x{0387}\x{2022}\x{2027}\x{2219}\x{22C5}\x{2E31}\x{30FB}\x{FF65}\x{16EB}]"
)
# Only between two Han characters is an ASCII or ideographic full stop a name separator; an
# organisation's "Co., Ltd." keeps its periods.
_HAN_STOP_HAN = r"(\p{Han})[.。](\p{Han})"

# Surnames whose reading differs from the character's everyday reading. Applied to the first
# character only: 单 in 单位 is dan, as the surname it is shan.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "解": "xie", "区": "ou", "仇": "qiu", "朴": "piao",
    "查": "zha", "盖": "ge", "乐": "yue", "缪": "miao", "任": "ren", "尉": "yu",
    "覃": "qin", "翟": "zhai", "万": "wan", "秘": "bi", "种": "chong", "燕": "yan",
}
# Two-character surnames whose reading as a pair differs from their characters' own readings.
COMPOUND_SURNAME_READINGS: dict[str, str] = {"万俟": "mo qi", "单于": "chan yu", "尉迟": "yu chi"}

# Per-process cache: character -> token ("zhang" padded with spaces, or the character itself).
_CHAR_TOKENS: dict[str, str] = {}


def normalise_name(expr: pl.Expr, *, keep_periods: bool = False) -> pl.Expr:
    """`name_norm`: simplified, half-width, no whitespace, every dot variant as one "·".

    `keep_periods` is for organisation names, where an ASCII period is part of the name.
    """
    text = normalise_text(expr)
    if not keep_periods:
        # Twice, because a match consumes the Han character that the next separator needs.
        text = text.str.replace_all(_HAN_STOP_HAN, "${1}·${2}").str.replace_all(
            _HAN_STOP_HAN, "${1}·${2}"
        )
    return (
        text.str.replace_all(_DOT_VARIANTS, MIDDLE_DOT)
        .str.replace_all("·{2,}", MIDDLE_DOT)
        .str.strip_chars(MIDDLE_DOT)
        .replace("", None)
    )


def _token(char: str) -> str:
    """A character's pinyin token: Han -> " syllable ", Latin/digit -> itself, other -> " "."""
    from pypinyin import Style, lazy_pinyin

    if "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or char >= "\U00020000":
        syllable = lazy_pinyin(char, style=Style.NORMAL, errors="ignore")
        return f" {syllable[0].lower()} " if syllable else " "
    if char.isascii() and char.isalnum():
        return char.lower()
    return " "


def _char_token(char: str) -> str:
    """`_token` through the per-process cache: each character is looked up in pypinyin once."""
    token = _CHAR_TOKENS.get(char)
    if token is None:
        token = _CHAR_TOKENS[char] = _token(char)
    return token


def _token_table(chars: pl.Series) -> tuple[list[str], list[str]]:
    """Tokens for every distinct character in `chars`, computing only the ones not seen before."""
    keys = chars.to_list()
    return keys, [_char_token(c) for c in keys]


def _squash(expr: pl.Expr) -> pl.Expr:
    """Collapse token padding into single spaces; an empty result (no readable char) -> null."""
    return expr.str.replace_all(r"\s+", " ").str.strip_chars(" ").replace("", None)


def _pinyin_distinct(names: pl.Series) -> pl.Series:
    """Pinyin for a Series of distinct, non-null normalised names."""
    chars = names.str.split("").explode().drop_nulls().unique()
    keys, tokens = _token_table(chars)
    surname_keys = list(SURNAME_READINGS)
    surname_tokens = [f" {SURNAME_READINGS[k]} " for k in surname_keys]

    frame = pl.DataFrame({"n": names})
    result = frame.select(
        tokens=pl.col("n")
        .str.split("")
        .list.eval(pl.element().replace_strict(keys, tokens, default=" ")),
        first=pl.col("n").str.slice(0, 1),
        compound=pl.col("n")
        .str.slice(0, 2)
        .replace_strict(COMPOUND_SURNAME_READINGS, default=None, return_dtype=pl.String),
    ).select(
        pl.when(pl.col("compound").is_not_null())
        .then(
            pl.concat_str(
                pl.lit(" "), pl.col("compound"), pl.lit(" "),
                pl.col("tokens").list.slice(2).list.join(""),
            )
        )
        .otherwise(
            pl.concat_str(
                pl.col("first").replace_strict(
                    surname_keys, surname_tokens, default=pl.col("tokens").list.first()
                ),
                pl.col("tokens").list.slice(1).list.join(""),
            )
        )
        .pipe(_squash)
    )
    return result.to_series()


def _pinyin_series(s: pl.Series) -> pl.Series:
    uniques = s.unique().drop_nulls()
    if uniques.is_empty():
        return pl.Series(s.name, [None] * len(s), dtype=pl.String)
    table = pl.DataFrame({"k": uniques, "v": _pinyin_distinct(uniques)})
    out = s.to_frame("k").join(table, on="k", how="left", maintain_order="left")
    return out.get_column("v").alias(s.name)


def name_pinyin(name_norm: pl.Expr) -> pl.Expr:
    """`name_pinyin` from `name_norm`: lower-case toneless syllables separated by single spaces."""
    # Not element-wise: the whole column in one call keeps the work per distinct name.
    return name_norm.map_batches(_pinyin_series, return_dtype=pl.String)


NAME_STRUCT = pl.Struct({"name": pl.String, "name_norm": pl.String, "name_pinyin": pl.String})


def _name_fields_distinct(values: pl.Series, *, keep_periods: bool) -> pl.Series:
    frame = pl.DataFrame({"raw": values}).with_columns(
        blank_to_null(pl.col("raw")).alias("name"),
        normalise_name(pl.col("raw"), keep_periods=keep_periods).alias("name_norm"),
    )
    frame = frame.with_columns(name_pinyin(pl.col("name_norm")).alias("name_pinyin"))
    return frame.select(pl.struct("name", "name_norm", "name_pinyin")).to_series()


def name_fields(expr: pl.Expr, *, keep_periods: bool = False) -> pl.Expr:
    """Struct {name (stripped original), name_norm, name_pinyin}, computed once per distinct raw
    name: a million residents carry a few hundred thousand distinct names."""
    return via_distinct(
        expr.cast(pl.String),
        partial(_name_fields_distinct, keep_periods=keep_periods),
        NAME_STRUCT,
    )


# ---------------------------------------------------------------------------------------------
# Per-value twins (standardise/rows.py)


def normalise_name_value(value: str | None, *, keep_periods: bool = False) -> str | None:
    """`normalise_name` for one value."""
    text = normalise_text_value(value)
    if text is None:
        return None
    if not keep_periods:
        stop = py_regex(_HAN_STOP_HAN)
        text = stop.sub(py_template("${1}·${2}"), stop.sub(py_template("${1}·${2}"), text))
    text = py_regex(_DOT_VARIANTS).sub(MIDDLE_DOT, text)
    text = py_regex("·{2,}").sub(MIDDLE_DOT, text)
    return text.strip(MIDDLE_DOT) or None


def name_pinyin_value(name_norm: str | None) -> str | None:
    """`name_pinyin` for one normalised name (the expression version's rules, same tables)."""
    if name_norm is None:
        return None
    tokens = [_char_token(c) for c in name_norm]
    compound = COMPOUND_SURNAME_READINGS.get(name_norm[:2])
    if compound is not None:
        text = f" {compound} " + "".join(tokens[2:])
    else:
        first = SURNAME_READINGS.get(name_norm[:1])
        text = (f" {first} " if first is not None else tokens[0]) + "".join(tokens[1:])
    return py_regex(r"\s+").sub(" ", text).strip(" ") or None


def name_fields_value(value: str | None, *, keep_periods: bool = False) -> tuple[str | None, str | None, str | None]:
    """(name, name_norm, name_pinyin) of one raw name, as `name_fields` gives them."""
    norm = normalise_name_value(value, keep_periods=keep_periods)
    return blank_to_null_value(value), norm, name_pinyin_value(norm)
