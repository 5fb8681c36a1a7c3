"""The auditors' report as HTML, built from a small real warehouse (SQLite) with known figures:
ranking, scorecards, failing expectations with sample rows, correction tasks and how long they
stay open, holds, linkage precision, access by masking level, Data Docs links, escaping, and the
plain notes an empty warehouse gets."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from quality.report import build_report, station_file
from quality.report import model
from quality.report.build import write_report
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.bulk import insert_frame
from warehouse.reports import read_report_frames

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)
EVIL = '<script>alert("x")</script>派出所'
DIMS = model.DIMENSIONS


def at(days_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days_ago)


def fill(store: Warehouse, rows: dict[str, list[dict]]) -> None:
    with store.transaction() as conn:
        for name, data in rows.items():
            insert_frame(conn, s.metadata.tables[name], pl.DataFrame(data, infer_schema_length=None))


def batch(station: str, n: int, days_ago: float) -> dict:
    return {"batch_id": f"{station}:residents:{n}", "station_id": station, "source_name": "residents",
            "entity_type": "person", "source_kind": "csv", "source_ref": "x.csv",
            "content_hash": f"{station}{n}".ljust(64, "0"), "rows_read": 100, "rows_loaded": 98,
            "rows_quarantined": 2, "status": "loaded", "started_at": at(days_ago), "finished_at": at(days_ago)}


def scores(station: str, n: int, values: list[float], days_ago: float) -> list[dict]:
    return [{"station_id": station, "entity_type": "person", "batch_id": f"{station}:residents:{n}", "dimension": d,
             "score": v, "computed_at": at(days_ago)} for d, v in zip(DIMS, values, strict=True)]


def run(station: str, n: int, run_id: str, success: bool, days_ago: float, docs: str | None = None) -> dict:
    return {"run_id": run_id, "suite": "person_raw", "data_asset": "raw", "entity_type": "person",
            "station_id": station, "batch_id": f"{station}:residents:{n}", "success": success, "evaluated": 4,
            "successful": 4 if success else 3, "started_at": at(days_ago), "finished_at": at(days_ago),
            "data_docs_path": docs}


def result(run_id: str, eid: str, success: bool, samples: list[dict] | None = None) -> dict:
    return {"run_id": run_id, "expectation_id": eid, "expectation_type": "expect_column_values_to_match_regex",
            "column_name": "id_number", "dimension": "validity", "success": success, "element_count": 100,
            "unexpected_count": 0 if success else 2, "unexpected_percent": 0.0 if success else 2.0,
            "observed_value": json.dumps({"unexpected_percent": 2.0}),
            "sample_rows": json.dumps(samples or [], ensure_ascii=False)}


def task(tid: str, station: str, status: str, opened: float, closed: float | None = None) -> dict:
    return {"task_id": tid, "station_id": station, "record_key": f"{station}:R{tid}", "entity_type": "person",
            "entity_id": "P1", "field": "birth_date", "station_value": "1990-02-30", "expected_value": "1990-02-03",
            "reason": "出生日期与身份证号不一致", "source": "golden_disagreement", "status": status,
            "opened_at": at(opened), "opened_batch": f"{station}:residents:1",
            "closed_at": at(closed) if closed is not None else None,
            "closed_batch": f"{station}:residents:2" if closed is not None else None}


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory) -> Path:
    """A stand-in for a Great Expectations Data Docs folder: an index and one validation page."""
    root = tmp_path_factory.mktemp("gx") / "data_docs" / "local_site"
    page = root / "validations" / "person_raw" / "run.html"
    page.parent.mkdir(parents=True)
    (root / "index.html").write_text("<html><body>Data Docs</body></html>", encoding="utf-8")
    page.write_text("<html><body>run</body></html>", encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def store(tmp_path_factory, docs_site: Path) -> Warehouse:
    path = tmp_path_factory.mktemp("wh") / "warehouse.sqlite"
    store = Warehouse(f"sqlite:///{path}").migrate()
    store.sync_stations([
        {"station_id": "s0001", "name": "解放碑派出所", "jurisdiction": ["500103001"]},
        {"station_id": "s0002", "name": "朝天门派出所", "jurisdiction": ["500103002"]},
        {"station_id": "s0003", "name": EVIL, "jurisdiction": ["500103003"]},
        {"station_id": "s0004", "name": "较场口派出所", "jurisdiction": ["500103004"]},
    ])
    judged = [("same" if i < 9 else "different") for i in range(10)]
    fill(store, {
        "batches": [batch("s0001", 1, 10), batch("s0001", 2, 3), batch("s0002", 1, 5), batch("s0003", 1, 4)],
        "station_scores": [*scores("s0001", 1, [50] * 5, 10), *scores("s0001", 2, [90, 80, 100, 100, 70], 3),
                           *scores("s0002", 1, [95] * 5, 5), *scores("s0003", 1, [60] * 5, 4)],
        "validation_runs": [run("s0001", 1, "r-old", False, 10), run("s0001", 2, "r-new", False, 3, str(docs_site)),
                            run("s0002", 1, "r-s2", True, 5, "/nowhere/gx/index.html")],
        "validation_results": [
            result("r-old", "name_not_null_OLD", False),
            result("r-new", "id_number_valid", False, [{"record_key": "s0001:R000123", "value": "11010519491231002Y"},
                                                       {"record_key": "s0001:R000124", "value": "<b>bold</b>"}]),
            result("r-new", "phone_format", True), result("r-s2", "id_number_valid", True)],
        "correction_tasks": [task("t1", "s0001", "open", 3), task("t2", "s0001", "closed", 5, 3),
                             task("t3", "s0001", "closed", 4, 3.5)],
        "batch_holds": [{"batch_id": "s0002:residents:1", "station_id": "s0002", "reason": "invalid-ID rate 12.5 % > 5 %",
                         "held_at": at(5), "released_at": None}],
        "entities": [{"entity_id": f"P{i}", "entity_type": "person", "created_seq": 1, "status": "active",
                      "merged_into": None, "updated_seq": 1} for i in range(12)],
        "entity_membership": [{"entity_type": "person", "record_key": f"s0001:R{i:06d}", "entity_id": f"P{i if i < 10 else (i - 10) // 2 + 10}",
                               "row_hash": "0" * 40, "since_seq": 1, "updated_seq": 1} for i in range(14)],
        "scored_pairs": [{"entity_type": "person", "left_id": f"a{i}", "right_id": f"b{i}", "match_probability": 0.99,
                          "match_weight": 9.0, "decision": "match" if i < 10 else "review", "weights": "{}", "run_seq": 1}
                         for i in range(13)]
                        + [{"entity_type": "person", "left_id": "g1", "right_id": "g2", "match_probability": 0.97,
                            "match_weight": 5.0, "decision": "match", "weights": "{}", "run_seq": 1,
                            "review_reason": "refused by the ID guard: both records carry a different valid ID number"}],
        "judgements": [{"judgement_id": i + 1, "entity_type": "person", "left_id": f"a{i}", "right_id": f"b{i}",
                        "verdict": v, "reviewer": "li", "reason": None, "judged_at": NOW} for i, v in enumerate(judged)]
                      + [{"judgement_id": 11, "entity_type": "person", "left_id": "a8", "right_id": "b8",
                          "verdict": "different", "reviewer": "wang", "reason": "later", "judged_at": NOW}],
        "feed_deliveries": [
            {"subscriber_id": "s0001-officers", "token_id": None, "channel": "file", "kind": "snapshot", "seq_from": None,
             "seq_to": 10, "event_count": 0, "entity_count": 40, "entity_ids": "[]",
             "fields": json.dumps({"name": "full", "id_number": "masked"}), "delivered_at": at(2)},
            {"subscriber_id": "s0001-officers", "token_id": None, "channel": "file", "kind": "events", "seq_from": 11,
             "seq_to": 20, "event_count": 10, "entity_count": 8, "entity_ids": "[]",
             "fields": json.dumps({"name": "full", "id_number": "masked"}), "delivered_at": at(1)},
            {"subscriber_id": "city-audit", "token_id": "tok1", "channel": "api", "kind": "events", "seq_from": 1,
             "seq_to": 20, "event_count": 20, "entity_count": 15, "entity_ids": "[]",
             "fields": json.dumps({"name": "masked", "phone": "masked"}), "delivered_at": at(0.5)}],
    })
    return store


@pytest.fixture(scope="module")
def site(store: Warehouse, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build_report(out, now=NOW, **read_report_frames(store))
    return out


class Text(HTMLParser):
    """The page as a person reads it: visible text (no scripts), and the links."""

    def __init__(self):
        super().__init__()
        self.parts, self.links, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    @classmethod
    def of(cls, path: Path) -> "Text":
        parser = cls()
        parser.feed(path.read_text(encoding="utf-8"))
        parser.text = re.sub(r"\s+", " ", " ".join(parser.parts))
        return parser


def test_overview_ranks_stations_by_their_latest_scores(site: Path):
    page = Text.of(site / "index.html")
    text = page.text
    # s0002 95 > s0001 mean(90, 80, 100, 100, 70) = 88 > s0003 60; s0004 has no scores: unranked, last.
    order = [text.index(n, text.index("Stations ranked by score")) for n in ("朝天门派出所", "解放碑派出所", EVIL, "较场口派出所")]
    assert order == sorted(order)
    assert "1 朝天门派出所 s0002 95.0" in text
    assert "2 解放碑派出所 s0001 88.0 90.0 80.0 100.0 100.0 70.0" in text
    assert "— 较场口派出所 s0004 —" in text
    assert "81.0 average station score (3 scored)" in text  # (95 + 88 + 60) / 3
    assert "1 open correction tasks (2 closed)" in text
    assert "1 batches held from publication" in text
    assert "invalid-ID rate 12.5 % > 5 %" in text
    for sid in ("s0001", "s0002", "s0003", "s0004"):
        assert f"stations/{sid}.html" in page.links
    assert {"linkage.html", "access.html", "datadocs.html"} <= set(page.links)


def test_station_page_scorecard_failures_and_tasks(site: Path):
    html = (site / "stations" / "s0001.html").read_text(encoding="utf-8")
    text = Text.of(site / "stations" / "s0001.html").text
    assert '<html lang="zh-CN">' in html and '<meta charset="utf-8">' in html
    assert "解放碑派出所 s0001" in text
    assert "Overall score 88.0 · rank 2 of 3" in text
    for dim, value in zip(DIMS, ["90.0", "80.0", "100.0", "100.0", "70.0"], strict=True):
        assert f"{dim} {value}" in text
    assert 'class="plotly-graph-div"' in html and "../assets/plotly.min.js" in html
    # the trend has both batches, oldest first
    figure = html[html.index('class="plotly-figure"'):]  # the figure's JSON, drawn by assets/charts.js
    assert figure.index("s0001:residents:1") < figure.index("s0001:residents:2")
    # only the latest run's failures, with their sample rows (escaped)
    assert "expect_column_values_to_match_regex on id_number · validity" in text
    assert "s0001:R000123 11010519491231002Y" in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "name_not_null_OLD" not in html
    # tasks: one open (3 days), two closed after 2 days and 0.5 day: median 1.25 d, longest 2 d
    assert "1 open · 2 closed." in text
    assert "Closed tasks stayed open 1.2 d (median), at most 2.0 d." in text
    assert "Open tasks have waited 3.0 d (median), the oldest 3.0 d." in text
    assert "出生日期与身份证号不一致" in text
    # Data Docs: a relative link to the run's page
    docs = [h for h in Text.of(site / "stations" / "s0001.html").links if h.endswith("run.html")]
    assert docs and not docs[0].startswith("/")
    assert (site / "stations" / docs[0]).resolve().is_file()


def test_station_without_results_says_so(site: Path):
    text = Text.of(site / "stations" / "s0004.html").text
    assert "No scores for this station yet" in text
    assert "No validation runs for this station yet" in text
    html = (site / "stations" / "s0004.html").read_text(encoding="utf-8")
    assert "plotly.min.js" not in html


def test_held_batch_and_missing_data_docs(site: Path):
    text = Text.of(site / "stations" / "s0002.html").text
    assert "Held batches" in text and "still held" in text
    assert "Data Docs were recorded at /nowhere/gx/index.html but are not on disk any more" in text
    assert "Every expectation of the latest runs passed." in text


def test_names_are_escaped_everywhere(site: Path):
    for page in [site / "index.html", site / "stations" / "s0003.html"]:
        html = page.read_text(encoding="utf-8")
        assert '<script>alert("x")' not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;派出所" in html
    # inside the chart's JSON too (the trend title carries the name): as entities, which plotly
    # shows as text, in JSON that cannot close its <script type="application/json"> element
    html = (site / "stations" / "s0003.html").read_text(encoding="utf-8")
    source = re.search(r'<script type="application/json" class="plotly-figure"[^>]*>(.*?)</script>', html, re.S)
    assert "<" not in source.group(1)
    title = json.loads(source.group(1))["layout"]["title"]["text"]
    assert title == '&lt;script&gt;alert("x")&lt;/script&gt;派出所: scores across batches'
    assert "<script>" not in html.replace('<script type="application/json"', "")


def test_linkage_page_precision_from_latest_judgements(site: Path):
    text = Text.of(site / "linkage.html").text
    # records, active, retired, match, review, pending (3 review + 1 refused), refused
    assert "person 14 12 0 11 3 4 1" in text
    assert "person g1 g2 97.0 % refused by the ID guard: both records carry a different valid ID number" in text
    # 10 match pairs judged; the later "different" on a8~b8 overrides: 8 same of 10 - too few
    # (model.MIN_JUDGEMENTS) for a share and interval that mean anything
    assert "person match 10 8 too few judgements (10 of 30 needed)" in text
    estimate = model.precision_estimates(pl.DataFrame({"entity_type": ["person"] * 2, "decision": ["match"] * 2,
                                                       "verdict": ["same", "different"], "pairs": [8, 2]}),
                                         min_judged=10).row(0, named=True)
    low, high = model.wilson(8, 10)[1:]
    assert (estimate["share"], estimate["low"], estimate["high"]) == (0.8, low, high)
    html = (site / "linkage.html").read_text(encoding="utf-8")
    assert 'id="chart-cluster-sizes"' in html


def test_access_page_by_subscriber_and_masking_level(site: Path):
    text = Text.of(site / "access.html").text
    assert "city-audit api 1 20 15" in text
    assert "s0001-officers file 2 10 48" in text
    assert "id_number masked 2 48" in text
    assert "name full 2 48" in text and "name masked 1 15" in text
    assert "phone masked 1 15" in text
    html = (site / "access.html").read_text(encoding="utf-8")
    assert 'id="chart-deliveries"' in html and 'id="chart-field-levels"' in html


def test_data_docs_page_links_the_site(site: Path):
    page = Text.of(site / "datadocs.html")
    roots = [h for h in page.links if h.endswith("local_site/index.html")]
    assert roots and (site / roots[0]).resolve().is_file()


def test_plotly_is_local_and_pages_need_nothing_from_the_internet(site: Path):
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', html), page


def test_empty_warehouse_says_so_plainly(tmp_path: Path):
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}").migrate()
    store.sync_stations([{"station_id": "s0001", "name": "解放碑派出所", "jurisdiction": ["500103001"]}])
    summary = write_report(store, tmp_path / "site")
    assert summary.index == tmp_path / "site" / "index.html" and summary.stations == 1
    assert "No station scores yet" in Text.of(tmp_path / "site" / "index.html").text
    assert "No entities yet" in Text.of(tmp_path / "site" / "linkage.html").text
    assert "No judgements yet" in Text.of(tmp_path / "site" / "linkage.html").text
    assert "No deliveries yet" in Text.of(tmp_path / "site" / "access.html").text
    assert "No Data Docs exist yet" in Text.of(tmp_path / "site" / "datadocs.html").text
    assert "No correction tasks" not in Text.of(tmp_path / "site" / "stations" / "s0001.html").text
    # a warehouse without the quality and feeds tables (not migrated that far) still gets a report
    with store.transaction() as conn:
        for name in ("validation_results", "validation_runs", "station_scores", "correction_tasks", "batch_holds",
                     "feed_deliveries"):
            conn.exec_driver_sql(f'DROP TABLE "{name}"')
    summary = write_report(store, tmp_path / "site")
    assert "table feed_deliveries not in the warehouse yet" in summary.notes
    assert "the warehouse has no feed_deliveries table" in Text.of(tmp_path / "site" / "access.html").text
    assert "no correction_tasks table" in Text.of(tmp_path / "site" / "stations" / "s0001.html").text


def test_rebuild_drops_pages_of_removed_stations(site: Path, store: Warehouse, tmp_path: Path):
    out = tmp_path / "site"
    stale = out / "stations" / "s9999.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("old", encoding="utf-8")
    build_report(out, now=NOW, **read_report_frames(store))
    assert not stale.exists() and (out / "stations" / "s0001.html").exists()


def test_station_file_names_are_safe():
    assert station_file("s0001") == "s0001.html"
    assert station_file("../x") == "..%2Fx.html"
    assert station_file("站1") == "%E7%AB%991.html"
    assert "/" not in station_file("a/b") and station_file("a/b") != station_file("a_b")


def test_wilson_interval():
    p, low, high = model.wilson(8, 10)
    assert p == 0.8 and low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert model.wilson(0, 0) is None
    p, low, high = model.wilson(5, 5)
    assert p == 1.0 and high == 1.0 and 0.5 < low < 0.6
    assert not math.isnan(low)


def one_station_project(tmp_path: Path) -> Path:
    config = tmp_path / "project"
    config.mkdir()
    (config / "stations.yaml").write_text(
        "version: 1\nstations:\n  - id: s0001\n    name: 解放碑派出所\n    jurisdiction: ['500103001']\n"
        "    sources:\n      - {name: residents, entity: person, kind: csv, path: r.csv, columns: {id: local_id}}\n",
        encoding="utf-8")
    return config


def test_cli_report_prints_the_index_path(store: Warehouse, tmp_path: Path):
    from pipelines.cli import app

    config = one_station_project(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--config", str(config), "--warehouse", store.url])
    assert result.exit_code == 0, result.output
    assert str((out / "index.html").resolve()) in result.output.replace("\n", "")
    assert "4 stations" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["report", "--out", str(blocker), "--config", str(config), "--warehouse", store.url])
    assert result.exit_code == 2 and "exists and is not a folder" in " ".join(result.output.split())  # Rich wraps


def test_cli_report_names_an_unreachable_warehouse(tmp_path: Path):
    from pipelines.cli import app

    config = one_station_project(tmp_path)
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "o"), "--config", str(config), "--warehouse", url])
    assert result.exit_code == 2
    assert "warehouse postgresql+psycopg://nobody@127.0.0.1:1/none: cannot read it" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
