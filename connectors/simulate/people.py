"""True persons, households and moves, and the person records that stations hold about them.

Households share an address (and often a phone: children and elderly parents give another member's
mobile as their contact); twins share a birth date, surname and household, and siblings (twins most
of all) often share a generation character in the given name (张小龙/张小虎); some unrelated people
are deliberate namesakes with the same birth date; about a tenth of the
households moved, so their members are recorded at the old station with the old address too; a
few people are recorded twice by the same station. Everything is vectorised over Polars columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from connectors.simulate import naming
from connectors.simulate.codes import id_check_expr
from connectors.simulate.network import Network
from connectors.simulate.places import ADDRESS_COLUMNS, pick_addresses
from connectors.simulate.rng import Rng, weights_zipf

_EPOCH = date(1970, 1, 1)


def _day(y: int, m: int, d: int) -> int:
    return (date(y, m, d) - _EPOCH).days


def _sec(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> int:
    return int((datetime(y, m, d, hh, mm, ss) - datetime(1970, 1, 1)).total_seconds())


D_1930 = _day(1930, 1, 1)
D_1935 = _day(1935, 1, 1)
D_1940 = _day(1940, 1, 1)
D_1956 = _day(1956, 1, 1)
D_1975 = _day(1975, 1, 1)
D_1985 = _day(1985, 1, 1)
D_1997 = _day(1997, 1, 1)
D_1998_END = _day(1998, 12, 31)
D_2006_END = _day(2006, 12, 31)
D_2010 = _day(2010, 11, 1)
D_2024_END = _day(2024, 12, 31)
YEAR = 365

T_2012 = _sec(2012, 1, 1)
T_2015 = _sec(2015, 1, 1)
T_2019 = _sec(2019, 1, 1)
T_2026_06 = _sec(2026, 6, 30)
T_EXPORT = _sec(2026, 11, 1)  # every record was updated before the export date
EXPORT_DATE = "2026-11-01"


@dataclass(frozen=True)
class PopulationRates:
    """Structure of the true population (not noise)."""

    movers: float = 0.10  # share of households that moved between stations
    second_move: float = 0.25  # of those, share that moved twice (recorded at 3 stations)
    # share of households of >= 4 whose 3rd and 4th members are twins: ~1.5 % of persons are twins,
    # about China's twin share of births (1-1.5 % of deliveries, two children each)
    twins: float = 0.09
    twin_generation_name: float = 0.6  # of twin pairs: given names share the first character
    sibling_generation_name: float = 0.25  # of households: children share a generation character
    # children (role 2) who give a parent's mobile as their own contact, on top of those too young
    # for a phone; together ~30 % of children's records
    child_parent_phone: float = 0.15
    elder_child_phone: float = 0.3  # elderly parents giving their (head of household) child's mobile
    namesakes: float = 0.004  # share of persons given the name and birth date of a stranger
    duplicates: float = 0.003  # share of records a station entered twice under a new local id
    # stations whose system has no birth-date column (a property of the network, kept here with the
    # other structural rates so one object configures a run)
    stations_without_birth_date: float = 0.05
    phone_changed_on_move: float = 0.3
    landline: float = 0.25  # households with a fixed line


DEFAULT_POPULATION = PopulationRates()


@dataclass
class Population:
    persons: pl.DataFrame  # one row per true person
    households: pl.DataFrame  # one row per household
    twins: int  # twin pairs
    namesakes: int  # persons who were given a stranger's name and birth date


def _tri(rng: Rng, name: str, n: int, lo: int, hi: int) -> pl.Series:
    """Triangular integers in [lo, hi): the middle of the range is the most likely."""
    span = hi - lo
    return lo + (rng.below(name + ":a", n, span) + rng.below(name + ":b", n, span)) // 2


def mobiles(rng: Rng, name: str, n: int) -> pl.Series:
    prefixes = pl.Series(naming.MOBILE_PREFIXES)
    pre = prefixes.gather(rng.below(name + ":prefix", n, len(prefixes)))
    rest = rng.below(name + ":rest", n, 100_000_000).cast(pl.String).str.zfill(8)
    return pl.select(pl.concat_str([pre, rest]).alias(name)).to_series()


def landlines(rng: Rng, name: str, n: int) -> pl.Series:
    first = (rng.integers(name + ":first", n, 2, 9)).cast(pl.String)
    rest = rng.below(name + ":rest", n, 10_000_000).cast(pl.String).str.zfill(7)
    return pl.select(pl.concat_str([pl.lit("023-"), first, rest]).alias(name)).to_series()


def _pool(chars: str, rng: Rng, name: str, n: int, s: float = 1.0) -> pl.Series:
    items = pl.Series(list(chars))
    return items.gather(rng.choice(name, n, weights_zipf(len(chars), s)))


def generate_population(rng: Rng, net: Network, n_persons: int,
                        rates: PopulationRates = DEFAULT_POPULATION) -> Population:
    """`n_persons` true persons in households spread over the network's stations.

    Every draw is a named stream of `rng` (connectors/simulate/rng.py), so the steps below do not
    depend on each other's draws; the columns come out in the order the steps add them."""
    n = int(n_persons)
    hh = _households(rng, net, _household_sizes(rng, n))
    hh = _household_moves(rng, net, hh, rates)
    hh = _household_heads(rng, hh, rates)
    hh = _previous_addresses(rng, net, hh)
    hh = _household_flags(rng, hh, rates, n)

    p = _members(hh, n)
    p = _births_and_sexes(rng, p, hh)
    p = _surnames(rng, p, hh)
    p = _twins(p, hh)
    p = _given_names(rng, p, hh, rates)
    p, namesakes = _namesakes(rng, p, rates)
    p = _relatives(rng, p, hh)
    p = _id_numbers(rng, p, hh, net)
    p = _names_phones_and_ids(p, _phones(rng, p, hh, rates))
    return Population(persons=p, households=hh, twins=int(p["is_twin"].sum()), namesakes=namesakes)


