"""Data-entry noise at configurable rates: what real station records look like.

Rows are chosen vectorised (a uniform draw per row below the rate, within an eligibility filter);
the chosen values, a small share of all rows, are rewritten in Python and scattered back. Every
rewrite keeps the value GBK-encodable.

Person records carry one boolean column per ID quirk (`q_id_typo`, ...; see `quirks.py`) set on the
rows whose ID a step really changed, so benchmarks can score each phenomenon on its own. The ID
quirks exclude each other (a later step only picks IDs no earlier one touched): one label per ID
keeps each label's meaning exact, e.g. an `id_recoded_region` ID upgrades to the true ID with only
digits 1-6 and the check digit changed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import polars as pl

from connectors.simulate import naming
from connectors.simulate.codes import USCC_ALPHABET
from connectors.simulate.people import D_1985
from connectors.simulate.render import format_date_parts
from connectors.simulate.rng import Rng

_D2000 = 10957  # days from 1970-01-01 to 2000-01-01
_FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
# ID quirks set by person_noise (the rest of quirks.QUIRKS comes from the population)
ID_QUIRKS = ("id_recoded_region", "id_other_region", "id_15", "relative_id", "id_spreadsheet", "id_typo")


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
    # Of records of people born before 1985 whose current ID has a Chongqing code that GB/T 2260
    # recoded in 1997 (~20 % of records): the old 15-digit ID with the Sichuan-era code, ~0.5 % of
    # all person records.
    id_old_region: float = 0.025
    id_old_region_undocumented: float = 0.2  # of those: a made-up old code no change table lists
    relative_id: float = 0.004  # of records of people in households of >= 2: a relative's ID
    id_excel_zeros: float = 0.01  # csv/xlsx stations: Excel's 15 significant digits + "000"
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
    # ID left blank (on top of missing_field's share, ~0.6 %): ~3 % of records overall, more where
    # the system has no birth-date column either
    missing_id: float = 0.02
    missing_id_no_birth_date: float = 0.12
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

    def pick(self, name: str, rate: float | pl.Expr, eligible: pl.Expr | None = None) -> pl.Series:
        if (not isinstance(rate, pl.Expr) and rate <= 0) or self.df.height == 0:
            return pl.Series("idx", [], dtype=pl.UInt32)
        u = self.rng.uniform(f"noise:{self.entity}:{name}", self.df.height)
        cond = pl.lit(u) < rate
        if eligible is not None:
            cond = cond & eligible
        return self.df.select(pl.arg_where(cond)).to_series()

    def mark(self, tag: str, rows: list[int] | pl.Series) -> None:
        if len(rows):
            col = f"q_{tag}"
            self.df = self.df.with_columns(self.df[col].scatter(rows, True))

    def put(self, name: str, col: str, idx: pl.Series, values: pl.Series, tag: str | None = None) -> None:
        """Scatter vectorised rewrites (every picked row changes)."""
        if len(idx):
            self.df = self.df.with_columns(self.df[col].scatter(idx, values.cast(pl.String)))
            if tag is not None:
                self.mark(tag, idx)
        self.counts[name] = self.counts.get(name, 0) + len(idx)

    def apply(self, name: str, col: str, rate: float, fn: Callable[[str, random.Random], str | None],
              eligible: pl.Expr | None = None, extra: str | None = None, tag: str | None = None) -> None:
        idx = self.pick(name, rate, eligible)
        if not len(idx):
            self.counts.setdefault(name, 0)
            return
        r = self.rng.py(f"noise:{self.entity}:{name}:values")
        vals = self.df[col].gather(idx).to_list()
        extras = self.df[extra].gather(idx).to_list() if extra else [None] * len(vals)
        new: list[str | None] = []
        hit: list[int] = []
        for i, v, x in zip(idx.to_list(), vals, extras, strict=True):
            out = fn(v, r) if extra is None else fn((v, x), r)  # type: ignore[arg-type]
            if out != v:
                hit.append(i)
            new.append(out)
        self.df = self.df.with_columns(self.df[col].scatter(idx, pl.Series(new, dtype=pl.String)))
        if tag is not None:
            self.mark(tag, hit)
        self.counts[name] = self.counts.get(name, 0) + len(hit)


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


def _excel_zeros(v: str | None, r: random.Random) -> str | None:
    # Excel keeps 15 significant digits of a number: 500103199001011234 -> 500103199001011000
    if not v or not (v.isdigit() and v.isascii()) or len(v) != 18:
        return v
    return v[:15] + "000"


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


def _relative_id(nz: _Noiser, rate: float, eligible: pl.Expr) -> None:
    """A household member's ID typed on this person's record (a parent's for a child with no card,
    a spouse's): valid, but its birth date and sex disagree with the record's."""
    idx = nz.pick("relative_id", rate, eligible & pl.col("relative_id").is_not_null())
    nz.put("relative_id", "id_number", idx, nz.df["relative_id"].gather(idx), tag="relative_id")


def _old_region(nz: _Noiser, rates: NoiseRates, eligible: pl.Expr) -> None:
    """The 15-digit ID issued before 1997: Sichuan-era region code + yymmdd + the same sequence.

    Which old code a person had is fixed per person (a district with two old codes, 巴南区, takes
    one by pid parity), and so is whether it is one no change table documents.
    """
    new_codes = sorted(naming.NEW_TO_OLD_REGION)
    region = pl.col("id_true").str.slice(0, 6)
    idx = nz.pick("id_old_region", rates.id_old_region,
                  eligible & (pl.col("birth") < D_1985) & region.is_in(new_codes))
    if not len(idx):
        nz.counts.setdefault("id_old_region", 0)
        return
    sub = nz.df.select(pl.col("id_true").gather(idx), pl.col("pid").gather(idx))
    n_people = int(nz.df["pid"].max()) + 1
    undoc = nz.rng.uniform("noise:person:id_old_region:undocumented", n_people).gather(sub["pid"])
    undoc = undoc < rates.id_old_region_undocumented
    options = {f"{new}:{j}": old for new, olds in naming.NEW_TO_OLD_REGION.items() for j, old in enumerate(olds)}
    n_opts = {new: len(olds) for new, olds in naming.NEW_TO_OLD_REGION.items()}
    code = sub["id_true"].str.slice(0, 6)
    j = (sub["pid"] % code.replace_strict(n_opts, return_dtype=pl.Int64)).cast(pl.String)
    documented = (code + ":" + j).replace_strict(options, return_dtype=pl.String)
    other = code.replace_strict(naming.UNDOCUMENTED_OLD_REGION, return_dtype=pl.String)
    old = pl.select(pl.when(undoc).then(other).otherwise(documented)).to_series()
    nz.put("id_old_region", "id_number", idx, old + sub["id_true"].str.slice(8, 9))
    nz.mark("id_other_region", idx.filter(undoc))
    nz.mark("id_recoded_region", idx.filter(~undoc))


def _missing_ids(nz: _Noiser, rates: NoiseRates) -> None:
    rate = pl.when(pl.col("has_birth_date")).then(pl.lit(rates.missing_id)).otherwise(
        pl.lit(rates.missing_id_no_birth_date))
    if rates.missing_id <= 0 and rates.missing_id_no_birth_date <= 0:
        nz.counts.setdefault("missing_id", 0)
        return
    idx = nz.pick("missing_id", rate, pl.col("id_number").is_not_null())
    nz.put("missing_id", "id_number", idx, pl.Series([None] * len(idx), dtype=pl.String))


def person_noise(rng: Rng, df: pl.DataFrame, rates: NoiseRates) -> tuple[pl.DataFrame, dict[str, int]]:
    df = df.with_columns(pl.lit(False).alias(f"q_{t}") for t in ID_QUIRKS)
    if "id_true" not in df.columns:
        df = df.with_columns(pl.col("id_number").alias("id_true"))
    for col, value in (("relative_id", pl.lit(None, pl.String)), ("has_birth_date", pl.lit(True))):
        if col not in df.columns:
            df = df.with_columns(value.alias(col))
    nz = _Noiser(rng, "person", df)
    ident = pl.col("id_number")
    spreadsheet = pl.col("kind").is_in(["csv", "xlsx"])
    untouched = ~pl.any_horizontal(pl.col(f"q_{t}") for t in ID_QUIRKS)  # no ID quirk yet
    nz.apply("homophone", "name", rates.homophone, _homophone, extra="surname")
    nz.apply("traditional_name", "name", rates.traditional_name, _traditional)
    nz.apply("name_space", "name", rates.name_space, _name_space, extra="surname")
    nz.apply("traditional_address", "address", rates.traditional_address, _traditional)
    has_id = ident.is_not_null()
    _relative_id(nz, rates.relative_id, has_id)
    _old_region(nz, rates, has_id & untouched)
    nz.apply("id_15_digit", "id_number", rates.id_15_digit, _to15, (pl.col("birth") < _D2000) & untouched,
             tag="id_15")
    is18 = ident.str.len_chars() == 18
    nz.apply("id_digit_typo", "id_number", rates.id_digit_typo, _digit_typo, is18 & untouched, tag="id_typo")
    nz.apply("id_transposition", "id_number", rates.id_transposition, _transpose, is18 & untouched,
             tag="id_typo")
    nz.apply("id_lowercase_x", "id_number", rates.id_lowercase_x, _lower_x, ident.str.ends_with("X"))
    numeric18 = spreadsheet & is18 & ident.str.contains(r"^\d{18}$") & untouched
    nz.apply("id_excel_zeros", "id_number", rates.id_excel_zeros, _excel_zeros, numeric18, tag="id_spreadsheet")
    nz.apply("id_scientific", "id_number", rates.id_scientific, _scientific, numeric18, tag="id_spreadsheet")
    nz.apply("id_apostrophe", "id_number", rates.id_apostrophe, _apostrophe,
             spreadsheet & ident.str.contains(r"^\d"))
    nz.apply("id_fullwidth", "id_number", rates.id_fullwidth, _fullwidth, ident.str.contains(r"^\d"))
    _phone_noise(nz, rates)
    nz.apply("impossible_date", "birth_date", rates.impossible_date, _impossible, extra="date_fmt")
    nz.apply("missing_birth_date", "birth_date", rates.missing_birth_date, _missing)
    _missing_ids(nz, rates)
    _missing_fields(nz, rates.missing_field, [("phone", 0.35), ("id_number", 0.2), ("sex", 0.15),
                                              ("address", 0.1), ("area_code", 0.1), ("name", 0.05),
                                              ("birth_date", 0.05)])
    # a blanked ID carries none of its quirks any more
    nz.df = nz.df.with_columns(pl.col(f"q_{t}") & ident.is_not_null() for t in ID_QUIRKS)
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


# -- housing registers ---------------------------------------------------------------------------
_CN = "一二三四五六七八九"


def _chinese_number(digits: str) -> str:
    """1..99 in Chinese numerals (二, 十二, 二十一); other values unchanged."""
    if not digits.isdigit() or not 0 < int(digits) < 100:
        return digits
    v = int(digits)
    tens, ones = divmod(v, 10)
    out = ("" if tens == 0 else ("十" if tens == 1 else _CN[tens - 1] + "十"))
    return out + (_CN[ones - 1] if ones else "")


_FLAT = re.compile(r"号([0-9A-Za-z]+)栋([0-9]+)单元([0-9]+)室$")
_COMPACT = re.compile(r"号([0-9A-Za-z]+)-([0-9]+)-([0-9]+)$")
_GROUP = re.compile(r"([0-9]+)组")


def _address_variant(v: str | None, r: random.Random) -> str | None:
    """The same dwelling's address as another clerk writes it (one or two rewrites): 幢 or 号楼
    for 栋, Chinese numerals for the building, unit or a village group, no 室, the compact
    building-unit-room form or the full one, without the city, with spaces between parts."""
    if not v:
        return v
    out = v
    flat = _FLAT.search(out)
    compact = _COMPACT.search(out)
    options: list[Callable[[str], str]] = []
    if flat:
        b, u, room = flat.groups()
        options += [
            lambda s: s.replace(f"{b}栋", f"{b}幢", 1),
            lambda s: s.replace(f"{b}栋", f"{b}号楼", 1),
            lambda s: s.replace(f"{u}单元", f"{_chinese_number(u)}单元", 1),
            lambda s: s.removesuffix("室"),
            lambda s: s[: flat.start()] + f"号{b}-{u}-{room}",
        ]
        if b.isdigit():
            options.append(lambda s: s.replace(f"{b}栋", f"{_chinese_number(b)}栋", 1))
    elif compact:
        b, u, room = compact.groups()
        options += [lambda s: s[: compact.start()] + f"号{b}栋{u}单元{room}室",
                    lambda s: s[: compact.start()] + f"号{b}幢{u}单元{room}"]
    group = _GROUP.search(out)
    if group:
        options.append(lambda s: s.replace(group.group(0), f"{_chinese_number(group.group(1))}组", 1))
    if out.startswith(naming.CITY):
        options.append(lambda s: s[len(naming.CITY):])
    options.append(lambda s: s.replace("号", "号 ", 1))
    for fn in r.sample(options, min(len(options), 1 if r.random() < 0.6 else 2)):
        out = fn(out)
    return out


def dwelling_noise(rng: Rng, df: pl.DataFrame, rates: NoiseRates) -> tuple[pl.DataFrame, dict[str, int]]:
    """Housing-register records after data entry: every re-registration (`variant`) writes the
    address another way (`address_variant` marks the rows), plus the usual typing noise on the
    owner's name, ID and phone, and blank fields."""
    df = df.with_columns(pl.lit(False).alias("q_address_variant"))
    nz = _Noiser(rng, "dwelling", df)
    nz.apply("re_registration", "address", 1.0, _address_variant, pl.col("variant"), tag="address_variant")
    nz.apply("address_variant", "address", rates.traditional_address * 2, _address_variant,
             ~pl.col("variant"), tag="address_variant")
    nz.apply("traditional_address", "address", rates.traditional_address, _traditional)
    nz.apply("homophone", "owner_name", rates.homophone, _homophone, extra="surname")
    nz.apply("traditional_name", "owner_name", rates.traditional_name, _traditional)
    nz.apply("name_space", "owner_name", rates.name_space, _name_space, extra="surname")
    ident = pl.col("owner_id_number")
    nz.apply("id_digit_typo", "owner_id_number", rates.id_digit_typo, _digit_typo, ident.str.len_chars() == 18)
    nz.apply("id_transposition", "owner_id_number", rates.id_transposition, _transpose,
             ident.str.len_chars() == 18)
    nz.apply("id_lowercase_x", "owner_id_number", rates.id_lowercase_x, _lower_x, ident.str.ends_with("X"))
    nz.apply("id_apostrophe", "owner_id_number", rates.id_apostrophe, _apostrophe,
             pl.col("kind").is_in(["csv", "xlsx"]) & ident.str.contains(r"^\d"))
    nz.apply("phone_spaces", "owner_phone", rates.phone_spaces, _phone_spaces)
    nz.apply("phone_plus86", "owner_phone", rates.phone_plus86, _plus86)
    nz.apply("landline_format", "owner_phone", rates.landline_format, _landline)
    nz.apply("missing_id", "owner_id_number", rates.missing_id, _missing)
    _missing_fields(nz, rates.missing_field, [("owner_phone", 0.35), ("owner_id_number", 0.2), ("use", 0.15),
                                              ("occupants", 0.15), ("owner_name", 0.1), ("area_code", 0.05)])
    out = nz.df.rename({"q_address_variant": "address_variant"})
    # A re-registration's other address form is the register's structure, not typing noise: it
    # is there with NoiseRates.none() too, and counted by the summary's dwellings_in_two_registers.
    return out, {k: v for k, v in nz.counts.items() if k != "re_registration"}
