"""Addresses inside a station's jurisdiction: picked as numbers, rendered as station-styled text.

An address is (community, road, house number, building, unit, room) in a town or a street, or
(village, group, house number) in the countryside. The area code of an address is its community's
12-digit code, which starts with the station's 9-digit township prefix.
"""

from __future__ import annotations

import polars as pl

from connectors.simulate import naming
from connectors.simulate.network import Network
from connectors.simulate.rng import Rng

ADDRESS_COLUMNS = ("community_idx", "road_idx", "house_no", "building", "unit", "room", "group_no")


def pick_addresses(rng: Rng, net: Network, station_idx: pl.Series, stream: str) -> pl.DataFrame:
    """A random address in each given station's jurisdiction (one row per station_idx value)."""
    n = len(station_idx)
    st = net.station_table
    comm_start = st["comm_start"].gather(station_idx)
    comm_count = st["comm_count"].gather(station_idx)
    community = comm_start + rng.below(f"{stream}:community", n, comm_count)
    comm = net.communities
    road_start = comm["road_start"].gather(community)
    road_count = comm["road_count"].gather(community)
    road = road_start + rng.below(f"{stream}:road", n, road_count)
    road = pl.select(pl.when(road_count > 0).then(road).otherwise(None)).to_series()
    house = rng.integers(f"{stream}:house", n, 1, 120) + rng.below(f"{stream}:house2", n, 3) * rng.below(f"{stream}:house3", n, 90)
    building = rng.integers(f"{stream}:building", n, 1, 31)
    building = pl.select(
        pl.when(rng.uniform(f"{stream}:single", n) < 0.18).then(0).otherwise(building)
    ).to_series()
    floor = rng.integers(f"{stream}:floor", n, 1, 34)
    room = floor * 100 + rng.integers(f"{stream}:room", n, 1, 9)
    return pl.DataFrame(
        {
            "community_idx": community.cast(pl.Int64),
            "road_idx": road.cast(pl.Int64),
            "house_no": house.cast(pl.Int64),
            "building": building.cast(pl.Int64),
            "unit": rng.integers(f"{stream}:unit", n, 1, 7),
            "room": room.cast(pl.Int64),
            "group_no": rng.integers(f"{stream}:group", n, 1, 13),
        }
    )


def render_addresses(net: Network, df: pl.DataFrame, *, organisation: bool = False) -> pl.Series:
    """Address text for rows with ADDRESS_COLUMNS + station_idx + address_style.

    Styles: 0 full ("重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室"), 1 without the city,
    2 without the community, 3 compact ("重庆市渝中区民族路12号3-2-501").
    """
    comm = net.communities
    c = df["community_idx"]
    tmp = pl.DataFrame(
        {
            "district": net.station_table["district_name"].gather(comm["station_idx"].gather(c)),
            "township": net.townships["name"].gather(comm["township_idx"].gather(c)),
            "community": comm["name"].gather(c),
            "village": comm["is_village"].gather(c),
            "road": net.roads["name"].gather(df["road_idx"].fill_null(0)) if net.roads.height else None,
            "house_no": df["house_no"].cast(pl.String),
            "building": df["building"],
            "unit": df["unit"].cast(pl.String),
            "room": df["room"].cast(pl.String),
            "group_no": df["group_no"].cast(pl.String),
            "style": df["address_style"],
        }
    )
    style = pl.col("style")
    city = pl.when(style == 1).then(pl.lit("")).otherwise(pl.lit(naming.CITY))
    if organisation:
        unit_part = (
            pl.when(pl.col("building") == 0)
            .then(pl.concat_str([pl.col("unit"), pl.lit("楼")]))
            .when(style == 3)
            .then(pl.concat_str([pl.col("building").cast(pl.String), pl.lit("-"), pl.col("room")]))
            .otherwise(pl.concat_str([pl.col("building").cast(pl.String), pl.lit("栋"), pl.col("room")]))
        )
    else:
        unit_part = (
            pl.when(pl.col("building") == 0)
            .then(pl.lit(""))
            .when(style == 3)
            .then(pl.concat_str([pl.col("building").cast(pl.String), pl.lit("-"), pl.col("unit"),
                                 pl.lit("-"), pl.col("room")]))
            .otherwise(pl.concat_str([pl.col("building").cast(pl.String), pl.lit("栋"), pl.col("unit"),
                                      pl.lit("单元"), pl.col("room"), pl.lit("室")]))
        )
    street = pl.concat_str([pl.col("road"), pl.col("house_no"), pl.lit("号"), unit_part])
    town_part = pl.when(style == 3).then(pl.lit("")).otherwise(pl.col("township"))
    comm_part = pl.when(style >= 2).then(pl.lit("")).otherwise(pl.col("community"))
    urban = pl.concat_str([city, pl.col("district"), town_part, comm_part, street])
    rural = pl.concat_str(
        [city, pl.col("district"), pl.col("township"), pl.col("community"), pl.col("group_no"),
         pl.lit("组"), pl.col("house_no"), pl.lit("号")]
    )
    out = tmp.select(pl.when(pl.col("village")).then(rural).otherwise(urban).alias("address"))
    return out.to_series()