def _of_household(hh: pl.DataFrame, p: pl.DataFrame, col: str) -> pl.Series:
    """A household column, one value per person."""
    return hh[col].gather(p["hh"])


def _first_child(p: pl.DataFrame, hh: pl.DataFrame) -> pl.Series:
    """Each person's household's first child (k=2), whom a twin (k=3) copies."""
    return (_of_household(hh, p, "start") + 2).clip(upper_bound=p.height - 1)


def _household_sizes(rng: Rng, n: int) -> pl.Series:
    """Household sizes 1-6 that add up to exactly `n` persons (the last household takes the rest)."""
    est = n // 2 + 16
    sizes = rng.choice("hh:size", est, [0.25, 0.30, 0.24, 0.12, 0.06, 0.03]) + 1
    cum = sizes.cum_sum()
    keep = (cum - sizes) < n
    sizes = sizes.filter(keep)
    h = len(sizes)
    total_before_last = int(sizes.head(h - 1).sum()) if h > 1 else 0
    return sizes.scatter(h - 1, n - total_before_last)


def _households(rng: Rng, net: Network, sizes: pl.Series) -> pl.DataFrame:
    """One row per household: its size, its first person, its station (by station weight) and
    an address in that station's jurisdiction."""
    h = len(sizes)
    starts = sizes.cum_sum() - sizes
    hh_station = rng.choice("hh:station", h, [s.weight for s in net.stations])
    hh = pl.DataFrame({"hh": pl.int_range(0, h, eager=True), "size": sizes, "start": starts,
                       "station_idx": hh_station})
    return hh.hstack(pick_addresses(rng, net, hh_station, "hh:addr"))


