"""The front-desk page (/desk) in headless Chromium (tests/test_report_browser.py's fixture:
Debian's /usr/bin/chromium, skipped without it unless CI=true), against the real API.

An officer of station s0001 types a resident known only to station s9001: the candidate appears
with the ID number and phone masked by the officer's role, 取用 fills the form (masked values as
placeholders, for the resident to say), a value with script payloads in the golden record is
shown as text and never runs, the token lives in sessionStorage and never in a URL, and the record
is entered from the page (a bad one shows its errors and quarantine id). Checks that need no
browser (headers, no external references in the page) run everywhere.
"""

from __future__ import annotations

import re

import httpx
import pytest
import yaml
from scenario_network import NEW_HOME, NEW_HOME_AREA, Hub, an_id_number, network_with_csv_station
from test_report_browser import browser  # noqa: F401 - a fixture used below

from feeds.api import BackgroundServer, create_app
from feeds.desk import DESK_CSP
from feeds.tokens import issue_token
from pipelines.entry import project_entry
from pipelines.frontdesk import LiveMatcher
from pipelines.project import Project

# no spaces: the address standardiser takes them out
EVIL = "\"'></td><img/src=x/onerror=window.__xss=1><script>window.__xss=2</script><svg/onload=window.__xss=3>"
FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", "area_code"]
NUMBER = an_id_number()
SEX = "男" if int(NUMBER[16]) % 2 else "女"


def subscriptions() -> dict:
    officer = {"name_norm": "full", "sex": "full", "birth_date": "full", "id_number": "masked", "phone": "masked",
               "address": "full", "area_code": "full"}
    return {"version": 1,
            "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
            "roles": {"officer": {"fields": officer}},
            "subscribers": [{"id": "desk", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
                             "scope": {"own_records": True}, "fields": FIELDS, "role": "officer",
                             "query": {"scope": {"network": True}, "entry": True, "per_minute": 1000}}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = network_with_csv_station(tmp_path_factory.mktemp("net"), stations=3, persons=200, seed=9)
    url = f"sqlite:///{root / 'warehouse.sqlite'}"
    hub = Hub(root, url)
    hub.drop([{"local_id": "A1", "name": "韩梅梅", "sex": SEX, "birth_date": "1990-03-07", "id_number": NUMBER,
               "phone": "13812345678", "address": NEW_HOME + EVIL, "area_code": NEW_HOME_AREA,
               "source_updated_at": "2026-11-01 09:00:00"}])
    for station in hub.stations.stations:
        hub.ingest(station)
    hub.resolve_and_publish()
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subscriptions(), allow_unicode=True), encoding="utf-8")
    project = Project.load(root, url)
    matcher = LiveMatcher(hub.store, project, check_every=0.0, background=False)
    app = create_app(url, root, matcher=matcher, audit_key=b"k", store=hub.store,
                     entry=project_entry(project, hub.store))
    token = issue_token(hub.store, "desk").token
    with BackgroundServer(app) as base:
        yield {"base": base, "token": token}
    hub.store.dispose()


def test_the_page_is_self_contained(served: dict) -> None:
    r = httpx.get(served["base"] + "/desk")
    assert r.status_code == 200 and r.headers["content-security-policy"] == DESK_CSP
    assert "connect-src 'self'" in DESK_CSP and "default-src 'none'" in DESK_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text)  # nothing from elsewhere
    assert "innerHTML" not in r.text and "insertAdjacentHTML" not in r.text
    assert "信息核录" in r.text and "sessionStorage" in r.text


