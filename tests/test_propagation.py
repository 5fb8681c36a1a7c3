"""Change once, updated everywhere: scenarios on a simulated network, on SQLite and PostgreSQL.

A station "s9001" is onboarded by config next to the simulated ones; each scenario writes a new
drop for it, runs ingest -> resolve -> golden, and looks at the events that came out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from entity_resolution.propagation import run_golden
from scenario_network import NEW_HOME, Hub, network_with_csv_station
from warehouse.golden import events


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("net"), stations=10, persons=4000, seed=11)


class Network(Hub):
    def cycle(self) -> pl.DataFrame:
        """Ingest every new drop, resolve, publish; return the events this cycle wrote."""
        before = self.last_seq()
        for st in self.stations.stations:
            self.ingest(st)
        self.resolve_and_publish()
        return events(self.store, after=before).filter(pl.col("entity_type") == "person")

    def last_seq(self) -> int:
        frame = events(self.store)
        return int(frame["seq"].max()) if frame.height else 0

    def entity_of(self, record_key: str) -> str:
        return self.rs.membership().filter(pl.col("record_key") == record_key)["entity_id"][0]

    def golden(self, entity_id: str) -> dict:
        return json.loads(self.gs.current(pl.Series([entity_id]))["record"][0])


@pytest.fixture()
def net(base_network: Path, tmp_path: Path, warehouse_url: str) -> Network:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    n = Network(root, warehouse_url)
    n.drop([])  # s9001 starts with an empty export
    first = n.cycle()
    assert first.height > 0 and set(first["op"].to_list()) == {"create"}
    assert n.cycle().height == 0  # only real changes make events
    return n


def a_resident(net: Network) -> dict:
    """A simulated resident with a valid ID, recorded once, to play the mover."""
    recs = net.store.engine.connect().exec_driver_sql(
        "SELECT record_key, name_norm, sex, birth_date, id_number, phone, address, area_code "
        "FROM person_records WHERE id_valid AND phone IS NOT NULL AND birth_date IS NOT NULL "
        "ORDER BY record_key LIMIT 50").all()
    members = net.rs.membership()
    sizes = members.group_by("entity_id").len()
    for r in recs:
        entity = members.filter(pl.col("record_key") == r[0])["entity_id"][0]
        if sizes.filter(pl.col("entity_id") == entity)["len"][0] == 1:
            return dict(zip(["record_key", "name", "sex", "birth_date", "id_number", "phone", "address", "area_code"],
                            [str(v) if v is not None else None for v in r], strict=True))
    raise AssertionError("no single-record resident found")


def row(local_id: str, **values) -> dict:
    return {"local_id": local_id, "source_updated_at": "2026-11-20 09:00:00", **values}


def test_mover_and_new_phone_reach_the_golden_record(net: Network) -> None:
    person = a_resident(net)
    entity = net.entity_of(person["record_key"])
    # the resident moves into s9001's area: s9001 enters them with the new address
    moved = row("X1", name=person["name"], sex={"M": "男", "F": "女"}[person["sex"]], birth_date=person["birth_date"],
                id_number=person["id_number"], phone=person["phone"], address=NEW_HOME, area_code="500106001001")
    net.drop([moved])
    got = net.cycle()
    assert net.entity_of("s9001:X1") == entity  # linked to the record at the old station, same id
    mine = got.filter(pl.col("entity_id") == entity)
    assert mine["op"].to_list() == ["update"]  # one update event
    assert {"address", "area_code"} <= set(mine["changed_fields"][0].to_list())
    assert net.golden(entity)["address"] == NEW_HOME
    sources = mine["sources"][0]  # the station records behind the change are named
    assert any(s["station_id"] == "s9001" and s["record_key"] == "s9001:X1" for s in sources)

    # a new phone entered at s9001 reaches the golden record, and nothing else changes
    net.drop([{**moved, "phone": "13900001111", "source_updated_at": "2026-11-25 10:00:00"}])
    got = net.cycle()
    mine = got.filter(pl.col("entity_id") == entity)
    assert mine["op"].to_list() == ["update"] and mine["changed_fields"][0].to_list() == ["phone"]
    assert json.loads(mine["before"][0]) == {"phone": person["phone"]}
    assert json.loads(mine["after"][0]) == {"phone": "13900001111"}
    assert net.golden(entity)["phone"] == "13900001111"
    versions = net.gs.history(entity)
    assert versions["version"].to_list() == [1, 2, 3]
    assert versions["op"].to_list() == ["create", "update", "update"]


def test_typo_fixed_at_source_corrects_golden_name(net: Network) -> None:
    typo = row("T1", name="欧阳娜娜玮", sex="女", birth_date="1991-03-05", phone="13700002222",
               address=NEW_HOME, area_code="500106001001")
    net.drop([typo])
    created = net.cycle()
    entity = net.entity_of("s9001:T1")
    assert created.filter(pl.col("entity_id") == entity)["op"].to_list() == ["create"]
    net.drop([{**typo, "name": "欧阳娜娜", "source_updated_at": "2026-11-21 09:00:00"}])
    fixed = net.cycle()
    mine = fixed.filter(pl.col("entity_id") == entity)
    assert mine["op"].to_list() == ["update"] and mine["changed_fields"][0].to_list() == ["name_norm"]
    assert net.golden(entity)["name_norm"] == "欧阳娜娜"
    assert net.entity_of("s9001:T1") == entity


def test_bridge_record_merges_and_judgement_splits(net: Network) -> None:
    id_number = "500106199205170023"
    q1 = row("Q1", name="司马青青", sex="女", birth_date="1992-05-17", id_number=id_number,
             address=NEW_HOME, area_code="500106001001")
    q2 = row("Q2", name="司马青青", sex="女", phone="13600003333", address="重庆市沙坪坝区渝碚路街道",
             area_code="500106002001")
    net.drop([q1, q2])
    net.cycle()
    e1, e2 = net.entity_of("s9001:Q1"), net.entity_of("s9001:Q2")
    assert e1 != e2  # a name alone does not link them
    q3 = row("Q3", name="司马青青", sex="女", birth_date="1992-05-17", id_number=id_number, phone="13600003333",
             address=NEW_HOME, area_code="500106001001", source_updated_at="2026-11-22 09:00:00")
    net.drop([q1, q2, q3])
    got = net.cycle()
    survivor = net.entity_of("s9001:Q3")
    assert net.entity_of("s9001:Q1") == net.entity_of("s9001:Q2") == survivor
    assert survivor in (e1, e2)  # a merge keeps an existing id
    retired = ({e1, e2} - {survivor}).pop()
    merge = got.filter((pl.col("entity_id") == retired) & (pl.col("op") == "merge"))
    assert merge.height == 1 and json.loads(merge["after"][0]) == {"merged_into": survivor}
    assert net.gs.current(pl.Series([retired]))["status"][0] == "retired"

    # a reviewer says Q2 is somebody else: the next run splits it off, for good
    net.rs.add_judgement("s9001:Q2", "s9001:Q3", "different", "auditor", "different household register entries")
    net.rs.add_judgement("s9001:Q1", "s9001:Q2", "different", "auditor", "different household register entries")
    got = net.cycle()
    assert net.entity_of("s9001:Q2") != net.entity_of("s9001:Q3")
    assert net.entity_of("s9001:Q3") == survivor  # the id stays on the larger part
    ops = got.filter(pl.col("entity_id") == survivor)["op"].to_list()
    assert "split" in ops
    assert net.cycle().height == 0


def test_failed_publication_rerun_gives_one_clean_set_of_events(net: Network, monkeypatch) -> None:
    from warehouse.golden import GoldenStore

    person = a_resident(net)
    entity = net.entity_of(person["record_key"])
    before = net.last_seq()
    net.drop([row("F1", name=person["name"], birth_date=person["birth_date"], id_number=person["id_number"],
                  phone="13500004444", source_updated_at="2026-11-26 08:00:00")])
    original = GoldenStore.commit

    def broken(self, **kwargs):
        raise RuntimeError("warehouse went away mid-commit")

    monkeypatch.setattr(GoldenStore, "commit", broken)
    with pytest.raises(RuntimeError):
        net.cycle()
    assert net.last_seq() == before  # nothing half-written
    monkeypatch.setattr(GoldenStore, "commit", original)
    run_golden(net.gs, net.survivorship, entity_type="person")  # the rerun catches up
    got = events(net.store, after=before)
    assert got.filter(pl.col("entity_id") == entity)["op"].to_list() == ["update"]
    every = events(net.store)
    assert every["seq"].to_list() == list(range(1, every.height + 1))  # no gaps
    assert every["event_id"].n_unique() == every.height  # no duplicates
    assert net.cycle().height == 0