def _household_moves(rng: Rng, net: Network, hh: pl.DataFrame, rates: PopulationRates) -> pl.DataFrame:
    """Households that moved (once or twice) between stations: the previous stations, each other
    than the current one and than each other, and when they moved."""
    h, n_st = hh.height, net.n
    hh_station = hh["station_idx"]
    moved = rng.mask("hh:moved", h, rates.movers if n_st >= 2 else 0.0)
    twice = rng.mask("hh:twice", h, rates.second_move if n_st >= 3 else 0.0) & moved
    prev1 = (hh_station + 1 + rng.below("hh:prev1", h, max(n_st - 1, 1))) % max(n_st, 1)
    prev2 = (hh_station + 1 + rng.below("hh:prev2", h, max(n_st - 1, 1))) % max(n_st, 1)
    prev2 = pl.select(
        pl.when(prev2 == prev1).then((prev1 + 1) % max(n_st, 1)).otherwise(prev2)
    ).to_series()
    prev2 = pl.select(
        pl.when(prev2 == hh_station).then((prev2 + 1) % max(n_st, 1)).otherwise(prev2)
    ).to_series()
    t_move = rng.integers("hh:tmove", h, T_2019, T_2026_06)
    return hh.with_columns(moved.alias("moved"), twice.alias("twice"), prev1.alias("prev1"), prev2.alias("prev2"),
                           t_move.alias("t_move"))


def _household_heads(rng: Rng, hh: pl.DataFrame, rates: PopulationRates) -> pl.DataFrame:
    """A landline or not, whether the head has a spouse and an elderly parent at home, and the
    head's sex, birth date and surname (and the spouse's surname)."""
    h = hh.height
    return hh.with_columns(
        pl.when(rng.mask("hh:landline", h, rates.landline)).then(landlines(rng, "hh:landline_no", h))
        .otherwise(None).alias("landline"),
        rng.mask("hh:spouse", h, 0.85).alias("has_spouse"),
        rng.mask("hh:elder", h, 0.5).alias("elder_flag"),
        pl.when(pl.col("size") == 1).then(rng.mask("hh:male1", h, 0.5))
        .otherwise(rng.mask("hh:male", h, 0.72)).alias("head_male"),
        pl.when(pl.col("size") == 1).then(_tri(rng, "hh:hb1", h, D_1935, D_2006_END))
        .otherwise(_tri(rng, "hh:hb", h, D_1940, D_1998_END)).alias("head_birth"),
        rng.choice("hh:sn_head", h, [w for _, w in naming.SURNAMES]).alias("head_sn"),
        rng.choice("hh:sn_spouse", h, [w for _, w in naming.SURNAMES]).alias("spouse_sn"),
    )


def _previous_addresses(rng: Rng, net: Network, hh: pl.DataFrame) -> pl.DataFrame:
    """An address at each previous station (p1_*, p2_*), drawn for every household; only movers'
    are used."""
    prev_addr1 = pick_addresses(rng, net, hh["prev1"], "hh:prev1addr")
    prev_addr2 = pick_addresses(rng, net, hh["prev2"], "hh:prev2addr")
    return hh.with_columns(
        [prev_addr1[c].alias(f"p1_{c}") for c in ADDRESS_COLUMNS]
        + [prev_addr2[c].alias(f"p2_{c}") for c in ADDRESS_COLUMNS]
    )


def _household_flags(rng: Rng, hh: pl.DataFrame, rates: PopulationRates, n: int) -> pl.DataFrame:
    """Households of >= 4 whose 3rd and 4th members are twins (at least one such household from
    200 persons up, so every network of some size has twins to resolve), and households whose
    head is old enough to have a living parent at home (`elder_ok`)."""
    eligible_twins = pl.col("size") >= 4
    twin_hh = rng.mask("hh:twins", hh.height, rates.twins)
    hh = hh.with_columns((twin_hh & (pl.col("size") >= 4)).alias("twins"))
    if n >= 200 and not hh["twins"].any() and hh.select(eligible_twins.any()).item():
        first = hh.select(pl.arg_where(eligible_twins).first()).item()
        hh = hh.with_columns(hh["twins"].scatter(first, True))
    return hh.with_columns(
        (pl.col("head_birth") - 20 * YEAR > D_1930 + YEAR).alias("elder_ok"),
    )


