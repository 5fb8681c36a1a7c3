"""The front desk's matcher (entity_resolution/matching.py) against batch resolution.

Consistency: a resolved record submitted with its own key left out of the index must come back with
the entity and decision batch gave it. The record is submitted as an officer would type it (its
standardised text, a 15-digit ID where the station had one), so standardisation runs again. Also:
the input checks, the ID guard at entity level, reviewers' judgements, and the live index picking up
a new resolution run (SQLite and PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from entity_resolution.entity_types import load_registry
from entity_resolution.matching import MatchIndex, MatchInputError, ResolvedState
from entity_resolution.service import needed_columns
from pipelines.frontdesk import LiveMatcher
from pipelines.project import Project
from connectors.simulate.codes import id_check_char
from scenario_network import Hub, an_id_number, network_with_csv_station
from warehouse.frontdesk import latest_resolution_seq, resolved_state

FIELDS = ("name", "sex", "birth_date", "id_number", "phone", "address", "area_code")
SETTINGS = Hub.settings
PERSON = load_registry().get("person")


def typed(row: dict) -> dict:
    """What an officer types for a stored record: its text, the 15-digit ID a station kept."""
    out = {f: None if row.get(f) is None else str(row[f]) for f in FIELDS}
    if row.get("id_upgraded") and out["id_number"] and len(out["id_number"]) == 18:
        out["id_number"] = out["id_number"][:6] + out["id_number"][8:17]
    return out


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory):
    root = network_with_csv_station(tmp_path_factory.mktemp("net"), stations=8, persons=2500, seed=5)
    hub = Hub(root, f"sqlite:///{root / 'warehouse.sqlite'}")
    for station in hub.stations.stations:
        if station.id != hub.station_id:
            hub.ingest(station)
    hub.resolve_and_publish()
    records, membership, model, judgements, seq = resolved_state(hub.store, "person", "person_records",
                                                                 needed_columns(SETTINGS))
    index = MatchIndex.build(ResolvedState(records, membership, model, judgements, seq), SETTINGS, PERSON)
    full = hub.store.record_table("person")
    import sqlalchemy as sa

    with hub.store.engine.connect() as conn:
        stored = pl.read_database(sa.select(full), conn, infer_schema_length=None)
    return hub, index, stored, membership


def batch_answer(membership: pl.DataFrame, key: str) -> tuple[str, str]:
    """(entity, decision) batch gave a record: match when it joined others, else non_match."""
    sizes = membership.group_by("entity_id").len()
    row = membership.filter(pl.col("record_key") == key).join(sizes, on="entity_id")
    return row["entity_id"][0], "match" if row["len"][0] > 1 else "non_match"


def test_match_agrees_with_batch(resolved) -> None:
    hub, index, stored, membership = resolved
    sizes = membership.group_by("entity_id").len()
    joined = stored.join(membership, on="record_key").join(sizes, on="entity_id")
    # records batch linked to others and records it left alone, 200 and 100
    sample = pl.concat([joined.filter(pl.col("len") > 1).sample(200, seed=7),
                        joined.filter(pl.col("len") == 1).sample(100, seed=7)])
    linked = agree = 0
    disagreements = []
    for row in sample.iter_rows(named=True):
        entity, decision = batch_answer(membership, row["record_key"])
        result = index.match(typed(row), exclude_key=row["record_key"])
        top = result.candidates[0] if result.candidates else None
        if decision == "match":
            linked += 1
            ok = top is not None and top["entity_id"] == entity and top["decision"] == "match"
        else:  # batch left it alone: no candidate may be a match
            ok = top is None or top["decision"] != "match"
        agree += ok
        if not ok:
            disagreements.append((row["record_key"], entity, decision, top and (top["entity_id"], top["decision"])))
    assert linked == 200
    assert agree == 300, disagreements[:5]


def test_record_standardises_as_ingest_did(resolved) -> None:
    _, index, stored, _ = resolved
    for row in stored.sample(50, seed=3).iter_rows(named=True):
        again = index.standardised(typed(row), row["record_key"]).drop("issues")
        want = stored.filter(pl.col("record_key") == row["record_key"]).select(list(index.schema))
        assert again.rows() == want.rows()


def test_candidates_carry_decision_and_explanation(resolved) -> None:
    _, index, stored, membership = resolved
    row = stored.filter(pl.col("id_valid") & pl.col("phone").is_not_null()).row(0, named=True)
    entity, _ = batch_answer(membership, row["record_key"])
    result = index.match(typed(row))  # the record itself is in the index: a certain match
    top = result.candidates[0]
    assert top["entity_id"] == entity and top["decision"] == "match" and top["match_probability"] > 0.99
    parts = {p["comparison"]: p for p in top["explanation"]}
    assert set(parts) == {"prior", *(c.name for c in SETTINGS.comparisons)}
    assert parts["id_number"]["level"] == "same ID number" and parts["id_number"]["weight"] > 5
    total = sum(p["weight"] for p in top["explanation"])
    assert total == pytest.approx(top["match_weight"], abs=1e-2)


def test_checks_name_what_is_wrong(resolved) -> None:
    _, index, _, _ = resolved
    good = an_id_number()  # born 1990-03-07
    bad_digit = good[:-1] + ("0" if good[-1] != "0" else "1")
    checks = index.match({"name": "张三", "id_number": bad_digit}).checks
    assert any(c["field"] == "id_number" and "check" in c["message"] for c in checks), checks
    checks = index.match({"name": "张三", "id_number": good, "birth_date": "1991-03-07"}).checks
    assert {"field": "id_number", "message": "birth date differs from stated birth_date"} in checks
    checks = index.match({"name": "张三", "birth_date": "1990-02-30", "phone": "12345"}).checks
    fields = {c["field"] for c in checks}
    assert {"birth_date", "phone"} <= fields, checks
    sex, other = ("男", "女") if int(good[16]) % 2 else ("女", "男")  # GB 11643: odd 17th digit, male
    assert {"field": "id_number", "message": "sex differs from stated sex"} in index.match(
        {"name": "张三", "id_number": good, "sex": other}).checks
    assert index.match({"name": "张三", "id_number": good, "birth_date": "1990-03-07", "sex": sex}).checks == []


def test_unknown_fields_and_huge_values_are_refused(resolved) -> None:
    _, index, _, _ = resolved
    with pytest.raises(MatchInputError, match="unknown field"):
        index.match({"name": "张三", "salary": "1"})
    with pytest.raises(MatchInputError, match="longer than"):
        index.match({"name": "张" * 500})


def test_id_guard_and_judgements_act_at_entity_level(resolved) -> None:
    hub, index, stored, membership = resolved
    sizes = membership.group_by("entity_id").len().filter(pl.col("len") >= 2)
    row = (stored.join(membership, on="record_key").join(sizes, on="entity_id")
           .filter(pl.col("id_valid") & pl.col("phone").is_not_null() & pl.col("birth_date").is_not_null())
           .row(0, named=True))
    # the same person but for another valid ID number (same birth date and sex): never linked
    mine = row["id_number"]
    body = next(b for b in (f"{mine[:14]}{n:03d}" for n in range(101, 999, 2 if int(mine[16]) % 2 else 1))
                if b != mine[:17] and int(b[16]) % 2 == int(mine[16]) % 2)
    record = {**typed(row), "id_number": body + id_check_char(body)}
    result = index.match(record, exclude_key=row["record_key"])
    assert result.checks == [] or all(c["field"] != "id_number" for c in result.checks)
    same = [c for c in result.candidates if c["entity_id"] == row["entity_id"]]
    assert same and same[0]["decision"] == "review" and "ID guard" in same[0]["reason"]
    # a reviewer's 'different' between the record and a member keeps it out of that entity
    mates = membership.filter((pl.col("entity_id") == row["entity_id"]) & (pl.col("record_key") != row["record_key"]))
    judged = pl.DataFrame({"left_id": [min(row["record_key"], mates["record_key"][0])],
                           "right_id": [max(row["record_key"], mates["record_key"][0])], "verdict": ["different"]})
    index.judgements = judged
    try:
        result = index.match(typed(row), exclude_key=row["record_key"])
        mine = [c for c in result.candidates if c["entity_id"] == row["entity_id"]]
        assert mine and mine[0]["decision"] == "non_match" and "different" in mine[0]["reason"]
    finally:
        index.judgements = judged.clear()


def test_search_needs_a_selective_key(resolved) -> None:
    _, index, stored, membership = resolved
    row = stored.filter(pl.col("id_valid") & pl.col("birth_date").is_not_null()).row(0, named=True)
    entity, _ = batch_answer(membership, row["record_key"])
    ids, rules, _ = index.search({"id_number": row["id_number"]}, limit=10)
    assert ids == [entity] and "id_number" in rules
    ids, _, _ = index.search({"name": row["name"], "birth_date": str(row["birth_date"])}, limit=10)
    assert entity in ids
    with pytest.raises(MatchInputError, match="not a selective search"):
        index.search({"name": row["name"]}, limit=10)
    with pytest.raises(MatchInputError, match="not a selective search"):
        index.search({"sex": "男", "birth_date": "1990-01-01"}, limit=10)


def test_live_index_reloads_after_a_new_run(tmp_path: Path, warehouse_url: str, monkeypatch) -> None:
    import warehouse.frontdesk

    monkeypatch.setattr(warehouse.frontdesk, "CHUNK_ROWS", 97)  # the records read in several chunks
    root = network_with_csv_station(tmp_path / "net", stations=3, persons=300, seed=2)
    hub = Hub(root, warehouse_url)
    for station in hub.stations.stations:
        if station.id != hub.station_id:
            hub.ingest(station)
    hub.resolve_and_publish()
    project = Project.load(root, warehouse_url)
    live = LiveMatcher(hub.store, project, check_every=0.0, background=False)
    everyone = hub.rs.membership()
    assert live.refresh("person").size == everyone.height  # every resolved record, chunk after chunk
    newcomer = {"name": "欧阳锋", "sex": "男", "birth_date": "1990-03-07", "id_number": an_id_number(),
                "phone": "13911112222", "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室"}
    before = live.match("person", newcomer, limit=5)
    assert not [c for c in before["candidates"] if c["decision"] == "match"]
    seq = live.refresh("person").seq
    hub.drop([{"local_id": "A1", **newcomer, "area_code": "500106001", "source_updated_at": "2026-01-05 10:00:00"}])
    hub.ingest(next(s for s in hub.stations.stations if s.id == hub.station_id))
    hub.resolve_and_publish()
    assert latest_resolution_seq(hub.store, "person") > seq
    after = live.match("person", newcomer, limit=5)  # the new run is seen without a restart
    assert live.refresh("person").seq > seq
    top = after["candidates"][0]
    assert top["decision"] == "match"
    members = hub.rs.membership().filter(pl.col("record_key") == f"{hub.station_id}:A1")
    assert top["entity_id"] == members["entity_id"][0]
    # the streamed reads hold what the resolution store holds, chunk after chunk
    record_table = project.entity_types.get("person").record_table
    _, streamed, *_ = warehouse.frontdesk.resolved_state(hub.store, "person", record_table, ["record_key"])
    assert streamed.sort("record_key").equals(hub.rs.membership().select("record_key", "entity_id").sort("record_key"))
    # a rebuild (as a new run starts one) replaces the index with an equal one
    old = live.refresh("person")
    rebuilt = live.refresh("person", wait=True, force=True)
    assert rebuilt is not old and (rebuilt.size, rebuilt.seq) == (old.size, old.seq)
    assert live.refresh("person") is rebuilt and live.match("person", newcomer, limit=5) == after


def test_record_bridging_two_entities_joins_only_the_first(resolved) -> None:
    """Clustering applies a record's edges strongest first (ties by pair) and refuses a union that
    would hold two valid ID numbers: a record without an ID that matches two entities with
    different valid IDs joins the first; the second waits for a reviewer."""
    hub, index, _, _ = resolved
    first = an_id_number()
    body = f"{first[:14]}{(int(first[14:17]) + 2) % 1000:03d}"
    second = body + id_check_char(body)
    person = {"name": "欧阳娜娜", "sex": "女" if int(first[16]) % 2 == 0 else "男", "birth_date": "1990-03-07",
              "phone": "13912345678", "address": "重庆市沙坪坝区小龙坎街道正街社区小龙坎正街88号2栋1单元1201室"}
    records = index.standardised_many([{**person, "id_number": first}, {**person, "id_number": second}],
                                      ["t:a", "t:b"]).drop("issues")
    state = ResolvedState(records, pl.DataFrame({"record_key": ["t:a", "t:b"], "entity_id": ["E1", "E2"]}),
                          hub.rs.model()[1], pl.DataFrame(schema={"left_id": pl.String, "right_id": pl.String,
                                                                  "verdict": pl.String}))
    two = MatchIndex.build(state, SETTINGS, PERSON)
    result = two.match(person)  # no ID: nothing of its own for the guard
    assert [(c["entity_id"], c["decision"]) for c in result.candidates] == [("E1", "match"), ("E2", "review")]
    assert "two different valid id_number" in result.candidates[1]["reason"]
    # with the second ID of its own, the record joins E2 and E1 is refused
    result = two.match({**person, "id_number": second})
    assert [(c["entity_id"], c["decision"]) for c in result.candidates][0] == ("E2", "match")
    assert ("E1", "review") in [(c["entity_id"], c["decision"]) for c in result.candidates]


def test_organisations_by_credit_code_or_name(resolved) -> None:
    """Nothing in the matcher names an entity type: organisations resolve, match and search the same
    way, through their own blocking rules (credit code, name)."""
    from entity_resolution.service import run_resolution

    hub = resolved[0]
    settings = load_resolution_entity("organisation")
    org = load_registry().get("organisation")
    run_resolution(hub.store.resolution_store("organisation", org.record_table), settings,
                   entity_type="organisation", prefix="O")
    records, membership, model, judgements, seq = resolved_state(hub.store, "organisation", org.record_table,
                                                                 needed_columns(settings))
    assert membership.height > 0
    index = MatchIndex.build(ResolvedState(records, membership, model, judgements, seq), settings, org)
    row = records.filter(pl.col("credit_code_valid") & pl.col("name_norm").is_not_null()).row(0, named=True)
    entity = membership.filter(pl.col("record_key") == row["record_key"])["entity_id"][0]
    ids, rules, _ = index.search({"credit_code": row["credit_code"]}, limit=10)
    assert ids == [entity] and "credit_code" in rules
    ids, rules, _ = index.search({"name": row["name_norm"]}, limit=10)
    assert entity in ids and rules == ["name"]
    top = index.match({"name": row["name_norm"], "credit_code": row["credit_code"]}).candidates[0]
    assert top["entity_id"] == entity and top["decision"] == "match"


def load_resolution_entity(name: str):
    from entity_resolution.config import load_resolution

    return load_resolution(None).entities[name]
