"""The feed API over real HTTP (uvicorn on a loopback port), on SQLite and PostgreSQL warehouses.

Security first: missing, malformed, unknown, revoked and other subscribers' tokens; hostile
subscriber ids (path traversal, SQL injection); out-of-bounds parameters; a Hypothesis property
that no request is answered with a 500 or with another subscriber's data. Tokens are checked to be
stored only as hashes, by reading the table.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path

import httpx
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from feeds.api import BackgroundServer, create_app
from feeds.tokens import InvalidToken, TokenError, issue_token, list_tokens, revoke_token, verify_token
from warehouse import Warehouse
from warehouse import schema as s
from warehouse.feeds import FeedStore

AREA_A, AREA_B = "500101001001", "500102001001"
SURNAMES = "张王李赵刘陈杨黄周吴"
N = 40

SUBSCRIPTIONS = {
    "version": 1,
    "masking": {"id_number": {"keep_first": 6, "keep_last": 4}, "phone": {"keep_first": 3, "keep_last": 4}},
    "roles": {"station_officer": {"fields": {"name_norm": "full", "id_number": "masked", "phone": "masked",
                                             "address": "full", "area_code": "full"}}},
    "subscribers": [
        {"id": sid, "kind": "station", "station_id": sid, "entity_types": ["person"],
         "scope": {"area_codes": [area[:6]]}, "fields": ["name_norm", "id_number", "phone", "address", "area_code"],
         "role": "station_officer"}
        for sid, area in (("s0001", AREA_A), ("s0002", AREA_B))
    ],
}


def person(i: int, area: str) -> dict:
    return {"name_norm": f"{SURNAMES[i % 10]}小{i}", "id_number": f"500101199001011{i:02d}X",
            "phone": f"138{i:08d}", "address": f"重庆市渝中区解放碑街道较场口社区民族路{i}号", "area_code": area,
            "addr_district": "渝中区", "addr_street": "解放碑街道", "addr_community": "较场口社区"}


def dumps(value) -> str:
    """Compact JSON, as the golden step writes it (Polars' encoder)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _publish(store: Warehouse, changes: list[tuple[str, str, int, dict, dict | None, list[str]]], run: int) -> None:
    """Golden rows, versions and events through the golden store's one write (as propagation does)."""
    gs = store.golden_store("person", "person_records")
    golden, versions, events = [], [], []
    for entity, op, version, record, before, changed in changes:
        prov = dumps([{"field": f, "station_id": "s0001", "batch_id": "b1", "record_key": f"s0001:{entity}",
                            "source_updated_at": None} for f in sorted(record)])
        rec = dumps(record)
        sources = dumps([{"station_id": "s0001", "record_key": f"s0001:{entity}", "batch_id": "b1"}])
        golden.append({"entity_id": entity, "version": version, "status": "active", "area_code": record["area_code"],
                       "record": rec, "provenance": prov})
        versions.append({"entity_id": entity, "version": version, "op": op, "record": rec, "provenance": prov,
                         "changed_fields": dumps(changed), "sources": sources})
        after = record if op == "create" else {f: record[f] for f in changed}
        events.append({"event_id": f"00000000-0000-4000-8000-{run:04d}{int(entity[1:]):08d}", "entity_id": entity,
                       "op": op, "version": version, "changed_fields": dumps(changed),
                       "before": dumps({f: before[f] for f in changed}) if before else None,
                       "after": dumps(after), "sources": sources})
    gs.commit(golden=pl.DataFrame(golden), versions=pl.DataFrame(versions), events=pl.DataFrame(events),
              resolution_seq=run)


def seed(url: str, config_dir: Path) -> Warehouse:
    """N persons, even ones in area A (s0001), odd ones in area B (s0002); then P0000 moves to B."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "subscriptions.yaml").write_text(yaml.safe_dump(SUBSCRIPTIONS, allow_unicode=True), encoding="utf-8")
    store = Warehouse(url).migrate()
    _publish(store, [(f"P{i:04d}", "create", 1, person(i, AREA_A if i % 2 == 0 else AREA_B), None, [])
                     for i in range(N)], run=1)
    moved = {**person(0, AREA_B), "address": "重庆市渝中区大溪沟街道人和街社区人和街12号"}
    _publish(store, [("P0000", "update", 2, moved, person(0, AREA_A), ["address", "area_code"])], run=2)
    return store


def in_area(area: str) -> set[str]:
    """Entities whose area is `area` now (after the move)."""
    now = {f"P{i:04d}": (AREA_A if i % 2 == 0 else AREA_B) for i in range(N)} | {"P0000": AREA_B}
    return {e for e, a in now.items() if a == area}


# -- tokens, without HTTP --------------------------------------------------------------------------
def test_tokens_are_stored_only_as_hashes(warehouse_url: str) -> None:
    store = Warehouse(warehouse_url).migrate()
    issued = issue_token(store, "s0001", "front desk PC")
    token_id, secret = issued.token.split(".")
    assert token_id == issued.token_id and len(secret) >= 43  # 256 bits from token_urlsafe
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(s.feed_tokens))]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(issued.token.encode()).hexdigest()
    assert not any(secret in str(v) for v in rows[0].values())  # the secret itself is nowhere
    assert verify_token(store, issued.token).subscriber_id == "s0001"
    assert all("token_hash" not in r and "token" not in r for r in list_tokens(store))

    for wrong in ("", "nonsense", f"{token_id}.{'A' * 43}", issued.token + "x", f"tok_{'0' * 16}.{secret}"):
        with pytest.raises(InvalidToken):
            verify_token(store, wrong)
    revoke_token(store, token_id)
    with pytest.raises(InvalidToken):
        verify_token(store, issued.token)
    with pytest.raises(TokenError, match="already revoked"):
        revoke_token(store, token_id)
    with pytest.raises(TokenError, match="no token"):
        revoke_token(store, "tok_ffffffffffffffff")
    with pytest.raises(TokenError, match="not valid"):
        issue_token(store, "../etc")


# -- the API on a live server ----------------------------------------------------------------------
class Hub:
    def __init__(self, store: Warehouse, url: str):
        self.store, self.url = store, url
        self.tokens = {sid: issue_token(store, sid).token for sid in ("s0001", "s0002")}
        self.tokens["ghost"] = issue_token(store, "s0404").token  # a token whose subscriber has no subscription
        self.http = httpx.Client(base_url=url, timeout=30)

    def get(self, path: str, token: str | None = None, **params) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(path, params=params, headers=headers)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hub")
    url = f"sqlite:///{root / 'warehouse.sqlite'}"
    store = seed(url, root)
    with BackgroundServer(create_app(url, root)) as base:
        h = Hub(store, base)
        yield h
        h.http.close()


def test_feed_round_trip_over_http(warehouse_url: str, tmp_path: Path) -> None:
    """Snapshot, events, records lookup and ack for a station, on both warehouses, audited (through
    the audit journal, as `enteronce serve` does: committed by the time the server has stopped)."""
    store = seed(warehouse_url, tmp_path)
    journal = tmp_path / "audit-journal"
    with BackgroundServer(create_app(warehouse_url, tmp_path, journal_dir=journal)) as base, \
            httpx.Client(base_url=base) as http:
        token = issue_token(store, "s0002")
        auth = {"Authorization": f"Bearer {token.token}"}
        snap = http.get("/v1/feeds/s0002/snapshot", headers=auth, params={"limit": 7})
        assert snap.status_code == 200 and snap.headers["content-type"] == "application/json; charset=utf-8"
        assert "张".encode() in snap.content or "王".encode() in snap.content  # UTF-8, not \\u escapes
        records, after = [], None
        while True:
            page = http.get("/v1/feeds/s0002/snapshot", headers=auth,
                            params={"limit": 7, **({"after_entity": after} if after else {})}).json()
            records += page["records"]
            after = page["next_after_entity"]
            if not page["has_more"]:
                break
        assert {r["entity_id"] for r in records} == in_area(AREA_B)
        moved = next(r for r in records if r["entity_id"] == "P0000")
        assert moved["record"]["id_number"] == "500101********100X"
        assert moved["record"]["phone"] == "138****0000"
        assert moved["record"]["name_norm"] == "张小0"

        events = http.get("/v1/feeds/s0002/events", headers=auth, params={"after": 0}).json()
        got = {(e["entity_id"], e["op"]) for e in events["events"]}
        assert got == {(e, "create") for e in in_area(AREA_B) - {"P0000"}} | {("P0000", "update")}
        move = next(e for e in events["events"] if e["entity_id"] == "P0000")
        assert move["scope"] == "entered" and move["after"]["area_code"] == AREA_B
        assert events["high_water"] == N + 1 and events["has_more"] is False

        looked = http.get("/v1/feeds/s0002/records", headers=auth,
                          params=[("entity_id", "P0000"), ("entity_id", "P0002")]).json()
        assert [r["entity_id"] for r in looked["records"]] == ["P0000"]  # P0002 is not in B's scope
        assert looked["records"][0]["record"]["id_number"] == "500101********100X"

        ack = http.post("/v1/feeds/s0002/ack", headers=auth, json={"seq": events["next_after"]})
        assert ack.status_code == 200 and ack.json()["cursor"] == N + 1
        assert http.get("/v1/feeds/s0002/events", headers=auth).json()["events"] == []  # from the cursor

    assert [p for p in journal.rglob("*") if p.is_file()] == []  # every row committed, every file removed
    audit = FeedStore(store).deliveries(subscriber_id="s0002")
    assert audit.height >= 3 and set(audit["token_id"].to_list()) == {token.token_id}
    assert set(audit["channel"].to_list()) == {"api"}
    assert {"snapshot", "events"} <= set(audit["kind"].to_list())


def test_missing_malformed_unknown_and_revoked_tokens_get_401(hub: Hub) -> None:
    path = "/v1/feeds/s0001/events"
    token_id, secret = hub.tokens["s0001"].split(".")
    for headers in ({}, {"Authorization": "Basic czAwMDE6cGFzcw=="}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {token_id}.{'x' * 43}"},
                    {"Authorization": f"Bearer tok_0123456789abcdef.{secret}"},
                    {"Authorization": f"Bearer {hub.tokens['s0001']}' OR '1'='1"}):
        r = hub.http.get(path, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "events" not in r.json()
    revoked = issue_token(hub.store, "s0001")
    assert hub.get(path, revoked.token).status_code == 200
    revoke_token(hub.store, revoked.token_id)
    r = hub.get(path, revoked.token)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_other_subscribers_token_gets_403(hub: Hub) -> None:
    for endpoint in ("events", "snapshot", "cursor"):
        r = hub.get(f"/v1/feeds/s0002/{endpoint}", hub.tokens["s0001"])
        assert r.status_code == 403 and "events" not in r.text and "records" not in r.text
    r = hub.http.post("/v1/feeds/s0002/ack", json={"seq": 1},
                      headers={"Authorization": f"Bearer {hub.tokens['s0001']}"})
    assert r.status_code == 403
    assert hub.get("/v1/feeds/s0404/events", hub.tokens["ghost"]).status_code == 403  # no subscription


HOSTILE = ["..", "..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F%2E%2E", "s0001%2F..%2Fs0002", "s0001%00",
           "s0001'%20OR%20'1'='1", "s0001%3BDROP%20TABLE%20change_events%3B--", "%27%29%3B--", "*", "s0001%0A",
           "a" * 65, "%E7%AB%99%E7%82%B9", ".s0001"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_subscriber_ids_never_reach_data(hub: Hub, raw: str) -> None:
    for endpoint in ("events", "snapshot"):
        r = hub.http.get(f"/v1/feeds/{raw}/{endpoint}", headers={"Authorization": f"Bearer {hub.tokens['s0001']}"})
        assert r.status_code in (403, 404, 422), (raw, r.status_code, r.text[:200])
        assert '"events"' not in r.text and '"records"' not in r.text
    with hub.store.engine.connect() as conn:  # and nothing was dropped
        assert conn.scalar(sa.select(sa.func.count()).select_from(s.change_events)) == N + 1


def test_parameters_out_of_bounds_get_422(hub: Hub) -> None:
    token = hub.tokens["s0001"]
    for params in ({"limit": 0}, {"limit": -1}, {"limit": 5001}, {"limit": 10**12}, {"limit": "abc"},
                   {"after": -1}, {"after": "1;DROP TABLE feed_tokens"}, {"after": 2**70}):
        assert hub.get("/v1/feeds/s0001/events", token, **params).status_code == 422, params
    assert hub.get("/v1/feeds/s0001/snapshot", token, after_entity="P' OR 1=1 --").status_code == 422
    assert hub.get("/v1/feeds/s0001/snapshot", token, limit=5001).status_code == 422
    assert hub.get("/v1/feeds/s0001/events", token, limit=5000, after=10**9).status_code == 200
    auth = {"Authorization": f"Bearer {token}"}
    assert hub.http.get("/v1/feeds/s0001/records", headers=auth).status_code == 422  # no ids
    too_many = [("entity_id", f"P{i:04d}") for i in range(201)]
    assert hub.http.get("/v1/feeds/s0001/records", headers=auth, params=too_many).status_code == 422
    assert hub.http.get("/v1/feeds/s0001/records", headers=auth,
                        params=[("entity_id", "P0000' OR '1'='1")]).status_code == 422


def test_ack_is_bounded_and_never_moves_back(hub: Hub) -> None:
    auth = {"Authorization": f"Bearer {hub.tokens['s0001']}"}
    post = lambda body: hub.http.post("/v1/feeds/s0001/ack", headers=auth, json=body)  # noqa: E731
    assert post({"seq": N + 2}).status_code == 409  # beyond the high water mark
    assert post({"seq": -1}).status_code == 422
    assert post({"seq": "many"}).status_code == 422
    assert post({}).status_code == 422
    assert post({"seq": 10}).json()["cursor"] == 10
    assert post({"seq": 3}).json()["cursor"] == 10  # never backwards
    assert hub.get("/v1/feeds/s0001/cursor", hub.tokens["s0001"]).json()["cursor"] == 10


def test_healthz_and_docs(hub: Hub) -> None:
    assert hub.http.get("/healthz").json() == {"status": "ok"}
    spec = hub.http.get("/openapi.json").json()
    assert {"/v1/feeds/{subscriber}/events", "/v1/feeds/{subscriber}/snapshot", "/v1/feeds/{subscriber}/ack"} <= set(
        spec["paths"])
    assert spec["paths"]["/v1/feeds/{subscriber}/events"]["get"]["summary"]
    assert hub.http.get("/docs").status_code == 200


OWN = "<the token's own subscriber>"
ids = st.one_of(st.just(OWN), st.just(OWN),
                st.sampled_from(["s0001", "s0002", "s0404", "S0001", "s0001 ", "s000", "civil_affairs"]),
                st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=70))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(owner=st.sampled_from(["s0001", "s0002"]), subscriber=ids,
       endpoint=st.sampled_from(["events", "snapshot", "records", "cursor"]),
       after=st.one_of(st.none(), st.integers(-2, N + 5), st.integers(0, N), st.text(max_size=8)),
       limit=st.one_of(st.none(), st.integers(-3, 6000), st.integers(1, 50)))
def test_property_no_500_and_no_foreign_data(hub: Hub, owner: str, subscriber: str, endpoint: str, after, limit) -> None:
    subscriber = owner if subscriber == OWN else subscriber
    path = f"/v1/feeds/{urllib.parse.quote(subscriber, safe='')}/{endpoint}"
    params: list[tuple[str, str]] = []
    if endpoint == "records":
        params = [("entity_id", f"P{i:04d}") for i in range(0, N, 3)]
    elif endpoint == "events" and after is not None:
        params.append(("after", str(after)))
    elif endpoint == "snapshot" and after is not None:
        params.append(("after_entity", str(after)))
    if limit is not None and endpoint in ("events", "snapshot"):
        params.append(("limit", str(limit)))
    r = hub.http.get(path, params=params, headers={"Authorization": f"Bearer {hub.tokens[owner]}"})
    event(f"HTTP {r.status_code}")
    assert r.status_code != 500
    if r.status_code != 200:
        assert '"events"' not in r.text and '"records"' not in r.text
        return
    body = r.json()
    assert subscriber == owner and body["subscriber"] == owner  # data only ever for the token's owner
    mine = in_area(AREA_A if owner == "s0001" else AREA_B)
    for item in body.get("events", []):
        # an event reaches a subscriber while the entity is in its scope before or after the change
        assert item["entity_id"] in mine or (item["entity_id"] == "P0000" and item.get("scope") in ("in", "left")) \
            or (item["entity_id"] == "P0000" and item["op"] == "create" and owner == "s0001")
    for item in body.get("records", []):
        assert item["entity_id"] in mine
        assert item["record"]["id_number"].count("*") == 8  # masked per role, always


# -- the CLI: issue shows the token once, list never does ------------------------------------------
STATIONS_YAML = """version: 1
stations:
  - id: s0001
    name: 解放碑派出所
    jurisdiction: ["500101"]
    sources:
      - {name: residents, entity: person, kind: csv, path: s0001/residents.csv, columns: {人员编号: local_id}}
"""


def test_token_cli_issue_list_revoke(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    (tmp_path / "stations.yaml").write_text(STATIONS_YAML, encoding="utf-8")
    (tmp_path / "subscriptions.yaml").write_text(yaml.safe_dump(SUBSCRIPTIONS, allow_unicode=True), encoding="utf-8")
    where = ["--config", str(tmp_path), "--warehouse", f"sqlite:///{tmp_path / 'w.sqlite'}"]
    run = CliRunner().invoke
    issued = run(app, ["token", "issue", "--subscriber", "s0001", "--label", "前台", *where])
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip().splitlines()[-1]
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    info = verify_token(store, token)
    assert info.subscriber_id == "s0001" and info.label == "前台"
    listed = run(app, ["token", "list", *where])
    assert listed.exit_code == 0 and info.token_id in listed.output
    assert token.split(".")[1] not in listed.output and hashlib.sha256(token.encode()).hexdigest() not in listed.output
    assert run(app, ["token", "revoke", info.token_id, *where]).exit_code == 0
    with pytest.raises(InvalidToken):
        verify_token(store, token)
    unknown = run(app, ["token", "issue", "--subscriber", "s0999", *where])
    assert unknown.exit_code == 2 and "no subscriber 's0999'" in unknown.output
    again = run(app, ["token", "revoke", info.token_id, *where])
    assert again.exit_code == 2 and "already revoked" in again.output


def test_subscriptions_reload_and_fail_closed(tmp_path: Path) -> None:
    """Edits to subscriptions.yaml apply without a restart; a broken file stops the feeds (503)."""
    import time

    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    store = seed(url, tmp_path)
    token = issue_token(store, "s0002").token
    path = tmp_path / "subscriptions.yaml"
    with BackgroundServer(create_app(url, tmp_path)) as base, httpx.Client(base_url=base) as http:
        auth = {"Authorization": f"Bearer {token}"}
        assert http.get("/v1/feeds/s0002/events", headers=auth).status_code == 200
        time.sleep(1.1)
        only_a = {**SUBSCRIPTIONS, "subscribers": SUBSCRIPTIONS["subscribers"][:1]}
        path.write_text(yaml.safe_dump(only_a, allow_unicode=True), encoding="utf-8")
        time.sleep(1.1)
        assert http.get("/v1/feeds/s0002/events", headers=auth).status_code == 403  # subscription removed
        path.write_text("version: 1\nsubscribers: [{id: s0002}]\n", encoding="utf-8")
        time.sleep(1.1)
        broken = http.get("/v1/feeds/s0002/events", headers=auth)
        assert broken.status_code == 503 and "subscriptions.yaml" in broken.json()["detail"]
        path.write_text(yaml.safe_dump(SUBSCRIPTIONS, allow_unicode=True), encoding="utf-8")
        time.sleep(1.1)
        assert http.get("/v1/feeds/s0002/events", headers=auth).status_code == 200