def _members(hh: pl.DataFrame, n: int) -> pl.DataFrame:
    """One row per person: household, place in it (k) and role: 0 head, 1 spouse, 2 child,
    3 the head's elderly parent (last member of a household of >= 5)."""
    pid = pl.int_range(0, n, eager=True)
    p_hh = pl.select(pl.int_range(0, hh.height).repeat_by(hh["size"]).explode()).to_series().cast(pl.Int64)
    p = pl.DataFrame({"pid": pid, "hh": p_hh})
    g = lambda col: _of_household(hh, p, col)  # noqa: E731 - household column per person
    p = p.with_columns((pid - g("start")).alias("k"), g("size").alias("size"))
    return p.with_columns(
        pl.when(pl.col("k") == 0).then(0)
        .when((pl.col("k") == 1) & g("has_spouse")).then(1)
        .when((pl.col("size") >= 5) & (pl.col("k") == pl.col("size") - 1) & g("elder_flag") & g("elder_ok"))
        .then(3)
        .otherwise(2).alias("role")
    )


def _births_and_sexes(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame) -> pl.DataFrame:
    """Birth dates (days since 1970) and sexes by role, around the head's birth date."""
    n = p.height
    head_birth = _of_household(hh, p, "head_birth")
    head_male = _of_household(hh, p, "head_male")
    spouse_birth = (head_birth + rng.integers("p:spouse_gap", n, -2200, 2200)).clip(D_1930, D_2006_END)
    child_lo = head_birth + 20 * YEAR
    child_hi = pl.select(pl.min_horizontal(head_birth + 38 * YEAR, pl.lit(D_2024_END))).to_series()
    child_birth = child_lo + rng.below("p:child", n, (child_hi - child_lo).clip(lower_bound=1))
    elder_hi = head_birth - 20 * YEAR
    elder_lo = pl.select(pl.max_horizontal(head_birth - 35 * YEAR, pl.lit(D_1930))).to_series()
    elder_birth = elder_lo + rng.below("p:elder", n, (elder_hi - elder_lo).clip(lower_bound=1))
    role = pl.col("role")
    return p.with_columns(
        pl.when(role == 0).then(head_birth).when(role == 1).then(spouse_birth)
        .when(role == 3).then(elder_birth).otherwise(child_birth).alias("birth"),
        pl.when(role == 0).then(head_male).when(role == 1).then(~head_male)
        .when(role == 3).then(rng.mask("p:elder_male", n, 0.4))
        .otherwise(rng.mask("p:child_male", n, 0.51)).alias("male"),
    )


def _surnames(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame) -> pl.DataFrame:
    """Surname indexes (into naming.SURNAMES): head and spouse their own, children mostly the
    father's, the elderly parent the head's when male."""
    n = p.height
    role = pl.col("role")
    head_sn = _of_household(hh, p, "head_sn")
    spouse_sn = _of_household(hh, p, "spouse_sn")
    head_male = _of_household(hh, p, "head_male")
    has_spouse = _of_household(hh, p, "has_spouse") & (p["size"] >= 2)
    rand_sn = rng.choice("p:sn", n, [w for _, w in naming.SURNAMES])
    father_sn = pl.when(head_male | ~has_spouse).then(head_sn).otherwise(spouse_sn)
    mother_sn = pl.when(head_male & has_spouse).then(spouse_sn).when(head_male).then(rand_sn).otherwise(head_sn)
    return p.with_columns(
        pl.when(role == 0).then(head_sn).when(role == 1).then(spouse_sn)
        .when(role == 3).then(pl.when(pl.col("male")).then(head_sn).otherwise(rand_sn))
        .otherwise(pl.when(rng.mask("p:father_sn", n, 0.92)).then(father_sn).otherwise(mother_sn))
        .alias("sn_idx")
    )


def _twins(p: pl.DataFrame, hh: pl.DataFrame) -> pl.DataFrame:
    """In twin households the second child (k=3) copies the first child's (k=2) birth date and surname."""
    twin_mask = _of_household(hh, p, "twins") & (pl.col("k") == 3)
    first_child = _first_child(p, hh)
    return p.with_columns(
        pl.when(twin_mask).then(pl.col("birth").gather(first_child)).otherwise(pl.col("birth")).alias("birth"),
        pl.when(twin_mask).then(pl.col("sn_idx").gather(first_child)).otherwise(pl.col("sn_idx")).alias("sn_idx"),
        twin_mask.alias("is_twin"),
    )


