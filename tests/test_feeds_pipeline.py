"""Feeds on the real pipeline (SQLite and PostgreSQL): a resident entered at station A moves into
station B's area; B's outbox receives them whole, masked per B's role. A subscriber that follows
A's jurisdiction learns that they left and then hears nothing more; station A itself, which still
holds its own record of them, keeps receiving their changes.

The network is simulated (small), ingested, resolved and published exactly as `enteronce run`
does, then the feed files are built as `enteronce feed build` builds them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from feeds.config import load_subscriptions
from feeds.files import build_all
from scenario_network import NEW_HOME, Hub, network_with_csv_station
from warehouse.feeds import FeedStore

B_AREA = "500106001"


@pytest.fixture(scope="module")
def base_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = network_with_csv_station(tmp_path_factory.mktemp("feednet"), stations=3, persons=400, seed=5,
                                   station_id="sB", jurisdiction=B_AREA)
    subs = yaml.safe_load((out / "subscriptions.yaml").read_text(encoding="utf-8"))
    stations = [s for s in subs["subscribers"] if s["kind"] == "station"]
    subs["subscribers"].append({**stations[0], "id": "sB", "name": "小龙坎派出所", "station_id": "sB",
                                "scope": {"area_codes": [B_AREA], "own_records": True}})
    # a twin of each station that follows its jurisdiction only (not its own records)
    subs["subscribers"] += [{**s, "id": f"{s['id']}-area", "scope": {"area_codes": s["scope"]["area_codes"]}}
                            for s in stations]
    (out / "subscriptions.yaml").write_text(yaml.safe_dump(subs, allow_unicode=True), encoding="utf-8")
    return out


class Net(Hub):
    def __init__(self, root: Path, url: str):
        super().__init__(root, url, station_id="sB")
        self.subs = load_subscriptions(root)

    def cycle(self) -> dict:
        for st in self.stations.stations:
            self.ingest(st)
        self.resolve_and_publish()
        got = build_all(self.store, self.subs, config_dir=self.root, data_dir=self.root / "data")
        return {r.subscriber_id: r for r in got}

    def outbox(self, sid: str) -> Path:
        return self.root / "data" / "outbox" / sid

    def lines(self, sid: str, prefix: str) -> list[dict]:
        files = sorted(self.outbox(sid).glob(f"{prefix}*.jsonl"))
        return [json.loads(x) for f in files for x in f.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def net(base_network: Path, tmp_path: Path, warehouse_url: str):
    root = tmp_path / "net"
    shutil.copytree(base_network, root)
    n = Net(root, warehouse_url)
    n.drop([])
    first = n.cycle()
    assert all(r.snapshot_records > 0 for sid, r in first.items() if sid not in ("sB",))
    yield n
    n.store.dispose()


def test_entered_at_a_moves_to_b_reaches_b_masked_and_a_learns_they_left(net: Net) -> None:
    row = net.store.engine.connect().exec_driver_sql(
        "SELECT r.record_key, r.name, r.sex, r.birth_date, r.id_number, r.phone, m.entity_id "
        "FROM person_records r JOIN entity_membership m ON m.record_key = r.record_key "
        "WHERE r.id_valid AND r.phone IS NOT NULL AND r.birth_date IS NOT NULL "
        "AND m.entity_id IN (SELECT entity_id FROM entity_membership GROUP BY entity_id HAVING COUNT(*) = 1) "
        "ORDER BY r.record_key LIMIT 1").first()
    key, name, sex, birth, id_number, phone, entity = [str(v) for v in row]
    station_a = key.split(":")[0]
    assert entity in {r["entity_id"] for r in net.lines(station_a, "snapshot")}
    assert entity not in {r["entity_id"] for r in net.lines("sB", "snapshot")}

    net.drop([{"local_id": "X1", "name": name, "sex": {"M": "男", "F": "女"}[sex], "birth_date": birth,
               "id_number": id_number, "phone": phone, "address": NEW_HOME, "area_code": B_AREA + "001",
               "source_updated_at": "2026-11-20 09:00:00"}])
    got = net.cycle()
    assert got["sB"].events >= 1
    b = [e for e in net.lines("sB", "events") if e["entity_id"] == entity]
    assert [(e["op"], e["scope"]) for e in b] == [("update", "entered")]
    record = b[0]["after"]  # arrives whole, masked per B's role (station officer)
    assert record["name_norm"] and record["address"] == NEW_HOME
    assert record["id_number"] == id_number[:6] + "*" * 8 + id_number[-4:]
    assert record["phone"] == phone[:3] + "****" + phone[-4:]
    assert {"station_id": "sB", "record_key": "sB:X1"} in b[0]["sources"]
    area_only = [e for e in net.lines(f"{station_a}-area", "events") if e["entity_id"] == entity]
    assert [(e["op"], e["scope"]) for e in area_only] == [("update", "left")]
    assert area_only[0]["after"]["area_code"] == B_AREA + "001"
    # A itself still holds its record of the resident: it stays in A's scope (own records)
    a = [e for e in net.lines(station_a, "events") if e["entity_id"] == entity]
    assert [(e["op"], e["scope"]) for e in a] == [("update", "in")]

    net.drop([{"local_id": "X1", "name": name, "sex": {"M": "男", "F": "女"}[sex], "birth_date": birth,
               "id_number": id_number, "phone": "13900001111", "address": NEW_HOME, "area_code": B_AREA + "001",
               "source_updated_at": "2026-11-25 09:00:00"}])
    net.cycle()
    b = [e for e in net.lines("sB", "events") if e["entity_id"] == entity]
    assert [e["changed_fields"] for e in b][-1] == ["phone"] and b[-1]["after"] == {"phone": "139****1111"}
    assert len([e for e in net.lines(f"{station_a}-area", "events") if e["entity_id"] == entity]) == 1  # no more
    assert [e["after"] for e in net.lines(station_a, "events") if e["entity_id"] == entity][-1] == {
        "phone": "139****1111"}
    log = FeedStore(net.store).deliveries(subscriber_id="sB")
    assert log["kind"].to_list() == ["events", "events"]  # its snapshot was empty: nothing delivered, nothing logged
    assert all(entity in json.loads(ids) for ids in log["entity_ids"].to_list())
    assert json.loads(log["fields"][0])["id_number"] == "masked"
