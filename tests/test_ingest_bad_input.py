"""Bad input gets a clear message naming file, row and field, and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.config import SourceConfig, StationConfig
from connectors.ingest import ingest_station
from warehouse import Warehouse

HEADER = "人员编号,姓名,性别,出生日期,公民身份号码,联系电话,现住址"
ROWS = [
    "r1,张伟,男,1990-01-02,11010519900102001X,13812345678,重庆市渝中区解放碑街道民族路社区民族路12号",
    "r2,李娜,女,1985年3月4日,110105198503040024,023-68123456,重庆市渝中区七星岗街道",
    "r3,王芳,女,1990/2/30,500103199002300028,,",
]
COLUMNS = {
    "人员编号": "local_id", "姓名": "name", "性别": "sex", "出生日期": "birth_date",
    "公民身份号码": "id_number", "联系电话": "phone", "现住址": "address",
}


def station(kind: str = "csv", path: str = "drop.csv", columns: dict | None = None, **extra) -> StationConfig:
    source = SourceConfig(name="residents", entity="person", kind=kind, path=path,
                          columns=columns or COLUMNS, **extra)
    return StationConfig(id="s1", name="解放碑派出所", jurisdiction=("500103",), sources=(source,))


def run(tmp_path: Path, st: StationConfig):
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    store.sync_stations([{"station_id": "s1", "name": "x", "jurisdiction": ["500103"]}])
    outcomes = ingest_station(store, st, base_dir=tmp_path, data_dir=tmp_path / "data")
    return store, outcomes


def test_good_file_loads_standardised_records(tmp_path: Path) -> None:
    (tmp_path / "drop.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="gbk")
    store, [o] = run(tmp_path, station())
    assert (o.status, o.rows_read, o.rows_loaded, o.rows_quarantined) == ("loaded", 3, 3, 0)
    recs = store.engine.connect().exec_driver_sql(
        "SELECT record_key, birth_date, issues FROM person_records ORDER BY record_key").all()
    assert [r[0] for r in recs] == ["s1:r1", "s1:r2", "s1:r3"]
    assert recs[1][1] == "1985-03-04"
    assert recs[2][1] is None and "impossible" in recs[2][2]  # flagged and kept, not guessed
    # the same drop twice is a no-op
    _, [again] = run(tmp_path, station())
    assert again.status == "skipped"
    assert store.count("raw_records") == 3


def test_row_level_problems_are_quarantined_with_reasons(tmp_path: Path) -> None:
    utf8 = "\n".join([HEADER, ROWS[0], ROWS[1]]).encode("utf-8")
    gbk_row = ("\n" + ROWS[2]).encode("gbk")  # one row from another system, in GBK
    dup = ("\n" + ROWS[0]).encode("utf-8")  # same local id again
    no_id = "\n,赵六,男,1990-01-01,,,".encode("utf-8")
    truncated = "\nr9,钱七,男,19".encode("utf-8")  # the file was cut mid-row
    (tmp_path / "drop.csv").write_bytes(utf8 + gbk_row + dup + no_id + truncated)
    store, [o] = run(tmp_path, station(encoding="utf-8"))
    assert o.status == "loaded"
    assert (o.rows_read, o.rows_loaded, o.rows_quarantined) == (6, 2, 4)
    q = store.quarantine_rows(["s1"]).sort("row_number")
    assert q["row_number"].to_list() == [4, 5, 6, 7]
    reasons = " | ".join(q["reason"].to_list())
    assert "duplicate local id" in reasons and "missing local id" in reasons
    assert "utf-8" in reasons.lower()
    assert store.reconciliation(["s1"])["balanced"].all()
    # the originals are kept: the GBK row's text survives in some form
    assert any("r3" in text for text in q["original"].to_list())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"\x00\x9f\x92\x96\x00\x00\xff\xfe" * 400, "binary"),
        (("姓名,性别\n张伟,男\n").encode(), "人员编号"),  # header lacks a mapped column
        ((HEADER + ",姓名\n" + ROWS[0] + ",张伟\n").encode(), "姓名"),  # duplicate header
    ],
)
def test_unreadable_file_is_rejected_whole_and_kept(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "drop.csv").write_bytes(content)
    store, [o] = run(tmp_path, station())
    assert o.status == "rejected"
    assert "drop.csv" in o.error and expected in o.error
    q = store.quarantine_rows(["s1"])
    assert q.height == 1 and Path(q["stored_path"][0]).read_bytes() == content
    assert store.batches()["status"].to_list() == ["rejected"]
    assert store.reconciliation(["s1"])["balanced"].all()


def test_malformed_xlsx_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "drop.xlsx").write_bytes(b"PK\x03\x04 this is not really a workbook")
    _, [o] = run(tmp_path, station(kind="xlsx", path="drop.xlsx"))
    assert o.status == "rejected" and "drop.xlsx" in o.error and "XLSX" in o.error


def test_title_row_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "drop.csv").write_text("解放碑派出所实有人口登记表\n" + "\n".join([HEADER, *ROWS]), encoding="utf-8-sig")
    store, [o] = run(tmp_path, station())
    assert (o.status, o.rows_loaded) == ("loaded", 3)
    lines = ['{"rybh": "j1", "xm": "張偉", "sfzh": "11010519900102001X"}', "{not json", '{"rybh": "j2", "xm": "李娜"}']
    (tmp_path / "drop.jsonl").write_text("\n".join(lines), encoding="utf-8")
    st = station(kind="jsonl", path="drop.jsonl", columns={"rybh": "local_id", "xm": "name", "sfzh": "id_number"})
    store2 = Warehouse(f"sqlite:///{tmp_path / 'w2.sqlite'}").migrate()
    store2.sync_stations([{"station_id": "s1", "name": "x", "jurisdiction": ["500103"]}])
    [o2] = ingest_station(store2, st, base_dir=tmp_path, data_dir=tmp_path / "d2")
    assert (o2.rows_read, o2.rows_loaded, o2.rows_quarantined) == (3, 2, 1)
    names = store2.engine.connect().exec_driver_sql("SELECT name_norm FROM person_records ORDER BY record_key").scalars().all()
    assert names == ["张伟", "李娜"]
    q = store2.quarantine_rows(["s1"])
    assert q["row_number"].to_list() == [2] and q["original"][0] == "{not json"
