"""Hostile input: every reader has a bounded cost, and nothing reads outside its folders.

The corpus (tests/hostile/corpus.py) is a network of stations, each sending one hostile drop -
the security review's XLSX files (a declared range of A1:XFD1048576, one 400 MB cell), zip bombs,
forged sizes and counts, deep JSON, NUL bytes, bare-CR line endings, endless lines, a broken GBK
export, symbolic links to /etc/passwd and /proc/self/environ, a FIFO, a directory named like a
drop - beside three ordinary stations. The whole network is ingested in a subprocess (a reader
that aborts or balloons takes down only that process, and its peak memory is its own), on SQLite
and on PostgreSQL, and every drop must end as expected: rejected whole with a message naming the
file and the limit (copied byte for byte, owner-only), refused without being opened or copied,
or loaded with only its bad rows quarantined - while the ordinary stations load.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import xlsxwriter
import yaml
from hostile.corpus import (
    BAD_NAME,
    COLUMNS,
    GOOD_ROWS,
    LINKS,
    PROBES,
    SPECIALS,
    build_network,
    csv_text,
    good_data_rows,
    header_row,
    sheet_xml,
    write_xlsx,
)

from connectors.config import Limits, SourceConfig, config_digest, load_stations
from core.errors import ConfigError, SourceError
from connectors.readers import read_drop
from connectors.readers.drops import scan_drops
from connectors.readers.safe import DropFile, open_drop
from connectors.readers.xlsx_guard import XlsxGuard
from warehouse import Warehouse

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "hostile" / "run_ingest.py"
RSS_BOUND_MB = 400  # per station and for the whole ingest process (it starts at ~100 MB)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_network(tmp_path_factory.mktemp("hostile") / "net")


def _cap_memory() -> None:
    """A regression must fail the test, not exhaust the machine: 4 GiB of address space at most."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def ingest_isolated(config_dir: Path, url: str, data_dir: Path, env: dict[str, str]) -> tuple[dict, float]:
    """Ingest every station in a subprocess; (its report, its peak RSS in MB).

    The peak is the largest VmHWM the process measured of itself (at start, and per station): the
    kernel's ru_maxrss of a child also counts the pages of the pytest process it was forked from
    before exec, which grows with the suite."""
    out, err = data_dir.with_suffix(".out"), data_dir.with_suffix(".err")
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen([sys.executable, str(RUNNER), str(config_dir), url, str(data_dir)], stdout=fo,
                                stderr=fe, cwd=ROOT, env={**os.environ, **env}, preexec_fn=_cap_memory)
        timer = threading.Timer(180, proc.kill)
        timer.start()
        try:
            _pid, status, _usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"the ingest process died ({proc.returncode}):\n{err.read_text()[-3000:]}"
    report = json.loads(out.read_text())
    return report, max(v["peak_mb"] for v in report.values())


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_network_is_contained(warehouse_url: str, network: Path, tmp_path: Path) -> None:
    canary = f"canary-{secrets.token_hex(8)}"  # in the ingest's environment: must never be stored
    report, peak_mb = ingest_isolated(network, warehouse_url, tmp_path / "data", {"ENTERONCE_CANARY": canary})
    assert peak_mb < RSS_BOUND_MB, f"the ingest process peaked at {peak_mb:.0f} MB"
    store = Warehouse(warehouse_url)
    quarantine = store.quarantine_rows(None)

    for sid in ("good1", "good2", "good3"):  # the neighbours of every hostile station load
        [o] = report[sid]["outcomes"]
        assert (o["status"], o["rows_loaded"]) == ("loaded", 3), report[sid]

    for probe in PROBES:
        got = report[probe.station]
        assert got["error"] is None, f"{probe.station}: {got['error']}"
        assert got["peak_mb"] < RSS_BOUND_MB, f"{probe.what}: peak {got['peak_mb']:.0f} MB"
        [o] = got["outcomes"]
        drop = network / probe.path
        if probe.expect == "rejected":
            assert o["status"] == "rejected", f"{probe.what}: {o}"
            assert str(drop) in o["error"], o["error"]  # names the file...
            for fragment in probe.says:  # ...and the limit or the reason
                assert fragment in o["error"], f"{probe.what}: {o['error']}"
            [row] = quarantine.filter(quarantine["batch_id"] == o["batch_id"]).to_dicts()
            kept = Path(row["stored_path"])
            assert sha(kept) == sha(drop)  # kept byte for byte
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
            assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(kept.parent.parent.stat().st_mode) == 0o700
        else:
            assert o["status"] == "loaded", f"{probe.what}: {o}"
            assert (o["rows_loaded"], o["rows_quarantined"]) == probe.rows if probe.rows else o["rows_quarantined"] >= 1
            reasons = " | ".join(o["quarantine_reasons"])
            for fragment in probe.says:
                assert fragment in reasons, f"{probe.what}: {reasons}"

    links = {Path(o["ref"]).name: o for o in report["links"]["outcomes"]}
    assert links.pop("ok.csv")["rows_loaded"] == 3  # the regular file beside them loads
    bad_name = links.pop(BAD_NAME.decode("utf-8", "backslashreplace"))
    assert bad_name["status"] == "rejected" and "not valid UTF-8" in bad_name["error"]
    assert set(links) == set(LINKS) | set(SPECIALS)
    for name, o in links.items():
        assert o["status"] == "rejected" and name in o["error"]
        assert ("never followed" in o["error"]) if name in LINKS else ("not a regular file" in o["error"])
        [row] = quarantine.filter(quarantine["batch_id"] == o["batch_id"]).to_dicts()
        assert row["stored_path"] is None and row["original"] == f"not read: {network / 'links/drops' / name}"
        assert "file refused" in row["reason"]
    assert not (tmp_path / "data" / "quarantine" / "links").exists()  # nothing copied

    # Nothing of /etc/passwd or of the process environment reached the warehouse or the data folder.
    secrets_seen = [Path("/etc/passwd").read_text().splitlines()[0], canary]
    with store.engine.connect() as conn:
        for table, column in (("quarantine", "original"), ("raw_records", "payload"), ("batches", "error")):
            for secret in secrets_seen:
                hits = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} LIKE :s"),
                                    {"s": f"%{secret}%"}).scalar()
                assert hits == 0, f"{secret!r} found in {table}.{column}"
    for copy in (tmp_path / "data").rglob("*"):
        if copy.is_file():
            data = copy.read_bytes()
            assert all(s.encode() not in data for s in secrets_seen), copy
    assert store.reconciliation(None)["balanced"].all()
    store.dispose()


