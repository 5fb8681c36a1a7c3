"""A simulated network with one extra station whose CSV export a test writes row by row, for the
end-to-end scenarios (propagation, feeds, the station mirror, data quality)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml

from connectors.config import load_stations
from connectors.ingest import ingest_station
from connectors.simulate.codes import id_check_char
from connectors.simulate import simulate_network
from entity_resolution.config import load_resolution
from entity_resolution.propagation import run_golden
from entity_resolution.service import run_resolution
from entity_resolution.survivorship import parse_survivorship
from warehouse import Warehouse

HEADER = ["人员编号", "姓名", "性别", "出生日期", "公民身份号码", "联系电话", "现住址", "行政区划代码", "更新时间"]
COLUMNS = dict(zip(HEADER, ["local_id", "name", "sex", "birth_date", "id_number", "phone", "address",
                            "area_code", "source_updated_at"], strict=True))
NEW_HOME = "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室"  # in area 500106001
NEW_HOME_AREA = "500106001"


def network_with_csv_station(out: Path, *, stations: int, persons: int, seed: int, station_id: str = "s9001",
                             jurisdiction: str = NEW_HOME_AREA) -> Path:
    """Simulate a network into `out`, then onboard `station_id` (小龙坎) by config: a CSV of
    residents at `<station_id>/residents.csv` that `write_drop` fills."""
    simulate_network(out, stations=stations, persons=persons, seed=seed)
    add_csv_station(out, station_id, "小龙坎派出所", jurisdiction)
    return out


def add_csv_station(root: Path, station_id: str, name: str, jurisdiction: str) -> None:
    """Append a station to stations.yaml whose residents export is `<station_id>/residents.csv`."""
    config = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    config["stations"].append({
        "id": station_id, "name": name, "jurisdiction": [jurisdiction],
        "sources": [{"name": "residents", "entity": "person", "kind": "csv",
                     "path": f"{station_id}/residents.csv", "columns": COLUMNS}],
    })
    (root / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


def an_id_number(birth: str = "19900307") -> str:
    """A valid resident ID (GB 11643) born on `birth` in district 500106, ending in X like the
    README's example."""
    body = next(b for b in (f"500106{birth}{n:03d}" for n in range(100, 1000)) if id_check_char(b) == "X")
    return body + "X"


def write_drop(root: Path, station_id: str, rows: list[dict]) -> None:
    """The station's whole export, one row per dict of canonical field -> value."""
    path = root / station_id / "residents.csv"
    path.parent.mkdir(exist_ok=True)
    frame = pl.DataFrame([{h: r.get(COLUMNS[h]) for h in HEADER} for r in rows], schema={h: pl.String for h in HEADER})
    path.write_text(frame.write_csv(), encoding="utf-8")


class Hub:
    """The hub's side of a scenario: one warehouse, the network's stations, and the steps the
    sensors and automation run after a drop."""

    settings = load_resolution(None).entities["person"]
    survivorship = parse_survivorship(settings.survivorship, source="defaults")

    def __init__(self, root: Path, url: str, station_id: str = "s9001", *, cache_dir: Path | None = None):
        self.root, self.url, self.station_id = root, url, station_id
        self.store = Warehouse(url, cache_dir=cache_dir).migrate()
        self.stations = load_stations(root / "stations.yaml")
        self.store.sync_stations({"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                                 for s in self.stations.stations)
        self.rs = self.store.resolution_store("person", "person_records")
        self.gs = self.store.golden_store("person", "person_records")

    def drop(self, rows: list[dict]) -> None:
        """A new export from the test's station (the whole file, as local systems export)."""
        write_drop(self.root, self.station_id, rows)

    def ingest(self, station) -> None:
        ingest_station(self.store, station, base_dir=self.root, data_dir=self.root / "data")

    def resolve_and_publish(self) -> None:
        run_resolution(self.rs, self.settings, entity_type="person", prefix="P")
        run_golden(self.gs, self.survivorship, entity_type="person")