def _given_names(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame, rates: PopulationRates) -> pl.DataFrame:
    """Surnames as text and given names by era and sex (one or two characters), then siblings'
    generation names."""
    n = p.height
    old = p["birth"] < D_1975
    male = p["male"]
    single = pl.select(
        pl.when(old).then(rng.mask("p:single_old", n, 0.25)).otherwise(rng.mask("p:single_young", n, 0.10))
    ).to_series()
    sm = _pool(naming.MALE_SINGLE, rng, "p:sm", n)
    sf = _pool(naming.FEMALE_SINGLE, rng, "p:sf", n)
    om = _pool(naming.OLD_MALE_1, rng, "p:om1", n) + _pool(naming.OLD_MALE_2, rng, "p:om2", n, 0.7)
    of = _pool(naming.OLD_FEMALE_1, rng, "p:of1", n) + _pool(naming.OLD_FEMALE_2, rng, "p:of2", n, 0.7)
    ym = _pool(naming.YOUNG_MALE_1, rng, "p:ym1", n) + _pool(naming.YOUNG_MALE_2, rng, "p:ym2", n, 0.7)
    yf = _pool(naming.YOUNG_FEMALE_1, rng, "p:yf1", n) + _pool(naming.YOUNG_FEMALE_2, rng, "p:yf2", n, 0.7)
    given = pl.select(
        pl.when(single & male).then(sm).when(single).then(sf)
        .when(old & male).then(om).when(old).then(of)
        .when(male).then(ym).otherwise(yf)
    ).to_series()
    surnames = pl.Series([s for s, _ in naming.SURNAMES])
    p = p.with_columns(surname=surnames.gather(p["sn_idx"]), given=given)
    return _generation_names(rng, p, hh, rates, old, male)


def _namesakes(rng: Rng, p: pl.DataFrame, rates: PopulationRates) -> tuple[pl.DataFrame, int]:
    """Single-person households take the name, sex and birth date of a stranger (from 50 persons
    up); returns the persons with `is_namesake` and `namesake_of`, and how many were made."""
    n = p.height
    namesakes = 0
    if n >= 50:
        targets = p.filter(pl.col("size") == 1)["pid"]
        sources = p.filter(pl.col("size") >= 2)["pid"]
        want = max(1, round(rates.namesakes * n))
        if len(targets) and len(sources):
            order = rng.bits("p:namesake_order", len(targets))
            targets = pl.DataFrame({"t": targets, "o": order}).sort("o")["t"].head(want)
            src = sources.gather(rng.below("p:namesake_src", len(targets), len(sources)))
            namesakes = len(targets)
            for col in ("surname", "given", "male", "birth"):
                p = p.with_columns(p[col].scatter(targets, p[col].gather(src)))
            flag = pl.select(pl.repeat(False, n, dtype=pl.Boolean)).to_series().scatter(targets, True)
            p = p.with_columns(flag.alias("is_namesake"), pl.lit(None, dtype=pl.Int64).alias("namesake_of"))
            p = p.with_columns(p["namesake_of"].scatter(targets, src))
    if "is_namesake" not in p.columns:
        p = p.with_columns(pl.lit(False).alias("is_namesake"), pl.lit(None, dtype=pl.Int64).alias("namesake_of"))
    return p, namesakes


def _relatives(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame) -> pl.DataFrame:
    """Both twins flagged (`twin`: at risk of a false merge, not only the copy), and a household
    member whose ID may end up on this person's record (`relative_pid`, see noise.relative_id)."""
    n = p.height
    p = p.with_columns(
        (pl.col("is_twin") | pl.col("is_twin").shift(-1, fill_value=False)).alias("twin"),
    )
    size = p["size"]
    rel_k = (p["k"] + 1 + rng.below("p:relative", n, (size - 1).clip(lower_bound=1))) % size
    return p.with_columns(
        pl.when(pl.col("size") >= 2).then(_of_household(hh, p, "start") + rel_k).otherwise(None).alias("relative_pid")
    )


