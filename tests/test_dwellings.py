"""Dwellings (实有房屋): the address forms of one room standardise to one set of parts, the
simulator's housing registers (formats, owners, registers that overlap, persons unchanged by
them), and their resolution through entity_resolution's API with high pairwise precision and
recall."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from connectors.config import load_stations
from connectors.simulate import NoiseRates, naming, simulate_network
from connectors.simulate.codes import id_is_valid
from connectors.simulate.export import simulate_dwelling_records
from connectors.simulate.noise import _address_variant, _chinese_number
from connectors.simulate.subscriptions_writer import subscriptions_doc
from entity_resolution.config import load_resolution
from entity_resolution.entity_types import load_registry
from entity_resolution.evaluation import pairwise_metrics
from entity_resolution.resolve import resolve
from entity_resolution.standardise.addresses import CHINESE_NUMERALS
from entity_resolution.standardise.library import standardise

PARTS = ("addr_district", "addr_road", "addr_number", "addr_building", "addr_unit", "addr_room")
ROOM = ("渝中区", "民族路", "12号", "3栋", "2单元", "501室")


def _dwellings(addresses: list[str]) -> pl.DataFrame:
    raw = pl.DataFrame({"local_id": [str(i) for i in range(len(addresses))], "address": addresses})
    return standardise(raw, load_registry()["dwelling"])


# -- standardisation --------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501室",
    "重庆市渝中区解放碑街道民族路社区民族路12号3幢2单元501室",
    "重庆市渝中区解放碑街道民族路社区民族路12号3号楼2单元501室",
    "重庆市渝中区解放碑街道民族路社区民族路12号三栋二单元501室",
    "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501",
    "重庆市渝中区解放碑街道民族路社区民族路12号3栋2单元501号",
    "重庆市渝中区民族路12号3-2-501",
    "渝中区解放碑街道民族路12号 3#楼2单元501室",
    "重慶市渝中區解放碑街道民族路社區民族路１２號３棟２單元５０１室",
])
def test_address_forms_of_one_room_have_the_same_parts(address: str) -> None:
    row = _dwellings([address]).row(0, named=True)
    assert tuple(row[p] for p in PARTS) == ROOM


def test_another_room_unit_or_building_is_another_dwelling() -> None:
    frame = _dwellings(["渝中区民族路12号3栋2单元501室", "渝中区民族路12号3栋2单元502室",
                        "渝中区民族路12号3栋1单元501室", "渝中区民族路12号4栋2单元501室"])
    assert frame.select(PARTS).unique().height == 4


def test_compact_building_room_and_village_group() -> None:
    flat, village, house = _dwellings(["重庆市渝中区民族路12号3-501", "重庆市江津区白沙镇石坝村三组25号",
                                       "重庆市江津区白沙镇石坝村3组25号"]).iter_rows(named=True)
    assert (flat["addr_building"], flat["addr_unit"], flat["addr_room"]) == ("3栋", None, "501室")
    # a village's group is the road of its houses: two groups' number 25 are two houses
    assert (village["addr_community"], village["addr_road"], village["addr_number"]) == ("石坝村", "3组", "25号")
    assert tuple(house[p] for p in PARTS) == tuple(village[p] for p in PARTS)


def test_streets_and_communities_named_after_roads() -> None:
    a, b = _dwellings(["重庆市渝北区两路街道青年街社区胜利路6号", "重庆市渝北区胜利路6号"]).iter_rows(named=True)
    assert (a["addr_street"], a["addr_community"], a["addr_road"]) == ("两路街道", "青年街社区", "胜利路")
    assert tuple(a[p] for p in PARTS) == tuple(b[p] for p in PARTS)


def test_chinese_numerals_both_ways() -> None:
    assert CHINESE_NUMERALS["十二"] == "12" and CHINESE_NUMERALS["二十"] == "20" and CHINESE_NUMERALS["九十九"] == "99"
    assert all(CHINESE_NUMERALS[_chinese_number(str(v))] == str(v) for v in range(1, 100))


def test_dwelling_fields_standardise_owner_id_phone_and_occupants() -> None:
    raw = pl.DataFrame({"local_id": ["1"], "address": ["渝中区民族路12号3栋2单元501室"], "owner_name": ["張 伟"],
                        "owner_id_number": ["11010519491231002x"], "owner_phone": ["138 1234 5678"],
                        "use": ["出租"], "occupants": ["3"], "area_code": ["500103001001"]})
    row = standardise(raw, load_registry()["dwelling"]).row(0, named=True)
    assert row["owner_name_norm"] == "张伟" and row["owner_id_number"] == "11010519491231002X"
    assert row["owner_id_number_valid"] is True and row["owner_phone"] == "13812345678"
    assert row["occupants"] == 3 and row["use"] == "出租" and row["issues"] is None


def test_the_simulators_address_variants_keep_the_parts() -> None:
    import random

    r = random.Random(1)
    base = ["重庆市渝中区解放碑街道民族路社区民族路12号13栋2单元1501室", "重庆市渝中区民族路12号13-2-1501",
            "重庆市江津区白沙镇石坝村11组25号"]
    variants = [(b, _address_variant(b, r)) for b in base for _ in range(40)]
    assert all(v != b for b, v in variants)
    frame = _dwellings([x for pair in variants for x in pair])
    parts = frame.select(pl.concat_str([pl.col(p).fill_null("") for p in PARTS], separator="|").alias("k"))["k"]
    assert all(parts[2 * i] == parts[2 * i + 1] for i in range(len(variants)))


# -- the simulator --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def network(tmp_path_factory):
    return simulate_network(tmp_path_factory.mktemp("dw_sim"), stations=12, persons=2000, seed=11)


def test_every_station_writes_a_housing_register(network) -> None:
    cfg = load_stations(network.stations_yaml)
    housing = {st.id: [s for s in st.sources if s.entity == "dwelling"] for st in cfg.stations}
    assert all(len(v) == 1 and v[0].name == "housing" for v in housing.values())
    summaries = [s for s in network.sources if s.entity == "dwelling"]
    assert {s.kind for s in summaries} == {"csv", "tsv", "jsonl", "xlsx", "sql"}
    assert "gbk" in {s.encoding for s in summaries}
    zh = [s for s in cfg.stations for s in s.sources if s.entity == "dwelling" and "房屋地址" in s.columns]
    assert zh and set(zh[0].columns) == set(naming.DWELLING_HEADERS["zh"].values())
    assert sum(s.records for s in summaries) == network.dwelling_records


def test_truth_lists_dwellings_with_owners_and_overlapping_registers(network) -> None:
    truth = pl.read_csv(network.truth_csv, schema_overrides={"record_key": pl.String, "entity_id": pl.String})
    dw = truth.filter(pl.col("entity_id").str.starts_with("H"))
    assert dw.height == network.dwelling_records and dw["entity_id"].n_unique() == network.dwellings
    # households' dwellings: current ones plus movers' previous ones, a few shared
    assert 0.35 * network.persons < network.dwellings < 0.6 * network.persons
    twice = dw.group_by("entity_id").len().filter(pl.col("len") > 1)
    assert twice.height == network.dwellings_in_two_registers > 0.1 * network.dwellings
    tags = set(",".join(dw["quirks"].fill_null("").to_list()).split(",")) - {""}
    assert tags == {"re_registered", "boundary", "address_variant", "rural"}
    # a neighbouring station's register: the record key names the other station
    stations = dw.with_columns(pl.col("record_key").str.split(":").list.first().alias("st"))
    assert stations.group_by("entity_id").agg(pl.col("st").n_unique()).filter(pl.col("st") > 1).height > 0


def test_owners_are_household_members_or_landlords(tmp_path: Path) -> None:
    s = simulate_network(tmp_path, stations=6, persons=600, seed=2, noise=NoiseRates.none())
    raw, _ = simulate_dwelling_records(persons=600, seed=2, stations=6, noise=NoiseRates.none())
    assert raw["owner_id_number"].map_elements(id_is_valid, return_dtype=pl.Boolean).all()
    assert set(raw["use"].to_list()) <= set(naming.DWELLING_USES)
    assert raw.filter(pl.col("use") == "空置")["occupants"].cast(pl.Int64).max() == 0
    per_owner = raw.group_by("owner_id_number").agg(pl.col("address").n_unique())
    assert per_owner["address"].max() >= 3  # a landlord's flats
    assert s.dwelling_records == raw.height


def test_housing_registers_leave_persons_and_organisations_unchanged(tmp_path: Path) -> None:
    def digests(out: Path, kinds: tuple[str, ...]) -> dict[str, str]:
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((out / "stations").rglob("*")) if p.is_file() and p.stem in kinds}

    with_dw = simulate_network(tmp_path / "a", stations=8, persons=800, seed=4)
    without = simulate_network(tmp_path / "b", stations=8, persons=800, seed=4, dwellings=False)
    kinds = ("residents", "organisations")
    assert digests(with_dw.out, kinds) == digests(without.out, kinds)
    assert digests(with_dw.out, ("housing",)) and not digests(without.out, ("housing",))
    a = pl.read_csv(with_dw.truth_csv).filter(~pl.col("entity_id").str.starts_with("H"))
    assert a.equals(pl.read_csv(without.truth_csv))
    assert with_dw.person_records == without.person_records and without.dwelling_records == 0


def test_station_subscribers_receive_dwellings_with_the_owner_masked(network) -> None:
    from connectors.simulate.network import build_network

    doc = subscriptions_doc(build_network(4, 1).stations)
    station = doc["subscribers"][0]
    assert "dwelling" in station["entity_types"]
    assert {"address", "addr_room", "owner_id_number", "residents", "dwelling_id"} <= set(station["fields"])
    assert doc["masking"]["owner_id_number"] == doc["masking"]["id_number"]
    assert doc["roles"]["station_officer"]["fields"]["owner_id_number"] == "masked"
    assert "dwelling" not in doc["subscribers"][-1]["entity_types"]  # the department: persons only


# -- resolution -----------------------------------------------------------------------------
def test_simulated_registers_resolve_with_high_precision_and_recall() -> None:
    raw, truth = simulate_dwelling_records(persons=8000, seed=7, stations=40)
    records = standardise(raw, load_registry()["dwelling"])
    assert records.height > 4000 and records["addr_number"].null_count() == 0
    result = resolve(records, load_resolution().entities["dwelling"])
    clusters = result.clusters.select("record_key", "cluster_key")
    metrics = pairwise_metrics(clusters, truth)
    assert metrics["tp"] > 500
    assert metrics["precision"] >= 0.99 and metrics["recall"] >= 0.99, metrics
    # a landlord's flats are many dwellings, however strongly their owner and phone agree
    owners = records.join(clusters, on="record_key").join(truth, on="record_key")
    landlord = owners.filter(pl.col("owner_id_number").is_not_null()).group_by("owner_id_number").agg(
        pl.col("entity_id").n_unique().alias("dwellings"), pl.col("cluster_key").n_unique().alias("clusters"))
    many = landlord.filter(pl.col("dwellings") >= 3)
    assert many.height > 0 and (many["clusters"] >= many["dwellings"]).all()
