"""The front desk answering concurrent requests together (feeds/frontdesk.py's batch worker) gives
each request exactly the answer it gets alone.

A simulated network resolved and published by the batch pipeline; two subscribers (an area-scoped
station officer with masked ID and phone, a network-wide department). Forty match and forty search
requests are sent from twenty threads at once to a batching FrontDesk, with a bad record and a
non-selective search among them; each answer (or error) must equal what an unbatched FrontDesk
answers for the same request alone, and every request must leave its own audit row.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
import yaml
from scenario_network import Hub, network_with_csv_station
from test_match_api import subscriptions

from entity_resolution.entity_types import load_registry
from entity_resolution.standardise.library import standardise, standardise_fields
from feeds.config import load_subscriptions
from feeds.frontdesk import Caller, FrontDesk, FrontDeskError
from pipelines.frontdesk import LiveMatcher
from pipelines.project import Project
from warehouse import schema as s

KEY = b"test audit key"
FIELDS = ("name", "sex", "birth_date", "id_number", "phone", "address", "area_code")


@pytest.fixture(scope="module")
def desks(tmp_path_factory: pytest.TempPathFactory):
    root = network_with_csv_station(tmp_path_factory.mktemp("net"), stations=4, persons=600, seed=11)
    url = f"sqlite:///{root / 'warehouse.sqlite'}"
    hub = Hub(root, url)
    for station in hub.stations.stations:
        if station.id != hub.station_id:
            hub.ingest(station)
    hub.resolve_and_publish()
    records = hub.store.record_table("person")
    with hub.store.engine.connect() as conn:
        stored = pl.read_database(sa.select(records), conn, infer_schema_length=None)
        area = conn.scalar(sa.select(s.golden_records.c.area_code).where(s.golden_records.c.area_code.is_not(None))
                           .limit(1))
    (root / "subscriptions.yaml").write_text(yaml.safe_dump(subscriptions(area), allow_unicode=True),
                                             encoding="utf-8")
    project = Project.load(root, url)
    subs = load_subscriptions(project.config_dir)
    matcher = LiveMatcher(hub.store, project, check_every=60.0, background=False)
    batched = FrontDesk(hub.store, subs, matcher, audit_key=KEY)
    alone = FrontDesk(hub.store, subs, matcher, audit_key=KEY, batch=False)
    yield batched, alone, stored, hub.store, matcher
    hub.store.dispose()


def _noisy_ids(ids: list[str]) -> list[str]:
    """ID numbers as stations and officers mangle them: full-width digits, the 15-digit form,
    a lower-case x, a wrong check digit, spaces and dashes, junk, Excel's scientific notation."""
    full = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
    out = []
    for i, v in enumerate(ids):
        if len(v) != 18 or not v[:17].isdigit():
            out.append(v)  # already broken as stored
            continue
        out += [v, v.translate(full), v[:6] + v[8:17], v.lower(), f" {v[:6]} {v[6:14]} {v[14:]} ",
                f"{v[:6]}-{v[6:14]}-{v[14:]}", v[:17] + str((int(v[17]) + 1) % 10 if v[17].isdigit() else 0),
                v[:10], v + "1", f"{v[:4]}?{v[5:]}", f"{int(v[:15]):.6E}" if i % 7 == 0 else v[1:]]
    return out + ["", " ", "无", "N/A", "000000000000000000", "11010519491231002X"]


def _noisy_phones(phones: list[str]) -> list[str]:
    """Phones as typed: +86 / 0086 prefixes, spaces and dashes, full-width digits, landlines with
    and without the trunk 0, too short, letters."""
    full = str.maketrans("0123456789", "０１２３４５６７８９")
    out = []
    for v in phones:
        out += [v, f"+86 {v}", f"0086-{v}", f"{v[:3]} {v[3:7]} {v[7:]}", v.translate(full), f"({v[:3]}){v[3:]}",
                v[:7], v + "0", f"86{v}", f"0{v}"]
    return out + ["", "023-6812 3456", "+86 23 6812 3456", "68123456", "010 12345678", "12345", "abc", "电话"]


