"""A bad stations.yaml fails before any data moves, naming the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import load_stations
from core.errors import ConfigError

GOOD_SOURCE = """
      - name: residents
        entity: person
        kind: csv
        path: s1/residents.csv
        columns: {人员编号: local_id, 姓名: name, 公民身份号码: id_number}
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "stations.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def station_yaml(sources: str) -> str:
    return f"""
version: 1
stations:
  - id: s1
    name: 解放碑派出所
    jurisdiction: ["500103001"]
    sources:{sources}"""


def test_valid_config_loads(tmp_path: Path) -> None:
    cfg = load_stations(write(tmp_path, station_yaml(GOOD_SOURCE)))
    source = cfg.station("s1").sources[0]
    assert source.column_for("local_id") == "人员编号"
    assert source.encoding == "auto"
    assert "%Y年%m月%d日" in source.date_formats


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        (GOOD_SOURCE.replace("kind: csv", "kind: csvx"), ["stations.0.sources.0.kind", "'csvx'"]),
        (GOOD_SOURCE + "        bogus: 1\n", ["stations.0.sources.0.bogus", "unknown key"]),
        (GOOD_SOURCE.replace("人员编号: local_id, ", ""), ["stations.0.sources.0", "local_id"]),
        (GOOD_SOURCE.replace("姓名: name", "姓名: nickname"), ["unknown canonical field", "nickname"]),
        (GOOD_SOURCE.replace("        columns:", "        encodin: gbk\n        columns:"), ["encodin", "unknown key"]),
        (GOOD_SOURCE.replace("kind: csv", "kind: sql"), ["a sql source needs url, table, watermark"]),
        (GOOD_SOURCE.replace("        columns: {人员编号: local_id, 姓名: name, 公民身份号码: id_number}\n", ""),
         ["stations.0.sources.0.columns", "Field required"]),
    ],
)
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, fragment: str, expected: list[str]) -> None:
    path = write(tmp_path, station_yaml(fragment))
    with pytest.raises(ConfigError) as info:
        load_stations(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize("value", ["-3", "0", "true", "2.5", "first"])
def test_header_row_must_be_auto_or_a_line_number(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, station_yaml(GOOD_SOURCE + f"        header_row: {value}\n"))
    with pytest.raises(ConfigError) as info:
        load_stations(path)
    message = str(info.value)
    assert str(path) in message and "stations.0.sources.0.header_row" in message
    assert 'expected "auto" or the 1-based line of the header (an integer >= 1)' in message
    assert message.count("\n  - ") == 1  # one line for the key, not one per accepted type


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("2", 2), ("'2'", 2)])
def test_header_row_auto_or_line(tmp_path: Path, value: str, expected: object) -> None:
    cfg = load_stations(write(tmp_path, station_yaml(GOOD_SOURCE + f"        header_row: {value}\n")))
    assert cfg.station("s1").sources[0].header_row == expected


def test_other_numbers_and_lists_are_checked(tmp_path: Path) -> None:
    body = station_yaml(GOOD_SOURCE + "        chunk_rows: 0\n        date_formats: []\n")
    with pytest.raises(ConfigError) as info:
        load_stations(write(tmp_path, body))
    message = str(info.value)
    assert "stations.0.sources.0.chunk_rows: Input should be greater than or equal to 1" in message
    assert "stations.0.sources.0.date_formats: " in message and "at least 1 item" in message


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "stations: [\n  - id: s1\n   name: x")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_stations(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_stations(tmp_path / "nope.yaml")


def test_duplicate_station_ids(tmp_path: Path) -> None:
    body = station_yaml(GOOD_SOURCE) + "\n" + station_yaml(GOOD_SOURCE).split("stations:\n", 1)[1]
    with pytest.raises(ConfigError, match="repeated: \\['s1'\\]"):
        load_stations(write(tmp_path, body))
