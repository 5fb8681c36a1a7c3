"""Ingest every station of a project in this process, as a station run would, and report.

    python tests/hostile/run_ingest.py CONFIG_DIR WAREHOUSE_URL DATA_DIR

Prints one JSON object: per station, its outcomes (or the exception that escaped), the seconds
it took and the peak resident memory of the process while it ran (VmHWM, reset before each
station through /proc/self/clear_refs; without it, the process's high-water mark so far).
Run in a subprocess by tests/test_hostile_input.py, so that a reader that aborts or balloons
takes down only this process, and its peak memory is its own.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    except (OSError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    config_dir, url, data_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    sys.path.insert(0, str(ROOT))
    from connectors.config import load_stations
    from connectors.ingest import ingest_station
    from warehouse import Warehouse

    cfg = load_stations(config_dir / "stations.yaml")
    store = Warehouse(url).migrate()
    store.sync_stations({"station_id": s.id, "name": s.name, "jurisdiction": list(s.jurisdiction)}
                        for s in cfg.stations)
    report: dict[str, dict] = {"_baseline_mb": {"peak_mb": _peak_mb()}}
    for station in cfg.stations:
        _reset_peak()
        start = time.perf_counter()
        try:
            outcomes = [dataclasses.asdict(o) for o in
                        ingest_station(store, station, base_dir=config_dir, data_dir=data_dir)]
            error = None
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            outcomes, error = [], f"{type(exc).__name__}: {exc}"
        report[station.id] = {"outcomes": outcomes, "error": error, "seconds": time.perf_counter() - start,
                              "peak_mb": _peak_mb()}
    store.dispose()
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