# -- paths: config errors at load time ----------------------------------------------------------


def stations_yaml(folder: Path, source: dict, **top) -> Path:
    base = {"name": "residents", "entity": "person", "kind": "csv", "columns": COLUMNS}
    config = {"version": 1, **top, "stations": [{"id": "s1", "name": "x", "jurisdiction": ["5001"],
                                                   "sources": [{**base, **source}]}]}
    path = folder / "stations.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("source", "key", "value"),
    [
        ({"path": "../../etc/passwd"}, "path", "../../etc/passwd"),
        ({"path": "/etc/passwd"}, "path", "/etc/passwd"),
        ({"path": "s1/../../*.csv"}, "path", "s1/../../*.csv"),
        ({"path": "~/drops/*.csv"}, "path", "~/drops/*.csv"),
        ({"kind": "sql", "url": "sqlite:///../systems.sqlite", "table": "t", "watermark": "w"}, "url",
         "../systems.sqlite"),
        ({"kind": "sql", "url": "sqlite:////var/lib/systems.sqlite", "table": "t", "watermark": "w"}, "url",
         "/var/lib/systems.sqlite"),
    ],
)
def test_paths_outside_the_config_folder_are_config_errors(tmp_path: Path, source: dict, key: str, value: str) -> None:
    path = stations_yaml(tmp_path, source)
    with pytest.raises(ConfigError) as info:
        load_stations(path)
    message = str(info.value)
    assert str(path) in message and f"stations.0.sources.0.{key}" in message and repr(value) in message
    assert "outside the config folder" in message


def test_a_link_in_the_config_folder_cannot_lead_out(tmp_path: Path) -> None:
    os.symlink("/etc", tmp_path / "s1")
    with pytest.raises(ConfigError, match=r"via symbolic links: /etc"):
        load_stations(stations_yaml(tmp_path, {"path": "s1/passwd"}))


