"""Check characters of Chinese identifiers, scalar and vectorised (Polars expressions).

- GB 11643-1999 citizen ID number: 17 digits + check char from weights 7 9 10 5 8 4 2 1 6 3 7 9 10
  5 8 4 2, sum mod 11 indexing "10X98765432".
- GB 11714-1997 organisation code: 8 chars + check from weights 3 7 9 10 5 8 4 2,
  11 - sum mod 11 (10 -> "X", 11 -> "0").
- GB 32100-2015 unified social credit code: 17 chars + check from weights 1 3 9 27 19 26 16 17 20 29
  25 13 8 24 10 30 28 over the alphabet "0123456789ABCDEFGHJKLMNPQRTUWXY",
  check = (31 - sum mod 31) mod 31.
"""

from __future__ import annotations

import polars as pl

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"

ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}


# -- scalar ------------------------------------------------------------------------------------
def id_check_char(body17: str) -> str:
    total = sum(int(c) * w for c, w in zip(body17, ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[total % 11]


def id_is_valid(id18: str) -> bool:
    """True for an 18-character ID whose check character is right (upper-case X only)."""
    if len(id18) != 18 or not id18[:17].isdigit() or not id18[:17].isascii():
        return False
    return id18[17] == id_check_char(id18[:17])


def org_code_check_char(body8: str) -> str:
    total = sum(_char_value_36(c) * w for c, w in zip(body8, ORG_CODE_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def uscc_check_char(body17: str) -> str:
    total = sum(_USCC_VALUE[c] * w for c, w in zip(body17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_is_valid(code: str) -> bool:
    if len(code) != 18 or any(c not in _USCC_VALUE for c in code):
        return False
    return code[17] == uscc_check_char(code[:17])


def _char_value_36(c: str) -> int:
    return int(c) if c.isdigit() else ord(c) - ord("A") + 10


# -- vectorised --------------------------------------------------------------------------------
def id_check_expr(body17: pl.Expr) -> pl.Expr:
    """Check char for a column of 17-digit ID bodies."""
    total = pl.sum_horizontal(
        body17.str.slice(i, 1).cast(pl.Int32) * w for i, w in enumerate(ID_WEIGHTS)
    )
    mapping = {i: ID_CHECK_CHARS[i] for i in range(11)}
    return (total % 11).replace_strict(mapping, return_dtype=pl.String)


def org_code_check_expr(body8: pl.Expr) -> pl.Expr:
    """GB 11714 check char for a column of 8-char organisation-code bodies (digits, A-Z)."""
    values = {str(d): d for d in range(10)} | {chr(ord("A") + i): 10 + i for i in range(26)}
    total = pl.sum_horizontal(
        body8.str.slice(i, 1).replace_strict(values, return_dtype=pl.Int32) * w
        for i, w in enumerate(ORG_CODE_WEIGHTS)
    )
    c = 11 - total % 11
    mapping = {i: str(i) for i in range(1, 10)} | {10: "X", 11: "0"}
    return c.replace_strict(mapping, return_dtype=pl.String)


def uscc_check_expr(body17: pl.Expr) -> pl.Expr:
    """GB 32100 check char for a column of 17-char credit-code bodies."""
    total = pl.sum_horizontal(
        body17.str.slice(i, 1).replace_strict(_USCC_VALUE, return_dtype=pl.Int32) * w
        for i, w in enumerate(USCC_WEIGHTS)
    )
    mapping = {i: USCC_ALPHABET[(31 - i) % 31] for i in range(31)}
    return (total % 31).replace_strict(mapping, return_dtype=pl.String)
