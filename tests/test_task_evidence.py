"""Issue 12, tasks only from trustworthy evidence: a task proposes a value only when that value
passes validation and comes from trustworthy evidence (a trusted ID number; a golden value that
valid records back more strongly than the station's own); two open tasks on one record never
contradict; every task says why in `evidence`; a problem that comes back reopens its task.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entity_resolution.standardise.id_numbers import id_check_char, with_id_number
from entity_resolution.standardise.org_codes import credit_check_char
from quality.config import QualityConfig
from quality.corrections import (
    arbitrate,
    covered_expectations,
    expectation_tasks,
    golden_disagreements,
    own_check_tasks,
    task_id,
    valid_value,
)
from entity_resolution.entity_types import load_registry
from quality.suites import type_quality
from warehouse.golden import events

PERSONS = type_quality(load_registry()["person"]).standardised
TODAY = dt.date(2026, 11, 30)
FIELDS = ["name_norm", "sex", "birth_date", "id_number"]


def valid_id(body17: str) -> str:
    return body17 + pl.select(id_check_char(pl.lit(body17))).item()


def bad_check(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def persons(rows: list[dict]) -> pl.DataFrame:
    """Standardised person records as the standardiser writes them (ID columns computed)."""
    base = pl.DataFrame(rows, schema_overrides={"raw_id": pl.String})
    defaults = {"entity_id": "E1", "station_id": "s1", "batch_id": "b1", "name_norm": "张三"}
    base = base.with_columns(*[pl.lit(v).alias(k) for k, v in defaults.items() if k not in base.columns])
    out = with_id_number(base.lazy(), pl.col("raw_id"), today=TODAY).collect()
    return out.with_columns(pl.col("birth_date").str.to_date()).drop("raw_id")


def own(records: pl.DataFrame) -> pl.DataFrame:
    return own_check_tasks(records, "person", today=TODAY)


ID_1990 = valid_id("50010619900307122")  # born 1990-03-07, female


# -- validators ---------------------------------------------------------------------------------
def test_valid_value_uses_the_standardisers_rules() -> None:
    body = "91500000MA5U0000X"
    code = body + pl.select(credit_check_char(pl.lit(body + "0"))).item()
    cases = {
        "id_number": {ID_1990: True, bad_check(ID_1990): False, valid_id("50010699490518123"): False,  # year 9949
                      "5.00101E+17": False},
        "birth_date": {"1949-05-18": True, "9949-05-18": False, "1850-01-01": False, "2027-01-01": False},
        "sex": {"M": True, "F": True, "X": False},
        "credit_code": {code: True, code[:17] + ("1" if code[17] != "1" else "2"): False},
        "phone": {"13812345678": True, "023-68123456": True, "1381234": False},
        "name_norm": {"李四": True, "  ": False},
    }
    for field, values in cases.items():
        got = pl.select(valid_value(field, pl.lit(pl.Series(list(values))), today=TODAY)).to_series().to_list()
        assert got == list(values.values()), field


# -- expectation tasks --------------------------------------------------------------------------
def test_an_invalid_id_gets_the_id_task_alone_never_tasks_copying_it() -> None:
    # s0003:1103 in the demo: a broken ID whose embedded year is 9949
    broken = bad_check(ID_1990)
    recs = persons([{"record_key": "s1:1", "sex": "F", "birth_date": "1949-05-18", "raw_id": broken},
                    {"record_key": "s1:2", "sex": "F", "birth_date": "1949-05-18",
                     "raw_id": "500106994905181230"}])
    tasks = own(recs)
    assert set(tasks.select("record_key", "field").iter_rows()) == {("s1:1", "id_number"), ("s1:2", "id_number")}
    assert tasks["expected_value"].is_null().all()
    assert all("Verify the ID number" in e for e in tasks["evidence"])


def test_a_trusted_id_proposes_its_value_and_says_both_disagree() -> None:
    recs = persons([{"record_key": "s1:1", "sex": "F", "birth_date": "1990-03-09", "raw_id": ID_1990}])
    t = own(recs).row(0, named=True)
    assert (t["field"], t["station_value"], t["expected_value"]) == ("birth_date", "1990-03-09", "1990-03-07")
    assert "disagree" in t["reason"] and "check digit" in t["evidence"] and "disagree" in t["evidence"]
    sex = "M" if int(ID_1990[16]) % 2 == 0 else "F"  # the other one
    t = own(persons([{"record_key": "s1:1", "sex": sex, "birth_date": "1990-03-07", "raw_id": ID_1990}])).row(0, named=True)
    assert t["field"] == "sex" and t["expected_value"] not in (None, sex)


def test_an_upgraded_15_digit_id_is_no_evidence() -> None:
    old = "500106900307122"  # 15 digits: the hub adds "19" and computes the check digit itself
    recs = persons([{"record_key": "s1:1", "sex": "F", "birth_date": "1990-03-09", "raw_id": old}])
    assert recs["id_upgraded"].item() and recs["id_valid"].item()
    t = own(recs).row(0, named=True)
    assert t["field"] == "birth_date" and t["expected_value"] is None
    assert "15 digits" in t["evidence"] and "15-digit" in t["reason"]


def test_one_task_per_record_and_field_naming_every_failed_check() -> None:
    # an implausible stated date that also differs from a trusted ID: one task, proposing the ID's
    recs = persons([{"record_key": "s1:1", "sex": "F", "birth_date": "1850-03-07", "raw_id": ID_1990}])
    t = own(recs)
    assert t.height == 1
    row = t.row(0, named=True)
    assert row["expected_value"] == "1990-03-07"
    assert "validity.birth_date.plausible" in row["evidence"] and "consistency.birth_date" in row["evidence"]


def test_expected_values_outside_the_configured_range_are_not_proposed() -> None:
    recs = persons([{"record_key": "s1:1", "sex": "F", "birth_date": "1990-03-09", "raw_id": ID_1990}])
    failures = pl.DataFrame({"expectation_id": ["consistency.birth_date"], "key": ["s1:1"]})
    got = expectation_tasks(failures, recs, PERSONS, station_id="s1", batch_id="b1",
                            earliest=dt.date(1995, 1, 1), today=TODAY)
    assert got.height == 0  # the ID's date is before earliest_birth_date: that ID is no evidence


# -- golden-disagreement tasks ------------------------------------------------------------------
def golden_of(**values) -> pl.DataFrame:
    return pl.DataFrame([{"entity_id": "E1", **{f: values.get(f) for f in FIELDS}}],
                        schema={"entity_id": pl.String, **{f: pl.String for f in FIELDS}}).with_columns(
        pl.col("birth_date").str.to_date())


def test_golden_value_proposed_only_with_stronger_valid_support() -> None:
    recs = persons([
        {"record_key": "s1:1", "station_id": "s1", "sex": "F", "birth_date": "1990-03-07", "raw_id": ID_1990,
         "name_norm": "李晓瑶"},
        {"record_key": "s2:1", "station_id": "s2", "sex": "F", "birth_date": "1990-03-07", "raw_id": ID_1990,
         "name_norm": "李晓瑶"},
        {"record_key": "s3:1", "station_id": "s3", "sex": "F", "birth_date": "1990-03-07", "raw_id": ID_1990,
         "name_norm": "李孝瑶"},
    ])
    g = golden_of(name_norm="李晓瑶", sex="F", birth_date="1990-03-07", id_number=ID_1990)
    t = golden_disagreements(recs, g, FIELDS, entity_type="person", today=TODAY)
    assert t.select("record_key", "field", "expected_value").rows() == [("s3:1", "name_norm", "李晓瑶")]
    ev = t["evidence"].item()
    assert "2 of 3 linked records give this value, at 2 stations" in ev and "1 record at 1 station" in ev
    assert "李" not in ev  # counts, never values
    # one against one: equal weight, no task either way
    g1 = golden_of(name_norm="李晓瑶")
    assert golden_disagreements(recs.filter(pl.col("record_key") != "s2:1"), g1, FIELDS, entity_type="person",
                                today=TODAY).height == 0


def test_golden_value_never_proposed_when_invalid_or_backed_by_invalid_records() -> None:
    broken = bad_check(ID_1990)
    recs = persons([{"record_key": "s1:1", "station_id": "s1", "sex": "F", "birth_date": "1990-03-07",
                     "raw_id": ID_1990},
                    {"record_key": "s2:1", "station_id": "s2", "sex": "F", "birth_date": "1990-03-07",
                     "raw_id": broken}])
    for bad in ({"id_number": broken}, {"birth_date": "2985-10-14"}):
        g = golden_of(**{"sex": "F", "birth_date": "1990-03-07", "id_number": ID_1990, **bad})
        g = g if "birth_date" not in bad else g.with_columns(pl.lit(None, pl.Date).alias("birth_date"))
        t = golden_disagreements(recs, g, FIELDS, entity_type="person", today=TODAY)
        assert bad.get("id_number") not in set(t["expected_value"].to_list())
    # a valid golden ID against the broken one: proposed, the station's own value failing validation
    t = golden_disagreements(recs, golden_of(sex="F", birth_date="1990-03-07", id_number=ID_1990), FIELDS,
                             entity_type="person", today=TODAY)
    assert t.select("record_key", "expected_value").rows() == [("s2:1", ID_1990)]
    assert "fails validation" in t["evidence"].item()


def test_a_date_confirmed_by_the_records_own_trusted_id_is_not_questioned() -> None:
    other = valid_id("50010619900308123")
    recs = persons([{"record_key": f"s{i}:1", "station_id": f"s{i}", "sex": "F", "birth_date": "1990-03-08",
                     "raw_id": other} for i in (1, 2)]
                   + [{"record_key": "s3:1", "station_id": "s3", "sex": "F", "birth_date": "1990-03-07",
                       "raw_id": ID_1990}])
    t = golden_disagreements(recs, golden_of(sex="F", birth_date="1990-03-08", id_number=other), FIELDS,
                             entity_type="person", today=TODAY)
    assert ("s3:1", "birth_date") not in set(t.select("record_key", "field").iter_rows())
    assert ("s3:1", "id_number") in set(t.select("record_key", "field").iter_rows())


# -- no contradictions between the two sources --------------------------------------------------
def test_golden_task_covers_a_check_that_proposes_nothing_and_yields_to_one_that_proposes() -> None:
    broken = bad_check(ID_1990)
    recs = persons([{"record_key": "s1:1", "station_id": "s1", "sex": "F", "birth_date": "1990-03-07",
                     "raw_id": ID_1990},
                    {"record_key": "s2:1", "station_id": "s2", "sex": "F", "birth_date": "1990-03-07",
                     "raw_id": broken}])
    g = golden_disagreements(recs, golden_of(sex="F", birth_date="1990-03-07", id_number=ID_1990), FIELDS,
                             entity_type="person", today=TODAY)
    e = own(recs)  # the ID task on s2:1
    keep, covered = arbitrate(g, e)
    assert keep.height == 1 and covered["task_id"].to_list() == e["task_id"].to_list()
    assert "also fails its own check" in keep["evidence"].item()
    # the station pass: the open golden task covers the same ID task again, opening nothing
    found, closed = covered_expectations(e, keep, recs.select("record_key", "id_number"))
    assert found.height == 0 and closed.height == 0
    # an expectation task proposing a value wins over a golden one on the same field
    e2 = e.with_columns(pl.lit(ID_1990).alias("expected_value"))
    keep2, _ = arbitrate(g, e2)
    assert keep2.height == 0


def test_a_golden_id_task_covers_the_sex_task_read_from_that_id() -> None:
    other = valid_id("50010619900307123")  # 17th digit odd: the ID says male, the record says F
    recs = persons([{"record_key": f"s{i}:1", "station_id": f"s{i}", "sex": "F", "birth_date": "1990-03-07",
                     "raw_id": ID_1990} for i in (1, 2)]
                   + [{"record_key": "s3:1", "station_id": "s3", "sex": "F", "birth_date": "1990-03-07",
                       "raw_id": other}])
    e = own(recs)  # s3:1's sex task from its (valid) ID: the two sexes differ
    g = golden_disagreements(recs, golden_of(sex="F", birth_date="1990-03-07", id_number=ID_1990), FIELDS,
                             entity_type="person", today=TODAY)
    assert ("s3:1", "id_number") in set(g.select("record_key", "field").iter_rows())
    keep, covered = arbitrate(g, e)
    assert e.filter((pl.col("record_key") == "s3:1") & (pl.col("field") == "sex")).height == 1
    assert covered.filter(pl.col("field") == "sex").height == 1
    still = e.filter(~pl.col("task_id").is_in(covered["task_id"].implode()))
    assert_no_contradictions(pl.concat([keep, still]))


def assert_no_contradictions(tasks: pl.DataFrame) -> None:
    per = tasks.group_by("record_key", "field").len()
    assert per["len"].max() in (None, 1), per.filter(pl.col("len") > 1)
    ids = set(tasks.filter(pl.col("field") == "id_number")["record_key"])
    from_id = tasks.filter(pl.col("field").is_in(["birth_date", "sex"]) & pl.col("reason").str.contains("ID number")
                           & pl.col("expected_value").is_not_null())
    assert not ids & set(from_id["record_key"]), "fix the ID and copy the ID on one record"


# -- property: random corruption of a small network ---------------------------------------------
CORRUPTIONS = ("none", "check", "year", "sci", "upgrade15", "birth", "birth_far", "sex", "name", "other_id")


@st.composite
def networks(draw):
    entities = draw(st.integers(1, 4))
    rows = []
    for e in range(entities):
        body = f"5001{draw(st.integers(10, 99))}{draw(st.integers(1930, 2010))}0{draw(st.integers(1, 9))}" \
               f"{draw(st.integers(10, 28))}{draw(st.integers(100, 999))}"
        number = valid_id(body)
        born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
        sex = "M" if int(number[16]) % 2 else "F"
        for r in range(draw(st.integers(1, 4))):
            c = draw(st.sampled_from(CORRUPTIONS))
            raw, b, s, name = number, born, sex, "王五"
            if c == "check":
                raw = bad_check(number)
            elif c == "year":
                raw = number[:6] + "9" + number[7:]
            elif c == "sci":
                raw = f"{number[0]}.{number[1:6]}E+17"
            elif c == "upgrade15":
                raw = number[:6] + number[8:17]
            elif c == "birth":
                b = f"{number[6:10]}-{number[10:12]}-{int(number[12:14]) % 28 + 1:02d}"
            elif c == "birth_far":
                b = "2985-10-14"
            elif c == "sex":
                s = "F" if sex == "M" else "M"
            elif c == "name":
                name = "王伍"
            elif c == "other_id":
                raw = valid_id(number[:16] + str((int(number[16]) + 1) % 10))
            rows.append({"record_key": f"s{r % 3}:{e}-{r}", "station_id": f"s{r % 3}", "entity_id": f"E{e}",
                         "batch_id": f"b{r % 3}", "name_norm": name, "sex": s, "birth_date": b, "raw_id": raw})
    return rows


def golden_by_majority(recs: pl.DataFrame) -> pl.DataFrame:
    """A stand-in for survivorship: the most frequent value (a valid one first for the ID)."""
    out = recs.select("entity_id").unique()
    for f in FIELDS:
        ranked = recs.filter(pl.col(f).is_not_null()).with_columns(
            (pl.col("id_valid") if f == "id_number" else pl.lit(True)).alias("_v"),
            pl.len().over("entity_id", f).alias("_n")).sort(["entity_id", "_v", "_n", "record_key"],
                                                           descending=[False, True, True, False])
        out = out.join(ranked.unique("entity_id", keep="first").select("entity_id", f), on="entity_id", how="left")
    return out.with_columns(pl.col("birth_date").cast(pl.String)).with_columns(pl.col("birth_date").str.to_date())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_property_no_impossible_values_and_no_contradictions(rows: list[dict]) -> None:
    recs = persons(rows)
    expectation = own(recs)
    golden = golden_disagreements(recs, golden_by_majority(recs), FIELDS, entity_type="person", today=TODAY)
    keep, covered = arbitrate(golden, expectation)
    still = expectation.filter(~pl.col("task_id").is_in(covered["task_id"].implode()))
    # the station pass, next drop: the same records against the golden tasks now open
    again, _ = covered_expectations(expectation, keep, recs.select("record_key", "id_number"))
    for open_tasks in (pl.concat([keep, still]), pl.concat([keep, again])):
        proposed = open_tasks.filter(pl.col("expected_value").is_not_null())
        for (field,), part in proposed.group_by("field"):
            ok = part.select(valid_value(field, pl.col("expected_value"), today=TODAY)).to_series()
            assert ok.all(), part.filter(~ok)
        assert (proposed["expected_value"] != proposed["station_value"]).all()
        assert_no_contradictions(open_tasks)
        assert open_tasks["evidence"].is_not_null().all()


# -- through the pipeline: evidence stored and delivered, a problem that comes back reopens ---------
from test_quality_pipeline import ID_B, base_network, feed_subscriptions, net_for, row  # noqa: F401


def test_a_task_reopens_when_a_drop_brings_the_problem_back(base_network, tmp_path, warehouse_url) -> None:  # noqa: F811
    net = net_for(base_network, tmp_path, warehouse_url, QualityConfig(max_invalid_id_rate=0.9, data_docs=False))
    seq0 = net.store.max_event_seq()
    good = row("B1", name="欧阳娜娜", sex="女", birth_date="1988-03-04", id_number=ID_B, phone="13700002222")
    bad = {**good, "id_number": bad_check(ID_B)}
    tid = task_id("s9001", "s9001:B1", "id_number", "expectation:validity.id_number")
    for i, drop in enumerate([bad, good, bad]):
        net.drop([{**drop, "source_updated_at": f"2026-11-2{i + 1} 09:00:00"}])
        net.cycle()
    tasks = net.qs.tasks(station_ids=["s9001"])
    assert tasks.filter(pl.col("record_key") == "s9001:B1")["task_id"].to_list() == [tid]  # one task, not three
    t = tasks.row(0, named=True)
    assert t["status"] == "open" and "check digit" in t["evidence"]
    ev = events(net.store, after=seq0).filter(pl.col("entity_id") == tid).sort("seq")
    assert ev["op"].to_list() == ["create", "retire", "update"] and ev["version"].to_list() == [1, 2, 3]
    assert "check digit" in json.loads(ev["after"][-1])["evidence"]
    # the feed delivers the evidence with the task, and no value in it
    from feeds.files import build_all
    build_all(net.store, feed_subscriptions(net.root), config_dir=net.root, data_dir=net.root / "data")
    lines = [json.loads(x) for f in (net.root / "data" / "outbox" / "s9001").glob("*.jsonl")
             for x in f.read_text(encoding="utf-8").splitlines()]
    delivered = [x for x in lines if x["entity_type"] == "correction_task"]
    assert delivered and all("evidence" in (x.get("after") or x.get("record") or {}) for x in delivered)
    assert bad_check(ID_B) not in json.dumps(delivered, ensure_ascii=False)


def test_a_relatives_id_is_no_evidence_for_birth_date_or_sex() -> None:
    """A household member's ID on the record (birth date years apart, other sex): the ID is no
    evidence for this record's birth date or sex, so the task proposes nothing and says why."""
    import datetime as dt

    from quality.corrections import trusted_id

    frame = pl.DataFrame({
        "id_valid": [True, True, True, True],
        "id_upgraded": [False, False, False, False],
        "id_birth_date": [dt.date(1968, 5, 15), dt.date(1968, 5, 15), dt.date(1968, 5, 15), dt.date(1968, 5, 15)],
        "birth_date": [dt.date(1946, 1, 10), dt.date(1968, 5, 18), dt.date(1969, 5, 15), dt.date(1968, 5, 15)],
        "id_sex": ["M", "M", "M", "F"],
        "sex": ["F", "M", "M", "M"],
    })
    got = frame.select(own=trusted_id(frame, today=dt.date(2026, 1, 1)),
                       checked=trusted_id(frame, today=dt.date(2026, 1, 1), require_own=False))
    # years apart and other sex: another person's; a day or a year off: slips; same date, other sex: own
    assert got["own"].to_list() == [False, True, True, True]
    assert got["checked"].to_list() == [True, True, True, True]