@pytest.mark.parametrize(("text", "says"), [
    ("version: 1\nstations: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than 32 levels"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")), "YAML nodes"),
    ("version: 1\nstations: \xff\n", "not UTF-8"),
])
def test_config_files_are_read_with_bounded_cost(tmp_path: Path, text: str, says: str) -> None:
    """stations.yaml (and quality.yaml, resolution.yaml) go through the same bounded YAML reader
    as subscriptions.yaml: deep nesting, alias bombs and undecodable bytes are config errors."""
    path = tmp_path / "stations.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else text.encode("latin-1"))
    with pytest.raises(ConfigError, match=says) as info:
        load_stations(path)
    assert str(path) in str(info.value)


def test_check_config_command_names_file_key_and_value(tmp_path: Path) -> None:
    stations_yaml(tmp_path, {"path": "../../etc/passwd"})
    done = subprocess.run([str(ROOT / ".venv/bin/enteronce"), "check-config", "--config", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    out = " ".join((done.stdout + done.stderr).split())  # undo the console's line wrapping
    assert done.returncode != 0
    assert "stations.yaml" in out and "stations.0.sources.0.path" in out and "../../etc/passwd" in out


def test_allowed_roots_admit_a_folder_outside(tmp_path: Path) -> None:
    config, drops = tmp_path / "config", tmp_path / "srv" / "drops"
    config.mkdir()
    drops.mkdir(parents=True)
    (drops / "a.csv").write_text(csv_text(GOOD_ROWS), encoding="utf-8")
    cfg = load_stations(stations_yaml(config, {"path": str(drops / "*.csv")}, allowed_roots=["../srv"]))
    source = cfg.station("s1").sources[0]
    assert scan_drops(source, config).files == [drops / "a.csv"]
    with pytest.raises(ConfigError, match="whole file system"):
        load_stations(stations_yaml(config, {"path": "x.csv"}, allowed_roots=["/"]))


def test_a_drop_folder_swapped_for_a_link_after_loading_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    source = load_stations(stations_yaml(tmp_path, {"path": "s1/*.csv"})).station("s1").sources[0]
    (tmp_path / "s1").rmdir()
    os.symlink("/etc", tmp_path / "s1")  # the station replaced its folder
    scan = scan_drops(source, tmp_path)
    assert scan.files == [] and "outside the config folder" in scan.refused[0].reason


def test_links_below_a_glob_are_not_entered(tmp_path: Path) -> None:
    (tmp_path / "s1" / "2024").mkdir(parents=True)
    (tmp_path / "s1" / "2024" / "a.csv").write_text("x", encoding="utf-8")
    os.symlink("/etc", tmp_path / "s1" / "etc")
    source = load_stations(stations_yaml(tmp_path, {"path": "s1/*/*"})).station("s1").sources[0]
    scan = scan_drops(source, tmp_path)
    assert scan.files == [tmp_path / "s1" / "2024" / "a.csv"]
    assert [r.path.name for r in scan.refused] == ["etc"]
    deep = load_stations(stations_yaml(tmp_path, {"path": "s1/**/*.csv"})).station("s1").sources[0]
    assert scan_drops(deep, tmp_path).files == [tmp_path / "s1" / "2024" / "a.csv"]


def test_a_fifo_is_never_opened_for_reading(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "drop.csv")
    source = SourceConfig(name="r", entity="person", kind="csv", path="drop.csv", columns=COLUMNS)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("blocked on a FIFO"))
    signal.alarm(10)
    try:
        with pytest.raises(SourceError, match="FIFO"):
            read_drop(source, tmp_path / "drop.csv")
        assert scan_drops(source, tmp_path).files == []
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_literal_drop_that_is_a_link_is_refused_when_read_not_in_config(tmp_path: Path) -> None:
    """A station replacing its export by a link breaks its own drop, not everyone's config."""
    (tmp_path / "s1").mkdir()
    os.symlink("/proc/self/environ", tmp_path / "s1" / "residents.csv")
    source = load_stations(stations_yaml(tmp_path, {"path": "s1/residents.csv"})).station("s1").sources[0]
    scan = scan_drops(source, tmp_path)
    assert scan.files == [] and "symbolic link to /proc/self/environ" in scan.refused[0].reason
    with pytest.raises(SourceError, match="symbolic link to /proc/self/environ"):
        read_drop(source, tmp_path / "s1" / "residents.csv")


def test_a_link_swapped_in_after_listing_is_not_followed(tmp_path: Path) -> None:
    os.symlink("/etc/passwd", tmp_path / "drop.csv")
    with pytest.raises(SourceError, match="symbolic link to /etc/passwd"):
        open_drop(tmp_path / "drop.csv")


# -- limits: configuration ----------------------------------------------------------------------


def test_limits_project_wide_and_per_source(tmp_path: Path) -> None:
    path = stations_yaml(tmp_path, {"path": "a.csv", "limits": {"max_field_bytes": "1 KiB"}},
                         limits={"max_line_bytes": "4 MiB", "max_field_bytes": 2048})
    limits = load_stations(path).station("s1").sources[0].effective_limits
    assert (limits.max_line_bytes, limits.max_field_bytes, limits.max_xlsx_cells) == (4 << 20, 1024, 20_000_000)
    bad = stations_yaml(tmp_path, {"path": "a.csv", "limits": {"max_line_bytes": "lots", "max_json_depth": 0}})
    with pytest.raises(ConfigError) as info:
        load_stations(bad)
    assert "stations.0.sources.0.limits.max_line_bytes" in str(info.value) and "'lots'" in str(info.value)
    assert "stations.0.sources.0.limits.max_json_depth" in str(info.value)


def test_sources_without_limits_keep_their_config_digest() -> None:
    """No drop is re-read and no station re-launched because limits were introduced."""
    source = SourceConfig(name="r", entity="person", kind="csv", path="a.csv", columns=COLUMNS)
    assert "limits" not in source.model_dump()
    # what this config digested to before limits existed
    assert config_digest(source) == "43d1f772782ecd2b690ded4f3e770878ba6b5f33389704a7dc20920114ef0eb6"
    with_limits = source.model_copy(update={"limits": Limits()})
    assert config_digest(with_limits) != config_digest(source)  # setting limits is a config change


# -- XLSX: forms of cell positions that the fast path does not take -------------------------------


def guard(tmp_path: Path, rows: bytes, dimension: str = "A1:E4", **limits) -> None:
    path = tmp_path / "x.xlsx"
    write_xlsx(path, sheet_xml(header_row() + good_data_rows() + rows, dimension))
    with open_drop(path) as drop, drop.reader() as fh:
        XlsxGuard(fh, drop.size, drop.label, Limits(**limits), None).check()


@pytest.mark.parametrize(
    "rows",
    [
        b"<row r='9'><c r='XFD1048576' t='inlineStr'><is><t>x</t></is></c></row>",  # single quotes
        b'<row r="9"><c r = "XFD1048576"><v>1</v></c></row>',  # spaces around =
        b'<row r="9"><c\nr="XFD1048576"><v>1</v></c></row>',  # a newline before r
        b'<row r="9"><x:c xmlns:x="urn:x" r="XFD1048576"><x:v>1</x:v></x:c></row>',  # a prefix
        b'<row r="9"><c r="xfd1048576"><v>1</v></c></row>',  # lower case
        b'<row r="1048576"><c><v>1</v></c><c r="XFD5"><v>1</v></c></row>',  # implicit row and far column
        b'<row r="9"><c s="1" r="XFD1048576"><v>1</v></c></row>',  # r not first
    ],
)
def test_xlsx_cell_positions_in_any_form_are_bounded(tmp_path: Path, rows: bytes) -> None:
    with pytest.raises(SourceError, match="max_xlsx_cells|outside the XLSX grid"):
        guard(tmp_path, rows)


def test_xlsx_within_limits_passes_and_loads(tmp_path: Path) -> None:
    guard(tmp_path, b'<row r="5"><c s="1" r="E5"><v>1</v></c></row>', "A1:E5")  # slow path, small: fine
    guard(tmp_path, b"", max_xlsx_cells=20)  # 4 rows x 5 columns
    with pytest.raises(SourceError, match="max_xlsx_cells = 19"):
        guard(tmp_path, b"", max_xlsx_cells=19)
    path = tmp_path / "people.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, list(COLUMNS))
    for i, row in enumerate(GOOD_ROWS, start=1):
        ws.write_row(i, 0, row)
    ws.write_string(4, 0, "r9")
    ws.write_string(4, 1, "王\x00五")  # _x0000_ in the file: a NUL once read
    wb.close()
    source = SourceConfig(name="r", entity="person", kind="xlsx", path="x", columns=COLUMNS)
    chunks = list(read_drop(source, path))
    assert sum(c.rows.height for c in chunks) == 3
    [reject] = [r for c in chunks for r in c.rejects]
    assert reject.row_number == 5 and "NUL" in reject.reason


def test_text_limits_are_the_sources_own(tmp_path: Path) -> None:
    path = tmp_path / "drop.jsonl"
    path.write_text('{"rybh": "a", "xm": [[[1]]]}\n{"rybh": "b", "xm": "x"}\n', encoding="utf-8")
    source = SourceConfig(name="r", entity="person", kind="jsonl", path="x", columns={"rybh": "local_id", "xm": "name"},
                          limits=Limits(max_json_depth=3))
    chunks = list(read_drop(source, path))
    assert [r.reason for c in chunks for r in c.rejects] == [
        "JSON nested 4 levels deep, over the limit max_json_depth = 3"]
    tight = source.model_copy(update={"kind": "csv", "limits": Limits(max_file_bytes=10)})
    with pytest.raises(SourceError, match=r"over the limit max_file_bytes = 10"):
        read_drop(tight, path)


def test_dropfile_reads_never_reopen_the_name(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_text(csv_text(GOOD_ROWS), encoding="utf-8")
    with open_drop(path) as drop:
        path.unlink()
        os.symlink("/etc/passwd", path)  # swapped after the check
        source = SourceConfig(name="r", entity="person", kind="csv", path="x", columns=COLUMNS)
        rows = [r for c in read_drop(source, drop) for r in c.rows["人员编号"].to_list()]
        assert rows == ["r1", "r2", "r3"]
        assert isinstance(drop, DropFile) and drop.fd >= 0
