"""True organisations (companies and individual businesses) and the records stations hold of them.

Each organisation has a unified social credit code with a correct GB 32100 check character (its
embedded organisation code has a correct GB 11714 check too), a legal representative who is a
simulated person, and is recorded by the station of its premises; a few are also recorded by a
second station (a branch or a second premises).
"""

from __future__ import annotations

import polars as pl

from connectors.simulate import naming
from connectors.simulate.codes import USCC_ALPHABET, org_code_check_expr, uscc_check_expr
from connectors.simulate.network import Network
from connectors.simulate.people import T_2015, T_EXPORT, Population, landlines, mobiles
from connectors.simulate.places import ADDRESS_COLUMNS, pick_addresses
from connectors.simulate.rng import Rng

SECOND_STATION_RATE = 0.05
SHOP_RATE = 0.25


def _base31(value: pl.Expr, digits: int) -> pl.Expr:
    """Fixed-width base-31 text over the credit-code alphabet (a bijection on [0, 31**digits))."""
    mapping = {i: c for i, c in enumerate(USCC_ALPHABET)}
    parts = []
    for k in reversed(range(digits)):
        parts.append(((value // (31**k)) % 31).replace_strict(mapping, return_dtype=pl.String))
    return pl.concat_str(parts)


def generate_organisations(rng: Rng, net: Network, pop: Population, n_orgs: int) -> pl.DataFrame:
    n = int(n_orgs)
    org_stations = [s for s in net.stations if s.has_orgs]
    st_idx = pl.Series([s.idx for s in org_stations], dtype=pl.Int64)
    home = st_idx.gather(rng.choice("o:station", n, [s.weight for s in org_stations]))
    oid = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    persons = pop.persons
    rep = rng.below("o:rep", n, persons.height)
    rep_name = persons["name"].gather(rep)
    rep_surname = persons["surname"].gather(rep)
    rep_mobile = persons["mobile"].gather(rep)
    district = net.station_table["district_name"].gather(home)
    district_code = net.station_table["district_code"].gather(home)
    shop = rng.mask("o:shop", n, SHOP_RATE)
    stem_chars = pl.Series(list(naming.ORG_STEM_CHARS))
    k = len(naming.ORG_STEM_CHARS)
    stem = stem_chars.gather(rng.below("o:stem1", n, k)) + stem_chars.gather(rng.below("o:stem2", n, k))
    industry = pl.Series(naming.ORG_INDUSTRIES).gather(rng.below("o:industry", n, len(naming.ORG_INDUSTRIES)))
    suffix = pl.Series(naming.ORG_SUFFIXES).gather(rng.below("o:suffix", n, len(naming.ORG_SUFFIXES)))
    shop_kind = pl.Series(naming.SHOP_KINDS).gather(rng.below("o:shopkind", n, len(naming.SHOP_KINDS)))
    with_district = rng.mask("o:with_district", n, 0.6)
    df = pl.DataFrame({
        "oid": oid, "station_idx": home, "shop": shop, "stem": stem, "industry": industry,
        "suffix": suffix, "shop_kind": shop_kind, "district": district, "district_code": district_code,
        "with_district": with_district, "legal_rep": rep_name, "rep_surname": rep_surname,
        "rep_mobile": rep_mobile,
    })

    def names(frame: pl.DataFrame) -> pl.Expr:
        company = pl.when(pl.col("with_district")).then(
            pl.concat_str([pl.lit(naming.CITY), pl.col("district"), pl.col("stem"), pl.col("industry"), pl.col("suffix")])
        ).otherwise(pl.concat_str([pl.lit(naming.CITY_SHORT), pl.col("stem"), pl.col("industry"), pl.col("suffix")]))
        shop_name = pl.concat_str([pl.col("district"), pl.col("rep_surname"), pl.lit("记"), pl.col("shop_kind")])
        return pl.when(pl.col("shop")).then(shop_name).otherwise(company)

    df = df.with_columns(names(df).alias("name"))
    # Names are unique: later duplicates get a longer stem (repeat until no clash is left).
    for round_ in range(8):
        dup = df.select(pl.int_range(pl.len()).over("name", order_by="oid") > 0).to_series()
        if not dup.any():
            break
        extra = stem_chars.gather(rng.below(f"o:stem_extra{round_}", n, k))
        df = df.with_columns(
            pl.when(dup & ~pl.col("shop")).then(pl.col("stem") + extra).otherwise(pl.col("stem")).alias("stem"),
            pl.when(dup & pl.col("shop")).then(pl.col("shop_kind").str.replace("店$", "总店").str.replace("馆$", "分馆"))
            .otherwise(pl.col("shop_kind")).alias("shop_kind"),
            pl.when(dup & pl.col("shop")).then(pl.col("rep_surname") + extra).otherwise(pl.col("rep_surname")).alias("rep_surname"),
        )
        df = df.with_columns(names(df).alias("name"))

    # Credit codes: unique organisation-code bodies from bijections of the org index.
    modern = rng.mask("o:modern", n, 0.6)
    numeric_body = ((pl.col("oid") * 7_919_993 + 12_345_678) % 100_000_000).cast(pl.String).str.zfill(8)
    ma_body = pl.concat_str([pl.lit("MA"), _base31((pl.col("oid") * 7_919_993 + 4_321) % (31**6), 6)])
    df = df.with_columns(
        pl.when(modern).then(ma_body).otherwise(numeric_body).alias("org_body"),
    ).with_columns(
        pl.concat_str([pl.col("org_body"), org_code_check_expr(pl.col("org_body"))]).alias("org_code"),
    ).with_columns(
        pl.concat_str([pl.lit("9"), pl.when(pl.col("shop")).then(pl.lit("2")).otherwise(pl.lit("1")),
                       pl.col("district_code"), pl.col("org_code")]).alias("uscc_body"),
    ).with_columns(
        pl.concat_str([pl.col("uscc_body"), uscc_check_expr(pl.col("uscc_body"))]).alias("credit_code"),
    )
    u_phone = rng.uniform("o:phone", n)
    phone = pl.select(
        pl.when(u_phone < 0.55).then(landlines(rng, "o:landline", n))
        .when((u_phone < 0.85) & rep_mobile.is_not_null()).then(rep_mobile)
        .otherwise(mobiles(rng, "o:mobile", n))
    ).to_series()
    df = df.with_columns(
        phone.alias("phone"),
        pl.format("O{}", (pl.col("oid") + 1).cast(pl.String).str.zfill(max(6, len(str(n))))).alias("entity_id"),
    )
    return df.select("oid", "entity_id", "station_idx", "name", "credit_code", "legal_rep", "phone", "shop")


def organisation_residences(rng: Rng, net: Network, orgs: pl.DataFrame) -> pl.DataFrame:
    """One row per (organisation, station) record before local ids."""
    n = orgs.height
    home = orgs["station_idx"]
    addr = pick_addresses(rng, net, home, "o:addr")
    upd = rng.integers("o:upd", n, T_2015, T_EXPORT)
    base = orgs.select("oid", "entity_id", "station_idx", "phone").with_columns(
        *addr.iter_columns(), upd.alias("updated"), pl.lit(0, dtype=pl.Int8).alias("residence"),
        pl.lit(False).alias("duplicate"),
    )
    parts = [base]
    org_stations = pl.Series([s.idx for s in net.stations if s.has_orgs], dtype=pl.Int64)
    if len(org_stations) >= 2:
        sel = rng.mask("o:second", n, SECOND_STATION_RATE).arg_true()
        if len(sel):
            m = len(sel)
            pos = {int(s): i for i, s in enumerate(org_stations.to_list())}
            home_pos = home.gather(sel).replace_strict(pos, return_dtype=pl.Int64)
            other = org_stations.gather(
                (home_pos + 1 + rng.below("o:second_station", m, len(org_stations) - 1)) % len(org_stations)
            )
            addr2 = pick_addresses(rng, net, other, "o:addr2")
            second = orgs.select("oid", "entity_id", "phone")[sel].with_columns(
                other.alias("station_idx")
            ).select("oid", "entity_id", "station_idx", "phone").with_columns(
                *addr2.iter_columns(), rng.integers("o:upd2", m, T_2015, T_EXPORT).alias("updated"),
                pl.lit(1, dtype=pl.Int8).alias("residence"), pl.lit(False).alias("duplicate"),
            )
            parts.append(second)
    out = pl.concat(parts, how="vertical")
    return out.select("oid", "entity_id", "station_idx", *ADDRESS_COLUMNS, "phone", "updated",
                      "residence", "duplicate")
