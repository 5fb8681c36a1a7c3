"""The plain-Python twin of the ingest standardiser (standardise/rows.py) gives, row by row and
column by column, what the Polars standardiser gives: on the simulator's noisy exports of the three
bundled types, on every value the hand-written standardiser tests use, on hostile text and on
random strings; and it declines (None) what it does not cover.
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from connectors.simulate.export import (
    simulate_dwelling_records,
    simulate_person_records,
)
from connectors.simulate.network import build_network
from connectors.simulate.noise import NoiseRates, organisation_noise
from connectors.simulate.orgs import generate_organisations, organisation_residences
from connectors.simulate.people import DEFAULT_POPULATION, generate_population
from connectors.simulate.render import render_organisations
from connectors.simulate.rng import Rng
from core.entity_types import EntityType, EntityTypeSpec
from entity_resolution.entity_types import load_registry
from entity_resolution.standardise.library import standardise
from entity_resolution.standardise.organisations import ORGANISATION_FIELDS
from entity_resolution.standardise.rows import standardise_rows

TODAY = date(2025, 1, 1)
TESTS = Path(__file__).parent
REGISTRY = load_registry()
PERSON, ORGANISATION, DWELLING = (REGISTRY.get(n) for n in ("person", "organisation", "dwelling"))

# Every field standardiser, under names other than their own (the renamed columns; the address
# only under its own, see test_an_address_field_of_another_name_...), required
# fields, a field standardised from another's raw value, and a station's own date formats.
KITCHEN_SINK = EntityType("sink", EntityTypeSpec.model_validate({
    "id_prefix": "K",
    "fields": {
        "local_id": {"type": "text", "required": True},
        "label": {"type": "text", "required": True},
        "code": {"type": "text", "standardiser": "upper_text"},
        "handle": {"type": "text", "standardiser": "lower_text"},
        "pin": {"type": "text", "standardiser": "digits"},
        "born": {"type": "date", "required": True},
        "born_dmy": {"type": "date", "from": "born", "formats": ["%d/%m/%Y", "%Y%m%d"]},
        "seen_at": {"type": "timestamp", "formats": ["%d/%m/%Y"]},
        "count": {"type": "integer"},
        "weight": {"type": "number"},
        "active": {"type": "boolean"},
        "contact_name": {"type": "text", "standardiser": "chinese_name"},
        "owner_id": {"type": "text", "standardiser": "id_number"},
        "org_code": {"type": "text", "standardiser": "credit_code"},
        "mobile": {"type": "text", "standardiser": "phone"},
        "region": {"type": "text", "standardiser": "area_code"},
        "address": {"type": "text", "standardiser": "address", "required": True},
    },
}), bundled=False)

TYPES = {"person": PERSON, "organisation": ORGANISATION, "dwelling": DWELLING, "sink": KITCHEN_SINK}


def raw_fields(entity_type: EntityType) -> list[str]:
    """The raw fields a station maps for the type (those with `from` read another's value)."""
    return list(entity_type.spec.source_fields)


def same(a: object, b: object) -> bool:
    """Equal values of the same Python type (NaN equals NaN, True is not 1)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def mismatches(rows: Sequence[dict], entity_type: EntityType,
               date_formats: Sequence[str] | None = None) -> list[str]:
    """Every (row, column) where the twin and the Polars standardiser differ, described."""
    kw = {} if date_formats is None else {"date_formats": date_formats}
    today = {} if entity_type is ORGANISATION else {"today": TODAY}  # standardise_organisations takes none
    schema = {k: pl.String for k in dict.fromkeys(k for r in rows for k in r)}
    frame = standardise(pl.DataFrame(rows, schema=schema), entity_type, **kw, **today)
    out, kept, expected = [], [], []
    for i, row in enumerate(rows):
        try:
            expected.append(frame.row(i, named=True))
            kept.append(row)
        except ValueError:  # a year Python cannot hold (0000-01-01): the twin must decline it
            if standardise_rows([row], entity_type, today=TODAY, **kw) is not None:
                out.append(f"not declined: {row!r}")
    rows = kept
    got = standardise_rows(rows, entity_type, today=TODAY, **kw)
    assert got is not None, "the twin declined a covered type"
    for row, want, have in zip(rows, expected, got, strict=True):
        if list(want) != list(have):
            out.append(f"columns {list(want)} != {list(have)}")
            continue
        out += [f"{c}: polars {want[c]!r} twin {have[c]!r} for {row!r}" for c in want if not same(want[c], have[c])]
    return out


def assert_same(rows: Sequence[dict], entity_type: EntityType, date_formats: Sequence[str] | None = None) -> None:
    bad = mismatches(rows, entity_type, date_formats)
    assert not bad, f"{len(bad)} differences, e.g.\n" + "\n".join(bad[:12])


# -- simulated exports ---------------------------------------------------------------------------


def organisation_records(seed: int, noise: NoiseRates) -> list[dict]:
    rng = Rng(seed)
    net = build_network(20, seed)
    pop = generate_population(rng, net, 3000, DEFAULT_POPULATION)
    orgs = generate_organisations(rng, net, pop, 600)
    rec = render_organisations(rng, net, orgs, organisation_residences(rng, net, orgs))
    rec, _ = organisation_noise(rng, rec, noise)
    return rec.select("record_key", *[c for c in ORGANISATION_FIELDS if c in rec.columns]).to_dicts()


@pytest.mark.parametrize("noise", [1.0, 6.0], ids=["default-noise", "6x-noise"])
def test_simulated_persons(noise: float) -> None:
    raw, _ = simulate_person_records(rows=1200, seed=3, stations=30, noise=NoiseRates().scaled(noise))
    assert_same(raw.to_dicts(), PERSON)


@pytest.mark.parametrize("noise", [1.0, 6.0], ids=["default-noise", "6x-noise"])
def test_simulated_organisations(noise: float) -> None:
    assert_same(organisation_records(7, NoiseRates().scaled(noise)), ORGANISATION)


@pytest.mark.parametrize("noise", [1.0, 6.0], ids=["default-noise", "6x-noise"])
def test_simulated_dwellings(noise: float) -> None:
    raw, _ = simulate_dwelling_records(persons=1200, seed=5, stations=20, noise=NoiseRates().scaled(noise))
    assert_same(raw.to_dicts(), DWELLING)


def test_simulated_persons_under_a_station_s_own_date_formats() -> None:
    raw, _ = simulate_person_records(rows=400, seed=9, stations=10, noise=NoiseRates().scaled(4))
    assert_same(raw.to_dicts(), PERSON, date_formats=("%Y%m%d", "%d/%m/%Y", "%Y年%m月%d日"))


# -- the hand-written cases of the standardiser tests, and hostile text -------------------------

HOSTILE = [
    None, "", " ", "\u3000", "\t\n", "\u00a0张伟\u00a0", "\x1c5\x1f", "\u0085", "\u200b", "\ufeff1990-01-02",
    "¨", "e\u0301", "ﬁ", "Ⅻ", "İ", "ß", "K", "ΣΑΣ", "\u212a", "①②", "㍻", "㋿", "Ａ\uff0d１", "１９９０－０１－０２",
    "１９９０年１月２日", "'50010319900307123X", "５.00103E+17", "5.00103e17", "0000-01-01", "0999-12-31",
    "19000101", "99991231", "+12345-01-01", "2024-05-01T12:30:15+08:00", "2024-05-01 12:30:60",
    "2024/5/1 1:2", "2024-05-0112:30", "2024-05-01 12:30:15 Z", "2024-05-01 12:30:15+08 :00",
    "2024-05-01 12:30:15−0800", "1986-05-04 02:30:00+00:00", "inf", "-NaN", "1_000", " +5 ", "9223372036854775808",
    "1e400", ".5", "是", "Y", "否", "TRUE", "0", "\U0002a6a5\U00020000", "乾隆乾燥", "張偉．李", "阿依古丽。买买提",
    "单于", "万俟卨", "区", "Mr. Smith", "..··", "<script>alert(1)</script>", "'; DROP TABLE x; --",
    "\u202eevil", "a" * 300, "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室", "石坝村三组25号",
    "新村路12号3-2-501", "中关村大街27号A座", "12号3-501", "十二栋", "+86 23 6812 3456", "0086-138-1234-5678",
    "8613812345678", "(023)68123456", "68123456", "＋８６１３８１２３４５６７８",
]


def _test_module_strings() -> list[str]:
    """Every string literal of the hand-written standardiser tests (their parametrisations and
    the values inside test bodies alike)."""
    found: set[str] = set()
    for path in sorted(TESTS.glob("test_standardise_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= 200:
                found.add(node.value)
    return sorted(found)


HAND_WRITTEN = _test_module_strings()


def test_the_hand_written_cases_are_read() -> None:
    assert len(HAND_WRITTEN) > 300
    assert {"1990-02-30", "張偉"} <= set(HAND_WRITTEN)


def _rows_every_field(values: Sequence[str | None], entity_type: EntityType) -> list[dict]:
    """One row per value, that value in every raw field."""
    return [{"record_key": f"k{i}", "local_id": f"l{i}", **dict.fromkeys(raw_fields(entity_type)[1:], v)}
            for i, v in enumerate(values)]


def _rows_mixed(values: Sequence[str | None], entity_type: EntityType, n: int, seed: int) -> list[dict]:
    """Rows whose fields are drawn independently from `values` (cross-field checks meet odd values)."""
    r = random.Random(seed)
    return [{"record_key": f"k{i}", "local_id": f"l{i}", **{f: r.choice(values) for f in raw_fields(entity_type)[1:]}}
            for i in range(n)]


@pytest.mark.parametrize("name", list(TYPES))
def test_hand_written_and_hostile_values(name: str) -> None:
    values = [*HAND_WRITTEN, *HOSTILE]
    entity_type = TYPES[name]
    assert_same(_rows_every_field(values, entity_type) + _rows_mixed(values, entity_type, 600, seed=1), entity_type)


# -- random text -----------------------------------------------------------------------------------

_PIECES = [
    "0123456789", "０１２３４５６７８９", "XxEe", "张王李赵刘陈杨黄周吴伟芳娜敏静丽强磊军洋",
    "張劉陳楊黃為東車門書龍", "乾隆单于万俟区曾解", "省市区县街道镇乡村社区路街巷号栋幢座楼单元室组大道",
    "一二三四五六七八九十", "年月日", "-:/.+()# '\"`‘’", "，。、；：？！（）【】．·•・",
    " \u3000\t\u00a0", "\U00020000\U0002a6d6\u3400", "ABCabcIOSVZ", "男女性未知",
]


def random_value(r: random.Random) -> str | None:
    """A random mix of CJK (simplified, traditional, rare), digits, full-width, punctuation, spaces."""
    if r.random() < 0.05:
        return None
    alphabet = "".join(r.sample(_PIECES, r.randint(1, 4)))
    return "".join(r.choice(alphabet) for _ in range(r.randint(0, 22)))


def random_shaped(r: random.Random) -> str:
    """Text with the shapes parsers look for: digit groups with date, time, offset and phone
    separators, so the strict paths (chrono's rules, IDs, phones) are reached, not only rejected."""
    groups = [str(r.randint(0, 10 ** r.randint(1, 4))).zfill(r.choice([1, 2, 4])) for _ in range(r.randint(1, 7))]
    seps = ["-", "-", ":", " ", "T", ".", "/", "+", "年", "月", "日", "", "  ", "Z", "+08:00", "号", "栋"]
    text = "".join(g + r.choice(seps) for g in groups)
    return r.choice([text, text.strip(), f"{r.randint(1900, 2030)}-{r.randint(0, 13)}-{r.randint(0, 32)} {text}",
                     str(r.randint(10 ** 14, 10 ** 18)), f"+86{r.randint(10 ** 9, 10 ** 11)}"])


def random_datetime(r: random.Random) -> str:
    """Dates and timestamps near the edge of valid: out-of-range fields, short and signed years,
    leap seconds, fractions, offsets, stray whitespace, "T", "/" and full-width digits."""
    def num(high: int, width: int) -> str:
        return str(r.randint(0, high)).zfill(r.choice([1, width]))
    year = r.choice([num(2030, 4), str(r.randint(1890, 2030)), r.choice(["+", "-", ""]) + num(99999, 5)])
    day = f"{year}{r.choice('-/-.')}{num(13, 2)}{r.choice('--/')}{num(32, 2)}"
    if r.random() < 0.15:
        day = f"{year}年{num(13, 2)}月{num(32, 2)}日"
    time = f"{num(25, 2)}:{num(61, 2)}" + r.choice(["", f":{num(61, 2)}", f":{num(60, 2)}.{r.randint(0, 10 ** 10)}",
                                                   f":{num(59, 2)}."])
    offset = r.choice(["", "", "Z", "z", " Z", "+08:00", "-0530", "+08", "+8", "+08:", "+2400", "+23:59", "+08 :00",
                       "−0800", "+0860", "+08:0"])
    text = r.choice([day, f"{day}{r.choice([' ', 'T', '  ', '', ' T'])}{time}{offset}", f" {day} ",
                     day.replace("-", " -", 1), f"{day} {time}".replace(":", ": ", 1), num(99999999, 8)])
    return text.translate(str.maketrans("0123456789", "０１２３４５６７８９")) if r.random() < 0.05 else text


@pytest.mark.parametrize("name", list(TYPES))
def test_random_strings(name: str) -> None:
    r = random.Random(20251205)
    entity_type = TYPES[name]
    makers: list[Callable[[random.Random], str | None]] = [random_value, random_shaped, random_datetime]
    rows = [{"record_key": f"k{i}", "local_id": f"l{i}",
             **{f: r.choice(makers)(r) for f in raw_fields(entity_type)[1:]}} for i in range(400)]
    assert_same(rows, entity_type)


# -- what the twin does not cover ------------------------------------------------------------------


def _type(fields: dict) -> EntityType:
    return EntityType("probe", EntityTypeSpec.model_validate({"id_prefix": "Q", "fields": {
        "local_id": {"type": "text", "required": True}, **fields}}), bundled=False)


def test_a_type_whose_standardisers_share_fixed_columns_is_declined() -> None:
    two_phones = _type({"home": {"standardiser": "phone"}, "work": {"standardiser": "phone"}})
    assert standardise_rows([{"local_id": "1", "home": "13812345678", "work": None}], two_phones) is None


def test_an_address_field_of_another_name_is_declined_as_polars_cannot_standardise_it() -> None:
    site = _type({"site": {"standardiser": "address"}})
    rows = [{"local_id": "1", "site": "民族路12号"}]
    assert standardise_rows(rows, site) is None
    with pytest.raises(pl.exceptions.DuplicateError):  # library._address keeps the raw `site` column
        standardise(pl.DataFrame(rows), site)


def test_a_date_directive_it_does_not_parse_is_declined() -> None:
    two_digit_years = _type({"born": {"type": "date", "formats": ["%d.%m.%y"]}})
    assert standardise_rows([{"local_id": "1", "born": "02.01.90"}], two_digit_years) is None
    assert standardise(pl.DataFrame({"local_id": ["1"], "born": ["02.01.90"]}), two_digit_years).item(0, "born") \
        == date(1990, 1, 2)  # Polars does parse it: the caller's fallback has an answer


def test_a_year_python_cannot_hold_is_declined() -> None:
    stamped = _type({"seen": {"type": "timestamp"}})
    assert standardise_rows([{"local_id": "1", "seen": "0000-01-01 00:00"}], stamped) is None
    assert standardise_rows([{"local_id": "1", "seen": "2024-01-01 00:00"}], stamped) is not None


def test_a_value_that_is_not_text_is_declined() -> None:
    assert standardise_rows([{"local_id": "1", "name": "张伟", "birth_date": date(1990, 1, 2)}], PERSON) is None


def test_pass_through_columns_come_first_in_their_order() -> None:
    rows = [{"record_key": "k1", "name": "張偉", "station_id": "S1", "local_id": "a"}, {"extra": 1, "name": None}]
    got = standardise_rows(rows, PERSON, today=TODAY)
    assert list(got[0])[:4] == ["record_key", "station_id", "local_id", "extra"]
    assert got[0]["name_norm"] == "张伟" and got[1]["extra"] == 1 and got[1]["issues"] == "name: missing; id_number: missing"
