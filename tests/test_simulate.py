"""The synthetic station network: determinism, a valid stations.yaml, realistic mix and structure."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from connectors.config import load_stations
from connectors.simulate import NoiseRates, SimulationSummary, simulate_network
from connectors.simulate import naming
from connectors.simulate.codes import (
    id_check_char,
    id_is_valid,
    org_code_check_char,
    uscc_check_char,
    uscc_is_valid,
)
from connectors.simulate.network import build_network
from connectors.simulate.noise import to_traditional
from connectors.simulate.people import generate_population
from connectors.simulate.rng import Rng

STATIONS, PERSONS, SEED = 12, 2000, 11


def _run(out: Path, **kw) -> SimulationSummary:
    args = {"stations": STATIONS, "persons": PERSONS, "seed": SEED} | kw
    return simulate_network(out, **args)


@pytest.fixture(scope="module")
def net12(tmp_path_factory) -> SimulationSummary:
    return _run(tmp_path_factory.mktemp("sim_a"))


@pytest.fixture(scope="module")
def cfg(net12):
    return load_stations(net12.stations_yaml)


@pytest.fixture(scope="module")
def records(net12, cfg) -> dict[str, list[dict[str, str | None]]]:
    """Every readable record, as {canonical field: value} plus station_id, by source key."""
    by_source: dict[str, list[dict]] = {}
    encodings = {(s.station_id, s.source): s.encoding for s in net12.sources}
    for st in cfg.stations:
        for src in st.sources:
            rows = _read_source(net12.out, src, encodings[(st.id, src.name)])
            for r in rows:
                r["station_id"] = st.id
            by_source[f"{st.id}/{src.name}"] = rows
    return by_source


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _read_source(root: Path, src, encoding: str | None) -> list[dict]:
    """A small, forgiving reader for the tests (the real connectors live elsewhere)."""
    cols = src.columns
    if src.kind == "sql":
        url = src.url
        assert url.startswith("sqlite:///")
        con = sqlite3.connect(root / url.removeprefix("sqlite:///"))
        cur = con.execute(f'SELECT * FROM "{src.table}"')
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        con.close()
        return [{cols[k]: (str(v) if v is not None else None) for k, v in r.items() if k in cols} for r in rows]
    path = root / src.path
    if src.kind == "jsonl":
        return [
            {cols[k]: v for k, v in json.loads(line).items() if k in cols}
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
    if src.kind == "xlsx":
        import fastexcel

        sheet = fastexcel.read_excel(path).load_sheet(src.sheet or 0, header_row=None)
        table = sheet.to_polars().rows()
        head = next(i for i, row in enumerate(table) if set(cols) <= {c for c in row if c})
        header = table[head]
        return [
            {cols[h]: v for h, v in zip(header, row, strict=True) if h in cols}
            for row in table[head + 1:]
        ]
    text = path.read_bytes().decode(encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    delim = "\t" if src.kind == "tsv" else (src.delimiter or ",")
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split(delim)[0] == next(iter(cols)))
    reader = csv.reader(io.StringIO("\n".join(lines[head:])), delimiter=delim)
    header = next(reader)
    out = []
    for row in reader:
        rec = {cols[h]: (v if v != "" else None) for h, v in zip(header, row) if h in cols}
        rec["_broken"] = len(row) != len(header)
        out.append(rec)
    return out


def _norm_id(v: str | None) -> str | None:
    if not v:
        return None
    v = v.translate(str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789XX")).lstrip("'").upper()
    return v if re.fullmatch(r"\d{17}[\dX]", v) else None


# --- determinism --------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(net12, tmp_path):
    again = _run(tmp_path / "b")
    assert _files(net12.out) == _files(again.out)


def test_different_seed_differs(net12, tmp_path):
    other = _run(tmp_path / "c", seed=SEED + 1)
    a, b = _files(net12.out), _files(other.out)
    assert a["truth.csv"] != b["truth.csv"]
    assert a["stations.yaml"] != b["stations.yaml"]


# --- config -------------------------------------------------------------------------------------
def test_stations_yaml_validates_and_points_at_real_sources(net12, cfg):
    assert len(cfg.stations) == STATIONS
    for st in cfg.stations:
        assert re.fullmatch(r"s\d{4}", st.id)
        assert st.name.endswith("派出所")
        assert all(re.fullmatch(r"\d{9}", j) for j in st.jurisdiction)
        names = [s.name for s in st.sources]
        assert names[0] == "residents" and names[-1] == "housing"
        assert {s.name: s.entity for s in st.sources}["housing"] == "dwelling"
        for src in st.sources:
            assert set(src.columns.values()) <= set(src.canonical_fields)
            if src.kind == "sql":
                assert src.url == "sqlite:///station_systems.sqlite"
                assert src.table == f"{st.id}_{src.name}"
            else:
                assert not Path(src.path).is_absolute()
                assert (net12.out / src.path).is_file()
                assert src.header_row == "auto"
    assert sum("organisations" in [s.name for s in st.sources] for st in cfg.stations) >= STATIONS // 2


def test_files_have_declared_encoding(net12, cfg):
    seen = set()
    for s in net12.sources:
        if s.kind not in ("csv", "tsv", "jsonl"):
            continue
        raw = s.path.read_bytes()
        seen.add(s.encoding)
        assert s.declared_encoding in ("auto", s.encoding) or (
            s.encoding == "gbk" and s.declared_encoding == "gb18030"
        )
        if s.encoding == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")
            raw.decode("utf-8-sig")
        elif s.encoding == "utf-8":
            assert not raw.startswith(b"\xef\xbb\xbf")
            raw.decode("utf-8")
        else:
            assert s.encoding == "gbk"
            text = raw.decode("gbk")
            assert re.search(r"[\u4e00-\u9fff]", text)
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
    assert seen == {"utf-8", "utf-8-sig", "gbk"}


def test_mix_covers_kinds_encodings_styles_and_formats(net12, cfg, records):
    assert set(net12.sources_per_kind) == {"csv", "tsv", "jsonl", "xlsx", "sql"}
    assert set(net12.sources_per_encoding) == {"utf-8", "utf-8-sig", "gbk"}
    assert set(net12.sources_per_header_style) == {"zh", "pinyin", "en"}
    assert set(net12.stations_per_date_format) == set(naming.DATE_FORMATS)
    sexes = {r.get("sex") for rows in records.values() for r in rows}
    assert {"男", "女", "1", "2", "M", "F"} <= sexes
    headers = {h for st in cfg.stations for src in st.sources for h in src.columns}
    assert {"姓名", "xm", "name", "单位名称", "dwmc", "org_name"} & headers >= {"姓名", "xm", "name"}
    # a title row above the header somewhere, and an unmapped extra column somewhere
    titled = [s for s in net12.sources if s.kind == "csv" and s.path.read_bytes()[:80].decode(
        s.encoding, errors="ignore").lstrip("\ufeff").startswith(tuple(st.name for st in cfg.stations))]
    assert titled
    assert any(
        naming.EXTRA_HEADER["zh"] in s.path.read_bytes().decode(s.encoding)
        or naming.EXTRA_HEADER["en"] in s.path.read_bytes().decode(s.encoding)
        or naming.EXTRA_HEADER["pinyin"] in s.path.read_bytes().decode(s.encoding).lower()
        for s in net12.sources if s.kind in ("csv", "tsv")
    )
    births = [r.get("birth_date") for rows in records.values() for r in rows if r.get("birth_date")]
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2}", b) for b in births)
    assert any(re.fullmatch(r"\d{8}", b) for b in births)
    assert any(re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}", b) for b in births)
    assert any(re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", b) for b in births)


# --- truth --------------------------------------------------------------------------------------
def test_truth_covers_every_written_record(net12, records):
    truth = pl.read_csv(net12.truth_csv, schema_overrides={"record_key": pl.String, "entity_id": pl.String})
    keys = truth["record_key"].to_list()
    assert len(keys) == len(set(keys)) == (net12.person_records + net12.organisation_records
                                           + net12.dwelling_records)
    written = {f"{r['station_id']}:{r['local_id']}" for rows in records.values() for r in rows}
    assert written == set(keys)
    assert truth.filter(~pl.col("entity_id").str.contains(r"^(P\d{7}|O\d{6}|H\d{7})$")).is_empty()
    assert sum(net12.records_per_station.values()) == len(keys)


def test_records_look_like_station_data(records):
    persons = [r for k, rows in records.items() if k.endswith("/residents") for r in rows]
    ids = [_norm_id(r.get("id_number")) for r in persons]
    valid = [i for i in ids if i and id_is_valid(i)]
    assert len(valid) > 0.85 * len(persons)
    phones = [r["phone"] for r in persons if r.get("phone")]
    assert any(re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
    assert any(p.startswith("023") for p in phones)
    for r in persons:
        if r.get("address") and r.get("area_code"):
            assert re.fullmatch(r"50\d{10}", r["area_code"])
    orgs = [r for k, rows in records.items() if k.endswith("/organisations") for r in rows]
    assert orgs
    codes = [r["credit_code"] for r in orgs if r.get("credit_code")]
    assert sum(uscc_is_valid(c) for c in codes) > 0.9 * len(codes)
    assert any(n.endswith("有限公司") for n in (r.get("name") or "" for r in orgs))


def test_movers_share_entity_and_id_across_stations(net12, records):
    truth = dict(pl.read_csv(net12.truth_csv).select("record_key", "entity_id").iter_rows())
    by_entity: dict[str, list[dict]] = defaultdict(list)
    for key, rows in records.items():
        if key.endswith("/residents"):
            for r in rows:
                by_entity[truth[f"{r['station_id']}:{r['local_id']}"]].append(r)
    movers = {e: rs for e, rs in by_entity.items() if len({r["station_id"] for r in rs}) > 1}
    assert len(movers) > 0.05 * PERSONS
    assert len(movers) == net12.movers
    same = 0
    for rs in movers.values():
        ids = {_norm_id(r.get("id_number")) for r in rs} - {None}
        same += len(ids) == 1
        addresses = {r.get("address") for r in rs}
        assert len(addresses) > 1  # a new address at the new station
    assert same > 0.8 * len(movers)


# --- population structure -------------------------------------------------------------------------
def test_population_has_households_twins_and_namesakes():
    net = build_network(8, 5)
    pop = generate_population(Rng(5), net, 3000)
    p = pop.persons
    assert p.height == 3000
    assert p["id_number"].n_unique() == 3000
    assert all(id_is_valid(i) for i in p["id_number"].to_list())
    # ID embeds birth date and sex (odd sequence digit = male)
    sample = p.head(200).to_dicts()
    for r in sample:
        assert r["id_number"][6:14] == str(pl.Series([r["birth"]]).cast(pl.Date)[0]).replace("-", "")
        assert (int(r["id_number"][16]) % 2 == 1) == r["male"]
    # twins: same household, birth date and surname, different IDs
    twins = p.filter(pl.col("is_twin"))
    assert pop.twins == twins.height > 0
    for r in twins.to_dicts():
        sib = p.row(r["pid"] - 1, named=True)
        assert sib["hh"] == r["hh"] and sib["birth"] == r["birth"] and sib["surname"] == r["surname"]
        assert sib["id_number"] != r["id_number"]
    # namesakes: same name and birth date, different households and IDs
    ns = p.filter(pl.col("is_namesake"))
    assert pop.namesakes == ns.height > 0
    for r in ns.to_dicts():
        src = p.row(r["namesake_of"], named=True)
        assert (src["name"], src["birth"]) == (r["name"], r["birth"])
        assert src["hh"] != r["hh"] and src["id_number"] != r["id_number"]
    # households share an address; most have one phone in common when several members
    hh = pop.households
    assert hh["size"].sum() == 3000
    assert (p.group_by("hh").agg(pl.col("phone").n_unique() < pl.len()).to_series(1).sum()) > 0
    # names: common namesakes like 张伟 appear, given names are 1-2 characters
    assert p["name"].value_counts().get_column("count").max() >= 3
    assert p.select((pl.col("given").str.len_chars().is_between(1, 2)).all()).item()


def test_check_characters():
    assert id_check_char("11010519491231002") == "X"
    assert id_is_valid("11010519491231002X") and not id_is_valid("110105194912310021")
    assert org_code_check_char("M000100Y") == "4"
    assert uscc_check_char("91350100M000100Y4") == "3"
    assert uscc_is_valid("91350100M000100Y43") and not uscc_is_valid("91350100M000100Y44")


def test_vocabulary_is_gbk_safe():
    text = naming.all_text()
    text.encode("gbk")
    to_traditional(text).encode("gbk")
    assert to_traditional("张伟") == "張偉"


# --- SQL stations -------------------------------------------------------------------------------
def test_sqlite_station_tables_with_watermark(net12, cfg):
    sql_sources = [(st, src) for st in cfg.stations for src in st.sources if src.kind == "sql"]
    assert sql_sources
    db = net12.out / "station_systems.sqlite"
    assert net12.sql_database == db and db.is_file()
    engine = sa.create_engine(f"sqlite:///{db}")
    insp = sa.inspect(engine)
    for st, src in sql_sources:
        cols = {c["name"]: c for c in insp.get_columns(src.table)}
        assert src.watermark in cols
        assert set(src.columns) <= set(cols)
        wm_type = str(cols[src.watermark]["type"]).upper()
        assert wm_type in ("DATETIME", "BIGINT", "INTEGER")
        with engine.connect() as conn:
            n = conn.execute(sa.text(f'SELECT COUNT(*), COUNT(DISTINCT "{src.watermark}") FROM "{src.table}"')).one()
        summary = next(s for s in net12.sources if s.station_id == st.id and s.source == src.name)
        assert n[0] == summary.records
    engine.dispose()


# --- broken rows, noise switch ------------------------------------------------------------------
def test_broken_rows_in_bigger_runs(tmp_path):
    s = simulate_network(tmp_path, stations=8, persons=3000, seed=4, organisations=40)
    assert s.broken_record_keys
    truth = set(pl.read_csv(s.truth_csv)["record_key"].to_list())
    assert set(s.broken_record_keys) <= truth
    cfg = load_stations(s.stations_yaml)
    broken_sources = [x for x in s.sources if x.broken_record_keys]
    for src_sum in broken_sources:
        src = next(x for st in cfg.stations if st.id == src_sum.station_id for x in st.sources
                   if x.name == src_sum.source)
        rows = _read_source(tmp_path, src, src_sum.encoding)
        bad = {f"{src_sum.station_id}:{r['local_id']}" for r in rows if r["_broken"]}
        assert bad == set(src_sum.broken_record_keys)
        assert not src_sum.path.read_bytes().endswith(b"\n")


def test_no_noise_gives_clean_ids(tmp_path):
    s = simulate_network(tmp_path, stations=6, persons=300, seed=2, noise=NoiseRates.none())
    cfg = load_stations(s.stations_yaml)
    enc = {(x.station_id, x.source): x.encoding for x in s.sources}
    for st in cfg.stations:
        for src in st.sources:
            for r in _read_source(tmp_path, src, enc[(st.id, src.name)]):
                if src.entity == "person":
                    assert id_is_valid(r["id_number"]), r
                elif src.entity == "dwelling":
                    assert id_is_valid(r["owner_id_number"]), r
                else:
                    assert uscc_is_valid(r["credit_code"]), r
    assert not any(s.noise.values())


def test_tiny_networks(tmp_path):
    s = simulate_network(tmp_path / "one", stations=1, persons=5, seed=1)
    cfg = load_stations(s.stations_yaml)
    assert len(cfg.stations) == 1 and s.sql_url is None
    s = simulate_network(tmp_path / "four", stations=4, persons=50, seed=1, organisations=0)
    assert s.organisations == 0
    assert [x.entity for x in s.sources if x.kind == "sql"] == ["person", "dwelling"]  # one SQL station
    assert {x.entity for x in s.sources} == {"person", "dwelling"}
    s = simulate_network(tmp_path / "four_persons", stations=4, persons=50, seed=1, organisations=0,
                         dwellings=False)
    assert all(x.entity == "person" for x in s.sources) and s.dwelling_records == 0
    load_stations(s.stations_yaml)


@pytest.mark.mariadb
def test_sql_stations_in_mariadb(tmp_path, mariadb_url):
    s = simulate_network(tmp_path, stations=10, persons=400, seed=3, sql_url=mariadb_url)
    cfg = load_stations(s.stations_yaml)
    sql = [src for st in cfg.stations for src in st.sources if src.kind == "sql"]
    assert sql and all(src.url == mariadb_url for src in sql)
    assert not (tmp_path / "station_systems.sqlite").exists()
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as conn:
        for src in sql:
            n = conn.execute(sa.text(f"SELECT COUNT(*) FROM `{src.table}`")).scalar()
            summary = next(x for x in s.sources if x.table == src.table)
            assert n == summary.records
    engine.dispose()
