"""`enteronce check-config` reads a sample of every source (deep by default): a config that loads
but cannot read its station's files fails here, naming the file and the column, before any data
moves; and `enteronce run` over such a file exits non-zero with its summary printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from connectors.config import load_stations
from connectors.probe import probe_source
from connectors.simulate import simulate_network
from pipelines.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "net"
    simulate_network(out, stations=12, persons=1200, seed=20261126)  # the demo's layout
    return out


@pytest.fixture()
def net(network: Path, tmp_path: Path) -> Path:
    target = tmp_path / "net"
    shutil.copytree(network, target)
    return target


def edit_source(root: Path, station: str, source: str, change) -> dict:
    doc = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    entry = next(s for st in doc["stations"] if st["id"] == station for s in st["sources"] if s["name"] == source)
    change(entry)
    (root / "stations.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return entry


def check(root: Path, *extra: str):
    return runner.invoke(app, ["check-config", "--config", str(root), "--json", *extra])


def findings(result) -> list[dict]:
    return [f | {"station": p["station_id"], "source": p["source"]}
            for p in json.loads(result.stdout)["probes"] for f in p["findings"]]


def test_a_clean_network_passes_with_every_source_sampled(net: Path) -> None:
    result = check(net)
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["deep"]
    assert doc["sources"] == len(doc["probes"]) and all(p["rows_sampled"] > 0 for p in doc["probes"])
    assert all(f["level"] == "warning" for f in findings(result))  # impossible dates the simulator wrote
    human = runner.invoke(app, ["check-config", "--config", str(net)])
    assert human.exit_code == 0 and "ok:" in human.stdout and "Sources, read on a sample" in human.stdout


def test_a_misspelled_header_fails_naming_file_and_header(net: Path) -> None:
    entry = edit_source(net, "s0001", "residents", lambda s: s["columns"].update(
        {"公民身份号吗": s["columns"].pop("公民身份号码")}))
    result = check(net)
    assert result.exit_code == 1
    [bad] = [f for f in findings(result) if f["level"] == "error"]
    assert bad["station"] == "s0001" and bad["file"] == str(net / entry["path"])
    assert "公民身份号吗" in bad["problem"]
    human = runner.invoke(app, ["check-config", "--config", str(net)])
    assert human.exit_code == 1 and "cannot be read as configured" in human.stdout
    assert runner.invoke(app, ["check-config", "--config", str(net), "--no-deep"]).exit_code == 0  # shallow: config only


def test_dates_in_another_format_fail_naming_the_column(net: Path) -> None:
    entry = edit_source(net, "s0003", "residents", lambda s: s.update(date_formats=["%d.%m.%Y"]))
    result = check(net)
    assert result.exit_code == 1
    [bad] = [f for f in findings(result) if f["level"] == "error"]
    header = next(h for h, c in entry["columns"].items() if c == "birth_date")
    assert bad["column"] == header and "date_formats" in bad["problem"] and "do not parse" in bad["problem"]


def test_a_wrong_declared_encoding_fails(net: Path) -> None:
    stations = load_stations(net / "stations.yaml")
    encodings = {(st.id, s.name): probe_source(st, s, net).encoding for st in stations.stations for s in st.sources
                 if s.kind in ("csv", "tsv")}
    gbk = next((k for k, e in encodings.items() if e in ("gbk", "gb18030")), None)
    if gbk is None:
        pytest.fail(f"the simulated network has no GBK export: {encodings}")
    edit_source(net, *gbk, lambda s: s.update(encoding="utf-8"))
    result = check(net)
    assert result.exit_code == 1
    [bad] = [f for f in findings(result) if f["level"] == "error"]
    assert (bad["station"], bad["source"]) == gbk and "utf-8" in bad["problem"].lower()


def test_a_refused_link_fails_the_check(net: Path) -> None:
    entry = edit_source(net, "s0001", "residents", lambda s: None)
    drop = net / entry["path"]
    drop.unlink()
    drop.symlink_to("/etc/passwd")
    result = check(net)
    assert result.exit_code == 1
    [bad] = [f for f in findings(result) if f["level"] == "error"]
    assert "symbolic link to /etc/passwd" in bad["problem"]


def test_a_sql_source_lacking_a_mapped_column_fails(tmp_path: Path, mariadb_url: str) -> None:
    root = tmp_path / "net"
    simulate_network(root, stations=12, persons=600, seed=20261126, sql_url=mariadb_url)
    doc = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    sql = [(st["id"], s["name"]) for st in doc["stations"] for s in st["sources"] if s["kind"] == "sql"]
    assert sql, "the simulated network has no SQL station"
    assert check(root).exit_code == 0
    station, source = sql[0]
    def rename_local_id_column(entry: dict) -> None:  # every source maps local_id
        own = next(h for h, c in entry["columns"].items() if c == "local_id")
        entry["columns"]["no_such_column"] = entry["columns"].pop(own)

    edit_source(root, station, source, rename_local_id_column)
    result = check(root)
    assert result.exit_code == 1
    [bad] = [f for f in findings(result) if f["level"] == "error"]
    assert (bad["station"], bad["source"]) == (station, source) and "no_such_column" in bad["problem"]


def test_run_over_a_rejected_file_exits_non_zero_with_the_summary(net: Path) -> None:
    edit_source(net, "s0001", "residents", lambda s: s["columns"].update(
        {"公民身份号吗": s["columns"].pop("公民身份号码")}))
    result = runner.invoke(app, ["run", "--config", str(net), "--station", "s0001", "--station", "s0002"])
    assert result.exit_code == 1, result.stdout
    assert "rejected drop" in result.stdout and "公民身份号吗" in result.stdout
    assert "Stations" in result.stdout and "s0002" in result.stdout  # the summary is printed, the others loaded
