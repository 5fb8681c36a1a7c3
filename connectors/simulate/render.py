"""Turn true records into what each station's system shows: local ids, date/sex formats, addresses.

Output columns are canonical field names holding station-formatted strings (before noise), plus
`station_idx`, `entity_id`, `record_key`, `updated_dt` (for SQL watermarks) and `remark`; person
records also carry what noise and the quirk labels need to know about the person (`id_true`,
`relative_id`, `has_birth_date`, `phone_shared`), which no writer exports.
"""

from __future__ import annotations

import polars as pl

from connectors.simulate import naming
from connectors.simulate.network import SEX_STYLES, Network
from connectors.simulate.people import Population
from connectors.simulate.places import render_addresses
from connectors.simulate.rng import Rng


def assign_local_ids(rng: Rng, net: Network, rec: pl.DataFrame, entity: str) -> pl.DataFrame:
    """Shuffle rows within each station (file order) and give each a station-local id."""
    key = rng.bits(f"{entity}:order", rec.height)
    rec = rec.with_columns(key.alias("_order")).sort(["station_idx", "_order"], maintain_order=True)
    rec = rec.drop("_order").with_columns(
        (pl.int_range(pl.len()).over("station_idx") + 1).alias("seq")
    )
    st = net.station_table
    style = st["id_style"].gather(rec["station_idx"])
    juris = st["jurisdiction0"].gather(rec["station_idx"])
    sid = st["station_id"].gather(rec["station_idx"])
    seq = pl.col("seq")
    if entity == "person":
        local = (
            pl.when(pl.lit(style) == 0).then(pl.concat_str([pl.lit(juris), seq.cast(pl.String).str.zfill(6)]))
            .when(pl.lit(style) == 1).then(pl.concat_str([pl.lit("R"), seq.cast(pl.String).str.zfill(8)]))
            .otherwise((seq + 1000).cast(pl.String))
        )
    elif entity == "dwelling":  # 房屋: never equal to a person's or an organisation's local id
        local = (
            pl.when(pl.lit(style) == 0).then(pl.concat_str([pl.lit(juris), pl.lit("F"), seq.cast(pl.String).str.zfill(6)]))
            .when(pl.lit(style) == 1).then(pl.concat_str([pl.lit("FW"), seq.cast(pl.String).str.zfill(7)]))
            .otherwise(pl.concat_str([pl.lit("H"), (seq + 1000).cast(pl.String)]))
        )
    else:
        local = (
            pl.when(pl.lit(style) == 0).then(pl.concat_str([pl.lit(juris), pl.lit("D"), seq.cast(pl.String).str.zfill(5)]))
            .when(pl.lit(style) == 1).then(pl.concat_str([pl.lit("DW"), seq.cast(pl.String).str.zfill(6)]))
            .otherwise(pl.concat_str([pl.lit("U"), (seq + 1000).cast(pl.String)]))
        )
    rec = rec.with_columns(local.alias("local_id"))
    return rec.with_columns(
        pl.concat_str([pl.lit(sid), pl.lit(":"), pl.col("local_id")]).alias("record_key")
    ).drop("seq")


def format_dates(days: pl.Expr, fmt_idx: pl.Expr) -> pl.Expr:
    """Birth dates in a station's format: 1990-01-02, 19900102, 1990/1/2, 1990年1月2日."""
    d = days.cast(pl.Date)
    y, m, dd = d.dt.year().cast(pl.String), d.dt.month().cast(pl.String), d.dt.day().cast(pl.String)
    return (
        pl.when(fmt_idx == 0).then(d.dt.strftime("%Y-%m-%d"))
        .when(fmt_idx == 1).then(d.dt.strftime("%Y%m%d"))
        .when(fmt_idx == 2).then(pl.concat_str([y, pl.lit("/"), m, pl.lit("/"), dd]))
        .otherwise(pl.concat_str([y, pl.lit("年"), m, pl.lit("月"), dd, pl.lit("日")]))
    )


