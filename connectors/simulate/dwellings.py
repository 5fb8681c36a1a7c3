"""Dwellings (实有房屋) where the simulated households live, and the housing-register records
stations hold about them.

A dwelling is one room (or a village house, or a single-family house without building, unit and
room): every household's current address is one, and so are the previous addresses of the
households that moved, whose old flats stay registered at the old station. Two households that
drew the same address share the dwelling.

Who is written as owner (房主) and what the dwelling is used for follow simple, common patterns:
most households own the flat they live in (自住); a quarter rent it from a landlord, and a small
pool of landlords owns many flats each (so one owner ID spans several dwellings, which must stay
several); a few run a shop from it (经营); a flat a household moved out of is let (出租), left
empty (空置) or sold to someone else.

Each dwelling has a record in its station's housing register; some are in a register twice:
a re-registration at the same station under another local id with the address written another
way (3幢 / 3号楼 / 二单元 / 501 without 室 / no city / spaces), and dwellings near a boundary in
the neighbouring station's register too, in that station's address style. Every draw comes from
streams of its own (`dw:*`), so persons' and organisations' records do not change with them.
"""

from __future__ import annotations

import polars as pl

from connectors.simulate.network import DWELLING_FIELDS, Network
from connectors.simulate.people import T_2015, T_EXPORT, YEAR, Population
from connectors.simulate.places import ADDRESS_COLUMNS
from connectors.simulate.rng import Rng

__all__ = ["DWELLING_FIELDS", "DWELLING_QUIRKS", "dwelling_quirks", "dwelling_registrations", "true_dwellings"]

RE_REGISTERED = 0.12  # of dwellings: a second record at the same station, address written otherwise
BOUNDARY = 0.06  # of dwellings: also in the neighbouring station's register
RENTED = 0.25  # of households' current dwellings: rented from a landlord
BUSINESS = 0.05  # of households' current dwellings: a shop in the home (经营)
LANDLORDS = 0.01  # landlords, as a share of persons (each owns several rented flats)
# The truth's `quirks` of dwelling records (dwelling_quirks below).
DWELLING_QUIRKS = ("re_registered", "boundary", "address_variant", "rural")

_DAY = 86_400


def true_dwellings(rng: Rng, net: Network, pop: Population) -> pl.DataFrame:
    """One row per true dwelling: entity_id (H0000001...), station_idx, ADDRESS_COLUMNS, owner_pid,
    use, occupants, updated (seconds)."""
    hh = pop.households
    homes = [hh.select(pl.col("hh"), pl.lit(0, pl.Int8).alias("home"), "station_idx", *ADDRESS_COLUMNS)]
    for j, flag in ((1, "moved"), (2, "twice")):
        prev = hh.filter(pl.col(flag)).select(
            "hh", pl.lit(j, pl.Int8).alias("home"), pl.col(f"prev{j}").alias("station_idx"),
            *[pl.col(f"p{j}_{c}").alias(c) for c in ADDRESS_COLUMNS])
        homes.append(prev)
    d = pl.concat(homes, how="vertical").with_columns(pl.col("station_idx").cast(pl.Int64))
    village = net.communities["is_village"].gather(d["community_idx"])
    single = pl.col("building") == 0
    # What identifies the dwelling as written: a village house by group and number, a single
    # house by road and number, a flat by road, number, building, unit and room.
    d = d.with_columns(village.alias("village")).with_columns(
        pl.when(pl.col("village")).then(None).otherwise(pl.col("road_idx")).alias("road_idx"),
        pl.when(pl.col("village") | single).then(None).otherwise(pl.col("building")).alias("building"),
        pl.when(pl.col("village") | single).then(None).otherwise(pl.col("unit")).alias("unit"),
        pl.when(pl.col("village") | single).then(None).otherwise(pl.col("room")).alias("room"),
        pl.when(pl.col("village")).then(pl.col("group_no")).alias("group_no"),
    )
    d = d.unique(subset=list(ADDRESS_COLUMNS), keep="first", maintain_order=True)
    n = d.height
    # back to what render_addresses reads (it tells a single house by building 0)
    d = d.with_columns(pl.col("building").fill_null(0), pl.col("unit").fill_null(1), pl.col("room").fill_null(101),
                       pl.col("group_no").fill_null(1))
    persons = pop.persons
    head = hh["start"].gather(d["hh"])
    size = hh["size"].gather(d["hh"])
    n_landlords = max(1, round(LANDLORDS * persons.height))
    landlord_pool = rng.below("dw:landlord_pool", n_landlords, persons.height)
    landlord = landlord_pool.gather(rng.below("dw:landlord", n, n_landlords))
    buyer = rng.below("dw:buyer", n, persons.height)
    u = rng.uniform("dw:use", n)
    current = d["home"] == 0
    use = pl.select(
        pl.when(current & (u < RENTED)).then(pl.lit("出租"))
        .when(current & (u < RENTED + BUSINESS)).then(pl.lit("经营"))
        .when(current).then(pl.lit("自住"))
        .when(u < 0.45).then(pl.lit("出租"))
        .when(u < 0.65).then(pl.lit("空置"))
        .otherwise(pl.lit("自住"))  # sold to someone who lives there now
    ).to_series()
    owner = pl.select(
        pl.when(current & (use == "出租")).then(landlord)
        .when(current | (use != "自住")).then(head)
        .otherwise(buyer)
    ).to_series()
    occupants = pl.select(
        pl.when(current).then(size)
        .when(use == "空置").then(0)
        .otherwise(rng.integers("dw:occupants", n, 1, 6))
    ).to_series()
    updated = rng.integers("dw:updated", n, T_2015, T_EXPORT - 400 * _DAY)
    return d.with_columns(
        pl.format("H{}", (pl.int_range(pl.len()) + 1).cast(pl.String).str.zfill(max(7, len(str(n))))).alias("entity_id"),
        owner.cast(pl.Int64).alias("owner_pid"),
        use.alias("use"),
        occupants.cast(pl.Int64).alias("occupants"),
        updated.alias("updated"),
    ).select("entity_id", "station_idx", "village", *ADDRESS_COLUMNS, "owner_pid", "use", "occupants", "updated")