def _id_numbers(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame, net: Network) -> pl.DataFrame:
    """ID numbers (GB 11643): birth area (the station's district, elsewhere in Chongqing, an old
    area code for older people, or outside the city; a twin's is the first child's), birth date,
    a sequence number unique per (area, date, sex) with the sex in its parity, and the check digit."""
    n = p.height
    st_district = net.station_table["district_code"].gather(_of_household(hh, p, "station_idx"))
    cq_codes = pl.Series([d[0] for d in naming.DISTRICTS])
    other_cq = cq_codes.gather(rng.choice("p:cq", n, [d[2] for d in naming.DISTRICTS]))
    old_cq = pl.Series(naming.OLD_CITY_BIRTH_AREAS).gather(rng.below("p:oldcq", n, len(naming.OLD_CITY_BIRTH_AREAS)))
    outside = pl.Series(naming.OTHER_BIRTH_AREAS).gather(rng.below("p:outside", n, len(naming.OTHER_BIRTH_AREAS)))
    u_area = rng.uniform("p:area", n)
    area = pl.select(
        pl.when(u_area >= 0.78).then(outside)
        .when((p["birth"] < D_1997) & (rng.uniform("p:area_old", n) < 0.25)).then(old_cq)
        .when(u_area < 0.50).then(st_district)
        .otherwise(other_cq)
    ).to_series()
    p = p.with_columns(area.alias("birth_area"))
    p = p.with_columns(
        pl.when(pl.col("is_twin")).then(pl.col("birth_area").gather(_first_child(p, hh)))
        .otherwise(pl.col("birth_area")).alias("birth_area"),
        rng.below("p:seq", n, 500).alias("seq_j"),
    )
    p = _unique_sequence_numbers(p)
    birth_date = pl.col("birth").cast(pl.Date)
    body = pl.concat_str(
        [pl.col("birth_area"), birth_date.dt.strftime("%Y%m%d"),
         (pl.col("seq_j") * 2 + pl.col("male").cast(pl.Int64)).cast(pl.String).str.zfill(3)]
    )
    return p.with_columns(body.alias("id_body")).with_columns(
        pl.concat_str([pl.col("id_body"), id_check_expr(pl.col("id_body"))]).alias("id_number")
    ).drop("id_body", "seq_j")


def _unique_sequence_numbers(p: pl.DataFrame) -> pl.DataFrame:
    """Sequence numbers are unique per (birth place, birth date, sex): re-deal them in clashing groups."""
    keys = ["birth_area", "birth", "male"]
    clash = p.select(pl.struct(*keys, "seq_j").is_duplicated()).to_series()
    if not clash.any():
        return p
    groups = p.filter(clash).select(keys).unique(maintain_order=True)
    sub = p.select("pid", *keys, "seq_j").join(groups, on=keys, how="semi", maintain_order="left")
    sub = sub.with_columns(
        ((pl.col("seq_j").min().over(keys)
          + pl.int_range(pl.len()).over(keys, order_by=["seq_j", "pid"])) % 500).alias("seq_j")
    )
    return p.with_columns(p["seq_j"].scatter(sub["pid"], sub["seq_j"]))


