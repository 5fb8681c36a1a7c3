"""Stored XSS and offline pages: a station whose data carries script payloads in every text field
that reaches a page, through the real quality service (GX validation, correction tasks, Data Docs)
and the report builder; then every page of the auditors' report and of the Data Docs is opened in
headless Chromium (tests/test_report_browser.py's fixture: Debian's /usr/bin/chromium, skipped
without it unless CI=true) and no payload may run, no console error appear, no request leave
file://. The checks that need no browser - what the HTML files contain, what the stores keep -
run everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import yaml

from entity_resolution.standardise.id_numbers import id_check_char
from quality.config import QualityConfig
from quality.report import gxdocs
from quality.report.build import write_report
from quality.report.site import REPORT_CSP
from quality.service import quality_pass, validate_station
from quality.validate import gx_project
from scenario_network import Hub, network_with_csv_station
from test_report_browser import Watch, browser  # noqa: F401 - `browser` is a fixture used below
from warehouse import schema as s
from warehouse.bulk import insert_frame
from warehouse.quality import QualityStore

# Every payload sets window.__xss (and most call alert) if it ever runs.
IMG = '<img src=x onerror="window.__xss=1;alert(1)">'
SCRIPT = "<script>window.__xss=2;alert(2)</script>"
SVG = '<svg onload="window.__xss=3">'
BREAKOUT = "\"'></td></script><img src=x onerror=window.__xss=4>"  # out of an attribute, a cell, a script
JS_STRING = "');window.__xss=5;alert(5);//"  # out of a JS string literal (GX's old index put data in one)
EVIL = f"{BREAKOUT}{IMG}{SCRIPT}{SVG}{JS_STRING}"
LOCAL_ID = f"X{IMG}"  # the review's finding: a local id on a failing row
STATION = "s9001"


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


def bad_check_digit(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


ID_A, ID_B = valid_id("50010619920517002"), valid_id("50010619880304004")


def evil_rows() -> list[dict]:
    common = {"source_updated_at": "2026-11-20 09:00:00", "area_code": "500106001001"}
    return [
        # local id, phone, address and area code with payloads: phone and area code fail their formats
        # (the standardisers strip some characters: the phone stays `138<imgsrc=...>`)
        {**common, "local_id": LOCAL_ID, "name": f"张三{SCRIPT}", "sex": "男", "birth_date": "1992-05-17",
         "id_number": ID_A, "phone": f"138{IMG}", "address": f"重庆市沙坪坝区{EVIL}", "area_code": f"5001{SVG}"},
        # a failing ID check digit, a birth date the ID disagrees with
        {**common, "local_id": f"W{SVG}", "name": f"李四{BREAKOUT}", "sex": "女", "birth_date": "1988-03-05",
         "id_number": bad_check_digit(ID_B), "phone": "13700002222", "address": f"重庆市{JS_STRING}"},
        # the same person as the first row under another name: a golden-record disagreement task
        {**common, "local_id": f"Y{BREAKOUT}", "name": f"张三{EVIL}", "sex": "男", "birth_date": "1992-05-17",
         "id_number": ID_A, "phone": "13600003333", "address": "重庆市沙坪坝区小龙坎正街88号",
         "source_updated_at": "2026-11-21 09:00:00"},
        {**common, "local_id": "Z1", "name": "王五", "sex": "男", "birth_date": "1975-08-11",
         "id_number": valid_id("50010619750811003"), "phone": "13500001111", "address": "重庆市沙坪坝区"},
    ]


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> dict:
    """A network whose station names (stations.yaml) and one station's export carry payloads,
    validated, resolved and published by the real services; then Data Docs and the report."""
    root = network_with_csv_station(tmp_path_factory.mktemp("xss"), stations=1, persons=60, seed=13,
                                    station_id=STATION)
    config = yaml.safe_load((root / "stations.yaml").read_text(encoding="utf-8"))
    for station in config["stations"]:
        station["name"] = f"{station['name']}{EVIL}"
    (root / "stations.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    hub = Hub(root, f"sqlite:///{root / 'w.sqlite'}", STATION)
    hub.drop(evil_rows())
    qs = QualityStore(hub.store)
    gx = gx_project(root / "data" / "quality")
    quality = QualityConfig(max_invalid_id_rate=0.9)
    for station in hub.stations.stations:
        hub.ingest(station)
        validate_station(qs, gx, quality, station.id)
    hub.resolve_and_publish()
    outcome = quality_pass(qs, gx, quality)
    # Reason strings reach pages too (holds, tasks): one of each carrying a payload.
    batch = qs.runs([STATION])["batch_id"].drop_nulls()[0]
    qs.hold(batch, STATION, f"held by hand: {EVIL}")
    with hub.store.transaction() as conn:
        insert_frame(conn, s.metadata.tables["correction_tasks"], pl.DataFrame([{
            "task_id": "t-xss", "station_id": STATION, "record_key": f"{STATION}:{LOCAL_ID}", "entity_type": "person",
            "entity_id": None, "field": "address", "station_value": EVIL, "expected_value": EVIL,
            "reason": f"reason {EVIL}", "source": "expectation", "status": "open",
            "opened_at": dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc), "opened_batch": batch,
            "closed_at": None, "closed_batch": None}], infer_schema_length=None))
    report = root / "data" / "report"
    write_report(hub.store, report)
    docs = Path(outcome.data_docs).parent
    assert (docs / "index.html").is_file()
    yield {"root": root, "report": report, "docs": docs, "store": hub.store, "qs": qs, "gx": gx}
    hub.store.dispose()


def strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def pages(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.html"))


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    @classmethod
    def of(cls, path: Path) -> "Tags":
        parser = cls()
        parser.feed(path.read_text(encoding="utf-8"))
        return parser


# -- no browser needed ---------------------------------------------------------------------------

def test_data_docs_html_has_no_live_payload_and_nothing_remote(evil: dict):
    docs = pages(evil["docs"])
    validation_pages = [p for p in docs if "validations" in p.parts]
    assert validation_pages and any("expectations" in p.parts for p in docs)
    shown = False
    for page in docs:
        html = page.read_text(encoding="utf-8")
        assert "<img src=x onerror" not in html, page
        assert "<script>window.__xss" not in html and "<svg" not in html, page
        parsed = Tags.of(page)
        for tag, attrs in parsed.tags:
            assert not [a for a in attrs if a.startswith("on")], (page, tag, attrs)  # no event handler
            if tag == "script":
                assert "src" in attrs and not re.match(r"^(https?:)?//", attrs["src"]), (page, attrs)
            for attr in ("src", "href"):
                if tag in ("script", "link", "img") and attr in attrs:
                    assert not re.match(r"^\s*(https?:)?//", attrs[attr]), (page, tag, attrs)
            if tag == "a" and "href" in attrs:
                assert not re.match(r"^\s*(javascript|data|https?):|^\s*//", attrs["href"], re.I), (page, attrs)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page  # no inline script at all
        csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
        assert csp and csp[0]["content"] == gxdocs.DOCS_CSP, page
        shown |= f"{STATION}:{LOCAL_ID}" in "".join(parsed.text)
    assert shown, "the failing row's record key is shown as the text the station sent"
    # the assets the pages use are beside them
    assets = evil["docs"] / gxdocs.ASSETS
    assert {"bootstrap.min.css", "bootstrap.LICENSE.txt", "docs.css", "docs.js", gxdocs.LOGO} <= {
        p.name for p in assets.iterdir()}
    for css in assets.glob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", css.read_text(encoding="utf-8")), css


def test_report_html_escapes_and_needs_nothing_remote(evil: dict):
    report = pages(evil["report"])
    assert len(report) >= 6
    for page in report:
        html = page.read_text(encoding="utf-8")
        assert "<img src=x onerror" not in html and "<script>window" not in html and "<svg" not in html, page
        parsed = Tags.of(page)
        for tag, attrs in parsed.tags:
            assert not [a for a in attrs if a.startswith("on")], (page, tag, attrs)
            if tag == "script":
                assert attrs.get("type") == "application/json" or ("src" in attrs and not
                                                                   re.match(r"^(https?:)?//", attrs["src"])), attrs
        csp = [a for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
        assert csp and csp[0]["content"] == REPORT_CSP, page


def test_stores_keep_the_original_values(evil: dict):
    """Only the rendering is escaped: the warehouse's results and GX's own store hold what the
    station sent."""
    runs = evil["qs"].runs([STATION])
    samples = evil["qs"].results(runs["run_id"].to_list())["sample_rows"].drop_nulls().to_list()
    keys = {row["record_key"] for text in samples for row in json.loads(text)}
    values = {row["value"] for text in samples for row in json.loads(text)}
    assert f"{STATION}:{LOCAL_ID}" in keys
    assert any(v and v.startswith("138<img") for v in values)  # the phone as standardised, not escaped
    stored = [json.loads(p.read_text(encoding="utf-8"))
              for p in (evil["root"] / "data" / "quality" / "gx" / "uncommitted" / "validations").rglob("*.json")]
    assert any(f"{STATION}:{LOCAL_ID}" == v for r in stored for v in strings(r))
    tasks = evil["qs"].tasks(station_ids=[STATION])
    assert EVIL in set(tasks["station_value"].drop_nulls()) | set(tasks["expected_value"].drop_nulls())


def test_a_site_gx_built_before_is_rewritten(tmp_path: Path):
    """An existing Data Docs folder from GX's own builder (CDN links, raw values) is replaced on
    the first pass, and a second pass renders nothing again."""
    from quality.service import parameters
    from quality.suites import RAW

    gx = gx_project(tmp_path / "q")
    frame = pl.DataFrame({"record_key": [f"s1:{LOCAL_ID}"], "local_id": [None], "payload": ["{}"]})
    gx.validate(frame, RAW, label="old", parameters=parameters(QualityConfig(), dt.date(2026, 11, 26)))
    gx.context.build_data_docs()  # what enteronce did before
    site = gx.docs_index.parent
    before = "".join(p.read_text(encoding="utf-8") for p in pages(site))
    assert "cdn.jsdelivr.net" in before and f"s1:{LOCAL_ID}" in before  # the problem, as it was
    gx.build_docs()
    after = {p: p.read_text(encoding="utf-8") for p in pages(site)}
    for page, html in after.items():
        assert "cdn.jsdelivr.net" not in html and "<img src=x" not in html, page
        assert f'content="{gxdocs.DOCS_CSP}"' in html, page
    stamp = {p: p.stat().st_mtime_ns for p in after}
    gx.build_docs()
    changed = [p for p in after if p.stat().st_mtime_ns != stamp[p] and p.name != "index.html"]
    assert changed == []


def test_sanitiser_allow_list():
    dirty = ('<html><head><script src="https://cdn.example/x.js"></script></head><body>'
             '<div class="ok" onclick="x()" style="color:red">a<script>bad()</script>'
             '<a href="javascript:alert(1)">j</a><a href="//evil.example/">s</a><a href="https://e.example/">h</a>'
             '<a href="../index.html#s">rel</a><a data-toggle="collapse" href="#c">c</a>'
             '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
             '<img src=x onerror=alert(1)><svg onload=alert(1)><circle/></svg><iframe src="x"></iframe>'
             '<style>body{}</style><footer><a href="https://greatexpectations.io/">Subscribe</a></footer>'
             '</div></body></html>')
    clean = gxdocs.sanitise(dirty, "../static/enteronce")
    assert "script" not in clean and "onclick" not in clean and "style" not in clean and "onerror" not in clean
    assert "javascript:" not in clean and "evil.example" not in clean and "e.example" not in clean
    assert "Subscribe" not in clean and "iframe" not in clean and "<svg" not in clean
    assert '<a href="../index.html#s">rel</a>' in clean and 'data-toggle="collapse"' in clean
    assert clean.count("<img") == 2 and '<img src="../static/enteronce/gx-logo.png">' in clean
    assert "<img>" in clean  # the other image lost its source and its handler


# -- in the browser ------------------------------------------------------------------------------

def open_page(browser, path: Path):  # noqa: F811 - `browser` is the fixture
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    watch.dialogs = []
    page.on("dialog", lambda d: (watch.dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, watch


def assert_clean(page, watch, path: Path) -> None:
    page.wait_for_timeout(150)  # handlers of images that failed to load run after `load`
    assert page.evaluate("window.__xss") is None, path
    assert watch.dialogs == [], (path, watch.dialogs)
    assert watch.errors == [], (path, watch.errors)
    assert watch.outside == [], (path, watch.outside)


def test_the_payloads_would_run_if_they_reached_a_page(browser):  # noqa: F811
    """The check below is meaningful: the same payloads, written raw into a page, do run."""
    page = browser.new_page()
    fired = []
    page.on("dialog", lambda d: (fired.append(d.message), d.dismiss()))
    page.set_content(f"<div>{IMG}</div>")
    page.wait_for_function("window.__xss === 1")
    assert fired
    page.close()


def test_no_payload_runs_on_any_page(browser, evil: dict):  # noqa: F811
    opened = 0
    for path in pages(evil["report"]) + pages(evil["docs"]):
        page, watch = open_page(browser, path)
        if path.parent == evil["report"] or path.parent.name == "stations":
            for chart in page.locator("script.plotly-figure").all():
                target = chart.get_attribute("data-for")
                page.locator(f"#{target} svg.main-svg").first.wait_for(state="visible", timeout=10_000)
        assert_clean(page, watch, path)
        page.close()
        opened += 1
    assert opened == len(pages(evil["report"])) + len(pages(evil["docs"]))


def test_station_text_is_read_as_text(browser, evil: dict):  # noqa: F811
    station = evil["report"] / "stations" / f"{STATION}.html"
    page, watch = open_page(browser, station)
    assert page.locator("h1 .station-name").inner_text() == f"小龙坎派出所{EVIL}"
    page.locator("#chart-trend svg.main-svg").first.wait_for(state="visible", timeout=10_000)
    assert page.locator("#chart-trend .gtitle").text_content() == f"小龙坎派出所{EVIL}: scores across batches"
    body = page.locator("body").inner_text()
    assert f"{STATION}:{LOCAL_ID}" in body and f"held by hand: {EVIL}" in body and f"reason {EVIL}" in body
    assert_clean(page, watch, station)
    page.close()

    docs = evil["docs"]
    page, watch = open_page(browser, docs / "index.html")
    rows = page.locator("table.docs-index tbody tr")
    assert rows.count() >= 2
    failed = page.locator('tr[data-success="false"]').count()
    page.locator("#docs-failed-only").check()
    assert page.locator("table.docs-index tbody tr:visible").count() == failed
    link = page.locator('tr[data-success="false"] a[href*="person_records"]').first
    link.click()
    page.wait_for_load_state("load")
    assert "/validations/person_records/" in page.url
    text = page.locator("body").inner_text()
    assert f"{STATION}:{LOCAL_ID}" in text and "138<img" in text
    # docs.js does what GX's inline scripts did: collapsible sections, the Failed Only filter
    more = page.get_by_text("Show more info...").first
    hidden_before = page.locator(".collapse:not(.show)").count()
    more.click()
    assert page.locator(".collapse:not(.show)").count() == hidden_before - 1
    passed = page.locator(".hide-succeeded-validation-target-child").count()
    assert passed > 0
    visible_before = page.locator("tr:visible").count()
    page.get_by_text("Failed Only").click()
    assert page.locator("tr:visible").count() < visible_before
    page.get_by_text("Show All").click()
    assert page.locator("tr:visible").count() == visible_before
    assert page.locator("img[alt='Great Expectations']").first.evaluate("i => i.naturalWidth") > 0  # the local logo
    assert_clean(page, watch, Path(page.url))
    page.close()


def test_report_links_reach_the_data_docs_offline(browser, evil: dict):  # noqa: F811
    page, watch = open_page(browser, evil["report"] / "datadocs.html")
    page.locator('a[href$="local_site/index.html"]').first.click()
    page.wait_for_load_state("load")
    assert page.title() == "Great Expectations Data Docs"
    assert_clean(page, watch, Path(page.url))
    page.close()
