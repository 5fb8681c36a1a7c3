"""CSV/TSV readers against real files: encodings, headers, quoting, rejects, chunking, hashes."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.config import SourceConfig
from core.errors import SourceError
from connectors.readers import Chunk, Reject, detect_encoding, read_drop
from connectors.readers import blocks as blocks_module

COLUMNS = {"人员编号": "local_id", "姓名": "name", "公民身份号码": "id_number", "出生日期": "birth_date"}
HEADER = "人员编号,姓名,公民身份号码,出生日期"
PEOPLE = [
    ("1", "张三", "500101199001011234", "1990-01-01"),
    ("2", "李四", "110105194912310021", "1949-12-31"),
    ("3", "王五", "440301200002291234", "2000-02-29"),
]


def source(kind: str = "csv", **kw) -> SourceConfig:
    kw.setdefault("columns", COLUMNS)
    return SourceConfig(name="residents", entity="person", kind=kind, path=f"x.{kind}", **kw)


def read_all(src: SourceConfig, path: Path) -> tuple[pl.DataFrame, list[Reject], list[Chunk]]:
    chunks = list(read_drop(src, path))
    rows = pl.concat([c.rows for c in chunks]) if chunks else pl.DataFrame()
    return rows, [r for c in chunks for r in c.rejects], chunks


def csv_text(rows, header: str = HEADER, sep: str = ",") -> str:
    return "\n".join([header, *(sep.join(r) for r in rows)]) + "\n"


# --- encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gb18030"), ("gb18030", "gb18030")],
)
def test_encodings_are_detected_and_read(tmp_path: Path, encoding: str, detected: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE), encoding=encoding)

    assert detect_encoding(path) == detected
    rows, rejects, _ = read_all(source(), path)

    assert rejects == []
    assert rows.columns == [*COLUMNS, "__row__", "__row_hash__"]
    assert all(rows.schema[c] == pl.String for c in COLUMNS)
    assert rows.schema["__row__"] == pl.Int64
    assert rows.select(*COLUMNS).rows() == PEOPLE
    assert rows["__row__"].to_list() == [2, 3, 4]


def test_declared_gbk_decodes_as_gb18030_superset(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    # 𠀀 (U+20000) is outside GBK but in GB18030: common in rare-character names.
    path.write_bytes(csv_text([("1", "张𠀀", "500101199001011234", "1990-01-01")]).encode("gb18030"))
    rows, rejects, _ = read_all(source(encoding="gbk"), path)
    assert rejects == []
    assert rows["姓名"].to_list() == ["张𠀀"]


def test_declared_encoding_that_plainly_does_not_match_fails_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE), encoding="gbk")
    with pytest.raises(SourceError) as err:
        list(read_drop(source(encoding="utf-8"), path))
    assert "declared encoding utf-8 does not match" in str(err.value)
    assert "gb18030" in str(err.value)


def test_gbk_row_inside_utf8_file_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    lines = [HEADER, "1,张三,500101199001011234,1990-01-01", "2,李四,110105194912310021,1949-12-31"]
    data = "\n".join(lines).encode("utf-8") + b"\n"
    data += "9,赵六,500101199001019999,1990-01-09\n".encode("gbk")
    data += "3,王五,440301200002291234,2000-02-29\n".encode("utf-8")
    path.write_bytes(data)

    assert detect_encoding(path) == "utf-8"
    rows, rejects, _ = read_all(source(), path)

    assert rows["人员编号"].to_list() == ["1", "2", "3"]
    assert rows["__row__"].to_list() == [2, 3, 5]
    assert len(rejects) == 1
    bad = rejects[0]
    assert bad.row_number == 4
    assert "utf-8" in bad.reason
    assert bad.original.startswith("9,\\x")  # undecodable bytes kept as escapes, nothing lost
    assert bad.original.encode("latin-1", "backslashreplace")  # plain text


def test_mixed_encoding_with_many_blocks_keeps_line_numbers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blocks_module, "BLOCK_BYTES", 64)
    path = tmp_path / "mixed.csv"
    body = [f"{i},张三{i},5001011990010{i:05d},1990-01-01" for i in range(1, 41)]
    data = (HEADER + "\n").encode()
    for i, line in enumerate(body, start=1):
        data += (line + "\n").encode("gbk" if i in (7, 30) else "utf-8")
    path.write_bytes(data)

    rows, rejects, _ = read_all(source(), path)

    assert sorted(r.row_number for r in rejects) == [8, 31]
    assert rows.height == 38
    assert rows.filter(pl.col("人员编号") == "8")["__row__"].item() == 9


# --- file-level errors ----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"   \n\r\n\t\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "file is empty" in str(err.value)
    assert err.value.file == str(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert str(err.value) == f"{path}: file not found"


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 50)
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "not a text file (binary content?)" in str(err.value)


def test_undecodable_without_nul_bytes_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\n".join(bytes([0xFF, 0x80, 0xFE, 0x81, 0x7F] * 20) for _ in range(50)))
    with pytest.raises(SourceError) as err:
        detect_encoding(path)
    assert "not a text file (binary content?)" in str(err.value)


def test_header_lacking_a_mapped_column_names_it_and_the_closest_row(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("XX派出所实有人口登记表\n人员编号,姓名,身份证号,出生日期\n1,张三,x,y\n", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    msg = str(err.value)
    assert "公民身份号码" in msg
    assert "closest is row 2" in msg
    assert err.value.row == 2


def test_header_at_given_row_lacking_a_mapped_column(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("人员编号,姓名,出生日期\n1,张三,y\n", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        read_drop(source(header_row=1), path)
    assert "header row 1 lacks mapped column(s) ['公民身份号码']" in str(err.value)
    assert err.value.field == "公民身份号码"


def test_duplicate_headers(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("标题\n人员编号,姓名,公民身份号码,出生日期,姓名\n1,张三,x,y,z\n", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        read_drop(source(), path)
    assert "duplicate header '姓名'" in str(err.value)
    assert err.value.row == 2
    assert err.value.field == "姓名"


def test_header_row_past_end(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE), encoding="utf-8")
    with pytest.raises(SourceError) as err:
        read_drop(source(header_row=50), path)
    assert "past the end" in str(err.value)


# --- headers --------------------------------------------------------------------------------


def test_title_row_above_header_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("XX派出所实有人口登记表\n\n" + csv_text(PEOPLE), encoding="utf-8-sig")
    rows, rejects, _ = read_all(source(), path)
    assert rejects == []
    assert rows.select(*COLUMNS).rows() == PEOPLE
    assert rows["__row__"].to_list() == [4, 5, 6]


def test_header_at_given_row(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    # Line 1 also holds the column names; header_row=3 must win over auto detection.
    text = "人员编号,姓名,公民身份号码,出生日期\n导出时间：2024-01-01\n" + csv_text(PEOPLE)
    path.write_text(text, encoding="utf-8")
    rows, rejects, _ = read_all(source(header_row=3), path)
    assert rows.select(*COLUMNS).rows() == PEOPLE
    assert rows["__row__"].to_list() == [4, 5, 6]
    assert rejects == []


def test_header_cells_are_stripped_and_extra_columns_kept(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(" 人员编号 ,姓名,公民身份号码 , 出生日期,备注,\n1,张三,x,y,无,\n", encoding="utf-8-sig")
    rows, _, _ = read_all(source(), path)
    assert rows.columns == [*COLUMNS, "备注", "column_6", "__row__", "__row_hash__"]
    assert rows.row(0)[:6] == ("1", "张三", "x", "y", "无", None)


# --- rows -----------------------------------------------------------------------------------


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "people.tsv"
    rows_in = [*PEOPLE, ("4", "赵, 六", 'a"b', "")]
    path.write_text(csv_text(rows_in, header=HEADER.replace(",", "\t"), sep="\t"), encoding="utf-8")
    rows, rejects, _ = read_all(source("tsv"), path)
    assert rejects == []
    assert rows.select(*COLUMNS).rows() == [*PEOPLE, ("4", "赵, 六", 'a"b', None)]


def test_other_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE, header=HEADER.replace(",", "|"), sep="|"), encoding="utf-8")
    rows, _, _ = read_all(source(delimiter="|"), path)
    assert rows.select(*COLUMNS).rows() == PEOPLE


def test_quoted_fields_with_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerow(["1", "张三, 小名\"三儿\"", "500101199001011234", "1990-01-01"])
    writer.writerow(["2", "李四", "多行\n地址\r\n第三行", "1949-12-31"])
    writer.writerow(["3", "王五", "x", "2000-02-29"])
    path.write_text(buf.getvalue(), encoding="utf-8")

    rows, rejects, _ = read_all(source(), path)

    assert rejects == []
    assert rows["姓名"].to_list() == ['张三, 小名"三儿"', "李四", "王五"]
    assert rows["公民身份号码"][1] == "多行\n地址\r\n第三行"
    assert rows["__row__"].to_list() == [2, 3, 6]  # record 2 spans lines 3-5


def test_values_stripped_and_blank_is_null(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + '\n 1 ,\u3000张三 ,"  ",\n', encoding="utf-8")
    rows, _, _ = read_all(source(), path)
    assert rows.select(*COLUMNS).rows() == [("1", "张三", None, None)]


def test_blank_lines_are_skipped_and_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    text = HEADER + "\n\n1,张三,x,y\n   \n,,,\n\r\n2,李四,x,y\n\n\n"
    path.write_text(text, encoding="utf-8")
    rows, rejects, _ = read_all(source(), path)
    assert rejects == []
    assert rows["人员编号"].to_list() == ["1", "2"]
    assert rows["__row__"].to_list() == [3, 7]


def test_truncated_last_line_is_rejected_with_its_row_number(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE) + "4,赵六,5001", encoding="utf-8")
    rows, rejects, _ = read_all(source(), path)
    assert rows.height == 3
    assert rejects == [
        Reject(5, None, "row has 3 fields, header has 4 (truncated row?)", "4,赵六,5001")
    ]


def test_row_with_too_many_fields_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + "\n1,张三,x,y\n2,李,四,x,y\n3,王五,x,y\n", encoding="utf-8")
    rows, rejects, _ = read_all(source(), path)
    assert rows["人员编号"].to_list() == ["1", "3"]
    assert [(r.row_number, r.original) for r in rejects] == [(3, "2,李,四,x,y")]
    assert "row has 5 fields, header has 4" in rejects[0].reason


def test_unterminated_quote_at_end_of_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE) + '4,赵六,"5001011990\n', encoding="utf-8")
    rows, rejects, _ = read_all(source(), path)
    assert rows.height == 3
    assert len(rejects) == 1
    assert rejects[0].row_number == 5
    assert "unterminated quoted field" in rejects[0].reason
    assert rejects[0].original == '4,赵六,"5001011990'


def test_unterminated_quote_in_last_field_is_rejected_too(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE) + '4,赵六,x,"1990', encoding="utf-8")
    rows, rejects, _ = read_all(source(), path)
    assert rows.height == 3
    assert [r.row_number for r in rejects] == [5]


def test_chunking_conserves_rows_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    people = [(str(i), f"人{i}", f"id{i}", "1990-01-01") for i in range(1, 11)]
    path.write_text(csv_text(people), encoding="utf-8")
    chunks = list(read_drop(source(chunk_rows=3), path))
    assert [c.rows.height for c in chunks] == [3, 3, 3, 1]
    assert [c.rows["__row__"].to_list() for c in chunks] == [[2, 3, 4], [5, 6, 7], [8, 9, 10], [11]]
    assert sum(c.rows.height + len(c.rejects) for c in chunks) == 10


def test_header_only_file_gives_one_empty_chunk(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + "\n", encoding="utf-8")
    chunks = list(read_drop(source(), path))
    assert len(chunks) == 1
    assert chunks[0].rows.height == 0
    assert chunks[0].rows.columns == [*COLUMNS, "__row__", "__row_hash__"]


def test_row_hash_is_stable_and_distinguishes_rows(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text([*PEOPLE, PEOPLE[0]]), encoding="utf-8")
    first, _, _ = read_all(source(), path)
    again, _, _ = read_all(source(chunk_rows=1), path)
    hashes = first["__row_hash__"].to_list()

    assert hashes == again["__row_hash__"].to_list()
    assert len(set(hashes[:3])) == 3
    assert hashes[3] == hashes[0]  # same content, same hash, whatever the position
    # The definition, pinned: SHA-1 of the original field values joined with U+001F.
    expected = hashlib.sha1("\x1f".join(PEOPLE[0]).encode("utf-8")).hexdigest()
    assert hashes[0] == expected


def test_row_hash_uses_original_values_before_stripping(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + "\n1,张三,x,y\n1, 张三,x,y\n", encoding="utf-8")
    rows, _, _ = read_all(source(), path)
    assert rows["姓名"].to_list() == ["张三", "张三"]
    assert rows["__row_hash__"][0] != rows["__row_hash__"][1]


def test_crlf_file_through_many_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blocks_module, "BLOCK_BYTES", 50)
    path = tmp_path / "people.csv"
    people = [(str(i), f"人{i}", f"id{i}", "1990-01-01") for i in range(1, 31)]
    path.write_bytes(csv_text(people).replace("\n", "\r\n").encode("utf-8"))
    rows, rejects, _ = read_all(source(chunk_rows=7), path)
    assert rejects == []
    assert rows.select(*COLUMNS).rows() == people
    assert rows["__row__"].to_list() == list(range(2, 32))


# --- both parsers agree with Python's csv module, across any block edges --------------------

# "\r" only as part of "\r\n": csv.writer would not quote a lone "\r" in a "\n"-terminated file.
_TOKENS = ["a", "b", "张", "三", " ", ",", '"', "\n", "\r\n", "\t", ";", "\u3000", "x"]
_cell = st.lists(st.sampled_from(_TOKENS), max_size=6).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.tuples(st.sampled_from(["id", "", " "]), st.lists(_cell, min_size=2, max_size=4)),
        min_size=1,
        max_size=25,
    ),
    block=st.sampled_from([16, 64, 1 << 20]),
    crlf=st.booleans(),
)
def test_rows_and_rejects_match_python_csv(tmp_path_factory, monkeypatch, records, block, crlf) -> None:
    """Whatever the quoting and however the file is cut into blocks, every record is either a
    row equal to what `csv` parses or a reject, and row numbers are the record's first line."""
    monkeypatch.setattr(blocks_module, "BLOCK_BYTES", block)
    path = tmp_path_factory.mktemp("prop") / "p.csv"
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(COLUMNS)
    for first, rest in records:
        writer.writerow([first, *rest])  # 3 to 5 fields; the header has 4
    text = buf.getvalue()
    path.write_text(text, encoding="utf-8")

    # Reference: csv over physical lines (split on "\n" only), numbering records by first line.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    expected_rows, expected_rejects = [], []
    reader = csv.reader(lines)
    prev = 0
    for i, rec in enumerate(reader):
        start, prev = prev + 1, reader.line_num
        if i == 0 or not "".join(rec).strip():
            continue
        if len(rec) == 4:
            expected_rows.append((start, tuple(v.strip() or None for v in rec)))
        else:
            expected_rejects.append(start)

    rows, rejects, chunks = read_all(source(), path)

    assert [(r[4], r[:4]) for r in rows.rows()] == expected_rows
    assert sorted(r.row_number for r in rejects) == expected_rejects
    total = sum(c.rows.height + len(c.rejects) for c in chunks)
    assert total == len(expected_rows) + len(expected_rejects)


