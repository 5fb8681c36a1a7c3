"""The report in a real browser (headless Chromium, Debian's /usr/bin/chromium driven by
Playwright): what an auditor sees — titles, the station scorecard, charts actually drawn, Chinese
names, links between pages — with no console errors and no request leaving file://.

Without Chromium (or Playwright) the test skips with the reason; with CI=true it fails instead,
as the database tests do (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fixtures.report_warehouse import station_name, synthetic_network
from quality.report.build import write_report
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.bulk import insert_frame

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("ENTERONCE_TEST_CHROMIUM", "/usr/bin/chromium")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing browser is a failure, not a skip; .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--headless"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    store = Warehouse(f"sqlite:///{tmp_path_factory.mktemp('wh') / 'w.sqlite'}").migrate()
    with store.transaction() as conn:
        for name, frame in synthetic_network(8, 4, records_per_station=30, seed=5).items():
            insert_frame(conn, s.metadata.tables[name], frame)
    out = tmp_path_factory.mktemp("report")
    write_report(store, out)
    store.dispose()
    return out


class Watch:
    """Console errors, page errors and every request that is not a local file."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:", "blob:")) else self.outside.append(r.url))


def drawn(page, chart_id: str) -> dict:
    """Size of the chart's SVG and how many marks (bars, points) plotly.js drew in it."""
    svg = page.locator(f"#{chart_id} svg.main-svg").first
    svg.wait_for(state="visible", timeout=10_000)
    box = svg.bounding_box()
    marks = page.locator(f"#{chart_id} .point, #{chart_id} .scatterlayer .trace path.js-line").count()
    return {"width": box["width"], "height": box["height"], "marks": marks}


def test_an_auditor_reads_the_report(browser, site: Path, tmp_path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)

    page.goto((site / "index.html").as_uri())
    assert page.title() == "Overview · enteronce audit report"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_text("average station score").is_visible()
    for chart in ("chart-score-histogram", "chart-dimension-averages"):
        seen = drawn(page, chart)
        assert seen["width"] > 200 and seen["height"] > 200 and seen["marks"] > 0, (chart, seen)
    rows = page.locator("table.ranking tbody tr")
    assert rows.count() == 8
    first = rows.first.locator("a")
    name = first.inner_text()
    assert name in {station_name(i) for i in range(8)} and name.endswith("派出所")
    box = first.bounding_box()
    assert box["width"] > 20 and box["height"] > 5  # the Chinese name takes up space on screen

    first.click()
    page.wait_for_load_state()
    assert "/stations/" in page.url
    assert page.title().startswith(name)
    assert page.locator("h1 .station-name").inner_text() == name
    cards = page.locator(".scorecard .dim")
    assert cards.count() == 5 and all(cards.nth(i).is_visible() for i in range(5))
    assert cards.first.locator(".label").inner_text() == "completeness"
    trend = drawn(page, "chart-trend")
    assert trend["width"] > 400 and trend["height"] > 200
    assert page.locator("#chart-trend .scatterlayer .trace").count() == 5  # one line per dimension
    assert page.locator("#chart-trend .scatterlayer .trace").first.locator(".point").count() == 4  # 4 batches
    page.screenshot(path=str(tmp_path / "station.png"), full_page=True)

    page.get_by_role("link", name="Linkage").first.click()
    page.wait_for_load_state()
    assert page.title() == "Linkage · enteronce audit report"
    assert drawn(page, "chart-cluster-sizes")["marks"] > 0
    assert page.get_by_text("Estimated precision from reviewers' judgements").is_visible()

    page.get_by_role("link", name="Access").first.click()
    page.wait_for_load_state()
    assert page.title() == "Access · enteronce audit report"
    assert drawn(page, "chart-deliveries")["marks"] == 8  # one bar per subscriber
    assert drawn(page, "chart-field-levels")["marks"] > 0

    page.get_by_role("link", name="Supervision").first.click()
    page.wait_for_load_state()
    assert page.title() == "Supervision · enteronce audit report"
    assert page.get_by_role("heading", name="Stations ranked by overdue and open tasks").is_visible()
    assert drawn(page, "chart-weekly-tasks")["width"] > 200

    page.get_by_role("link", name="Data Docs").first.click()
    page.wait_for_load_state()
    assert page.title() == "Data Docs · enteronce audit report"
    assert page.get_by_text("No Data Docs exist yet").is_visible()

    page.get_by_role("link", name="Overview").first.click()
    page.wait_for_load_state()
    assert page.url.endswith("/index.html")

    assert watch.errors == []
    assert watch.outside == []
    page.close()