def test_an_officer_finds_a_resident_known_only_elsewhere_and_takes_the_prefill(browser, served: dict) -> None:  # noqa: F811
    page = browser.new_page()
    errors: list[str] = []
    urls: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog {d.message}"), d.dismiss()))
    page.on("request", lambda q: urls.append(q.url))
    page.goto(served["base"] + "/desk")
    page.fill("#token", served["token"])
    page.click("#save-token")
    assert page.evaluate("sessionStorage.getItem('enteronce.token')") == served["token"]
    assert page.input_value("#token") == ""

    # hints as the officer types: a wrong check digit, then the right one
    page.fill("#f-id_number", NUMBER[:17] + ("0" if NUMBER[17] != "0" else "1"))
    assert "校验位" in page.text_content("#h-id_number")
    page.fill("#f-id_number", NUMBER)
    assert page.text_content("#h-id_number") == ""
    page.fill("#f-name", "韩梅梅")
    page.fill("#f-birth_date", "1990-03-07")
    page.click("#match")
    page.wait_for_selector("#candidates .cand")
    card = page.locator("#candidates .cand").first
    text = card.text_content()
    assert "匹配 match" in text
    assert NUMBER not in text and NUMBER[-4:] in text and "*" in text  # masked by the officer's role
    assert "13812345678" not in text
    assert EVIL in text  # the hostile address, as text
    assert page.locator("#candidates img, #candidates script").count() == 0

    page.click("#clear")
    page.fill("#f-name", "韩梅梅")
    page.fill("#f-birth_date", "1990-03-07")
    page.fill("#f-phone", "13812345678")
    page.click("#match")
    page.wait_for_selector("#candidates .cand")
    page.locator("#candidates .cand button.prefill").first.click()
    assert page.input_value("#f-name") == "韩梅梅"
    assert page.input_value("#f-birth_date") == "1990-03-07"
    assert page.input_value("#f-sex") == ("M" if SEX == "男" else "F")  # as the golden record has it
    assert page.input_value("#f-address") == NEW_HOME + EVIL
    assert page.input_value("#f-id_number") == ""  # masked: the resident says it
    assert page.get_attribute("#f-id_number", "placeholder").startswith(NUMBER[:6])

    # entry from the page: a bad ID first (errors and the quarantine id), then the right one
    page.fill("#f-address", NEW_HOME)
    page.fill("#f-local_id", "D-1")
    page.fill("#f-id_number", NUMBER[:17] + ("0" if NUMBER[17] != "0" else "1"))
    page.click("#submit")
    page.wait_for_selector("#status .err")
    status = page.text_content("#status")
    assert "未录入" in status and "quarantine" in status and "id_number" in status
    page.fill("#f-id_number", NUMBER)
    page.click("#submit")
    page.wait_for_selector("#status .ok")  # (wait_for_function is eval: the page's CSP refuses it)
    assert "已录入" in page.text_content("#status") and "s0001/front_desk/" in page.text_content("#status")

    assert page.evaluate("window.__xss") is None and errors == []
    assert all(u.startswith(served["base"]) for u in urls)
    assert not any(served["token"] in u or served["token"].split(".")[-1] in u for u in urls)
    page.close()


def test_the_form_is_the_chosen_types_declared_fields(browser, served: dict) -> None:  # noqa: F811
    """The form comes from the entity types' declarations: residents first (the registry's order),
    then an organisation's fields and a dwelling's, each with its label and typing hints."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served["base"] + "/desk")
    options = page.eval_on_selector_all("#entity option", "os => os.map(o => o.value)")
    assert options[:3] == ["person", "organisation", "dwelling"]
    inputs = lambda: page.eval_on_selector_all("#record input", "xs => xs.map(x => x.name)")  # noqa: E731
    assert inputs() == ["name", "sex", "birth_date", "id_number", "phone", "address", "area_code", "local_id"]
    assert "公民身份号码" in page.text_content("label[for=f-id_number]")

    page.select_option("#entity", "organisation")
    assert inputs() == ["name", "credit_code", "legal_rep", "phone", "address", "area_code", "local_id"]
    assert "统一社会信用代码" in page.text_content("label[for=f-credit_code]")
    page.fill("#f-phone", "12345")
    assert "号码格式" in page.text_content("#h-phone")

    page.select_option("#entity", "dwelling")
    assert "owner_id_number" in inputs() and "id_number" not in inputs()
    page.fill("#f-owner_id_number", NUMBER[:17] + ("0" if NUMBER[17] != "0" else "1"))
    assert "校验位" in page.text_content("#h-owner_id_number")
    assert errors == []
