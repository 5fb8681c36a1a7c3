"""The station-side mirror: folding pages of events (pure), and the mission end to end over HTTP.

The scenario: a person entered only at station A moves into station B's area; B pulls its feed
from the hub's API and finds them in its mirror, masked per B's role, without anyone at B typing
them in. Pulling again changes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from feeds.api import BackgroundServer, create_app
from feeds.mirror import MirrorError, plan_page, pull
from feeds.tokens import issue_token
from scenario_network import Hub, an_id_number, network_with_csv_station
from warehouse.feeds import FeedStore
from warehouse.mirror import MirrorStore


def ev(seq: int, entity: str, op: str, version: int, after: dict | None = None, **extra) -> dict:
    return {"seq": seq, "event_id": f"e-{entity}-{version}-{op}", "entity_type": "person", "entity_id": entity,
            "op": op, "version": version, "changed_fields": sorted(after or {}), "before": None,
            "after": json.dumps(after, ensure_ascii=False) if after is not None else None, **extra}


def test_plan_creates_updates_and_dedupes() -> None:
    page = [ev(1, "P1", "create", 1, {"name_norm": "张*", "phone": "138****5678"}),
            ev(2, "P1", "update", 2, {"phone": "139****1111"})]
    plan = plan_page(page, held={}, seen=set())
    assert [u["entity_id"] for u in plan.upserts] == ["P1"]
    assert plan.upserts[0]["record"] == {"name_norm": "张*", "phone": "139****1111"}
    assert plan.upserts[0]["version"] == 2
    assert [a["outcome"] for a in plan.applied] == ["applied", "applied"]
    # the same page again, with its ids already applied: nothing to do
    held = {"P1": {k: plan.upserts[0][k] for k in ("entity_type", "version", "record", "provenance", "seq")}}
    again = plan_page(page + page, held=held, seen={e["event_id"] for e in page})
    assert again.upserts == [] and again.deletes == [] and again.applied == [] and again.duplicates == 4


def test_plan_ignores_older_versions_and_redirects_merges() -> None:
    held = {"P1": {"entity_type": "person", "version": 3, "record": {"phone": "new"}, "provenance": None, "seq": 9},
            "P2": {"entity_type": "person", "version": 1, "record": {"phone": "x"}, "provenance": None, "seq": 2}}
    page = [ev(5, "P1", "update", 2, {"phone": "old"}),  # older than held: changes nothing
            ev(6, "P2", "merge", 2, {"merged_into": "P1"}),
            ev(7, "P3", "create", 1, {"phone": "y"}),
            ev(8, "P3", "retire", 2)]
    plan = plan_page(page, held=held, seen=set())
    assert plan.older == 1
    assert plan.upserts == []  # P3 came and went inside the page
    assert plan.deletes == ["P2"]
    assert {r["entity_id"]: (r["survivor_id"], r["reason"]) for r in plan.redirects} == {
        "P2": ("P1", "merge"), "P3": (None, "retire")}


def test_plan_takes_a_newcomer_whole_and_fetches_what_is_partial() -> None:
    entered = ev(4, "P7", "update", 3, {"name_norm": "韩林", "id_number": "440305********2957",
                                       "area_code": "500108001002"}, scope="entered")
    stray = ev(5, "P8", "update", 2, {"phone": "136****4534"})  # an update for an entity not held
    plan = plan_page([entered, stray], held={}, seen=set())
    assert {u["entity_id"]: u["record"] for u in plan.upserts}["P7"]["id_number"] == "440305********2957"
    assert plan.incomplete == ["P8"]


def test_plan_drops_an_entity_that_left_the_scope() -> None:
    held = {"P1": {"entity_type": "person", "version": 1, "record": {"area_code": "500101"}, "provenance": None,
                   "seq": 1}}
    plan = plan_page([ev(3, "P1", "update", 2, {"area_code": "500106"}, scope="left")], held=held, seen=set())
    assert plan.deletes == ["P1"] and plan.redirects[0]["reason"] == "left"


# -- the mission, end to end: entered at A, moves to B, B's mirror has it ---------------------------
A = "s9001"  # station A: onboarded by config next to the simulated ones, a CSV export we write
A_AREA = "500106001"


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return network_with_csv_station(tmp_path_factory.mktemp("mission"), stations=4, persons=600, seed=5,
                                    station_id=A, jurisdiction=A_AREA)


class HubA(Hub):
    """The hub's side: stations' drops through ingest -> resolve -> publish, on one warehouse."""

    def drop_at_a(self, rows: list[dict]) -> None:
        self.drop(rows)

    def cycle(self) -> None:
        for st in self.stations.stations:
            self.ingest(st)
        self.resolve_and_publish()

    def entity_of(self, record_key: str) -> str:
        members = self.store.resolution_store("person", "person_records").membership()
        return members.filter(pl.col("record_key") == record_key)["entity_id"][0]

    def members(self, entity_id: str) -> list[str]:
        members = self.store.resolution_store("person", "person_records").membership()
        return sorted(members.filter(pl.col("entity_id") == entity_id)["record_key"].to_list())


def test_entered_at_a_moves_to_b_appears_in_bs_mirror_masked(base_network: Path, tmp_path: Path,
                                                               warehouse_url: str) -> None:
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    hub = HubA(root, warehouse_url, station_id=A)
    b = hub.stations.stations[1]  # station B: a simulated station with its own subscription
    b_area = f"{b.jurisdiction[0]}001"[:12]
    id_number = an_id_number()
    resident = {"local_id": "M1", "name": "欧阳青云", "sex": "男", "birth_date": "1990-03-07", "id_number": id_number,
                "phone": "13912345678", "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室",
                "area_code": f"{A_AREA}001", "source_updated_at": "2026-11-01 09:00:00"}
    hub.drop_at_a([resident])  # entered once, at station A only
    hub.cycle()
    person = hub.entity_of(f"{A}:M1")
    assert hub.members(person) == [f"{A}:M1"]

    token = issue_token(hub.store, b.id, "station B's front desk").token
    mirror = tmp_path / f"mirror-{b.id}.sqlite"
    with BackgroundServer(create_app(hub.url, root)) as url:
        first = pull(mirror, url, b.id, token, page=250)
        assert first.snapshot_records > 0  # a new mirror starts from the snapshot
        held = {r["entity_id"] for r in MirrorStore(mirror).records()}
        assert person not in held  # not B's resident (yet)

        # the resident moves into B's area; station A records the new address (B types nothing)
        new_home = f"重庆市{b.name}辖区幸福路{len(b.id)}号3栋2单元502室"
        hub.drop_at_a([{**resident, "address": new_home, "area_code": b_area,
                        "source_updated_at": "2026-11-20 09:00:00"}])
        hub.cycle()
        second = pull(mirror, url, b.id, token, page=250)
        assert second.snapshot_records == 0 and second.events_applied >= 1
        store = MirrorStore(mirror)
        mine = {r["entity_id"]: r for r in store.records()}
        assert person in mine  # B's mirror has them
        record = mine[person]["record"]
        assert record["id_number"] == f"{id_number[:6]}********{id_number[-4:]}"  # masked per B's role
        assert record["id_number"].endswith("X") and "*" * 8 in record["id_number"]
        assert record["phone"] == "139****5678"
        assert record["name_norm"] == "欧阳青云" and record["address"] == new_home and record["area_code"] == b_area
        assert mine[person]["provenance"]["address"]["station_id"] == A  # traceable to the station that supplied it
        assert hub.members(person) == [f"{A}:M1"]  # no re-entry at B

        # pulling again changes nothing
        before = (store.records(), store.redirects(), store.counts(), store.meta())
        third = pull(mirror, url, b.id, token, page=250)
        assert third.events_applied == 0 and third.snapshot_records == 0
        assert (store.records(), store.redirects(), store.counts(), store.meta()) == before

        # the mirror is B's: nobody else's token can fill it, and a wrong token is refused clearly
        with pytest.raises(MirrorError, match="HTTP 401"):
            pull(mirror, url, b.id, token + "x")
        with pytest.raises(MirrorError, match="belongs to subscriber"):
            pull(mirror, url, hub.stations.stations[0].id, token)

    audit = FeedStore(hub.store).deliveries(subscriber_id=b.id)
    assert set(audit["channel"].to_list()) == {"api"} and audit["token_id"].is_not_null().all()
    delivered = [row for row in audit.iter_rows(named=True) if person in json.loads(row["entity_ids"])]
    assert delivered and all(json.loads(row["fields"])["id_number"] == "masked" for row in delivered)