def test_field_steps_standardise_as_the_whole_record_does(desks) -> None:
    """standardise_fields' columns equal standardise's, value for value, on thousands of noisy
    IDs and phones (the fields the front desk's search standardises alone)."""
    _, _, stored, _, _ = desks
    person = load_registry().get("person")
    ids = _noisy_ids([v for v in stored["id_number"].drop_nulls().unique().sort().to_list()[:300]])
    phones = _noisy_phones([v for v in stored["phone"].drop_nulls().unique().sort().to_list()[:300]])
    n = max(len(ids), len(phones))
    raw = pl.DataFrame({"record_key": [f"r{i}" for i in range(n)],
                        "id_number": (ids * 2)[:n], "phone": (phones * 2)[:n]})
    whole = standardise(raw, person)
    for given in (["id_number"], ["phone"], ["id_number", "phone"]):
        alone = standardise_fields(raw.select("record_key", *given), person, given)
        assert alone is not None
        assert alone.columns[0] == "record_key" and len(alone.columns) > 1 + len(given)
        assert alone.equals(whole.select(alone.columns)), given
    assert n > 2500
    assert standardise_fields(raw.with_columns(name=pl.lit("张三")), person, ["id_number", "name"]) is None


def test_search_by_field_equals_the_whole_standardiser(desks, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index's search with the field-step path (what Polars runs when the plain-Python twin
    declines) answers exactly what it answers through the twin, on every stored record's typed ID
    and phone and noisy forms."""
    import entity_resolution.matching as matching

    _, _, stored, _, matcher = desks
    index = matcher.refresh("person")
    ids = _noisy_ids(stored["id_number"].drop_nulls().sample(150, seed=1).to_list())
    phones = _noisy_phones(stored["phone"].drop_nulls().sample(150, seed=1).to_list())
    queries = ([{"id_number": v} for v in ids] + [{"phone": v} for v in phones]
               + [{"id_number": a, "phone": b} for a, b in zip(ids, phones)]
               + [{"name": r["name"], "birth_date": str(r["birth_date"])} for r in stored.head(50).iter_rows(named=True)])
    slow = index.search_many(queries, limit=50, by_field=False)  # the twin
    monkeypatch.setattr(matching, "standardise_rows", lambda *a, **k: None)
    fast = index.search_many(queries, limit=50)  # Polars, field steps only
    as_text = [(type(x).__name__, str(x)) if isinstance(x, Exception) else x for x in fast]
    assert as_text == [(type(x).__name__, str(x)) if isinstance(x, Exception) else x for x in slow]
    assert sum(1 for x in fast if not isinstance(x, Exception) and x[0]) > len(queries) // 3


def test_exact_hits_equal_a_filter_per_query(desks) -> None:
    """The search's exact filter over many queries at once (`MatchIndex._exact_hits`) keeps the
    rows a Polars filter per query keeps (`col == value` for every given value, null never equal)."""
    _, _, _, _, matcher = desks
    index = matcher.refresh("person")
    rng = np.random.default_rng(3)
    cols = [c for c in ("id_number", "phone", "name_norm", "birth_date", "sex", "area_code") if c in index.schema]
    queries = []
    for k in range(80):
        rows = np.unique(rng.choice(index.size, size=int(rng.integers(1, 40)), replace=False)).astype(np.uint32)
        src = index._rows(rows[-1:]).row(0, named=True)  # values of one of its rows
        exact = {str(c): src[str(c)] for c in rng.choice(cols, size=int(rng.integers(0, 4)), replace=False)
                 if src[str(c)] is not None}
        if k % 4 == 0 and "sex" in exact:
            exact["sex"] = "x"  # a value nobody has
        queries.append((rows, exact))
    got = index._exact_hits(queries)
    hits = 0
    for (rows, exact), codes in zip(queries, got, strict=True):
        cand = index._rows(rows).with_columns(pl.Series("_row", rows))
        cond = [pl.col(c) == pl.lit(v, dtype=cand.schema[c]) for c, v in exact.items()]
        kept = cand.filter(pl.all_horizontal(cond) if cond else pl.lit(True))
        assert sorted(codes.tolist()) == sorted(index.entity_codes[kept["_row"].to_numpy()].tolist()), exact
        hits += bool(codes.size)
    assert 40 <= hits < len(queries)


def _typed(row: dict) -> dict:
    return {f: str(row[f]) for f in FIELDS if row.get(f) is not None}


def _answer(fn, *args) -> dict | tuple:
    try:
        return fn(*args)
    except FrontDeskError as exc:
        return ("error", exc.status, exc.detail)


def _audit_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(s.front_desk_audit))


def test_concurrent_requests_get_the_answers_they_get_alone(desks) -> None:
    batched, alone, stored, store, _ = desks
    sample = stored.sample(40, seed=3).iter_rows(named=True)
    callers = [Caller("s0001", None, "cli"), Caller("city", None, "cli")]
    requests = []
    for i, row in enumerate(sample):
        caller = callers[i % 2]
        requests.append(("match", caller, _typed(row)))
        key = {"id_number": row["id_number"]} if row["id_number"] else {"phone": row["phone"] or "13800000000"}
        requests.append(("search", caller, key))
    requests += [("match", callers[0], {"nonsense": "x"}),  # refused: unknown field
                 ("search", callers[1], {"name": "张三"}),  # refused: not selective
                 ("search", callers[0], {"phone": "13800000000"})]  # nothing found

    before = _audit_rows(store)
    sizes: list[int] = []
    run = batched._run
    batched._run = lambda jobs: (sizes.append(len(jobs)), run(jobs))[1]  # record how requests were grouped
    barrier = threading.Barrier(20)

    def send(req):
        kind, caller, record = req
        fn = batched.match if kind == "match" else batched.search
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return _answer(fn, caller, "person", record)

    with ThreadPoolExecutor(20) as pool:
        together = list(pool.map(send, requests))
    del batched._run
    audited = _audit_rows(store) - before
    one_by_one = [_answer(alone.match if kind == "match" else alone.search, caller, "person", record)
                  for kind, caller, record in requests]

    assert together == one_by_one
    assert max(sizes) > 1  # requests were answered together
    assert sum(isinstance(a, dict) and bool(a.get("candidates") or a.get("results")) for a in together) >= 30
    assert together[-3][:2] == ("error", 422) and "unknown field" in together[-3][2]
    assert together[-2][:2] == ("error", 422) and "not a selective search" in together[-2][2]
    # one row per answered request and per refused search (a refused match input leaves none, as alone)
    assert audited == len(requests) - 1
    assert _audit_rows(store) - before == 2 * audited


def test_a_single_request_is_answered_without_a_batch_partner(desks) -> None:
    batched, alone, stored, _, _ = desks
    row = stored.filter(pl.col("id_valid")).row(0, named=True)
    caller = Caller("city", None, "cli")
    got = batched.match(caller, "person", _typed(row))
    assert got == alone.match(caller, "person", _typed(row))
    assert got["candidates"] and got["candidates"][0]["decision"] in ("match", "review", "non_match")
    found = batched.search(caller, "person", {"id_number": row["id_number"]})
    assert found == alone.search(caller, "person", {"id_number": row["id_number"]})
    assert found["results"]


def test_the_plain_python_path_answers_as_the_polars_path(desks, monkeypatch: pytest.MonkeyPatch) -> None:
    """`match_many` through the plain-Python twins (standardise_rows, the index's PairScorer) gives the
    same checks, candidates, decisions, probabilities and explanations as through the batch's
    Polars functions, on stored records typed raw and on noisy copies of them."""
    import entity_resolution.matching as matching

    _, _, stored, _, matcher = desks
    index = matcher.refresh("person")
    sample = stored.sample(200, seed=3).iter_rows(named=True)
    records = []
    for i, r in enumerate(sample):
        raw = {f: (None if r.get(f) is None else str(r[f])) for f in FIELDS}
        records.append(raw)
        ids = _noisy_ids([raw["id_number"]]) if raw["id_number"] else [None]
        records.append({**raw, "id_number": ids[i % len(ids)], "phone": None if i % 3 else raw["phone"],
                        "name": (raw["name"] or "")[::-1] if i % 5 == 0 else raw["name"]})
    declined = []

    def counted(fn):
        def call(*args, **kwargs):
            got = fn(*args, **kwargs)
            declined.append(got is None)
            return got
        return call

    with monkeypatch.context() as m:
        m.setattr(matching, "standardise_rows", counted(matching.standardise_rows))
        m.setattr(index.scorer, "score", counted(index.scorer.score))
        fast = index.match_many(records, limit=10)
    assert declined and not any(declined)  # the twins answered every call: the fast path is the one tested
    monkeypatch.setattr(matching, "standardise_rows", lambda *a, **k: None)
    monkeypatch.setattr(index.scorer, "score", lambda *a, **k: None)
    slow = index.match_many(records, limit=10)
    assert [(r.checks, r.keys) for r in fast] == [(r.checks, r.keys) for r in slow]

    def comparable(result) -> list:
        return [{**c, "match_probability": round(c["match_probability"], 12),
                 "match_weight": round(c["match_weight"], 9)} for c in result.candidates]

    assert [comparable(r) for r in fast] == [comparable(r) for r in slow]
    assert sum(1 for r in fast if r.candidates) > len(records) // 2
    assert {c["decision"] for r in fast for c in r.candidates} >= {"match", "non_match"}