def _phones(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame, rates: PopulationRates) -> pl.DataFrame:
    """Each person's own mobile (none for young children, fewer for the old) and the contact phone
    stations record: often a parent's or child's mobile, else their own, the household's
    landline or the head's mobile; `phone_shared` when it is another member's own mobile."""
    n = p.height
    mobile = mobiles(rng, "p:mobile", n)
    birth = p["birth"]
    has_mobile = pl.select(
        pl.when(birth > D_2010).then(False)
        .when(birth < D_1956).then(rng.mask("p:mob_old", n, 0.55))
        .otherwise(rng.mask("p:mob", n, 0.93))
    ).to_series()
    own = pl.select(pl.when(has_mobile).then(mobile).otherwise(None)).to_series()
    head_idx = _of_household(hh, p, "start")
    head_own = own.gather(head_idx)
    spouse_own = own.gather((head_idx + 1).clip(upper_bound=n - 1))
    has_spouse_p = _of_household(hh, p, "has_spouse") & (p["size"] >= 2)
    parent_own = pl.select(
        pl.when(head_own.is_not_null()).then(head_own).when(has_spouse_p).then(spouse_own)
    ).to_series()
    landline = _of_household(hh, p, "landline")
    use_land = rng.mask("p:use_land", n, 0.5)
    role_s = p["role"]
    borrow = pl.select(
        ((role_s == 2) & rng.mask("p:child_parent_phone", n, rates.child_parent_phone))
        | ((role_s == 3) & rng.mask("p:elder_child_phone", n, rates.elder_child_phone))
    ).to_series()
    return pl.select(
        pl.when(borrow & parent_own.is_not_null()).then(parent_own)
        .when(own.is_not_null()).then(own)
        .when(landline.is_not_null() & use_land).then(landline)
        .when(head_own.is_not_null()).then(head_own)
        .otherwise(landline).alias("phone"),
    ).with_columns(
        # another member's personal mobile (the household's landline is not anyone's own number)
        (pl.col("phone").is_not_null() & (pl.col("phone") != landline).fill_null(True)
         & (pl.col("phone") != own).fill_null(True)).alias("phone_shared"),
        own.alias("mobile"),
    )


def _names_phones_and_ids(p: pl.DataFrame, phones: pl.DataFrame) -> pl.DataFrame:
    """The full name, the phones, and the true entity id (P0000001...) that truth.csv names."""
    return p.with_columns(
        pl.concat_str([pl.col("surname"), pl.col("given")]).alias("name"),
        phones["mobile"],
        phones["phone"],
        phones["phone_shared"],
        pl.format("P{}", (pl.col("pid") + 1).cast(pl.String).str.zfill(7)).alias("entity_id"),
    )


def _generation_names(rng: Rng, p: pl.DataFrame, hh: pl.DataFrame, rates: PopulationRates,
                      old: pl.Series, male: pl.Series) -> pl.DataFrame:
    """Siblings named by generation (字辈): the first given character is the eldest child's.

    Twins do it most (张小龙/张小虎) and are the hardest case for matching, since they already share
    surname, birth date, address and often phone. Only two-character given names take part; a
    younger sibling whose name would then equal the eldest's takes a fresh second character.
    """
    n = p.height
    h = hh.height
    gen_hh = rng.mask("hh:generation", h, rates.sibling_generation_name).gather(p["hh"])
    twin_gen = rng.mask("hh:twin_generation", h, rates.twin_generation_name).gather(p["hh"])
    second = pl.select(
        pl.when(old & male).then(_pool(naming.OLD_MALE_2, rng, "p:gen_om2", n, 0.7))
        .when(old).then(_pool(naming.OLD_FEMALE_2, rng, "p:gen_of2", n, 0.7))
        .when(male).then(_pool(naming.YOUNG_MALE_2, rng, "p:gen_ym2", n, 0.7))
        .otherwise(_pool(naming.YOUNG_FEMALE_2, rng, "p:gen_yf2", n, 0.7))
    ).to_series()
    eldest = p.select(pl.when(pl.col("role") == 2).then(pl.col("pid")).min().over("hh")).to_series()
    first_twin = (p["pid"] - 1).clip(lower_bound=0)
    own = p["given"]
    src = pl.select(
        pl.when(p["is_twin"] & twin_gen).then(first_twin)
        .when(gen_hh & (p["role"] == 2) & (eldest != p["pid"])).then(eldest)
    ).to_series()
    src_given = p["given"].gather(src.fill_null(0))
    take = src.is_not_null() & (own.str.len_chars() == 2) & (src_given.str.len_chars() == 2)
    gen = src_given.str.slice(0, 1)
    first_try = gen + own.str.slice(1, 1)
    second_try = gen + second
    third_try = gen + second.shift(-1, fill_value="华")
    new = pl.select(
        pl.when(~take).then(own)
        .when(first_try != src_given).then(first_try)
        .when(second_try != src_given).then(second_try)
        .when(third_try != src_given).then(third_try)
        .otherwise(own)
    ).to_series()
    # a younger twin renamed from the eldest can still land on the elder twin's new name
    dup = p["is_twin"] & (new == new.gather(first_twin))
    last = new.str.slice(-1, 1)
    pick = pl.select(pl.when(second != last).then(second).otherwise(second.shift(-1, fill_value="华"))).to_series()
    new = pl.select(
        pl.when(dup & (new.str.len_chars() == 2)).then(new.str.slice(0, 1) + pick)
        .when(dup).then(pick)
        .otherwise(new)
    ).to_series()
    return p.with_columns(new.alias("given"))


