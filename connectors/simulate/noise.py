"""Data-entry noise at configurable rates: what real station records look like.

Rows are chosen vectorised (a uniform draw per row below the rate, within an eligibility filter);
the chosen values, a small share of all rows, are rewritten in Python and scattered back. Every
rewrite keeps the value GBK-encodable.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import polars as pl

from connectors.simulate import naming
from connectors.simulate.codes import USCC_ALPHABET
from connectors.simulate.render import format_date_parts
from connectors.simulate.rng import Rng

_D2000 = 10957  # days from 1970-01-01 to 2000-01-01
_FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


@dataclass(frozen=True)
class NoiseRates:
    """Share of eligible records that get each kind of error (0 disables it)."""

    traditional_name: float = 0.015  # 张伟 -> 張偉 (OpenCC s2t)
    traditional_address: float = 0.02
    homophone: float = 0.02  # a given-name character typed as a homophone: 伟 -> 玮
    name_space: float = 0.005  # 张 伟
    id_digit_typo: float = 0.008  # one ID digit mistyped
    id_transposition: float = 0.005  # two adjacent ID digits swapped
    id_15_digit: float = 0.01  # old 15-digit ID (people born before 2000)
    id_fullwidth: float = 0.005  # ５００１０３...
    id_scientific: float = 0.01  # csv/xlsx stations: "5.00103E+17" (numeric IDs only)
    id_apostrophe: float = 0.02  # csv/xlsx stations: "'500103..."
    id_lowercase_x: float = 0.3  # of IDs ending in X
    phone_spaces: float = 0.02  # 138 1234 5678
    phone_plus86: float = 0.01  # +8613812345678
    phone_fullwidth: float = 0.005
    landline_format: float = 0.3  # of landlines: 02368881234, (023)68881234, 68881234
    missing_field: float = 0.03  # one field left blank
    missing_birth_date: float = 0.01
    impossible_date: float = 0.001  # 1990-02-30 in the station's format
    credit_code_bad_check: float = 0.02  # organisations: wrong GB 32100 check character
    credit_code_lowercase: float = 0.005
    org_name_variant: float = 0.03  # organisation name written without the city prefix

    @classmethod
    def none(cls) -> "NoiseRates":
        return cls(**{f.name: 0.0 for f in fields(cls)})

    def scaled(self, factor: float) -> "NoiseRates":
        return replace(self, **{f.name: min(1.0, getattr(self, f.name) * factor) for f in fields(self)})


DEFAULT_NOISE = NoiseRates()


@lru_cache(maxsize=1)
def _s2t() -> Callable[[str], str]:
    import opencc

    conv = opencc.OpenCC("s2t")
    return conv.convert


def to_traditional(text: str) -> str:
    out = _s2t()(text)
    if len(out) != len(text):
        return out if _gbk_ok(out) else text
    # keep any character that GBK cannot hold in its simplified form
    return "".join(t if _gbk_ok(t) else s for s, t in zip(text, out, strict=True))


def _gbk_ok(text: str) -> bool:
    try:
        text.encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


class _Noiser:
    def __init__(self, rng: Rng, entity: str, df: pl.DataFrame):
        self.rng = rng
        self.entity = entity
        self.df = df
        self.counts: dict[str, int] = {}

    def pick(self, name: str, rate: float, eligible: pl.Expr | None = None) -> pl.Series:
        if rate <= 0 or self.df.height == 0:
            return pl.Series("idx", [], dtype=pl.UInt32)
        u = self.rng.uniform(f"noise:{self.entity}:{name}", self.df.height)
        cond = pl.lit(u) < rate
        if eligible is not None:
            cond = cond & eligible
        return self.df.select(pl.arg_where(cond)).to_series()

    def apply(self, name: str, col: str, rate: float, fn: Callable[[str, random.Random], str | None],
              eligible: pl.Expr | None = None, extra: str | None = None) -> None:
        idx = self.pick(name, rate, eligible)
        if not len(idx):
            self.counts.setdefault(name, 0)
            return
        r = self.rng.py(f"noise:{self.entity}:{name}:values")
        vals = self.df[col].gather(idx).to_list()
        extras = self.df[extra].gather(idx).to_list() if extra else [None] * len(vals)
        new: list[str | None] = []
        changed = 0
        for v, x in zip(vals, extras, strict=True):
            out = fn(v, r) if extra is None else fn((v, x), r)  # type: ignore[arg-type]
            changed += out != v
            new.append(out)
        self.df = self.df.with_columns(self.df[col].scatter(idx, pl.Series(new, dtype=pl.String)))
        self.counts[name] = self.counts.get(name, 0) + changed


# -- value rewrites ----------------------------------------------------------------------------
def _homophone(value: tuple[str | None, str | None], r: random.Random) -> str | None:
    name, surname = value
    if not name:
        return name
    start = len(surname) if surname and name.startswith(surname) else 1
    spots = [i for i in range(start, len(name)) if name[i] in naming.HOMOPHONES]
    if not spots:
        return name
    i = r.choice(spots)
    return name[:i] + r.choice(naming.HOMOPHONES[name[i]]) + name[i + 1:]


def _name_space(value: tuple[str | None, str | None], r: random.Random) -> str | None:
    name, surname = value
    if not name or len(name) < 2:
        return name
    cut = len(surname) if surname and name.startswith(surname) and len(surname) < len(name) else 1
    sep = " " if r.random() < 0.8 else "\u3000"
    return name[:cut] + sep + name[cut:]


def _digit_typo(v: str | None, r: random.Random) -> str | None:
    if not v:
        return v
    i = r.randrange(0, min(17, len(v)))
    if not v[i].isdigit():
        return v
    d = r.choice([c for c in "0123456789" if c != v[i]])
    return v[:i] + d + v[i + 1:]


def _transpose(v: str | None, r: random.Random) -> str | None:
    if not v:
        return v
    spots = [i for i in range(min(16, len(v) - 1)) if v[i] != v[i + 1]]
    if not spots:
        return v
    i = r.choice(spots)
    return v[:i] + v[i + 1] + v[i] + v[i + 2:]


def _to15(v: str | None, r: random.Random) -> str | None:
    if not v or len(v) != 18:
        return v
    return v[:6] + v[8:17]


def _fullwidth(v: str | None, r: random.Random) -> str | None:
    return v.translate(_FULLWIDTH) if v else v


def _scientific(v: str | None, r: random.Random) -> str | None:
    if not v or not (v.isdigit() and v.isascii()):
        return v
    mant, exp = f"{int(v):.5E}".split("E")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}E{exp}"


def _apostrophe(v: str | None, r: random.Random) -> str | None:
    return "'" + v if v else v


def _lower_x(v: str | None, r: random.Random) -> str | None:
    return v[:-1] + "x" if v and v.endswith("X") else v


def _is_mobile(v: str) -> bool:
    return len(v) == 11 and v.isdigit() and v.isascii() and v.startswith("1")


def _phone_spaces(v: str | None, r: random.Random) -> str | None:
    if not v or not _is_mobile(v):
        return v
    sep = " " if r.random() < 0.75 else "-"
    return f"{v[:3]}{sep}{v[3:7]}{sep}{v[7:]}"


def _plus86(v: str | None, r: random.Random) -> str | None:
    if not v or not _is_mobile(v):
        return v
    return ("+86" if r.random() < 0.6 else "+86 ") + v


def _landline(v: str | None, r: random.Random) -> str | None:
    if not v or not v.startswith("023-"):
        return v
    local = v[4:]
    return r.choice([f"023{local}", f"(023){local}", local, f"023 {local}", f"（023）{local}"])


def _missing(v: str | None, r: random.Random) -> str | None:
    return None


def _impossible(value: tuple[str | None, int | None], r: random.Random) -> str | None:
    text, fmt = value
    if not text or fmt is None:
        return text
    digits = "".join(c for c in text if c.isdigit())
    year = int(digits[:4]) if len(digits) >= 4 else 1990
    m, d = r.choice([(2, 30), (2, 31), (4, 31), (6, 31), (9, 31), (11, 31), (2, 30)])
    return format_date_parts(year, m, d, int(fmt))


def _bad_check(v: str | None, r: random.Random) -> str | None:
    if not v or len(v) != 18:
        return v
    return v[:17] + r.choice([c for c in USCC_ALPHABET if c != v[17]])


def _lower(v: str | None, r: random.Random) -> str | None:
    return v.lower() if v else v


def _traditional(v: str | None, r: random.Random) -> str | None:
    return to_traditional(v) if v else v


def _org_variant(v: str | None, r: random.Random) -> str | None:
    if not v:
        return v
    if v.startswith(naming.CITY):
        return v[len(naming.CITY):]
    if v.startswith(naming.CITY_SHORT):
        return v[len(naming.CITY_SHORT):]
    return v


def _missing_fields(nz: _Noiser, rate: float, choices: list[tuple[str, float]]) -> None:
    idx = nz.pick("missing_field", rate)
    if not len(idx):
        nz.counts.setdefault("missing_field", 0)
        return
    r = nz.rng.py(f"noise:{nz.entity}:missing_field:which")
    names = [c for c, _ in choices]
    weights = [w for _, w in choices]
    by_col: dict[str, list[int]] = {c: [] for c in names}
    for i in idx.to_list():
        by_col[r.choices(names, weights=weights)[0]].append(i)
    for col in names:
        rows = by_col[col]
        if rows:
            nz.df = nz.df.with_columns(
                nz.df[col].scatter(rows, pl.Series([None] * len(rows), dtype=pl.String))
            )
    nz.counts["missing_field"] = len(idx)


# -- entry points ------------------------------------------------------------------------------
def _phone_noise(nz: _Noiser, rates: NoiseRates) -> None:
    mobile = pl.col("phone").str.contains(r"^1\d{10}$")
    nz.apply("landline_format", "phone", rates.landline_format, _landline, pl.col("phone").str.starts_with("023-"))
    nz.apply("phone_spaces", "phone", rates.phone_spaces, _phone_spaces, mobile)
    nz.apply("phone_plus86", "phone", rates.phone_plus86, _plus86, mobile)
    nz.apply("phone_fullwidth", "phone", rates.phone_fullwidth, _fullwidth, pl.col("phone").is_not_null())


def person_noise(rng: Rng, df: pl.DataFrame, rates: NoiseRates) -> tuple[pl.DataFrame, dict[str, int]]:
    nz = _Noiser(rng, "person", df)
    ident = pl.col("id_number")
    spreadsheet = pl.col("kind").is_in(["csv", "xlsx"])
    nz.apply("homophone", "name", rates.homophone, _homophone, extra="surname")
    nz.apply("traditional_name", "name", rates.traditional_name, _traditional)
    nz.apply("name_space", "name", rates.name_space, _name_space, extra="surname")
    nz.apply("traditional_address", "address", rates.traditional_address, _traditional)
    nz.apply("id_15_digit", "id_number", rates.id_15_digit, _to15, pl.col("birth") < _D2000)
    is18 = ident.str.len_chars() == 18
    nz.apply("id_digit_typo", "id_number", rates.id_digit_typo, _digit_typo, is18)
    nz.apply("id_transposition", "id_number", rates.id_transposition, _transpose, is18)
    nz.apply("id_lowercase_x", "id_number", rates.id_lowercase_x, _lower_x, ident.str.ends_with("X"))
    nz.apply("id_scientific", "id_number", rates.id_scientific, _scientific,
             spreadsheet & is18 & ident.str.contains(r"^\d{18}$"))
    nz.apply("id_apostrophe", "id_number", rates.id_apostrophe, _apostrophe,
             spreadsheet & ident.str.contains(r"^\d"))
    nz.apply("id_fullwidth", "id_number", rates.id_fullwidth, _fullwidth, ident.str.contains(r"^\d"))
    _phone_noise(nz, rates)
    nz.apply("impossible_date", "birth_date", rates.impossible_date, _impossible, extra="date_fmt")
    nz.apply("missing_birth_date", "birth_date", rates.missing_birth_date, _missing)
    _missing_fields(nz, rates.missing_field, [("phone", 0.35), ("id_number", 0.2), ("sex", 0.15),
                                              ("address", 0.1), ("area_code", 0.1), ("name", 0.05),
                                              ("birth_date", 0.05)])
    return nz.df, nz.counts


def organisation_noise(rng: Rng, df: pl.DataFrame, rates: NoiseRates) -> tuple[pl.DataFrame, dict[str, int]]:
    nz = _Noiser(rng, "organisation", df)
    nz.apply("org_name_variant", "name", rates.org_name_variant, _org_variant)
    nz.apply("traditional_name", "name", rates.traditional_name, _traditional)
    nz.apply("traditional_address", "address", rates.traditional_address, _traditional)
    nz.apply("homophone", "legal_rep", rates.homophone, lambda v, r: _homophone((v, None), r))
    nz.apply("credit_code_bad_check", "credit_code", rates.credit_code_bad_check, _bad_check)
    nz.apply("credit_code_lowercase", "credit_code", rates.credit_code_lowercase, _lower)
    _phone_noise(nz, rates)
    _missing_fields(nz, rates.missing_field, [("phone", 0.35), ("credit_code", 0.25), ("legal_rep", 0.15),
                                              ("address", 0.1), ("area_code", 0.15)])
    return nz.df, nz.counts