def dwelling_registrations(rng: Rng, net: Network, pop: Population, dw: pl.DataFrame) -> pl.DataFrame:
    """One row per register record before local ids: the dwelling's own station's record, a
    re-registration there for some (`variant`: its address is written another way), and a
    neighbouring station's record for others (`residence` 0 / 1 / 2, as persons' records)."""
    n = dw.height
    base = dw.with_columns(pl.lit(0, pl.Int8).alias("residence"), pl.lit(False).alias("variant"))
    parts = [base]
    again = rng.mask("dw:again", n, RE_REGISTERED)
    if again.any():
        m = int(again.sum())
        later = rng.integers("dw:again_upd", m, 30 * _DAY, 2 * YEAR * _DAY)
        parts.append(base.filter(again).with_columns(
            pl.min_horizontal(pl.col("updated") + later, pl.lit(T_EXPORT - 1)).alias("updated"),
            pl.lit(1, pl.Int8).alias("residence"), pl.lit(True).alias("variant")))
    if net.n >= 2:
        near = rng.mask("dw:boundary", n, BOUNDARY)
        if near.any():
            m = int(near.sum())
            other = base.filter(near)
            other = other.with_columns(
                ((pl.col("station_idx") + 1) % net.n).alias("station_idx"),
                (pl.col("updated") - rng.integers("dw:boundary_upd", m, _DAY, YEAR * _DAY)).alias("updated"),
                pl.lit(2, pl.Int8).alias("residence"))
            parts.append(other)
    rec = pl.concat(parts, how="vertical")
    persons = pop.persons
    owner = rec["owner_pid"]
    return rec.with_columns(
        persons["name"].gather(owner).alias("owner_name"),
        persons["surname"].gather(owner).alias("surname"),
        persons["id_number"].gather(owner).alias("owner_id_number"),
        persons["phone"].gather(owner).alias("owner_phone"),
        pl.col("occupants").cast(pl.String),
        pl.lit(False).alias("duplicate"),
    )


def dwelling_quirks(rec: pl.DataFrame) -> pl.Series:
    """The truth's `quirks` of dwelling records (DWELLING_QUIRKS; "" for none): the tags are
    on every record of a dwelling that has such a second record, so a benchmark can score them."""
    again = (pl.col("residence") == 1).any().over("entity_id")
    boundary = (pl.col("residence") == 2).any().over("entity_id")
    flags = {
        "re_registered": again,
        "boundary": boundary,
        "address_variant": pl.col("address_variant") if "address_variant" in rec.columns else pl.lit(False),
        "rural": pl.col("village"),
    }
    parts = [pl.when(flags[t]).then(pl.lit(t)) for t in DWELLING_QUIRKS]
    return rec.select(pl.concat_str(parts, separator=",", ignore_nulls=True).alias("quirks")).to_series()


