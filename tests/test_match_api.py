"""POST /v1/match and GET /v1/search over real HTTP, on SQLite and PostgreSQL warehouses.

A simulated network resolved and published by the batch pipeline; subscribers with and without a
query grant, an area-scoped station officer (masked ID and phone), a network-wide department (full
fields), a tight rate limit. Checked: masking by role, scope, deny by default, 429 with Retry-After,
selective keys, wildcards, and the audit rows (keys only as HMACs, entity ids, field levels).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from scenario_network import Hub, network_with_csv_station

from feeds.api import BackgroundServer, create_app
from feeds.tokens import issue_token
from pipelines.frontdesk import LiveMatcher
from pipelines.project import Project
from warehouse import schema as s
from warehouse.frontdesk import access_log

KEY = b"test audit key"
FIELDS = ["name_norm", "sex", "birth_date", "id_number", "phone", "address", "area_code"]


def subscriptions(area: str) -> dict:
    grant = {"scope": {"area_codes": [area[:6]]}, "per_minute": 1000, "max_results": 5}
    return {
        "version": 1,
        "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
        "roles": {"officer": {"fields": {"name_norm": "full", "sex": "full", "birth_date": "full",
                                         "id_number": "masked", "phone": "masked", "address": "full",
                                         "area_code": "full"}},
                  "analyst": {"default": "full"}},
        "subscribers": [
            {"id": "s0001", "kind": "station", "station_id": "s0001", "entity_types": ["person"],
             "scope": {"area_codes": [area[:6]]}, "fields": FIELDS, "role": "officer", "query": grant},
            {"id": "elsewhere", "kind": "station", "station_id": "s0002", "entity_types": ["person"],
             "scope": {"area_codes": ["4401"]}, "fields": FIELDS, "role": "officer",
             "query": {**grant, "scope": {"area_codes": ["4401"]}}},
            {"id": "city", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["4401"]},
             "fields": FIELDS, "role": "analyst", "query": {"scope": {"network": True}, "max_results": 5}},
            {"id": "feeds-only", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["50"]},
             "fields": FIELDS, "role": "analyst"},
            {"id": "tight", "kind": "department", "entity_types": ["person"], "scope": {"area_codes": ["50"]},
             "fields": FIELDS, "role": "analyst", "query": {"scope": {"network": True}, "per_minute": 2}},
        ],
    }


@pytest.fixture(scope="module")
def desk(module_warehouse_url: str, tmp_path_factory: pytest.TempPathFactory):
    root = network_with_csv_station(tmp_path_factory.mktemp("net"), stations=4, persons=600, seed=3)
    url = module_warehouse_url
    hub = Hub(root, url)
    for station in hub.stations.stations:
        if station.id != hub.station_id:
            hub.ingest(station)
    hub.resolve_and_publish()
    with hub.store.engine.connect() as conn:
        golden = pl.read_database(sa.select(s.golden_records.c.entity_id, s.golden_records.c.area_code,
                                            s.golden_records.c.record), conn)
    members = hub.rs.membership()
    sizes = members.group_by("entity_id").len().filter(pl.col("len") >= 2)
    records = hub.store.record_table("person")
    with hub.store.engine.connect() as conn:
        stored = pl.read_database(sa.select(records), conn, infer_schema_length=None)
    person = (stored.join(members, on="record_key").join(sizes, on="entity_id")
              .join(golden, on="entity_id")
              .filter(pl.col("id_valid") & pl.col("phone").is_not_null() & pl.col("birth_date").is_not_null()
                      & pl.col("area_code_right").is_not_null())
              .row(0, named=True))
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subscriptions(person["area_code_right"]),
                                                            allow_unicode=True), encoding="utf-8")
    project = Project.load(root, url)
    matcher = LiveMatcher(hub.store, project, check_every=0.0, background=False)
    # audited as `enteronce serve` audits: through the audit journal, committed just after each answer
    app = create_app(url, root, matcher=matcher, audit_key=KEY, store=hub.store, journal_dir=root / "audit-journal")
    tokens = {sid: issue_token(hub.store, sid).token for sid in ("s0001", "elsewhere", "city", "feeds-only", "tight")}
    with BackgroundServer(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        yield {"http": http, "tokens": tokens, "person": person, "store": hub.store, "golden": golden,
               "root": root, "url": url, "journals": app.state.journals}
    hub.store.dispose()


def audited(desk: dict, **kw) -> pl.DataFrame:
    """The access log once every answer given so far has its row committed."""
    assert all(j.flush(timeout=60) for j in desk["journals"].values())
    return access_log(desk["store"], **kw)


def typed(row: dict) -> dict:
    return {"name": row["name"], "sex": row["sex"], "birth_date": str(row["birth_date"]),
            "id_number": row["id_number"], "phone": row["phone"]}


def post_match(desk: dict, who: str, record: dict, entity_type: str = "person") -> httpx.Response:
    return desk["http"].post("/v1/match", json={"entity_type": entity_type, "record": record},
                             headers={"Authorization": f"Bearer {desk['tokens'][who]}"})


def search(desk: dict, who: str, **params) -> httpx.Response:
    return desk["http"].get("/v1/search", params={"entity_type": "person", **params},
                            headers={"Authorization": f"Bearer {desk['tokens'][who]}"})


def test_match_returns_the_entity_masked_by_role(desk: dict) -> None:
    person = desk["person"]
    r = post_match(desk, "s0001", typed(person))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checks"] == []
    top = body["candidates"][0]
    assert top["entity_id"] == person["entity_id"] and top["decision"] == "match"
    assert top["match_probability"] > 0.95
    assert {p["comparison"] for p in top["explanation"]} >= {"name", "id_number", "birth_date"}
    assert all("candidate" not in p for p in top["explanation"])  # the candidate's values come masked, below
    golden = json.loads(desk["golden"].filter(pl.col("entity_id") == person["entity_id"])["record"][0])
    rec = top["record"]
    assert rec["name_norm"] == golden["name_norm"]
    assert rec["id_number"] == golden["id_number"][:6] + "*" * 8 + golden["id_number"][-4:]
    assert rec["phone"] != golden["phone"] and rec["phone"].startswith(golden["phone"][:3])
    # a department with full fields sees the same entity unmasked, network-wide
    r = post_match(desk, "city", typed(person))
    assert r.json()["candidates"][0]["record"]["id_number"] == golden["id_number"]


def test_scope_and_grants(desk: dict) -> None:
    person = desk["person"]
    # another station's query scope does not hold the resident: nothing comes back, not even a hint
    r = post_match(desk, "elsewhere", typed(person))
    assert r.status_code == 200 and r.json()["candidates"] == []
    r = search(desk, "elsewhere", id_number=person["id_number"])
    assert r.status_code == 200 and r.json()["results"] == []
    # no query grant: 403 (deny by default), whatever the feed scope
    assert post_match(desk, "feeds-only", typed(person)).status_code == 403
    assert search(desk, "feeds-only", id_number=person["id_number"]).status_code == 403
    assert post_match(desk, "s0001", typed(person), entity_type="organisation").status_code == 403
    assert desk["http"].post("/v1/match", json={"entity_type": "person", "record": {"name": "x"}}).status_code == 401


def test_bad_input_is_refused(desk: dict) -> None:
    assert post_match(desk, "city", {"name": "张三", "salary": "1"}).status_code == 422
    assert post_match(desk, "city", {"name": "张" * 300}).status_code == 422
    assert post_match(desk, "city", {}).status_code == 422
    assert post_match(desk, "city", {"name": ["a"]}).status_code == 422
    r = desk["http"].post("/v1/match", content=b"{", headers={"Authorization": f"Bearer {desk['tokens']['city']}",
                                                              "Content-Type": "application/json"})
    assert r.status_code == 422


def test_search_needs_selective_keys_and_no_wildcards(desk: dict) -> None:
    person = desk["person"]
    r = search(desk, "s0001", id_number=person["id_number"])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["entity_id"] for x in results] == [person["entity_id"]]
    assert "*" in results[0]["record"]["id_number"]
    r = search(desk, "s0001", name=person["name"], birth_date=str(person["birth_date"]))
    assert person["entity_id"] in [x["entity_id"] for x in r.json()["results"]]
    assert search(desk, "s0001", phone=person["phone"]).status_code == 200
    refused = search(desk, "s0001", name=person["name"])  # a name alone identifies nobody
    assert refused.status_code == 422 and "selective" in refused.json()["detail"]
    assert search(desk, "s0001", id_number=person["id_number"][:10] + "*").status_code == 422
    assert search(desk, "s0001", name="张%").status_code == 422
    assert search(desk, "s0001").status_code == 422
    assert search(desk, "s0001", salary="1").status_code == 422


def test_concurrent_callers_each_get_their_own_answer(desk: dict) -> None:
    """Requests in flight together are answered in one batch by the front desk's worker, tokens
    checked with one read: a valid, an unknown, a revoked and an ungranted caller among twenty
    matches and searches each get what they alone would get, and only answered ones are audited."""
    from concurrent.futures import ThreadPoolExecutor

    from feeds.tokens import revoke_token

    revoked = issue_token(desk["store"], "s0001")
    revoke_token(desk["store"], revoked.token_id)
    person = desk["person"]
    bearer = {**{who: desk["tokens"][who] for who in ("s0001", "city", "feeds-only")},
              "revoked": revoked.token, "unknown": "tok_0123456789abcdef." + "A" * 43}
    expected = {"s0001": 200, "city": 200, "feeds-only": 403, "revoked": 401, "unknown": 401}
    calls = [(who, kind) for who in bearer for kind in ("match", "search")] * 2
    alone = {}
    for who in ("s0001", "city"):
        alone[who, "match"] = post_match(desk, who, typed(person)).json()
        alone[who, "search"] = desk["http"].get("/v1/search", params={"entity_type": "person",
                                                "id_number": person["id_number"]},
                                                headers={"Authorization": f"Bearer {bearer[who]}"}).json()

    def call(job: tuple[str, str]) -> tuple[str, str, httpx.Response]:
        who, kind = job
        auth = {"Authorization": f"Bearer {bearer[who]}"}
        with httpx.Client(base_url=str(desk["http"].base_url), timeout=60) as http:
            if kind == "match":
                return who, kind, http.post("/v1/match", json={"entity_type": "person", "record": typed(person)},
                                            headers=auth)
            return who, kind, http.get("/v1/search", params={"entity_type": "person", "id_number": person["id_number"]},
                                       headers=auth)

    before = audited(desk).height
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(call, calls))
    for who, kind, r in answers:
        assert r.status_code == expected[who], (who, kind, r.status_code, r.text[:200])
        if r.status_code == 401:
            assert "invalid_token" in r.headers["www-authenticate"]
        if r.status_code == 200:
            assert r.json() == alone[who, kind], (who, kind)
    log = audited(desk)
    new = log.tail(log.height - before)
    assert sorted(new.filter(pl.col("outcome") == "ok")["subscriber_id"].to_list()) == ["city"] * 4 + ["s0001"] * 4
    assert new.filter(pl.col("outcome") == "refused")["subscriber_id"].to_list() == ["feeds-only"] * 4
    assert new.height == 12  # nothing for the invalid tokens: nobody to name


def test_rate_limit_answers_429_with_retry_after(desk: dict) -> None:
    person = desk["person"]
    assert search(desk, "tight", id_number=person["id_number"]).status_code == 200
    assert post_match(desk, "tight", typed(person)).status_code == 200
    r = search(desk, "tight", id_number=person["id_number"])
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    log = audited(desk, subscriber_id="tight")
    assert log["outcome"].to_list()[-1] == "limited"


def test_every_query_is_audited_with_hashed_keys(desk: dict) -> None:
    person = desk["person"]
    before = audited(desk).height
    r = search(desk, "s0001", id_number=person["id_number"])
    m = post_match(desk, "s0001", typed(person))
    assert r.status_code == m.status_code == 200
    log = audited(desk)
    assert log.height == before + 2
    rows = log.tail(2).to_dicts()
    assert [x["kind"] for x in rows] == ["search", "match"]
    for row in rows:
        assert row["subscriber_id"] == "s0001" and row["channel"] == "api" and row["token_id"].startswith("tok_")
        assert row["outcome"] == "ok" and json.loads(row["entity_ids"])[0] == person["entity_id"]
        assert json.loads(row["fields"])["id_number"] == "masked"
        hashes = json.loads(row["key_hashes"])
        want = hmac.new(KEY, f"id_number\x00{person['id_number']}".encode(), hashlib.sha256).hexdigest()
        assert hashes["id_number"] == want
    # the keys themselves are nowhere in the table
    with desk["store"].engine.connect() as conn:
        text = " ".join(str(v) for row in conn.execute(sa.select(s.front_desk_audit)) for v in row)
    for value in (person["id_number"], person["phone"], person["name"]):
        assert value not in text
    # refusals are audited too
    search(desk, "s0001", name=person["name"])
    assert audited(desk).tail(1)["outcome"][0] == "refused"


def test_cli_match_and_search(desk: dict) -> None:
    """`enteronce match` / `search` call the same service (not HTTP) under a subscriber's policy."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    person = desk["person"]
    store = desk["store"]
    env = {"ENTERONCE_AUDIT_KEY": KEY.decode()}
    args = ["--config", str(desk["root"]), "--warehouse", desk["url"]]
    runner = CliRunner()
    out = runner.invoke(app, ["match", "--subscriber", "s0001", "--entity", "person", "--json",
                              *[f"--field={k}={v}" for k, v in typed(person).items()], *args], env=env)
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert body["candidates"][0]["entity_id"] == person["entity_id"]
    out = runner.invoke(app, ["search", "--subscriber", "s0001", "--entity", "person",
                              f"--field=id_number={person['id_number']}", *args], env=env)
    assert out.exit_code == 0, out.output
    assert person["entity_id"] in out.output
    out = runner.invoke(app, ["search", "--subscriber", "s0001", "--entity", "person",
                              f"--field=name={person['name']}", *args], env=env)
    assert out.exit_code != 0 and "selective" in out.output
    assert access_log(store).filter(pl.col("channel") == "cli").height >= 3


def test_audit_command_shows_front_desk_rows(desk: dict) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    post_match(desk, "city", typed(desk["person"]))
    out = CliRunner().invoke(app, ["audit", "--subscriber", "city", "--config", str(desk["root"]),
                                   "--warehouse", desk["url"]])
    assert out.exit_code == 0, out.output
    assert "Front desk" in out.output and "match" in out.output and desk["person"]["entity_id"] in out.output
    assert desk["person"]["id_number"] not in out.output