def format_date_parts(y: int, m: int, d: int, fmt_idx: int) -> str:
    """One date (possibly impossible, like 1990-02-30) in a station's format."""
    if fmt_idx == 0:
        return f"{y:04d}-{m:02d}-{d:02d}"
    if fmt_idx == 1:
        return f"{y:04d}{m:02d}{d:02d}"
    if fmt_idx == 2:
        return f"{y}/{m}/{d}"
    return f"{y}年{m}月{d}日"


def _common(net: Network, rec: pl.DataFrame, entity: str, rng: Rng) -> pl.DataFrame:
    st = net.station_table
    s = rec["station_idx"]
    remarks = {"person": naming.PERSON_REMARKS, "dwelling": naming.DWELLING_REMARKS}.get(entity, naming.ORG_REMARKS)
    rec = rec.with_columns(
        st["address_style"].gather(s).alias("address_style"),
        st["date_format"].gather(s).alias("date_fmt"),
        st["sex_style"].gather(s).alias("sex_style"),
        st["kind"].gather(s).alias("kind"),
        (pl.col("updated") * 1_000_000).cast(pl.Datetime("us")).alias("updated_dt"),
        pl.Series(remarks).gather(rng.below(f"{entity}:remark", rec.height, len(remarks)))
        .replace("", None).alias("remark"),
    )
    rec = rec.with_columns(
        render_addresses(net, rec, organisation=entity == "organisation").alias("address"),
        net.communities["code"].gather(rec["community_idx"]).alias("area_code"),
        pl.col("updated_dt").dt.strftime("%Y-%m-%d %H:%M:%S").alias("source_updated_at"),
    )
    return rec


def render_persons(rng: Rng, net: Network, pop: Population, rec: pl.DataFrame) -> pl.DataFrame:
    rec = assign_local_ids(rng, net, rec, "person")
    rec = _common(net, rec, "person", rng)
    p = pop.persons
    male = p["male"].gather(rec["pid"])
    sex_codes = [naming.SEX_CODES[s] for s in SEX_STYLES]
    sex_m = pl.Series([c[0] for c in sex_codes])
    sex_f = pl.Series([c[1] for c in sex_codes])
    sex = pl.select(
        pl.when(male).then(sex_m.gather(rec["sex_style"])).otherwise(sex_f.gather(rec["sex_style"]))
    ).to_series()
    relative_id = p["id_number"].gather(p["relative_pid"].fill_null(0))
    relative_id = pl.select(pl.when(p["relative_pid"].is_not_null()).then(relative_id)).to_series()
    has_birth = net.station_table["has_birth_date"].gather(rec["station_idx"])
    rec = rec.with_columns(
        p["name"].gather(rec["pid"]).alias("name"),
        p["surname"].gather(rec["pid"]).alias("surname"),
        sex.alias("sex"),
        p["birth"].gather(rec["pid"]).alias("birth"),
        p["id_number"].gather(rec["pid"]).alias("id_number"),
        p["id_number"].gather(rec["pid"]).alias("id_true"),
        relative_id.gather(rec["pid"]).alias("relative_id"),
        has_birth.alias("has_birth_date"),
    ).with_columns(
        # a station system without the column exports no birth date at all
        pl.when(pl.col("has_birth_date")).then(format_dates(pl.col("birth"), pl.col("date_fmt")))
        .alias("birth_date")
    )
    return rec


def render_organisations(rng: Rng, net: Network, orgs: pl.DataFrame, rec: pl.DataFrame) -> pl.DataFrame:
    rec = assign_local_ids(rng, net, rec, "organisation")
    rec = _common(net, rec, "organisation", rng)
    return rec.with_columns(
        orgs["name"].gather(rec["oid"]).alias("name"),
        orgs["credit_code"].gather(rec["oid"]).alias("credit_code"),
        orgs["legal_rep"].gather(rec["oid"]).alias("legal_rep"),
    )


def render_dwellings(rng: Rng, net: Network, rec: pl.DataFrame) -> pl.DataFrame:
    """Housing-register records as each station writes them: local ids, the address in the
    station's style (the same style as its residents' addresses), area code, update time."""
    rec = assign_local_ids(rng, net, rec, "dwelling")
    return _common(net, rec, "dwelling", rng)