def person_residences(rng: Rng, pop: Population, rates: PopulationRates = DEFAULT_POPULATION) -> pl.DataFrame:
    """One row per (person, station) record before local ids: current, previous residences, duplicates."""
    p, hh = pop.persons, pop.households
    n = p.height
    g = lambda col: hh[col].gather(p["hh"])  # noqa: E731
    moved, twice, t_move = g("moved"), g("twice"), g("t_move")
    cur_upd = pl.select(
        pl.when(moved).then(t_move + rng.below("r:cur_upd_m", n, (T_EXPORT - t_move).clip(lower_bound=1)))
        .otherwise(rng.integers("r:cur_upd", n, T_2015, T_EXPORT))
    ).to_series()
    base = {"pid": p["pid"], "entity_id": p["entity_id"]}
    current = pl.DataFrame(
        base | {"station_idx": g("station_idx")} | {c: g(c) for c in ADDRESS_COLUMNS}
        | {"phone": p["phone"], "phone_shared": p["phone_shared"], "updated": cur_upd,
           "residence": pl.repeat(0, n, eager=True, dtype=pl.Int8)}
    )
    parts = [current]
    for j, mask in ((1, moved), (2, twice)):
        sel = mask.arg_true()
        if not len(sel):
            continue
        m = len(sel)
        gather = lambda col: g(col).gather(sel)  # noqa: E731
        changed = rng.mask(f"r:phone_changed{j}", m, rates.phone_changed_on_move)
        own = p["mobile"].gather(sel)
        new_own = changed & own.is_not_null()
        phone = pl.select(
            pl.when(new_own).then(mobiles(rng, f"r:old_mobile{j}", m))
            .otherwise(p["phone"].gather(sel))
        ).to_series()
        shared = p["phone_shared"].gather(sel) & ~new_own
        tm = gather("t_move")
        if j == 1:
            upd = tm - rng.integers("r:upd1", m, 86_400, 2 * YEAR * 86_400)
        else:
            upd = tm - 2 * YEAR * 86_400 - rng.integers("r:upd2", m, 86_400, 3 * YEAR * 86_400)
        upd = upd.clip(lower_bound=T_2012)
        parts.append(pl.DataFrame(
            {"pid": p["pid"].gather(sel), "entity_id": p["entity_id"].gather(sel),
             "station_idx": gather(f"prev{j}")}
            | {c: gather(f"p{j}_{c}") for c in ADDRESS_COLUMNS}
            | {"phone": phone, "phone_shared": shared, "updated": upd,
               "residence": pl.repeat(j, m, eager=True, dtype=pl.Int8)}
        ))
    rec = pl.concat(parts, how="vertical")
    rec = rec.with_columns(pl.lit(False).alias("duplicate"))
    dup = rng.mask("r:dup", rec.height, rates.duplicates)
    if dup.any():
        d = rec.filter(dup)
        shift = rng.integers("r:dup_upd", d.height, 86_400, 400 * 86_400)
        d = d.with_columns(
            pl.min_horizontal(pl.col("updated") + shift, pl.lit(T_EXPORT - 1)).alias("updated"),
            pl.lit(True).alias("duplicate"),
        )
        rec = pl.concat([rec, d], how="vertical")
    return rec