def test_large_file_all_paths_conserve_every_row(tmp_path: Path) -> None:
    """~5 MB over several blocks: plain lines (fast path), quoted multi-line records (mixed
    path), short rows and a GBK row (slow path); nothing lost, numbering exact."""
    path = tmp_path / "big.csv"
    n = 60_000
    out = [(HEADER + "\n").encode()]
    expected_rows: dict[int, str] = {}
    expected_rejects: set[int] = set()
    line = 2
    for i in range(n):
        if i % 1000 == 500:
            out.append(f'{i},"多\n行",x,y\n'.encode())
            expected_rows[line] = str(i)
            line += 2
        elif i % 7919 == 0:
            out.append(f"{i},短\n".encode())
            expected_rejects.add(line)
            line += 1
        elif i == 33_333:
            out.append(f"{i},赵六,x,y\n".encode("gbk"))
            expected_rejects.add(line)
            line += 1
        else:
            out.append(f"{i},张三{i},5001011990{i:08d},1990-01-01\n".encode())
            expected_rows[line] = str(i)
            line += 1
    path.write_bytes(b"".join(out))

    rows, rejects, chunks = read_all(source(chunk_rows=25_000), path)

    assert [c.rows.height for c in chunks][:-1] == [25_000] * (len(chunks) - 1)
    assert dict(zip(rows["__row__"].to_list(), rows["人员编号"].to_list())) == expected_rows
    assert {r.row_number for r in rejects} == expected_rejects
    assert rows.height + len(rejects) == n
    assert rows.filter(pl.col("人员编号") == "500")["姓名"].item() == "多\n行"


def test_reserved_header_name(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + ",__row__\n1,张三,x,y,z\n", encoding="utf-8")
    with pytest.raises(SourceError, match="reserves"):
        read_drop(source(), path)


def test_utf16_is_named(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(csv_text(PEOPLE), encoding="utf-16")
    with pytest.raises(SourceError, match="UTF-16"):
        read_drop(source(), path)
